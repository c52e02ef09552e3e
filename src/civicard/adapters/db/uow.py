"""The SQL unit of work: one connection, one transaction, an access context on the connection."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Connection, Engine

from civicard.adapters.db.appeal_store import SqlAppeals
from civicard.adapters.db.decision_store import SqlDecisions
from civicard.adapters.db.guard import ACCESS_KEY
from civicard.adapters.db.match_index import SqlMatchIndex
from civicard.adapters.db.offline_store import SqlOffline
from civicard.adapters.db.register_store import SqlProgramRegister
from civicard.adapters.db.repositories import SqlAccessLog, SqlFacts, SqlHouseholds, SqlMemberships, SqlPersons
from civicard.adapters.db.sale_store import SqlSales
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext, purpose_policy


class SqlUnitOfWork:
    """`with uow:` opens a transaction; `commit()` ends it; leaving without commit rolls back.

    The purpose is checked against the role when the unit opens, so a wrong purpose is refused
    before any query runs.
    """

    def __init__(
        self, engine: Engine, context: AccessContext, clock: Clock, connection: Connection | None = None
    ) -> None:
        """With `connection` (checked out by the caller, between transactions), the unit runs on it
        and leaves it open: a request that already used a connection needs no second checkout."""
        self.engine = engine
        self.context = context
        self.clock = clock
        self._lent = connection
        self._conn: Connection | None = None

    def __enter__(self) -> SqlUnitOfWork:
        purpose_policy().check(self.context)
        conn = self._lent if self._lent is not None else self.engine.connect()
        conn.info[ACCESS_KEY] = self.context
        conn.begin()
        self._conn = conn
        self.persons = SqlPersons(conn)
        self.households = SqlHouseholds(conn)
        self.memberships = SqlMemberships(conn)
        self.facts = SqlFacts(conn)
        self.access_log = SqlAccessLog(conn)
        self.match_index = SqlMatchIndex(conn)
        self.register = SqlProgramRegister(conn)
        self.decisions = SqlDecisions(conn)
        self.appeals = SqlAppeals(conn)
        self.sales = SqlSales(conn)
        self.offline = SqlOffline(conn)
        # Imported here: dedup_store builds on the card unit of work, which builds on this one.
        from civicard.adapters.db.dedup_store import SqlDuplicates

        self.duplicates = SqlDuplicates(conn)
        return self

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("The unit of work is not open; use it in a `with` block.")
        return self._conn

    def commit(self) -> None:
        self.connection.commit()
        self.connection.begin()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn = self.connection
        try:
            conn.rollback()
        finally:
            conn.info.pop(ACCESS_KEY, None)
            if self._lent is None:
                conn.close()
            self._conn = None
