"""Engine connections for the rule tests: in-memory DuckDB and SQLite, and PostgreSQL.

PostgreSQL is a psycopg connection into a fresh schema of the test database (tests/conftest.py):
without a reachable server it skips loudly, except under CI=true, where it fails. Connections are
per module (hypothesis reuses them across examples); run_on_engine replaces its temporary tables
on every call, so no test sees another's households.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import duckdb
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import fresh_postgres_schema

SQL_ENGINES = ("duckdb", "sqlite", "postgres")


def psycopg_conninfo(sqlalchemy_url: str) -> str:
    """The libpq URL of a SQLAlchemy one (keeps the `options=-csearch_path=…` of the schema)."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def duckdb_connection() -> Iterator[Any]:
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def sqlite_connection() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    yield connection
    connection.close()


@pytest.fixture
def postgres_conninfo() -> Iterator[str]:
    """A libpq URL into a fresh schema, for code that opens its own connection (the CLI)."""
    for database in fresh_postgres_schema():
        yield psycopg_conninfo(database.url)


@pytest.fixture(scope="module")
def postgres_connection() -> Iterator[psycopg.Connection[Any]]:
    # Autocommit: one refused statement must not abort the transaction the next example runs in.
    for database in fresh_postgres_schema():
        with psycopg.connect(psycopg_conninfo(database.url), autocommit=True) as connection:
            yield connection


@pytest.fixture
def connect(request: pytest.FixtureRequest) -> Any:
    """`connect(engine)` → that engine's module connection (PostgreSQL skips or fails as above)."""
    return lambda engine: request.getfixturevalue(f"{engine}_connection")
