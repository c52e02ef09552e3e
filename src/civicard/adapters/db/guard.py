"""A runtime guard: personal tables cannot be queried on a connection without an access context.

The unit of work puts its AccessContext on the connection when it opens; any statement that
reads or writes a personal table on a connection without one raises before it reaches the
database. So a forgotten code path fails loudly in tests instead of reading data unlogged.

One narrow exception: `count_unlogged` runs a statement from a fixed list of whole-table counts
(`UNLOGGED_COUNTS`) that return one number and read no personal column — the duplicate review
queue's length for /metrics. Logging such a read would add a subjectless access-log entry at every
scrape while telling no resident anything. Only the exact statement text passes, and only while
`count_unlogged` runs it; any other statement on a personal table still needs a unit of work.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine

from civicard.adapters.db.tables import PERSONAL_TABLES

ACCESS_KEY = "civicard.access_context"
_COUNT_KEY = "civicard.unlogged_count"
# Candidates still waiting for a reviewer's final answer (dedup.cases.PENDING: open, unsure).
OPEN_DUPLICATE_CANDIDATES = "SELECT count(*) FROM duplicate_candidates WHERE status IN ('open', 'unsure')"
UNLOGGED_COUNTS = frozenset({OPEN_DUPLICATE_CANDIDATES})
_DML = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|COPY)\b", re.IGNORECASE)
_PERSONAL = re.compile(r'\b"?(' + "|".join(PERSONAL_TABLES) + r')"?\b', re.IGNORECASE)


class UnloggedPersonalDataAccess(RuntimeError):
    """A programming error: personal data was queried outside the access enforcement point."""


def install_guard(engine: Engine) -> None:
    event.listen(engine, "before_cursor_execute", _check, retval=False)


def count_unlogged(conn: Connection, statement: str) -> int:
    """Run one of the `UNLOGGED_COUNTS` without an access context (so without an access-log entry)."""
    if statement not in UNLOGGED_COUNTS:
        raise UnloggedPersonalDataAccess("Only the counts in guard.UNLOGGED_COUNTS run without an access context.")
    conn.info[_COUNT_KEY] = statement
    try:
        return int(conn.execute(text(statement)).scalar_one())
    finally:
        conn.info.pop(_COUNT_KEY, None)


def _check(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    if conn.info.get(ACCESS_KEY) is not None or not _DML.match(statement):
        return
    if statement in UNLOGGED_COUNTS and conn.info.get(_COUNT_KEY) == statement:
        return
    match = _PERSONAL.search(statement)
    if match:
        raise UnloggedPersonalDataAccess(
            f"Query on personal table '{match.group(1)}' without an access context; "
            "go through a unit of work opened with an actor and a purpose."
        )
