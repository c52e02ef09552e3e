"""Decisions explain themselves: which conditions were met, which were not and by how much, which
could not be decided; money as units with two decimals, comparisons as they came out."""

from __future__ import annotations

import operator
import re
from pathlib import Path

import pytest

from civicard.programs.decisions import Decision, decide, facts_from_test
from civicard.programs.rulepack import RulePack, load_rulepack
from civicard.programs.rulepack import TestCase as RuleCase
from civicard.programs.testing import load_all
from tests.rules.builders import PERIOD, rule

RULEPACKS = Path(__file__).resolve().parents[2] / "rulepacks"
CHILD_ALLOWANCE = load_rulepack(RULEPACKS / "child_allowance" / "2026.1.yaml")
DISABILITY_SUPPORT = load_rulepack(RULEPACKS / "disability_support" / "2026.1.yaml")
_SHOWN_OPERATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "=": operator.eq}
_SHOWN_OPERATORS["≠"] = operator.ne
_COMPARISON = re.compile(r".*?(-?[\d,]+(?:\.\d+)?) (<=|<|>=|>|=|≠) \D*(-?[\d,]+(?:\.\d+)?)")


def _decide(pack: RulePack, members: list[dict[str, object]], **household: object) -> Decision:
    return decide(pack, facts_from_test(household, members), PERIOD)


def _comparison_holds(detail: str) -> bool | None:
    """Whether "<name> 410.00 > <name> 400.00" is true of the numbers shown (None: not a comparison)."""
    found = _COMPARISON.fullmatch(detail)
    if not found:
        return None
    left, op, right = found.groups()
    return bool(_SHOWN_OPERATORS[op](float(left.replace(",", "")), float(right.replace(",", ""))))


def test_a_household_over_the_income_limit_is_told_by_how_much() -> None:
    decision = _decide(DISABILITY_SUPPORT, [{"age": 40, "income": 82_000, "disability_degree": 70}, {"age": 8}])
    assert decision.status == "not_eligible" and decision.eligible is False
    assert decision.explanation() == (
        "not eligible: Income per person at or under the limit not met "
        "(monthly income per person 410.00 > monthly income limit per person 400.00)"
    )


def test_money_is_shown_in_units_with_two_decimals_and_thousands_separated() -> None:
    decision = _decide(DISABILITY_SUPPORT, [{"age": 40, "income": 246_900, "disability_degree": 70}, {"age": 8}])
    assert "(monthly income per person 1,234.50 > monthly income limit per person 400.00)" in decision.explanation()


def test_counts_and_degrees_are_shown_as_plain_numbers() -> None:
    decision = _decide(DISABILITY_SUPPORT, [{"age": 40, "income": 1_000, "disability_degree": 70}, {"age": 8}])
    assert decision.status == "eligible"
    assert "(highest recognised disability degree in the household 70 >= 33)" in decision.explanation()


def test_an_eligible_household_is_told_every_condition_it_meets() -> None:
    decision = _decide(CHILD_ALLOWANCE, [{"age": 30, "income": 12_000}, {"age": 9}, {"age": 4}])
    assert decision.status == "eligible" and decision.eligible is True
    assert decision.explanation() == (
        "eligible because There is at least one member under 18 (members under 18 2 >= 1) and "
        "Income per person at or under the limit "
        "(monthly income per person 40.00 <= monthly income limit per person 70.00)"
    )


def test_a_household_failing_two_conditions_is_told_both_in_the_files_order() -> None:
    decision = _decide(CHILD_ALLOWANCE, [{"age": 30, "income": 90_000}, {"age": 19}])
    assert decision.explanation() == (
        "not eligible: There is at least one member under 18 not met (members under 18 0 < 1); "
        "Income per person at or under the limit not met "
        "(monthly income per person 450.00 > monthly income limit per person 70.00)"
    )


def test_a_condition_on_a_missing_fact_is_said_to_be_unknown() -> None:
    decision = _decide(CHILD_ALLOWANCE, [{"age": 30}, {"age": 9}], household_income=None)
    assert decision.status == "unknown" and decision.eligible is None
    assert decision.explanation() == (
        "undecided (missing data): Income per person at or under the limit unknown "
        "(monthly income per person unknown <= monthly income limit per person 70.00)"
    )
    assert [c.met for c in decision.conditions] == [True, None]


def test_a_failed_condition_is_given_even_when_another_is_unknown() -> None:
    decision = _decide(CHILD_ALLOWANCE, [])  # no children; 0 / 0 members is unknown
    assert [c.met for c in decision.conditions] == [False, None]
    assert decision.explanation() == (
        "not eligible: There is at least one member under 18 not met (members under 18 0 < 1)"
    )


def test_equality_conditions_show_whether_the_values_were_equal() -> None:
    pack = rule({"three_members": "member_count = 3", "not_two": "member_count <> 2"})
    two = _decide(pack, [{"age": 30}, {"age": 9}])
    three = _decide(pack, [{"age": 30}, {"age": 9}, {"age": 1}])
    assert [c.detail("en") for c in two.conditions] == ["member count 2 ≠ 3", "member count 2 = 2"]
    assert [c.detail("en") for c in three.conditions] == ["member count 3 = 3", "member count 3 ≠ 2"]


def test_details_in_spanish_name_the_facts_and_unknowns_in_spanish() -> None:
    decision = _decide(CHILD_ALLOWANCE, [{"age": 30}, {"age": 9}], household_income=None)
    assert [c.detail("es") for c in decision.conditions] == [
        "menores de 18 años en el hogar 1 >= 1",
        "ingreso mensual por persona desconocido <= límite de ingreso mensual por persona 70.00",
    ]


CASES = [(pack, case) for pack in load_all(RULEPACKS) for case in pack.tests]


@pytest.mark.parametrize(
    ("pack", "case"), CASES, ids=[f"{p.program}/{p.version}/{p.tests.index(c) + 1}" for p, c in CASES]
)
def test_every_comparison_an_explanation_shows_holds_for_the_numbers_it_shows(pack: RulePack, case: RuleCase) -> None:
    decision = decide(pack, facts_from_test(case.household, case.members), case.period)
    for condition in decision.conditions:
        holds = _comparison_holds(condition.detail("en"))
        if holds is not None and condition.met is not None:
            assert holds, f"{condition.name}: {condition.detail('en')}"


def test_an_explanation_never_shows_a_comparison_its_own_numbers_contradict() -> None:
    decision = _decide(CHILD_ALLOWANCE, [{"age": 30, "income": 21_001}, {"age": 30}, {"age": 5}])
    low_income = decision.conditions[1]
    assert _comparison_holds(low_income.detail("en")) is True, decision.explanation()


def test_a_money_limit_written_as_a_number_is_shown_as_money() -> None:
    decision = _decide(rule({"modest": "household_income <= 35000000"}), [{"age": 30, "income": 50_000}])
    assert decision.conditions[0].detail("en") == "household income 500.00 <= 350,000.00"


@pytest.mark.parametrize("household_income", [0, 90_000, None], ids=["eligible", "not_eligible", "unknown"])
def test_an_explanation_in_spanish_is_in_spanish_throughout(household_income: int | None) -> None:
    decision = _decide(CHILD_ALLOWANCE, [{"age": 30}, {"age": 9}], household_income=household_income)
    explanation = decision.explanation("es")
    assert "Ingreso por persona igual o menor al límite" in explanation
    assert not re.search(r"\b(eligible|because|not met|unknown|undecided|missing data|and)\b", explanation)
