"""Explanations of stored decisions, rebuilt from the decision's input snapshot and rule version.

A stored decision keeps its outcome, the SHA-256 of the rule version and the canonical text of
the inputs it was made on. Deciding those inputs again under that version must give the stored
outcome; if it does not, the stored decision, its snapshot or the rule text was altered, and no
explanation is given (a wrong reason is worse than none).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from civicard.programs.cycles import facts_from_snapshot, period_start
from civicard.programs.decisions import decide
from civicard.programs.engines import Outcome
from civicard.programs.expressions import Ref
from civicard.programs.inputs import InputField, rule_inputs
from civicard.programs.rulepack import RulePack
from civicard.shared.errors import Conflict

LANGUAGES = ("es", "en")


class DecisionRecord(Protocol):
    """What an explanation needs of a stored decision (adapters/db/decision_store.StoredDecision)."""

    @property
    def id(self) -> str: ...
    @property
    def period(self) -> str: ...
    @property
    def program(self) -> str: ...
    @property
    def program_version_id(self) -> str: ...
    @property
    def rules_sha256(self) -> str: ...
    @property
    def outcome(self) -> Outcome: ...
    @property
    def inputs(self) -> str | None: ...


class RuleVersion(Protocol):
    @property
    def version(self) -> str: ...
    @property
    def title(self) -> dict[str, str]: ...
    def pack(self) -> RulePack: ...


class VersionRegister(Protocol):
    def get(self, version_id: str) -> RuleVersion | None: ...


class DecisionNotReproducible(Conflict):
    """The stored decision does not follow from its stored inputs and rules: refuse to explain it."""


@dataclass(frozen=True)
class ConditionLine:
    name: str
    label: Mapping[str, str]
    met: bool | None
    detail: Mapping[str, str]  # per language: the operands, "income per person 410.00 > limit 350.00"


@dataclass(frozen=True)
class InputLine:
    """One rule input the decision was made on, labelled (inputs.yaml) and shown in its unit."""

    name: str
    label: Mapping[str, str]
    shown: Mapping[str, str]
    used: bool  # the program's rules name it


@dataclass(frozen=True)
class Explanation:
    decision_id: str
    program: str
    title: Mapping[str, str]
    version: str
    period: str
    outcome: Outcome
    summary: Mapping[str, str]  # per language: Decision.explanation
    conditions: tuple[ConditionLine, ...]
    household_inputs: tuple[InputLine, ...]
    member_inputs: tuple[tuple[InputLine, ...], ...]

    def text(self, lang: str = "es") -> str:
        return self.summary[lang if lang in LANGUAGES else "es"]


def explain(decision: DecisionRecord, register: VersionRegister) -> Explanation:
    """The decision's reasons per condition, in Spanish and English, from what was stored.

    Refuses (`decision_not_reproducible`) when the snapshot or the rule version is missing, or
    when deciding again does not give the stored outcome."""
    version = register.get(decision.program_version_id)
    if decision.inputs is None or version is None:
        raise DecisionNotReproducible(
            "decision_not_reproducible", "The inputs or rules this decision was made on are missing."
        )
    pack = version.pack()
    if pack.sha256 != decision.rules_sha256:
        raise DecisionNotReproducible(
            "decision_not_reproducible", "The decision names rules other than the registered version's."
        )
    facts = facts_from_snapshot(decision.inputs)
    rebuilt = decide(pack, facts, period_start(decision.period))
    if Outcome.of(rebuilt) != decision.outcome:
        raise DecisionNotReproducible(
            "decision_not_reproducible",
            "Deciding the stored inputs again does not give the stored outcome; the decision was altered.",
        )
    used = names_used(pack)
    raw = json.loads(decision.inputs)
    inputs = rule_inputs()
    return Explanation(
        decision_id=decision.id,
        program=decision.program,
        title=dict(version.title),
        version=version.version,
        period=decision.period,
        outcome=decision.outcome,
        summary={lang: rebuilt.explanation(lang) for lang in LANGUAGES},
        conditions=tuple(ConditionLine(c.name, c.label, c.met, c.details) for c in rebuilt.conditions),
        household_inputs=tuple(
            _line(name, value, inputs.household.get(name), name in used) for name, value in raw["household"].items()
        ),
        member_inputs=tuple(
            tuple(
                _line(name, value, inputs.member.get(name), name in used)
                for name, value in member.items()
                if value or name in used or not name.startswith("chronic_")
            )
            for member in raw["members"]
        ),
    )


def names_used(pack: RulePack) -> frozenset[str]:
    """The household and member inputs the pack's expressions name."""
    roots = [d.expression for d in pack.derived] + [c.expression for c in pack.conditions]
    roots += [pack.amount.expression] + [grant.quantity for grant in pack.items]
    return frozenset(r.name for root in roots for r in _refs(root) if r.source in ("household", "member"))


def _refs(node: object) -> Iterator[Ref]:
    if isinstance(node, Ref):
        yield node
    elif isinstance(node, tuple):
        for part in node:
            yield from _refs(part)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from _refs(getattr(node, f.name))


def _line(name: str, value: object, field: InputField | None, used: bool) -> InputLine:
    unit = field.unit if field else "number"
    label = {lang: field.label(lang) if field else name.replace("_", " ") for lang in LANGUAGES}
    return InputLine(name, label, {lang: show(value, unit, lang) for lang in LANGUAGES}, used)


def show(value: object, unit: str, lang: str) -> str:
    """A rule input as a person reads it: money in units with two decimals, flags as yes / no."""
    if value is None:
        return "desconocido" if lang == "es" else "unknown"
    if isinstance(value, bool):
        return ("sí" if value else "no") if lang == "es" else ("yes" if value else "no")
    if not isinstance(value, int | float):
        return str(value)
    if unit == "money":
        return f"{value / 100:,.2f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
