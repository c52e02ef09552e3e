"""The five demo programs written for OpenFisca-core, to compare the bulk evaluators against.

The way an OpenFisca country package would write them: entities person and household, one
variable per input, per derived value, per condition, per amount and per item, each a
vectorised numpy formula. The formulas mirror rulepacks/*/2026.1.yaml by hand (that is what
OpenFisca users do); the dated parameters are not copied: they are read from the RulePack
objects and turned into an OpenFisca ParameterNode (`programs.<program>.<parameter>`).
OpenFisca has no unknown: the bench's households have no missing facts, so a household is
eligible or not in both. Needs `pip install -e '.[bench]'`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from openfisca_core.entities import build_entity
from openfisca_core.parameters import ParameterNode
from openfisca_core.periods import DateUnit
from openfisca_core.simulations import Simulation, SimulationBuilder
from openfisca_core.taxbenefitsystems import TaxBenefitSystem
from openfisca_core.variables import Variable

from civicard.programs.inputs import rule_inputs
from civicard.programs.rulepack import RulePack

Person = build_entity(key="person", plural="persons", label="A member of a household", is_person=True)
Household = build_entity(
    key="household",
    plural="households",
    label="A household",
    roles=[{"key": "member", "plural": "members", "label": "Member"}],
)
PROGRAMS = ("food_basket", "chronic_medicine", "child_allowance", "elderly_supplement", "disability_support")


def build_system(packs: Sequence[RulePack]) -> TaxBenefitSystem:
    """A tax-benefit system with the inputs, the five programs' formulas and the packs' parameters."""
    system = TaxBenefitSystem([Person, Household])
    inputs = rule_inputs()
    for name, spec in inputs.household.items():
        system.add_variable(_input(name, Household, bool if spec.kind == "boolean" else float))
    for name, spec in inputs.member.items():
        system.add_variable(_input(name, Person, bool if spec.kind == "boolean" else float))
    for name, (value_type, formula) in _formulas().items():
        system.add_variable(_variable(name, Household, value_type, formula))
    system.parameters = ParameterNode("", data={"programs": _parameters(packs)})
    return system


def _parameters(packs: Sequence[RulePack]) -> dict[str, Any]:
    """Every pack's dated parameter values, as OpenFisca parameter data (one node per program)."""
    by_program: dict[str, Any] = {}
    for pack in packs:
        node = by_program.setdefault(pack.program, {})
        for name, parameter in pack.parameters.items():
            node[name] = {"values": {since.isoformat(): {"value": value} for since, value in parameter.values}}
    return by_program


def _input(name: str, entity: Any, value_type: type) -> type[Variable]:
    attributes = {"value_type": value_type, "entity": entity, "definition_period": DateUnit.MONTH, "label": name}
    return type(name, (Variable,), attributes)


def _variable(name: str, entity: Any, value_type: type, formula: Callable[..., Any]) -> type[Variable]:
    attributes = {
        "value_type": value_type,
        "entity": entity,
        "definition_period": DateUnit.MONTH,
        "label": name,
        "formula": formula,
    }
    return type(name, (Variable,), attributes)


def _whole(x: Any) -> Any:
    """Half away from zero to whole units, as civicard rounds money and quantities."""
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def _count(household: Any, period: Any, condition: Callable[[Callable[[str], Any]], Any]) -> Any:
    """How many members meet `condition` (given a member-variable reader)."""
    return household.sum(condition(lambda name: household.members(name, period)))


def _formulas() -> dict[str, tuple[type, Callable[..., Any]]]:
    """Every computed variable: (value type, formula(household, period, parameters))."""
    f: dict[str, tuple[type, Callable[..., Any]]] = {}

    def per_person(h: Any, p: Any, _: Any) -> Any:
        count = h("member_count", p)
        return np.divide(h("household_income", p), count, out=np.full(len(count), np.nan), where=count != 0)

    f["income_per_person"] = (float, per_person)

    # Monthly food basket
    def fb(name: str) -> Callable[[Any, Any], Any]:
        return lambda p, params: getattr(params(p).programs.food_basket, name)

    f["food_basket__c__low_income"] = (
        bool,
        lambda h, p, pp: h("income_per_person", p) <= fb("income_limit_per_person")(p, pp),
    )
    f["food_basket__c__limited_assets"] = (bool, lambda h, p, pp: h("property_value", p) <= fb("property_limit")(p, pp))
    f["food_basket__eligible"] = (
        bool,
        lambda h, p, _: h("food_basket__c__low_income", p) & h("food_basket__c__limited_assets", p),
    )
    f["food_basket__basket_members"] = (
        float,
        lambda h, p, pp: np.minimum(h("member_count", p), fb("max_basket_members")(p, pp)),
    )
    basket: dict[str, Callable[[Any, Any], Any]] = {
        "rice_1kg": lambda h, p: 2 * h("food_basket__basket_members", p),
        "beans_1kg": lambda h, p: h("food_basket__basket_members", p),
        "lentils_1kg": lambda h, p: h("food_basket__basket_members", p) / 2,
        "maize_meal_1kg": lambda h, p: h("food_basket__basket_members", p),
        "pasta_500g": lambda h, p: h("food_basket__basket_members", p),
        "oil_1l": lambda h, p: h("food_basket__basket_members", p) / 2,
        "sugar_1kg": lambda h, p: h("food_basket__basket_members", p) / 2,
        "salt_1kg": lambda h, p: np.ones(h.count),
        "eggs_12": lambda h, p: np.ceil(h("food_basket__basket_members", p) / 3),
        "milk_powder_400g": lambda h, p: (
            2 * _count(h, p, lambda m: m("age") < 5) + _count(h, p, lambda m: (m("age") >= 5) & (m("age") < 18))
        ),
        "soap_bar": lambda h, p: h("food_basket__basket_members", p),
    }
    for item, quantity in basket.items():
        f[f"food_basket__i__{item}"] = (int, _granted("food_basket", quantity))

    # Free chronic-illness medicine
    f["chronic_medicine__c__has_chronic_member"] = (
        bool,
        lambda h, p, _: h.any(h.members("chronic_illness", p)),
    )
    f["chronic_medicine__c__low_income_or_elderly"] = (
        bool,
        lambda h, p, pp: (
            (h("income_per_person", p) <= pp(p).programs.chronic_medicine.income_limit_per_person)
            | h.any(h.members("age", p) >= 65)
        ),
    )
    f["chronic_medicine__eligible"] = (
        bool,
        lambda h, p, _: (
            h("chronic_medicine__c__has_chronic_member", p) & h("chronic_medicine__c__low_income_or_elderly", p)
        ),
    )
    medicines = {
        "insulin_nph_10ml": lambda m: 2 * m("chronic_e10"),
        "metformin_850_60": lambda m: m("chronic_e11"),
        "enalapril_10_30": lambda m: m("chronic_i10"),
        "furosemide_40_30": lambda m: m("chronic_i50"),
        "salbutamol_inh_200": lambda m: m("chronic_j44") | m("chronic_j45"),
        "calcium_carb_500_90": lambda m: m("chronic_n18"),
        "tld_30": lambda m: m("chronic_b20"),
        "levetiracetam_500_60": lambda m: m("chronic_g40"),
        "risperidone_2_30": lambda m: m("chronic_f20"),
    }
    for item, per_member in medicines.items():
        quantity = _member_count_of(per_member)
        f[f"chronic_medicine__i__{item}"] = (int, _granted("chronic_medicine", quantity))

    # Child allowance
    f["child_allowance__children"] = (float, lambda h, p, _: _count(h, p, lambda m: m("age") < 18))
    f["child_allowance__c__has_children"] = (bool, lambda h, p, _: h("child_allowance__children", p) >= 1)
    f["child_allowance__c__low_income"] = (
        bool,
        lambda h, p, pp: h("income_per_person", p) <= pp(p).programs.child_allowance.income_limit_per_person,
    )
    f["child_allowance__eligible"] = (
        bool,
        lambda h, p, _: h("child_allowance__c__has_children", p) & h("child_allowance__c__low_income", p),
    )

    def child_amount(h: Any, p: Any, pp: Any) -> Any:
        params = pp(p).programs.child_allowance
        return np.minimum(h("child_allowance__children", p), params.max_children) * params.amount_per_child

    f["child_allowance__amount"] = (int, _granted("child_allowance", child_amount, with_parameters=True))

    # Elderly supplement
    f["elderly_supplement__eligible_elders"] = (
        float,
        lambda h, p, _: _count(h, p, lambda m: (m("age") >= 65) & (~m("receives_pension") | (m("income") <= 20000))),
    )
    f["elderly_supplement__c__has_eligible_elder"] = (
        bool,
        lambda h, p, _: h("elderly_supplement__eligible_elders", p) >= 1,
    )
    f["elderly_supplement__c__household_means"] = (
        bool,
        lambda h, p, pp: (
            h("income_per_person", p) <= pp(p).programs.elderly_supplement.household_income_limit_per_person
        ),
    )
    f["elderly_supplement__eligible"] = (
        bool,
        lambda h, p, _: (
            h("elderly_supplement__c__has_eligible_elder", p) & h("elderly_supplement__c__household_means", p)
        ),
    )

    def elderly_amount(h: Any, p: Any, pp: Any) -> Any:
        params = pp(p).programs.elderly_supplement
        return np.minimum(h("elderly_supplement__eligible_elders", p), params.max_elders) * params.supplement_per_elder

    f["elderly_supplement__amount"] = (int, _granted("elderly_supplement", elderly_amount, with_parameters=True))

    # Disability support
    f["disability_support__c__has_recognised_disability"] = (
        bool,
        lambda h, p, _: h.max(h.members("disability_degree", p)) >= 33,
    )
    f["disability_support__c__income_under_limit"] = (
        bool,
        lambda h, p, pp: h("income_per_person", p) <= pp(p).programs.disability_support.income_limit_per_person,
    )
    f["disability_support__eligible"] = (
        bool,
        lambda h, p, _: (
            h("disability_support__c__has_recognised_disability", p) & h("disability_support__c__income_under_limit", p)
        ),
    )

    def disability_amount(h: Any, p: Any, pp: Any) -> Any:
        params = pp(p).programs.disability_support
        higher = _count(h, p, lambda m: m("disability_degree") >= 65)
        base = _count(h, p, lambda m: (m("disability_degree") >= 33) & (m("disability_degree") < 65))
        return np.minimum(higher * params.higher_amount + base * params.base_amount, params.household_cap)

    f["disability_support__amount"] = (int, _granted("disability_support", disability_amount, with_parameters=True))
    return f


