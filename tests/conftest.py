"""Shared fixtures: a freshly migrated database per test, on SQLite and on PostgreSQL.

PostgreSQL tests use a fresh schema per test in the database named by CIVICARD_TEST_POSTGRES_URL
(created if missing). Without a reachable PostgreSQL they skip loudly, except under CI=true,
where they fail: CI must exercise the production database.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.migrate import upgrade
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext, Actor

PG_URL = os.environ.get("CIVICARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
FIXED_NOW = datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
_pg_state: dict[str, str | None] = {}


def _postgres_problem() -> str | None:
    """None if PostgreSQL is usable (creating the test database if needed), else the reason."""
    if "problem" in _pg_state:
        return _pg_state["problem"]
    url = make_url(PG_URL)
    problem: str | None = None
    try:
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": url.database}).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{url.database}"'))
        admin.dispose()
    except Exception as exc:  # unreachable server, refused auth…: report, don't crash collection
        problem = f"PostgreSQL at {url.render_as_string(hide_password=True)} unusable: {str(exc).splitlines()[0]}"
    _pg_state["problem"] = problem
    return problem


def _require_postgres() -> None:
    problem = _postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true but {problem}")
        pytest.skip(f"SKIPPING POSTGRESQL TESTS — {problem}")


@pytest.fixture(autouse=True, scope="module")
def _logging_per_module() -> Iterator[None]:
    """A module that starts a server configures the process's logging (one JSON handler on the root
    logger, uvicorn's loggers through it). Put it back once the module is done, so a later module
    in the same worker — a command-line test reading the output — sees no stray log lines."""
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@dataclass(frozen=True)
class Database:
    """A migrated, empty database for one test: its URL and backend name."""

    url: str
    backend: str
    schema: str | None = None


def fresh_postgres_schema() -> Iterator[Database]:
    _require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield Database(url.render_as_string(hide_password=False), "postgresql", schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _fresh_sqlite(tmp_path: Path) -> Iterator[Database]:
    yield Database(f"sqlite:///{tmp_path / 'civicard.db'}", "sqlite")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database (no schema yet) on each backend."""
    if request.param == "sqlite":
        yield from _fresh_sqlite(tmp_path)
    else:
        yield from fresh_postgres_schema()


@pytest.fixture
def db(empty_db: Database) -> Database:
    """A database migrated to head on each backend."""
    upgrade(empty_db.url)
    return empty_db


@pytest.fixture
def engine(db: Database) -> Iterator[object]:
    built = make_engine(db.url)
    yield built
    built.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock.fixed(FIXED_NOW)


REGISTRAR = Actor("registrar-ana", "registrar")


@pytest.fixture
def uow_for(engine: object, clock: Clock):  # type: ignore[no-untyped-def]
    """`uow_for(purpose, actor=REGISTRAR)` opens a unit of work like a request would."""

    def make(purpose: str = "fact_correction", actor: Actor = REGISTRAR) -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, AccessContext(actor, purpose), clock)  # type: ignore[arg-type]

    return make
