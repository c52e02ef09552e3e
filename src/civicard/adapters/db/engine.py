"""Creating database engines: SQLite (embedded default) or PostgreSQL, with the personal-data guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url

from civicard.adapters.db.guard import install_guard


def make_engine(url: str, guarded: bool = True) -> Engine:
    """An engine for `url`. Unguarded engines are for migrations and schema inspection only."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        # No pre-ping: it costs a round trip per checkout. After a PostgreSQL restart the first
        # statement on a stale pooled connection fails (503 database_unavailable, retryable) and
        # SQLAlchemy then discards every connection older than that failure. Connections are
        # renewed after 30 minutes, before an idle timeout on the way could cut them silently.
        engine = create_engine(parsed, pool_size=10, max_overflow=20, pool_recycle=1800)
    if guarded:
        install_guard(engine)
    return engine


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Foreign keys are off by default in SQLite; WAL lets readers run beside one writer.
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine
