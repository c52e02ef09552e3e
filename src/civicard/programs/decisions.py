"""One household's decision under one program version, with the reasons a person can read."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from civicard.programs.evaluate import Compiled, Env, Value, compile_expression
from civicard.programs.expressions import Compare, Expr, Ref
from civicard.programs.inputs import rule_inputs
from civicard.programs.rulepack import RulePack

Status = Literal["eligible", "not_eligible", "unknown"]


@dataclass(frozen=True)
class HouseholdFacts:
    """The inputs of one household for one period (see inputs.yaml)."""

    household: Mapping[str, Value]
    members: Sequence[Mapping[str, Value]]


@dataclass(frozen=True)
class ConditionResult:
    name: str
    label: Mapping[str, str]
    met: bool | None
    details: Mapping[
        str, str
    ]  # per language: the operands behind the result, "income per person 410.00 > limit 350.00"

    def detail(self, lang: str = "en") -> str:
        return self.details[lang]


@dataclass(frozen=True)
class Decision:
    program: str
    version: str
    rules_sha256: str
    period: date
    status: Status
    amount_minor: int
    items: dict[str, int]
    conditions: tuple[ConditionResult, ...]

    @property
    def eligible(self) -> bool | None:
        return {"eligible": True, "not_eligible": False, "unknown": None}[self.status]

    def explanation(self, lang: str = "en") -> str:
        """ "eligible because A and B" / "not eligible: C not met (income 410.00 > limit 350.00)"."""
        words = _WORDS[lang]
        met = [c for c in self.conditions if c.met is True]
        failed = [c for c in self.conditions if c.met is False]
        unknown = [c for c in self.conditions if c.met is None]
        if self.status == "eligible":
            return words["eligible"] + f" {words['and']} ".join(f"{c.label[lang]} ({c.detail(lang)})" for c in met)
        if self.status == "not_eligible":
            return words["not_eligible"] + "; ".join(
                f"{c.label[lang]} {words['not_met']} ({c.detail(lang)})" for c in failed
            )
        return words["unknown"] + "; ".join(
            f"{c.label[lang]} {words['unknown_one']} ({c.detail(lang)})" for c in unknown
        )


_WORDS = {
    "en": {
        "eligible": "eligible because ",
        "and": "and",
        "not_eligible": "not eligible: ",
        "not_met": "not met",
        "unknown": "undecided (missing data): ",
        "unknown_one": "unknown",
    },
    "es": {
        "eligible": "elegible porque ",
        "and": "y",
        "not_eligible": "no elegible: ",
        "not_met": "no se cumple",
        "unknown": "sin decidir (faltan datos): ",
        "unknown_one": "sin datos",
    },
}


def facts_from_test(household: Mapping[str, Any], members: Sequence[Mapping[str, Any]]) -> HouseholdFacts:
    """A test case's household with docs/rules.md defaults: member_count and household_income
    from the members unless given, other inputs 0 / false."""
    inputs = rule_inputs()
    filled_members = []
    for m in members:
        filled_members.append(
            {name: m.get(name, False if f.kind == "boolean" else 0) for name, f in inputs.member.items()}
        )
    values: dict[str, Value] = {name: False if f.kind == "boolean" else 0.0 for name, f in inputs.household.items()}
    values["member_count"] = float(len(members))
    values["household_income"] = float(sum(float(m.get("income", 0) or 0) for m in members))
    values.update(household)
    return HouseholdFacts(values, filled_members)


def decide(pack: RulePack, facts: HouseholdFacts, period: date) -> Decision:
    plan = _plan(pack, period)
    env = Env(facts.household, facts.members, plan.parameters)
    for name, derived in plan.derived:
        env.derived[name] = derived(env, None)
    results = []
    verdict: bool | None = True
    for c in plan.conditions:
        value = c.expression(env, None)
        met = None if value is None else bool(value)
        results.append(ConditionResult(c.name, c.label, met, c.details(env, value, met)))
        if met is False:
            verdict = False
        elif met is None and verdict is True:
            verdict = None
    status: Status = "eligible" if verdict is True else "not_eligible" if verdict is False else "unknown"
    amount = 0
    items: dict[str, int] = {}
    if status == "eligible":
        amount = _whole(plan.amount(env, None))
        for item, quantity_of in plan.items:
            quantity = _whole(quantity_of(env, None))
            if quantity > 0:
                items[item] = items.get(item, 0) + quantity
    return Decision(pack.program, pack.version, pack.sha256, period, status, amount, items, tuple(results))


# --- compiled once per pack and period ----------------------------------------------------------


@dataclass(frozen=True)
class _Condition:
    name: str
    label: Mapping[str, str]
    expression: Compiled
    details: Callable[[Env, Value, bool | None], dict[str, str]]


@dataclass(frozen=True)
class _Plan:
    parameters: dict[str, float]
    derived: tuple[tuple[str, Compiled], ...]
    conditions: tuple[_Condition, ...]
    amount: Compiled
    items: tuple[tuple[str, Compiled], ...]


_PLANS: dict[tuple[int, date], tuple[RulePack, _Plan]] = {}
_MOST_PLANS = 256


def _plan(pack: RulePack, period: date) -> _Plan:
    """The pack's expressions as closures, with its parameters on `period`; kept for the next household
    (by identity: a RulePack is immutable but not hashable)."""
    key = (id(pack), period)
    found = _PLANS.get(key)
    if found is not None and found[0] is pack:
        return found[1]
    plan = _Plan(
        pack.parameters_on(period),
        tuple((d.name, compile_expression(d.expression)) for d in pack.derived),
        tuple(
            _Condition(c.name, c.label, compile_expression(c.expression), _details(c.expression, pack))
            for c in pack.conditions
        ),
        compile_expression(pack.amount.expression),
        tuple((grant.item, compile_expression(grant.quantity)) for grant in pack.items),
    )
    if len(_PLANS) >= _MOST_PLANS:
        _PLANS.clear()
    _PLANS[key] = (pack, plan)
    return plan


def _whole(value: Value) -> int:
    """Money and quantities: half away from zero to whole units; unknown counts as 0."""
    if value is None:
        return 0
    x = float(value)
    return int(math.copysign(math.floor(abs(x) + 0.5), x))  # round_half_away(x), inlined: called per item


_NEGATED = {"<=": ">", "<": ">=", ">=": "<", ">": "<=", "=": "≠", "<>": "="}
_SHOWN = {"=": "=", "<>": "≠"}


def _details(e: Expr, pack: RulePack) -> Callable[[Env, Value, bool | None], dict[str, str]]:
    """Per language, the comparison as it came out: "income per person 410.00 > limit 350.00" when not met."""
    if not isinstance(e, Compare):
        return lambda _env, value, _met: {lang: _show(value, "boolean", lang) for lang in _LANGUAGES}
    # A literal or a formula is shown in the unit of the named side it is compared with.
    units = [_unit(side, pack) for side in (e.left, e.right) if isinstance(side, Ref)]
    unit = units[0] if units else "number"
    sides = [_side(side, pack, unit) for side in (e.left, e.right)]
    left, right = (compile_expression(side) for side in (e.left, e.right))
    shown, negated = _SHOWN.get(e.op, e.op), _NEGATED[e.op]

    (left_names, left_unit), (right_names, right_unit) = sides

    def details(env: Env, _value: Value, met: bool | None) -> dict[str, str]:
        op = negated if met is False else shown
        a, b = left(env, None), right(env, None)
        # A number reads the same in every language: format it once.
        a_text = _show(a, left_unit, "en") if _is_number(a) else None
        b_text = _show(b, right_unit, "en") if _is_number(b) else None
        return {
            lang: f"{left_names[lang]}{a_text or _show(a, left_unit, lang)} {op} "
            f"{right_names[lang]}{b_text or _show(b, right_unit, lang)}"
            for lang in _LANGUAGES
        }

    return details


_LANGUAGES = ("es", "en")


def _is_number(value: Value) -> bool:
    return value is not None and not isinstance(value, bool)


def _side(e: Expr, pack: RulePack, unit: str) -> tuple[dict[str, str], str]:
    """How one side of a comparison is shown: its name (with a space) per language, and its unit."""
    if isinstance(e, Ref):
        return {lang: f"{_name(e, pack, lang)} " for lang in _LANGUAGES}, _unit(e, pack)
    return dict.fromkeys(_LANGUAGES, ""), unit


def _name(e: Ref, pack: RulePack, lang: str) -> str:
    if e.source == "parameter":
        return pack.parameters[e.name].label[lang].lower()
    for d in pack.derived:
        if d.name == e.name:
            return d.label[lang].lower()
    field = rule_inputs().household.get(e.name)
    return field.label(lang) if field else e.name.replace("_", " ")


def _unit(e: Ref, pack: RulePack) -> str:
    if e.source == "parameter":
        return pack.parameters[e.name].unit
    for d in pack.derived:
        if d.name == e.name:
            return d.unit
    inputs = rule_inputs()
    return inputs.household[e.name].unit if e.name in inputs.household else "number"


def _show(value: Value, unit: str, lang: str) -> str:
    if value is None:
        return "desconocido" if lang == "es" else "unknown"
    if isinstance(value, bool):
        return ("sí" if value else "no") if lang == "es" else ("yes" if value else "no")
    if unit == "money":  # minor units as units; a fraction of a minor unit is shown, not hidden
        return f"{value / 100:,.2f}" if float(value).is_integer() else f"{value / 100:,.4f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"
