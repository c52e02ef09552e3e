"""A runtime guard: personal tables cannot be queried on a connection without an access context.

The unit of work puts its AccessContext on the connection when it opens; any statement that
reads or writes a personal table on a connection without one raises before it reaches the
database. So a forgotten code path fails loudly in tests instead of reading data unlogged.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from civicard.adapters.db.tables import PERSONAL_TABLES

ACCESS_KEY = "civicard.access_context"
_DML = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|COPY)\b", re.IGNORECASE)
_PERSONAL = re.compile(r'\b"?(' + "|".join(PERSONAL_TABLES) + r')"?\b', re.IGNORECASE)


class UnloggedPersonalDataAccess(RuntimeError):
    """A programming error: personal data was queried outside the access enforcement point."""


def install_guard(engine: Engine) -> None:
    event.listen(engine, "before_cursor_execute", _check, retval=False)


def _check(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    if conn.info.get(ACCESS_KEY) is not None or not _DML.match(statement):
        return
    match = _PERSONAL.search(statement)
    if match:
        raise UnloggedPersonalDataAccess(
            f"Query on personal table '{match.group(1)}' without an access context; "
            "go through a unit of work opened with an actor and a purpose."
        )
