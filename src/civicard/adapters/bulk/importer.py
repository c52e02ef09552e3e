"""Bulk import of a registry extract (eight Parquet files) into the database, in one transaction.

DuckDB checks whole files with SQL before anything is written (columns, types, required values,
ids, codes, references, duplicates); rows then stream in batches of 50,000: PostgreSQL through
COPY, SQLite through executemany. Access-log write entries go through the enforcement point
(`record_change`) in the same transaction: one per imported person and one per household, so a
resident looking up their own log by person id sees the import without a join through households.
The checks live in checks.py, the writers in writers.py; this module runs them in order.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from civicard.adapters.bulk.checks import SOURCES, Progress, SourceFile, id_batches, quote, validate
from civicard.adapters.bulk.writers import BulkAccessLog, Writer, writer_for
from civicard.adapters.db.log_partitions import make_room_for
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.registry.allowlist import allow_list
from civicard.registry.model import fold
from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, Forbidden
from civicard.transparency.access import AccessContext, Subject, purpose_policy, record_change

__all__ = [
    "BATCH_ROWS",
    "DETAIL",
    "ID_CHECK_BATCH",
    "SOURCES",
    "SUBJECT_CATEGORIES",
    "ImportReport",
    "Progress",
    "SourceFile",
    "fresh_ids",
    "import_population",
    "search_keys",
]

BATCH_ROWS = 50_000
ID_CHECK_BATCH = 10_000  # ids per `IN (...)` when looking for rows already in the database
DETAIL = "registry.bulk_import"
# What an import writes about each kind of subject; together, all six categories.
SUBJECT_CATEGORIES = {
    "person": ("identity", "household", "income", "health", "benefits"),
    "household": ("household", "property"),
}


@dataclass(frozen=True)
class ImportReport:
    """Rows written per table, access-log entries appended, and wall time of the whole import."""

    source: str
    rows: dict[str, int]
    access_entries: int
    seconds: float

    @property
    def households(self) -> int:
        return self.rows["households"]

    @property
    def persons(self) -> int:
        return self.rows["persons"]

    def __str__(self) -> str:
        facts = sum(n for table, n in self.rows.items() if table not in ("households", "persons", "memberships"))
        return (
            f"{self.households:,} households, {self.persons:,} persons and {facts:,} facts from {self.source} "
            f"with {self.access_entries:,} access-log entries in {self.seconds:.1f} s"
        )


def import_population(
    engine: Engine,
    source_dir: Path,
    context: AccessContext,
    clock: Clock,
    progress: Progress | None = None,
) -> ImportReport:
    """Load an extract all or nothing: any bad file, row or id raises a DomainError and writes nothing.

    The context's purpose must allow writing all six data categories (normally `bulk_import`
    by a `system` actor); every check runs before the first row is written.
    """
    started = time.perf_counter()
    _require_categories(context)
    report = progress or _silent
    with duckdb.connect() as duck:
        totals = validate(duck, source_dir, report)
        # One log entry per subject, in the import's one long transaction: their access_log
        # partitions (PostgreSQL) are made first, in a short transaction of their own.
        make_room_for(engine, sum(totals[s.name] for s in SOURCES if s.subject))
        with SqlUnitOfWork(engine, context, clock) as uow:
            conn = uow.connection
            writer = writer_for(conn)
            now = clock.now()
            stamp = _Stamp(writer.timestamp(now), context.actor.id, f"bulk import {source_dir.resolve().name}")
            _refuse_present(conn, duck)
            log = BulkAccessLog(writer)
            with writer.tuned():
                rows = _load_all(writer, duck, stamp, totals, report)
                _log_subjects(log, duck, context, now, totals, report)
            uow.commit()
    return ImportReport(source_dir.resolve().name, rows, log.entries, time.perf_counter() - started)


def _silent(stage: str, done: int, total: int) -> None:
    """No progress reporting."""


def _require_categories(context: AccessContext) -> None:
    allowed = purpose_policy().check(context)
    wanted = {c for cats in SUBJECT_CATEGORIES.values() for c in cats}
    if not wanted <= allowed:
        raise Forbidden(
            "import_purpose_too_narrow",
            f"The purpose '{context.purpose}' does not allow writing every category an import writes; "
            "use 'bulk_import'.",
        )


def _refuse_present(conn: Connection, duck: duckdb.DuckDBPyConnection) -> None:
    """Refuse ids the database already holds (an extract is imported once)."""
    for source in SOURCES:
        if source.subject is None:
            continue
        id_col = source.table.c.id
        if conn.execute(select(id_col).limit(1)).first() is None:
            continue  # an empty table holds none of them
        for ids in id_batches(duck, source, ID_CHECK_BATCH):
            held = conn.execute(select(id_col).where(id_col.in_(ids)).limit(1)).scalar()
            if held is not None:
                file = f"{source.name}.parquet"
                raise Conflict(
                    "import_already_present",
                    f"{file}: '{held}' is already in the registry; an extract is imported once. Nothing was imported.",
                    file=file,
                    column=source.id_column,
                    example=held,
                )


@dataclass(frozen=True)
class _Stamp:
    """The technical values every imported row shares, already in the database's representation."""

    at: str
    actor: str
    reason: str


