"""Compare a live database schema with the allow-list (fields.yaml) and the forbidden concepts.

Used by the test suite on SQLite and PostgreSQL and by `civicard db audit`, so an operator can
prove on a running system that the registry holds nothing outside the allow-list.
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from civicard.registry.allowlist import allow_list, forbidden_concept


def schema_violations(engine: Engine, schema: str | None = None) -> list[str]:
    """Every table or column that is not allow-listed, is missing, or names a forbidden concept."""
    inspector = inspect(engine)
    allowed = allow_list().tables
    problems: list[str] = []
    live_tables = set(inspector.get_table_names(schema=schema)) - partitions(engine, schema)
    for table in sorted(live_tables):
        concept = forbidden_concept(table)
        if concept:
            problems.append(f"table {table} names forbidden data ({concept})")
        live_columns = {c["name"] for c in inspector.get_columns(table, schema=schema)}
        for column in sorted(live_columns):
            concept = forbidden_concept(column)
            if concept:
                problems.append(f"column {table}.{column} names forbidden data ({concept})")
        if table not in allowed:
            problems.append(f"table {table} is not in the allow-list")
            continue
        expected = set(allowed[table].columns)
        problems += [f"column {table}.{c} is not in the allow-list" for c in sorted(live_columns - expected)]
        problems += [f"column {table}.{c} is allow-listed but missing" for c in sorted(expected - live_columns)]
    problems += [f"table {t} is allow-listed but missing" for t in sorted(set(allowed) - live_tables)]
    return problems


def partitions(engine: Engine, schema: str | None) -> set[str]:
    """PostgreSQL partitions of a partitioned table: the parent is what the allow-list names."""
    if engine.dialect.name != "postgresql":
        return set()
    query = text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relispartition AND n.nspname = coalesce(:schema, current_schema())"
    )
    with engine.connect() as conn:
        return set(conn.execute(query, {"schema": schema}).scalars())


def allow_list_violations() -> list[str]:
    """Forbidden concepts in the allow-list file itself (tables, columns, categories)."""
    spec = allow_list()
    names = [*spec.categories, *spec.tables]
    names += [f"{t.name}.{c}" for t in spec.tables.values() for c in t.columns]
    return [f"{n} names forbidden data ({forbidden_concept(n)})" for n in names if forbidden_concept(n.split(".")[-1])]
