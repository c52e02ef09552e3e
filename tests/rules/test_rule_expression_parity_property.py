"""Parity as a property over random rule expressions: arithmetic, comparisons, CASE, LEAST,
GREATEST, ROUND, COALESCE, division by zero, NULLs and member aggregates, written as text (see
strategies.py), decided by the Python evaluator and by DuckDB, SQLite and PostgreSQL for random
households: every condition, amount and item quantity must come out the same."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicard.programs.decisions import HouseholdFacts
from civicard.programs.engines import run_on_engine
from civicard.programs.rulepack import RulePack
from tests.rules.builders import rule
from tests.rules.parity import LOCAL_ENGINES, ON_POSTGRES, PERIODS, assert_same_outcomes, python_outcomes
from tests.rules.strategies import PARAMETERS, bounded, conditions, households, numbers


def _probe_packs(condition_texts: list[str], number: str, d_num: str, d_flag: str) -> list[RulePack]:
    """Two programs. One has the random `condition_texts`, and two more that show whether `number`
    is unknown and its sign (an unknown amount is paid as 0, so the amount alone would not show it).
    The other is always eligible; its amount is half of `number` (so a whole `number` that is odd
    lands on a .5 rounding boundary) and its item quantities are `number`, whole and in 1/1024 steps
    (exact, and finer than the amount). Both may use the derived values d_num and d_flag and the
    parameters of PARAMETERS."""
    options: dict[str, Any] = {
        "derived": {"d_num": ("number", d_num), "d_flag": ("boolean", d_flag)},
        "parameters": PARAMETERS,
    }
    probes = {f"random_{i}": text for i, text in enumerate(condition_texts)}
    probes |= {"number_unknown": f"({number}) IS NULL", "number_positive": f"({number}) > 0"}
    quantities = {"WHOLE": bounded(number), "FINE": bounded(f"({number}) * 1024")}
    return [
        rule(probes, "0", program="probe_condition", **options),
        rule({"always": "true"}, bounded(f"({number}) / 2"), program="probe_number", items=quantities, **options),
    ]


EXPRESSIONS = {
    "condition_texts": st.lists(conditions("household", 3, derived=True), min_size=3, max_size=3),
    "number": numbers("household", 3, derived=True),
    "d_num": numbers("household", 2),
    "d_flag": conditions("household", 2),
    "batch": st.lists(households(max_members=5), min_size=1, max_size=6),
    "period": PERIODS,
}


def _check_expressions(
    engines: dict[str, Any], expressions: dict[str, Any], batch: list[HouseholdFacts], period: date
) -> None:
    packs = _probe_packs(**expressions)
    expected = python_outcomes(packs, period, batch)
    context = "".join(f"\n  {name}: {text}" for name, text in expressions.items())
    for engine, connection in engines.items():
        assert_same_outcomes(engine, run_on_engine(connection, engine, packs, period, batch), expected, batch, context)


@LOCAL_ENGINES
@given(**EXPRESSIONS)
def test_random_expressions_give_the_same_values_on_python_duckdb_and_sqlite(
    duckdb_connection: Any,
    sqlite_connection: Any,
    condition_texts: list[str],
    number: str,
    d_num: str,
    d_flag: str,
    batch: list[HouseholdFacts],
    period: date,
) -> None:
    expressions = {"condition_texts": condition_texts, "number": number, "d_num": d_num, "d_flag": d_flag}
    _check_expressions({"duckdb": duckdb_connection, "sqlite": sqlite_connection}, expressions, batch, period)


@pytest.mark.postgres
@ON_POSTGRES
@given(**EXPRESSIONS)
def test_random_expressions_give_the_same_values_on_python_and_postgresql(
    postgres_connection: Any,
    condition_texts: list[str],
    number: str,
    d_num: str,
    d_flag: str,
    batch: list[HouseholdFacts],
    period: date,
) -> None:
    expressions = {"condition_texts": condition_texts, "number": number, "d_num": d_num, "d_flag": d_flag}
    _check_expressions({"postgres": postgres_connection}, expressions, batch, period)
