"""One household's decision under one program version, with the reasons a person can read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from civicard.programs.evaluate import Env, Value, evaluate, kleene_and, round_half_away
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
    env = Env(facts.household, facts.members, pack.parameters_on(period))
    for derived in pack.derived:
        env.derived[derived.name] = evaluate(derived.expression, env)
    results = []
    for c in pack.conditions:
        met = _as_bool(evaluate(c.expression, env))
        details = {lang: _detail(c.expression, env, pack, met, lang) for lang in ("es", "en")}
        results.append(ConditionResult(c.name, c.label, met, details))
    verdict = kleene_and([r.met for r in results])
    status: Status = "eligible" if verdict is True else "not_eligible" if verdict is False else "unknown"
    amount, items = 0, dict[str, int]()
    if status == "eligible":
        amount = _whole(evaluate(pack.amount.expression, env))
        for grant in pack.items:
            quantity = _whole(evaluate(grant.quantity, env))
            if quantity > 0:
                items[grant.item] = items.get(grant.item, 0) + quantity
    return Decision(pack.program, pack.version, pack.sha256, period, status, amount, items, tuple(results))


def _whole(value: Value) -> int:
    """Money and quantities: half away from zero to whole units; unknown counts as 0."""
    rounded = round_half_away(None if value is None else float(value))
    return 0 if rounded is None else int(rounded)


def _as_bool(value: Value) -> bool | None:
    return None if value is None else bool(value)


_NEGATED = {"<=": ">", "<": ">=", ">=": "<", ">": "<=", "=": "≠", "<>": "="}
_SHOWN = {"=": "=", "<>": "≠"}


def _detail(e: Expr, env: Env, pack: RulePack, met: bool | None, lang: str) -> str:
    """The comparison as it came out: "income per person 410.00 > limit 350.00" when not met."""
    if isinstance(e, Compare):
        op = _NEGATED[e.op] if met is False else _SHOWN.get(e.op, e.op)
        # A literal or a formula is shown in the unit of the named side it is compared with.
        units = [_unit(side, pack) for side in (e.left, e.right) if isinstance(side, Ref)]
        unit = units[0] if units else "number"
        return f"{_operand(e.left, env, pack, lang, unit)} {op} {_operand(e.right, env, pack, lang, unit)}"
    return _show(evaluate(e, env), "boolean", lang)


def _operand(e: Expr, env: Env, pack: RulePack, lang: str, unit: str) -> str:
    value = evaluate(e, env)
    if isinstance(e, Ref):
        return f"{_name(e, pack, lang)} {_show(value, _unit(e, pack), lang)}"
    return _show(value, unit, lang)


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
