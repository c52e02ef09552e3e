"""The rule files in rulepacks/: every test case on every evaluator and engine, test coverage of
published versions, the identity (sha256) of a version, and dated parameters."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from civicard.programs.decisions import decide, facts_from_test
from civicard.programs.engines import Outcome, run_on_engine
from civicard.programs.expressions import InvalidRule
from civicard.programs.rulepack import RulePack, canonical_hash, load_rulepack
from civicard.programs.rulepack import TestCase as RuleCase
from civicard.programs.testing import load_all, rule_files
from tests.rules.builders import rule

RULEPACKS = Path(__file__).resolve().parents[2] / "rulepacks"
PACKS = load_all(RULEPACKS)
FILES = rule_files(RULEPACKS)
CASES = [(pack, case) for pack in PACKS for case in pack.tests]
EVALUATORS = ["python", "duckdb", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
STATUS = {True: "eligible", False: "not_eligible", None: "unknown", "unknown": "unknown"}


def _case_id(pack: RulePack, case: RuleCase) -> str:
    return f"{pack.program}/{pack.version}/{pack.tests.index(case) + 1}"


def _file_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _outcome(pack: RulePack, case: RuleCase, evaluator: str, connect: Any) -> Outcome:
    facts = facts_from_test(case.household, case.members)
    if evaluator == "python":
        return Outcome.of(decide(pack, facts, case.period))
    return run_on_engine(connect(evaluator), evaluator, [pack], case.period, [facts])[0][pack.program]


def _as_expected(case: RuleCase, outcome: Outcome) -> dict[str, Any]:
    """The parts of `outcome` the case states, in the case's own terms (read independently of testing.py)."""
    expect = case.expect
    got: dict[str, Any] = {"status": outcome.status}
    if "amount" in expect:
        got["amount"] = outcome.amount_minor
    if "conditions" in expect:
        got["conditions"] = {name: dict(outcome.conditions).get(name, "missing") for name in expect["conditions"]}
    if "items" in expect:
        got["items"] = dict(outcome.items)
    return got


def _expected(case: RuleCase) -> dict[str, Any]:
    expect = case.expect
    wanted: dict[str, Any] = {"status": STATUS[expect["eligible"]]}
    if "amount" in expect:
        wanted["amount"] = int(expect["amount"])
    if "conditions" in expect:
        wanted["conditions"] = dict(expect["conditions"])
    if "items" in expect:
        wanted["items"] = {code: int(q) for code, q in (expect["items"] or {}).items() if int(q) != 0}
    return wanted


# --- every case on every evaluator ------------------------------------------------------------


@pytest.mark.parametrize("evaluator", EVALUATORS)
@pytest.mark.parametrize(("pack", "case"), CASES, ids=[_case_id(p, c) for p, c in CASES])
def test_each_rule_case_comes_out_as_its_file_expects_and_as_on_the_python_evaluator(
    pack: RulePack, case: RuleCase, evaluator: str, connect: Any
) -> None:
    outcome = _outcome(pack, case, evaluator, connect)
    assert _as_expected(case, outcome) == _expected(case), f"«{case.name}» on {evaluator}"
    if evaluator != "python":
        # The whole Outcome, also what a case leaves out (every condition, items of 0).
        assert outcome == _outcome(pack, case, "python", connect), f"«{case.name}» on {evaluator}"


def test_the_rule_cases_cover_every_program_file() -> None:
    assert len(FILES) == len(PACKS) >= 7
    assert {p.program for p in PACKS} >= {
        "food_basket",
        "chronic_medicine",
        "child_allowance",
        "elderly_supplement",
        "disability_support",
    }


@pytest.mark.parametrize("pack", PACKS, ids=lambda p: f"{p.program}/{p.version}")
def test_every_case_states_the_verdict_the_amount_and_each_condition(pack: RulePack) -> None:
    """A case that expects nothing cannot fail; every case must state what a decision says."""
    condition_names = {c.name for c in pack.conditions}
    for case in pack.tests:
        assert case.expect.get("eligible", "absent") in STATUS, case.name
        assert "amount" in case.expect, case.name
        assert set(case.expect.get("conditions") or {}) == condition_names, case.name
        if pack.items:
            assert "items" in case.expect, case.name


def test_every_published_program_version_has_at_least_four_cases() -> None:
    published = [p for p in PACKS if p.status == "published"]
    assert published
    assert {f"{p.program} {p.version}": len(p.tests) for p in published if len(p.tests) < 4} == {}


def test_each_published_program_has_cases_for_eligible_and_not_eligible() -> None:
    for pack in (p for p in PACKS if p.status == "published"):
        verdicts = {STATUS[c.expect["eligible"]] for c in pack.tests}
        assert {"eligible", "not_eligible"} <= verdicts, pack.program