def _member_count_of(per_member: Callable[[Callable[[str], Any]], Any]) -> Callable[[Any, Any], Any]:
    return lambda h, p: h.sum(per_member(lambda name: h.members(name, p)))


def _granted(
    program: str, quantity: Callable[..., Any], with_parameters: bool = False
) -> Callable[[Any, Any, Any], Any]:
    """A quantity or amount in whole units for eligible households, 0 for the others."""

    def formula(h: Any, p: Any, pp: Any) -> Any:
        value = quantity(h, p, pp) if with_parameters else quantity(h, p)
        return np.where(h(f"{program}__eligible", p), _whole(value), 0)

    return formula


def outputs(packs: Sequence[RulePack]) -> list[str]:
    """The variables a run computes: per program its conditions, eligibility, amount and items."""
    names = []
    for pack in packs:
        names += [f"{pack.program}__c__{c.name}" for c in pack.conditions]
        names.append(f"{pack.program}__eligible")
        if pack.program in ("child_allowance", "elderly_supplement", "disability_support"):
            names.append(f"{pack.program}__amount")
        names += [f"{pack.program}__i__{g.item.lower().replace('-', '_').replace('.', '_')}" for g in pack.items]
    return names


def simulation(system: TaxBenefitSystem, period: date, households: pa.Table, members: pa.Table) -> Simulation:
    """A simulation of `households` and their `members` (Arrow tables of the canonical types)."""
    builder = SimulationBuilder()
    builder.create_entities(system)
    household_ids = households.column("household_id")
    builder.declare_person_entity("person", np.arange(members.num_rows))
    group = builder.declare_entity("household", np.arange(households.num_rows))
    assignment = pc.index_in(members.column("household_id"), household_ids).to_numpy()
    builder.join_with_persons(group, assignment, np.zeros(members.num_rows, dtype=np.int64))
    sim = builder.build(system)
    month = f"{period:%Y-%m}"
    inputs = rule_inputs()
    for table, fields in ((households, inputs.household), (members, inputs.member)):
        for name in fields:
            sim.set_input(name, month, table.column(name).to_numpy())
    return sim


def compute(sim: Simulation, period: date, names: Sequence[str]) -> dict[str, np.ndarray]:
    month = f"{period:%Y-%m}"
    return {name: sim.calculate(name, month) for name in names}
