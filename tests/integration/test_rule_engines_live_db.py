"""Running rule tests against a live database's connection never touches its own tables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from civicard.adapters.db import tables as t
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.migrate import upgrade
from civicard.programs.decisions import facts_from_test
from civicard.programs.engines import run_on_engine
from civicard.programs.rulepack import load_rulepack

from ..conftest import Database, fresh_postgres_schema

PACK = Path(__file__).resolve().parents[2] / "rulepacks" / "food_basket" / "2026.1.yaml"


@pytest.fixture
def db() -> Iterator[Database]:
    """PostgreSQL only: the hazard is its search path (SQLite's temp schema always wins)."""
    for database in fresh_postgres_schema():
        upgrade(database.url)
        yield database


def test_the_engine_run_leaves_the_registrys_households_table_alone(db: Database) -> None:
    engine = make_engine(db.url, guarded=False)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(t.households).values(
                    id="a" * 32,
                    region="NORTE",
                    municipality="NOR-01",
                    address_line="x",
                    postcode="10001",
                    created_at=func.now(),
                    created_by="test",
                )
            )
        conninfo = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo.split("?")[0], options=f"-c search_path={db.schema}") as raw:
            pack = load_rulepack(PACK)
            household = facts_from_test({"property_value": 0}, [{"age": 30, "income": 5000}])
            outcomes = run_on_engine(raw, "postgres", [pack], date(2026, 12, 1), [household])
            run_on_engine(raw, "postgres", [pack], date(2026, 12, 1), [household])  # drops its own temp tables
        assert outcomes[0]["food_basket"].status in ("eligible", "not_eligible", "unknown")
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(t.households)).scalar_one() == 1
    finally:
        engine.dispose()