# --- identity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=_file_id)
def test_a_rule_files_sha256_is_the_same_each_time_it_is_loaded(path: Path) -> None:
    first, second = load_rulepack(path), load_rulepack(path)
    assert first.sha256 == second.sha256
    assert re.fullmatch(r"[0-9a-f]{64}", first.sha256)
    assert first.sha256 == canonical_hash(yaml.safe_load(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", FILES, ids=_file_id)
def test_comments_and_layout_do_not_change_a_rule_files_sha256(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump(yaml.safe_load(path.read_text(encoding="utf-8")), width=60), encoding="utf-8")
    assert copy.read_text(encoding="utf-8") != path.read_text(encoding="utf-8")
    assert load_rulepack(copy).sha256 == load_rulepack(path).sha256


@pytest.mark.parametrize("path", FILES[:1], ids=_file_id)
def test_status_is_not_content_but_any_other_edit_changes_the_sha256(path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert canonical_hash({**raw, "status": "retired"}) == canonical_hash(raw)
    assert canonical_hash({**raw, "legal_basis": raw["legal_basis"] + "."}) != canonical_hash(raw)


def test_every_rule_file_has_its_own_sha256() -> None:
    assert len({p.sha256 for p in PACKS}) == len(PACKS)


def _expression_slots(raw: dict[str, Any]) -> list[tuple[str, ...]]:
    """Where a rule file holds an expression, as key paths."""
    slots: list[tuple[str, ...]] = [("derived", name, "expression") for name in raw.get("derived") or {}]
    slots += [("conditions", name, "expression") for name in raw["conditions"]]
    slots.append(("amount", "expression"))
    slots += [("items", str(i), "quantity") for i in range(len(raw.get("items") or []))]
    return slots


EXPRESSIONS = [
    (path, slot) for path in FILES for slot in _expression_slots(yaml.safe_load(path.read_text(encoding="utf-8")))
]


def _edited(raw: dict[str, Any], slot: tuple[str, ...], change: Any) -> dict[str, Any]:
    copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(raw))
    node: Any = copy
    for key in slot[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[slot[-1]] = change(node[slot[-1]])
    return copy


@pytest.mark.parametrize(("path", "slot"), EXPRESSIONS, ids=[f"{_file_id(p)}:{'.'.join(s)}" for p, s in EXPRESSIONS])
def test_changing_any_expression_changes_the_sha256(path: Path, slot: tuple[str, ...], tmp_path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    copy = tmp_path / path.name
    # Brackets around the expression: the same meaning, but a different text, so another version.
    copy.write_text(yaml.safe_dump(_edited(raw, slot, lambda text: f"({text})")), encoding="utf-8")
    edited = load_rulepack(copy)
    assert edited.sha256 != load_rulepack(path).sha256
    assert edited.sha256 == load_rulepack(copy).sha256


@pytest.mark.parametrize("path", FILES, ids=_file_id)
def test_changing_a_parameter_value_or_a_test_case_changes_the_sha256(path: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    original = load_rulepack(path).sha256
    name = next(iter(raw["parameters"]))
    since = next(iter(raw["parameters"][name]["values"]))
    edits = {
        "parameter": _edited(raw, ("parameters", name, "values", since), lambda v: v + 1),
        "test": _edited(raw, ("tests", "0", "name"), lambda n: n + "!"),
    }
    for what, edited in edits.items():
        copy = tmp_path / f"{what}.yaml"
        copy.write_text(yaml.safe_dump(edited), encoding="utf-8")
        assert load_rulepack(copy).sha256 != original, what


# --- dated parameters -------------------------------------------------------------------------


def _pack(program: str, version: str) -> RulePack:
    return next(p for p in PACKS if (p.program, p.version) == (program, version))


def test_a_parameter_has_its_old_value_before_its_change_and_the_new_one_from_that_day() -> None:
    limit = _pack("food_basket", "2026.1").parameters["income_limit_per_person"]
    assert limit.on(date(2025, 12, 31)) is None  # not yet in force
    assert limit.on(date(2026, 1, 1)) == 10_000
    assert limit.on(date(2026, 6, 30)) == 10_000
    assert limit.on(date(2026, 7, 1)) == 11_000
    assert limit.on(date(2027, 12, 1)) == 11_000


DATED_CHANGES = [
    (pack, name, since)
    for pack in PACKS
    for name, parameter in pack.parameters.items()
    for since, _ in parameter.values[1:]
]


@pytest.mark.parametrize(
    ("pack", "name", "since"), DATED_CHANGES, ids=[f"{p.program}/{p.version}:{n}@{s}" for p, n, s in DATED_CHANGES]
)
def test_every_dated_parameter_change_takes_effect_on_its_date(pack: RulePack, name: str, since: date) -> None:
    values = dict(pack.parameters[name].values)
    dates = sorted(values)
    before = values[dates[dates.index(since) - 1]]
    assert pack.parameters_on(since - timedelta(days=1))[name] == before
    assert pack.parameters_on(since)[name] == values[since] != before


def test_a_period_before_a_version_takes_effect_has_no_parameters() -> None:
    with pytest.raises(InvalidRule) as refused:
        _pack("child_allowance", "2027.1").parameters_on(date(2026, 12, 1))
    assert refused.value.code == "parameter_not_in_force"


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_a_mid_month_change_applies_from_the_next_period_on_every_evaluator(evaluator: str, connect: Any) -> None:
    """The value in force on the period's first day applies to the whole period."""
    pack = rule(
        {"always": "true"},
        "per_month",
        parameters={"per_month": ("money", {"2026-01-01": 1_000, "2026-07-15": 2_000})},
    )
    facts = facts_from_test({}, [{"age": 30}])
    amounts = {}
    for period in (date(2026, 7, 1), date(2026, 8, 1)):
        if evaluator == "python":
            amounts[period.month] = decide(pack, facts, period).amount_minor
        else:
            amounts[period.month] = run_on_engine(connect(evaluator), evaluator, [pack], period, [facts])[0][
                "probe"
            ].amount_minor
    assert amounts == {7: 1_000, 8: 2_000}
