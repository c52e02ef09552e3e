"""Throw-away databases for the benchmarks: a migrated SQLite file, or a fresh PostgreSQL schema."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from civicard.adapters.db.migrate import upgrade

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def sqlite_database(work: Path, name: str = "bench.db") -> Iterator[str]:
    url = f"sqlite:///{work / name}"
    upgrade(url)
    yield url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A migrated schema in CIVICARD_TEST_POSTGRES_URL's database, dropped afterwards."""
    base = os.environ.get("CIVICARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    schema = f"bench_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
        upgrade(url)
        yield url
    finally:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        except OperationalError:
            pass
        admin.dispose()
