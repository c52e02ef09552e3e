"""Running a rule file's test cases on every evaluator and engine, and saying what differs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from civicard.programs.decisions import decide, facts_from_test
from civicard.programs.engines import Outcome, run_on_engine
from civicard.programs.expressions import InvalidRule
from civicard.programs.rulepack import RulePack, TestCase, load_rulepack

EngineRunner = Callable[[Sequence[RulePack], TestCase], Outcome]


@dataclass(frozen=True)
class CaseResult:
    program: str
    version: str
    case: str
    engine: str
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


NOT_RULES = frozenset({"items.yaml", "prices.yaml"})


def rule_files(root: Path) -> list[Path]:
    """Every rule file under `root` (or `root` itself), the item catalogue and price list excluded."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.yaml") if p.name not in NOT_RULES)


def load_all(root: Path) -> list[RulePack]:
    packs = [load_rulepack(p) for p in rule_files(root)]
    seen: dict[tuple[str, str], Path | None] = {}
    for pack in packs:
        key = (pack.program, pack.version)
        if key in seen:
            raise InvalidRule("duplicate_version", f"{pack.program} {pack.version} is defined twice", str(pack.path))
        seen[key] = pack.path
    return packs


def expected_problems(case: TestCase, outcome: Outcome) -> list[str]:
    """How `outcome` differs from what the case expects (only the keys the case gives)."""
    expect: dict[str, Any] = case.expect
    problems = []
    if "eligible" in expect:
        wanted = {True: "eligible", False: "not_eligible", None: "unknown", "unknown": "unknown"}[expect["eligible"]]
        if outcome.status != wanted:
            problems.append(f"status {outcome.status}, expected {wanted}")
    if "amount" in expect and outcome.amount_minor != int(expect["amount"]):
        problems.append(f"amount {outcome.amount_minor}, expected {expect['amount']}")
    got_conditions = dict(outcome.conditions)
    for name, wanted_met in (expect.get("conditions") or {}).items():
        if name not in got_conditions:
            problems.append(f"no condition named {name}")
        elif got_conditions[name] != wanted_met:
            problems.append(f"condition {name} {got_conditions[name]}, expected {wanted_met}")
    if "items" in expect:
        wanted_items = {code: int(q) for code, q in (expect["items"] or {}).items() if int(q) != 0}
        if dict(outcome.items) != wanted_items:
            problems.append(f"items {dict(outcome.items)}, expected {wanted_items}")
    return problems


def run_tests(packs: Sequence[RulePack], engines: dict[str, Any]) -> list[CaseResult]:
    """Every case of every pack on Python and on each given engine connection ({name: connection});
    an engine's result must also equal the Python evaluator's."""
    results = []
    for pack in packs:
        for case in pack.tests:
            facts = facts_from_test(case.household, case.members)
            python = Outcome.of(decide(pack, facts, case.period))
            results.append(
                CaseResult(pack.program, pack.version, case.name, "python", tuple(expected_problems(case, python)))
            )
            for engine, connection in engines.items():
                got = run_on_engine(connection, engine, [pack], case.period, [facts])[0][pack.program]
                problems = expected_problems(case, got)
                if got != python:
                    problems.append(f"differs from the Python evaluator ({got} vs {python})")
                results.append(CaseResult(pack.program, pack.version, case.name, engine, tuple(problems)))
    return results
