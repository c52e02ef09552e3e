"""Bulk row writers (SQLite executemany, PostgreSQL COPY) and the access log that appends through them."""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any, Protocol

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql as pgsql
from sqlalchemy import Connection, Table, insert

from civicard.adapters.db import tables as t
from civicard.shared.errors import Unavailable
from civicard.transparency.access import AccessEntry

SQLITE_CACHE_KIB = 256 * 1024


class Writer(Protocol):
    """Writes Arrow batches into a table, in whatever way is fastest on its database."""

    def tuned(self) -> AbstractContextManager[None]: ...

    def timestamp(self, value: datetime) -> str: ...

    def write(self, table: Table, columns: Sequence[str], batches: Iterable[pa.Table]) -> int: ...


def writer_for(conn: Connection) -> Writer:
    """The bulk writer for the connection's database; databases without one are refused."""
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        return _CopyWriter(conn)
    if conn.dialect.name == "sqlite":
        return _ExecutemanyWriter(conn)
    raise Unavailable(
        "import_unsupported_database",
        f"Bulk import supports SQLite and PostgreSQL (psycopg), not {conn.dialect.name}+{conn.dialect.driver}.",
    )


class _ExecutemanyWriter:
    """SQLite: one executemany a batch, with values converted to what SQLAlchemy would store."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        processor = t.persons.c.enrolled_at.type.bind_processor(conn.dialect)
        self._timestamp: Callable[[Any], Any] = processor or str

    @contextmanager
    def tuned(self) -> Iterator[None]:
        """A page cache big enough for the indexes being filled (the default is 2 MiB), for this import only."""
        before = self.conn.exec_driver_sql("PRAGMA cache_size").scalar()
        self.conn.exec_driver_sql(f"PRAGMA cache_size = {-SQLITE_CACHE_KIB}")
        try:
            yield
        finally:
            self.conn.exec_driver_sql(f"PRAGMA cache_size = {int(before or -2000)}")

    def timestamp(self, value: datetime) -> str:
        return str(self._timestamp(value))

    def write(self, table: Table, columns: Sequence[str], batches: Iterable[pa.Table]) -> int:
        compiled = insert(table).compile(dialect=self.conn.dialect, column_keys=list(columns))
        order = compiled.positiontup or list(columns)
        written = 0
        for batch in batches:
            values = [_sqlite_values(batch.column(name)) for name in order]
            rows = list(zip(*values, strict=True))
            self.conn.exec_driver_sql(str(compiled), rows)
            written += len(rows)
        return written


def _sqlite_values(column: pa.ChunkedArray) -> list[Any]:
    # SQLAlchemy stores a SQLite DATE as 'YYYY-MM-DD' text, which is Arrow's cast of a date32.
    if pa.types.is_date(column.type):
        column = column.cast(pa.string())
    values: list[Any] = column.to_pylist()
    return values


class _CopyWriter:
    """PostgreSQL: one COPY … FROM STDIN (CSV) a table, on the SQLAlchemy connection's transaction."""

    def __init__(self, conn: Connection) -> None:
        driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        self.driver = driver

    def tuned(self) -> AbstractContextManager[None]:
        return nullcontext()

    def timestamp(self, value: datetime) -> str:
        return value.isoformat()

    def write(self, table: Table, columns: Sequence[str], batches: Iterable[pa.Table]) -> int:
        statement = pgsql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            pgsql.Identifier(table.name), pgsql.SQL(", ").join(pgsql.Identifier(c) for c in columns)
        )
        written = 0
        with self.driver.cursor() as cursor, cursor.copy(statement) as copy:
            for batch in batches:
                copy.write(_csv(batch.select(list(columns))))
                written += batch.num_rows
        return written


def _csv(batch: pa.Table) -> bytes:
    # Arrow quotes every string and leaves nulls unquoted and empty: PostgreSQL's CSV reads "" as
    # an empty string and an unquoted empty field as NULL, so both survive the trip.
    buffer = io.BytesIO()
    pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
    return buffer.getvalue()


class BulkAccessLog:
    """An AccessLog that appends entries through the bulk writer (COPY on PostgreSQL)."""

    columns = (
        "occurred_at",
        "actor",
        "role",
        "purpose",
        "action",
        "subject_person_id",
        "subject_household_id",
        "categories",
        "detail",
        "subject_salt",
    )

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.entries = 0

    def append(self, entries: Sequence[AccessEntry]) -> None:
        if not entries:
            return
        times = {at: self.writer.timestamp(at) for at in {e.occurred_at for e in entries}}
        batch = pa.table(
            {
                "occurred_at": [times[e.occurred_at] for e in entries],
                "actor": [e.actor for e in entries],
                "role": [e.role for e in entries],
                "purpose": [e.purpose for e in entries],
                "action": [e.action for e in entries],
                "subject_person_id": pa.array(
                    [e.subject.person_id if e.subject else None for e in entries], pa.string()
                ),
                "subject_household_id": pa.array(
                    [e.subject.household_id if e.subject else None for e in entries], pa.string()
                ),
                "categories": [" ".join(e.categories) for e in entries],
                "detail": [e.detail for e in entries],
                # A fresh salt per entry, as SqlAccessLog writes: public leaves must not link a subject.
                "subject_salt": [secrets.token_hex(16) if e.subject else "" for e in entries],
            }
        )
        columns = [c.name for c in t.access_log.columns if c.name in self.columns]
        self.entries += self.writer.write(t.access_log, columns, [batch])
