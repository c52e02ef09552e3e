"""The live schema holds exactly the allow-listed columns and nothing forbidden, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.migrate import current_revision, downgrade, head_revision, upgrade
from civicard.adapters.db.schema_audit import partitions, schema_violations
from civicard.adapters.db.tables import metadata

from ..conftest import Database


def test_migrated_schema_has_exactly_the_allow_listed_tables_and_columns(db: Database) -> None:
    engine = make_engine(db.url, guarded=False)
    try:
        assert schema_violations(engine, db.schema) == []
    finally:
        engine.dispose()


def test_migrations_produce_exactly_the_table_metadata(db: Database) -> None:
    engine = make_engine(db.url, guarded=False)
    try:
        children = partitions(engine, db.schema)  # a period's partition is part of its parent table
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_name": lambda name, kind, _parent: not (kind == "table" and name in children),
                    # PostgreSQL keeps a foreign key to a partitioned table (log_leaves → access_log)
                    # as one constraint per partition too; the parent's is the one the metadata names.
                    "include_object": lambda obj, _name, kind, reflected, _to: not (
                        kind == "foreign_key_constraint" and reflected and obj.referred_table.name in children
                    ),
                },
            )
            diffs = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diffs == []


@pytest.mark.parametrize(
    ("table", "column", "concept"),
    [
        ("persons", "party_affiliation", "political party"),
        ("households", "votedInLastElection", "voting"),
        ("persons", "religion", "religion"),
        ("persons", "ethnic_group", "ethnicity"),
        ("persons", "union_member", "union membership"),
        ("persons", "sexual_orientation", "sexual orientation"),
        ("persons", "facebook_handle", "social-media data"),
        ("incomes", "rally_attendance", "rally attendance"),
    ],
)
def test_adding_a_forbidden_column_is_detected(db: Database, table: str, column: str, concept: str) -> None:
    engine = make_engine(db.url, guarded=False)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'ALTER TABLE {table} ADD COLUMN "{column}" VARCHAR(20)'))
        problems = schema_violations(engine, db.schema)
    finally:
        engine.dispose()
    assert f"column {table}.{column} names forbidden data ({concept})" in problems
    assert f"column {table}.{column} is not in the allow-list" in problems


def test_a_table_outside_the_allow_list_is_detected(db: Database) -> None:
    engine = make_engine(db.url, guarded=False)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE political_opinions (id INTEGER PRIMARY KEY)"))
        problems = schema_violations(engine, db.schema)
    finally:
        engine.dispose()
    assert "table political_opinions names forbidden data (political opinion or activity)" in problems
    assert "table political_opinions is not in the allow-list" in problems


def test_downgrade_to_base_and_upgrade_again_round_trips(db: Database) -> None:
    downgrade(db.url, "base")
    assert current_revision(db.url) is None
    upgrade(db.url)
    assert current_revision(db.url) == head_revision()
