"""Parity as a property: for random households under the published rule files, the Python
evaluator and the compiled SQL on DuckDB, SQLite and PostgreSQL give identical outcomes (status,
amount, each condition, items). All households of an example are decided in one query, all
programs at once, as a bulk run does. Random expressions: test_rule_expression_parity_property.py.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicard.programs.decisions import HouseholdFacts
from civicard.programs.engines import run_on_engine
from civicard.programs.testing import load_all
from tests.rules.parity import LOCAL_ENGINES, ON_POSTGRES, PERIODS, assert_same_outcomes, python_outcomes
from tests.rules.strategies import households

RULEPACKS = Path(__file__).resolve().parents[2] / "rulepacks"
PUBLISHED = [p for p in load_all(RULEPACKS) if p.status == "published"]
BATCHES = st.lists(households(), min_size=1, max_size=12)

# --- random households under the published rule files ----------------------------------------


def test_the_published_rule_files_are_what_the_households_property_runs_on() -> None:
    assert len(PUBLISHED) >= 5
    assert len({p.program for p in PUBLISHED}) == len(PUBLISHED)  # one query decides all of them


@LOCAL_ENGINES
@given(batch=BATCHES, period=PERIODS)
def test_random_households_get_the_same_decisions_from_python_duckdb_and_sqlite(
    duckdb_connection: Any, sqlite_connection: Any, batch: list[HouseholdFacts], period: date
) -> None:
    expected = python_outcomes(PUBLISHED, period, batch)
    for engine, connection in (("duckdb", duckdb_connection), ("sqlite", sqlite_connection)):
        assert_same_outcomes(engine, run_on_engine(connection, engine, PUBLISHED, period, batch), expected, batch)


@pytest.mark.postgres
@ON_POSTGRES
@given(batch=BATCHES, period=PERIODS)
def test_random_households_get_the_same_decisions_from_python_and_postgresql(
    postgres_connection: Any, batch: list[HouseholdFacts], period: date
) -> None:
    got = run_on_engine(postgres_connection, "postgres", PUBLISHED, period, batch)
    assert_same_outcomes("postgres", got, python_outcomes(PUBLISHED, period, batch), batch)
