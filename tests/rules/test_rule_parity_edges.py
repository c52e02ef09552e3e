"""Parity at the edges, example by example: NULLs, negative numbers, .5 rounding boundaries,
division by zero, LEAST/GREATEST with NULLs, members with missing facts and households without
members. Each expression has the value SQL gives it with doubles and three-valued logic, and every
evaluator must give exactly that value (docs/rules.md, "Expressions" and "Numbers and rounding")."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from civicard.programs.decisions import HouseholdFacts, decide, facts_from_test
from civicard.programs.engines import Outcome, run_on_engine
from civicard.programs.rulepack import RulePack, rulepack_from_dict
from tests.rules.builders import PERIOD, rule, rule_dict

EVALUATORS = ["python", "duckdb", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

# Two members, one with no income recorded; no savings recorded; a negative property value.
HOUSEHOLD = facts_from_test(
    {"household_income": 250, "savings": None, "property_value": -3, "owns_vehicle": True},
    [
        {"age": 40, "income": 250, "employed": True, "disability_degree": 50},
        {"age": 3, "income": None},
    ],
)
NO_MEMBERS = facts_from_test({}, [])

CONDITIONS: dict[str, bool | None] = {
    # three-valued logic: a missing fact is unknown, false outweighs unknown, true wins an OR
    "savings > 0": None,
    "savings > 0 AND false": False,
    "savings > 0 AND true": None,
    "savings > 0 OR true": True,
    "NOT (savings > 0)": None,
    "savings IS NULL": True,
    "savings IS NOT NULL": False,
    "(savings > 0) IS NULL": True,
    "savings = savings": None,
    "5 BETWEEN savings AND 3": False,
    "2 BETWEEN savings AND 3": None,
    "member_count NOT BETWEEN 3 AND 4": True,
    "savings IN (1, 2)": None,
    "member_count IN (7, 2, -2.5)": True,
    "property_value IN (-3)": True,
    "member_count NOT IN (2)": False,
    "CASE WHEN savings > 0 THEN true END": None,
    "CASE WHEN savings > 0 THEN false ELSE true END": True,
    "CASE WHEN true THEN savings > 0 ELSE true END": None,
    "IF(savings IS NULL, owns_vehicle, false)": True,
    "owns_dwelling = false": True,
    "owns_dwelling <> owns_vehicle": True,
    # numbers are doubles everywhere: no DECIMAL literals, no integer division
    "0.1 + 0.2 = 0.3": False,
    "0.1 + 0.2 > 0.3": True,
    "7 / 2 = 3.5": True,
    "household_income / 3 > 83.33": True,
    "-(0.0) = 0": True,
    "1e3 = 1000": True,
    # rounding: half away from zero, on the double's exact value
    "ROUND(2.5) = 3": True,
    "ROUND(-2.5) = -3": True,
    "ROUND(0.5) = 1": True,
    "ROUND(-0.5) = -1": True,
    "ROUND(1.5) = 2": True,
    "ROUND(0.49) = 0": True,
    "ROUND(0.25, 1) = 0.3": True,
    "ROUND(-0.25, 1) = -0.3": True,
    "ROUND(1.005, 2) = 1": True,  # 1.005 is 1.00499999999999989… as a double
    "ROUND(1.45, 1) = 1.5": True,  # 1.4499999999999999556 × 10 rounds to the double 14.5
    "ROUND(household_income / 100) = 3": True,
    "ROUND(-(household_income) / 100) = -3": True,
    "ROUND(savings) IS NULL": True,
    "FLOOR(-2.5) = -3": True,
    "CEIL(-2.5) = -2": True,
    "ABS(property_value) = 3": True,
    # division by zero is NULL, also by -0.0 and by a zero computed from inputs
    "household_income / 0 IS NULL": True,
    "household_income / (-0.0) IS NULL": True,
    "household_income / (member_count - 2) IS NULL": True,
    "household_income / 0 > 1 OR false": None,
    # LEAST and GREATEST ignore NULLs; COALESCE takes the first known value
    "LEAST(savings, 5) = 5": True,
    "GREATEST(savings, -5) = -5": True,
    "LEAST(savings, 5, 2) = 2": True,
    "GREATEST(null, savings, property_value) = -3": True,
    "LEAST(savings, null) IS NULL": True,
    "COALESCE(savings, household_income / 0, 7) = 7": True,
    # member aggregates: a member's missing fact is ignored by sums and never meets a condition
    "any_member(income IS NULL)": True,
    "all_members(income > 0)": False,
    "all_members(age >= 0)": True,
    "count_members(age < 18) = 1": True,
    "count_members(income > 0 OR income IS NULL) = 2": True,
    "sum_members(income) = 250": True,
    "max_members(income) = min_members(income)": True,
    "sum_members(income / 0) = 0": True,
    "max_members(income / 0) IS NULL": True,
    "any_member(NOT (income > 0))": False,
    "count_members(disability_degree BETWEEN 33 AND 64) = 1": True,
}

NO_MEMBER_CONDITIONS: dict[str, bool | None] = {
    "all_members(false)": True,
    "any_member(true)": False,
    "count_members(true) = 0": True,
    "sum_members(age) = 0": True,
    "max_members(age) IS NULL": True,
    "min_members(income) IS NULL": True,
    "household_income / member_count IS NULL": True,
    "COALESCE(max_members(age), -1) = -1": True,
}

AMOUNTS: dict[str, int] = {
    "2.5": 3,
    "(-2.5)": -3,
    "0.5": 1,
    "(-0.5)": -1,
    "1.5": 2,
    "-(1.5)": -2,
    "0.49": 0,
    "(-0.49)": 0,
    "household_income / 100": 3,
    "-(household_income) / 100": -3,
    "property_value * household_income / 100": -8,  # -7.5
    "ROUND(0.25, 1) * 100": 30,
    "ROUND(-2.5) * 10": -30,
    "household_income / 0": 0,  # an unknown amount is paid as 0
    "savings": 0,
    "COALESCE(savings, 7)": 7,
    "COALESCE(household_income / (member_count - 2), -1)": -1,
    "LEAST(savings, 5.5)": 6,
    "GREATEST(savings, -5.5)": -6,
    "GREATEST(savings, null)": 0,
    "FLOOR(-2.5)": -3,
    "CEIL(-2.5)": -2,
    "CASE WHEN savings > 0 THEN 1 WHEN savings IS NULL THEN 2 ELSE 3 END": 2,
    "CASE WHEN savings > 0 THEN 1 END": 0,
    "IF(any_member(income IS NULL), 4, 5)": 4,
    "sum_members(income) + count_members(income IS NULL)": 251,
    "sum_members(income / 4)": 63,  # 62.5
    "min_members(-(income) / 4)": -63,  # -62.5
}


def _outcomes(evaluator: str, connect: Any, packs: list[RulePack], facts: HouseholdFacts) -> dict[str, Outcome]:
    if evaluator == "python":
        return {p.program: Outcome.of(decide(p, facts, PERIOD)) for p in packs}
    return run_on_engine(connect(evaluator), evaluator, packs, PERIOD, [facts])[0]


def _condition_values(evaluator: str, connect: Any, expressions: list[str], facts: HouseholdFacts) -> dict[str, Any]:
    """Every expression as one condition of one program, decided in one query."""
    names = {f"c{i}": text for i, text in enumerate(expressions)}
    outcome = _outcomes(evaluator, connect, [rule(names)], facts)["probe"]
    return {names[name]: met for name, met in outcome.conditions}


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_edge_conditions_have_their_sql_value_on_every_evaluator(evaluator: str, connect: Any) -> None:
    assert _condition_values(evaluator, connect, list(CONDITIONS), HOUSEHOLD) == CONDITIONS


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_aggregates_over_a_household_without_members_have_their_sql_value(evaluator: str, connect: Any) -> None:
    assert _condition_values(evaluator, connect, list(NO_MEMBER_CONDITIONS), NO_MEMBERS) == NO_MEMBER_CONDITIONS


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_amounts_are_rounded_half_away_from_zero_to_whole_minor_units(evaluator: str, connect: Any) -> None:
    packs = [rule({"always": "true"}, text, program=f"amount_{i}") for i, text in enumerate(AMOUNTS)]
    outcomes = _outcomes(evaluator, connect, packs, HOUSEHOLD)
    got = {text: outcomes[f"amount_{i}"].amount_minor for i, text in enumerate(AMOUNTS)}
    assert got == AMOUNTS


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_item_quantities_are_rounded_per_grant_and_only_positive_ones_granted(evaluator: str, connect: Any) -> None:
    pack = rule(
        {"always": "true"},
        items={"RICE-1KG": "2.5", "OIL-1L": "0.49", "SALT-1KG": "(-3)", "EGGS-12": "savings", "SOAP-BAR": "1.5"},
    )
    assert dict(_outcomes(evaluator, connect, [pack], HOUSEHOLD)["probe"].items) == {"RICE-1KG": 3, "SOAP-BAR": 2}


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_two_grants_of_the_same_item_are_rounded_each_and_added(evaluator: str, connect: Any) -> None:
    raw = rule_dict({"always": "true"})
    raw["items"] = [{"item": "RICE-1KG", "quantity": "1.5"}, {"item": "RICE-1KG", "quantity": "member_count / 4"}]
    pack = rulepack_from_dict(raw, "probe.yaml")
    assert dict(_outcomes(evaluator, connect, [pack], HOUSEHOLD)["probe"].items) == {"RICE-1KG": 3}  # 2 + 1


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_an_ineligible_or_undecided_household_gets_no_amount_and_no_items(evaluator: str, connect: Any) -> None:
    packs = [
        rule({"known": "true", "unknown": "savings > 0"}, "100", program="undecided", items={"RICE-1KG": "2"}),
        rule({"unknown": "savings > 0", "failed": "false"}, "100", program="refused", items={"RICE-1KG": "2"}),
    ]
    outcomes = _outcomes(evaluator, connect, packs, HOUSEHOLD)
    assert outcomes["undecided"] == Outcome("unknown", 0, (("known", True), ("unknown", None)), ())
    assert outcomes["refused"] == Outcome("not_eligible", 0, (("unknown", None), ("failed", False)), ())


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_summing_tenths_over_ten_members_gives_the_python_evaluators_sum(evaluator: str, connect: Any) -> None:
    """Python ≥ 3.12 `sum()` and SQLite ≥ 3.43 `SUM()` compensate rounding errors; plain addition
    does not (0.1 ten times is 0.9999999999999999). All evaluators must add the same way."""
    ten = facts_from_test({}, [{"age": 30, "income": 1}] * 10)
    conditions = ["sum_members(income / 10) = 1", "sum_members(income / 10) < 1"]
    assert _condition_values(evaluator, connect, conditions, ten) == _condition_values(
        "python", connect, conditions, ten
    )


SINGLE_ARGUMENT = {"COALESCE(savings)": 0, "LEAST(household_income)": 250, "GREATEST(household_income)": 250}


@pytest.mark.parametrize("evaluator", EVALUATORS)
@pytest.mark.parametrize("expression", SINGLE_ARGUMENT)
def test_coalesce_least_and_greatest_of_one_argument_are_that_argument(
    expression: str, evaluator: str, connect: Any
) -> None:
    outcome = _outcomes(evaluator, connect, [rule({"always": "true"}, expression)], HOUSEHOLD)["probe"]
    assert outcome.amount_minor == SINGLE_ARGUMENT[expression]


def test_the_edge_household_is_what_the_examples_assume() -> None:
    assert HOUSEHOLD.household["savings"] is None
    assert HOUSEHOLD.household["member_count"] == 2
    assert [m["income"] for m in HOUSEHOLD.members] == [250, None]
    assert date(2026, 3, 1) == PERIOD