def _load_all(
    writer: Writer, duck: duckdb.DuckDBPyConnection, stamp: _Stamp, totals: dict[str, int], report: Progress
) -> dict[str, int]:
    try:
        return {
            s.name: writer.write(s.table, _target_columns(s), _batches(duck, s, stamp, totals, report)) for s in SOURCES
        }
    except (IntegrityError, psycopg.IntegrityError):
        # Validation should make this unreachable; a concurrent writer could still get here.
        raise Conflict(
            "import_conflict", "The database refused the import (a constraint failed). Nothing was imported."
        ) from None


def _target_columns(source: SourceFile) -> list[str]:
    """Columns in table order: the mapped ones and the technical ones the import fills."""
    given = set(source.columns.values())
    return [c.name for c in source.table.columns if c.name in given or not c.nullable]


def _batches(
    duck: duckdb.DuckDBPyConnection, source: SourceFile, stamp: _Stamp, totals: dict[str, int], report: Progress
) -> Iterator[pa.Table]:
    selected = ", ".join(f"{_cast(source, s)} AS {quote(target)}" for s, target in source.columns.items())
    query = f"SELECT {selected} FROM {quote(source.name)} ORDER BY {quote(source.order_column)}"  # noqa: S608
    reader = duck.sql(query).to_arrow_reader(BATCH_ROWS)
    done = 0
    for batch in reader:
        if not batch.num_rows:
            continue
        yield _with_technical(source, pa.Table.from_batches([batch]), stamp)
        done += batch.num_rows
        report(source.name, done, totals[source.name])


def _cast(source: SourceFile, column: str) -> str:
    kind = allow_list().column(source.name, source.columns[column]).type
    casts = {"money": "BIGINT", "integer": "INTEGER"}
    return f"CAST({quote(column)} AS {casts[kind]})" if kind in casts else quote(column)


def _with_technical(source: SourceFile, rows: pa.Table, stamp: _Stamp) -> pa.Table:
    for name in _target_columns(source):
        if name not in rows.column_names:
            rows = rows.append_column(name, _technical(name, rows, stamp))
    return rows


def _technical(name: str, rows: pa.Table, stamp: _Stamp) -> pa.Array:
    n = rows.num_rows
    constants: dict[str, object] = {
        "created_at": stamp.at,
        "enrolled_at": stamp.at,
        "recorded_at": stamp.at,
        "created_by": stamp.actor,
        "enrolled_by": stamp.actor,
        "recorded_by": stamp.actor,
        "reason": stamp.reason,
        "present": True,
        "record_status": "active",  # imported persons are registered; dedup may queue some for review
    }
    if name in constants:
        return pa.repeat(constants[name], n)
    if name == "id":
        return fresh_ids(n)
    if name == "search_key":
        parts = [rows.column(c).to_pylist() for c in ("given_names", "first_surname", "second_surname", "national_id")]
        return pa.array(search_keys(*parts), pa.string())
    raise AssertionError(f"No value for required column {name}")  # a schema change the importer must learn


def fresh_ids(n: int) -> pa.Array:
    """`n` random ids like `shared.ids.new_id` (128 bits from the OS CSPRNG, 32 hex), built without a loop.

    They come sorted: rows already ordered by subject then get ascending primary keys too, so both
    indexes fill in one sweep. Sorting random ids gives them no meaning."""
    data = np.sort(np.frombuffer(secrets.token_bytes(16 * n).hex().encode("ascii"), dtype="S32")).tobytes()
    offsets = np.arange(0, 32 * n + 1, 32, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def search_keys(
    given_names: Sequence[str],
    first_surnames: Sequence[str],
    second_surnames: Sequence[str],
    national_ids: Sequence[str | None],
) -> list[str]:
    """`Person.search_key` for many persons. For ASCII text `fold` is just `lower()` (NFKD leaves
    ASCII alone and it has no combining marks), so only non-ASCII names pay for normalisation."""
    keys = []
    for parts in zip(given_names, first_surnames, second_surnames, strict=True):
        keys.append(" ".join(p for p in parts if p))
    out = []
    for full_name, national_id in zip(keys, national_ids, strict=True):
        text = f"{full_name} {national_id or ''}".strip()
        out.append(text.lower() if text.isascii() else fold(text))
    return out


def _log_subjects(
    log: BulkAccessLog,
    duck: duckdb.DuckDBPyConnection,
    context: AccessContext,
    at: datetime,
    totals: dict[str, int],
    report: Progress,
) -> None:
    total = sum(totals[s.name] for s in SOURCES if s.subject)
    done = 0
    for source in SOURCES:
        if source.subject is None:
            continue
        make = Subject.person if source.subject == "person" else Subject.household
        for ids in id_batches(duck, source, BATCH_ROWS):
            record_change(log, context, [make(i) for i in ids], SUBJECT_CATEGORIES[source.subject], DETAIL, at)
            done += len(ids)
            report("access_log", done, total)
