"""Parity as a property: the Python evaluator and the compiled SQL on DuckDB, SQLite and
PostgreSQL give identical outcomes (status, amount, each condition, items) for random households
under the published rule files, and for random rule expressions.

Examples are derandomised, so CI runs the same ones each time; a failure prints the smallest
household and expression hypothesis found, and the first program they differ on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicard.programs.decisions import HouseholdFacts, decide
from civicard.programs.engines import Outcome, run_on_engine
from civicard.programs.rulepack import RulePack
from civicard.programs.testing import load_all
from tests.rules.builders import rule
from tests.rules.strategies import PARAMETERS, bounded, conditions, households, numbers

RULEPACKS = Path(__file__).resolve().parents[2] / "rulepacks"
PUBLISHED = [p for p in load_all(RULEPACKS) if p.status == "published"]
PERIODS = st.builds(date, st.integers(2026, 2027), st.integers(1, 12), st.just(1))
BATCHES = st.lists(households(), min_size=1, max_size=12)

_COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
LOCAL_ENGINES = settings(max_examples=60, **_COMMON)
ON_POSTGRES = settings(max_examples=15, **_COMMON)


def _python(packs: Sequence[RulePack], period: date, batch: Sequence[HouseholdFacts]) -> list[dict[str, Outcome]]:
    return [{p.program: Outcome.of(decide(p, facts, period)) for p in packs} for facts in batch]


def _assert_same(
    engine: str,
    got: list[dict[str, Outcome]],
    expected: list[dict[str, Outcome]],
    batch: Sequence[HouseholdFacts],
    context: str = "",
) -> None:
    """Equal, or a message naming the first household and program that differ."""
    assert len(got) == len(expected), f"{engine} returned {len(got)} households for {len(expected)}"
    for index, (theirs, ours) in enumerate(zip(got, expected, strict=True)):
        for program in ours:
            assert theirs[program] == ours[program], (
                f"{engine} differs from Python on household {index} under {program}{context}\n"
                f"  {engine}: {theirs[program]}\n  python: {ours[program]}\n"
                f"  household: {dict(batch[index].household)}\n  members: {[dict(m) for m in batch[index].members]}"
            )


# --- random households under the published rule files ----------------------------------------


def test_the_published_rule_files_are_what_the_households_property_runs_on() -> None:
    assert len(PUBLISHED) >= 5
    assert len({p.program for p in PUBLISHED}) == len(PUBLISHED)  # one query decides all of them


@LOCAL_ENGINES
@given(batch=BATCHES, period=PERIODS)
def test_random_households_get_the_same_decisions_from_python_duckdb_and_sqlite(
    duckdb_connection: Any, sqlite_connection: Any, batch: list[HouseholdFacts], period: date
) -> None:
    expected = _python(PUBLISHED, period, batch)
    for engine, connection in (("duckdb", duckdb_connection), ("sqlite", sqlite_connection)):
        _assert_same(engine, run_on_engine(connection, engine, PUBLISHED, period, batch), expected, batch)


@pytest.mark.postgres
@ON_POSTGRES
@given(batch=BATCHES, period=PERIODS)
def test_random_households_get_the_same_decisions_from_python_and_postgresql(
    postgres_connection: Any, batch: list[HouseholdFacts], period: date
) -> None:
    got = run_on_engine(postgres_connection, "postgres", PUBLISHED, period, batch)
    _assert_same("postgres", got, _python(PUBLISHED, period, batch), batch)


# --- random expressions -----------------------------------------------------------------------


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
    expected = _python(packs, period, batch)
    context = "".join(f"\n  {name}: {text}" for name, text in expressions.items())
    for engine, connection in engines.items():
        _assert_same(engine, run_on_engine(connection, engine, packs, period, batch), expected, batch, context)


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
