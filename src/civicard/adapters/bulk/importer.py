"""Bulk import of a registry extract (eight Parquet files) into the database, in one transaction.

DuckDB checks whole files with SQL before anything is written (columns, types, required values,
ids, codes, references, duplicates); rows then stream in batches of 50,000: PostgreSQL through
COPY, SQLite through executemany. Access-log write entries go through the enforcement point
(`record_change`) in the same transaction: one per imported person and one per household, so a
resident looking up their own log by person id sees the import without a join through households.
"""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql as pgsql
from sqlalchemy import Connection, Engine, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

from civicard.adapters.db import tables as t
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.registry.allowlist import allow_list
from civicard.registry.facts import MAX_MONEY_MINOR
from civicard.registry.model import fold
from civicard.registry.vocabulary import vocabulary
from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, Forbidden, InvalidInput, Unavailable
from civicard.transparency.access import AccessContext, AccessEntry, Subject, purpose_policy, record_change

Progress = Callable[[str, int, int], None]
BATCH_ROWS = 50_000
ID_CHECK_BATCH = 10_000  # ids per `IN (...)` when looking for rows already in the database
ID_PATTERN = "[0-9a-f]{32}"
SQLITE_CACHE_KIB = 256 * 1024
DETAIL = "registry.bulk_import"
# What an import writes about each kind of subject; together, all six categories.
SUBJECT_CATEGORIES = {
    "person": ("identity", "household", "income", "health", "benefits"),
    "household": ("household", "property"),
}
_INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"})
_PARQUET_TYPES = {"id": {"VARCHAR"}, "text": {"VARCHAR"}, "code": {"VARCHAR"}, "date": {"DATE"},
                  "money": _INTEGER_TYPES, "integer": _INTEGER_TYPES}


def _same(*names: str) -> dict[str, str]:
    return {name: name for name in names}


@dataclass(frozen=True)
class SourceFile:
    """One Parquet file of an extract: the table it fills and what must hold across its rows."""

    table: Table
    columns: dict[str, str]  # source column -> target column; other source columns are ignored
    unique: tuple[tuple[str, str], ...] = ()  # (source column, error code when repeated)
    references: tuple[tuple[str, str], ...] = ()  # (source column, file whose id it names)
    subject: str | None = None  # "person" or "household": each row gets an access-log entry

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def id_column(self) -> str:
        return next(s for s, target in self.columns.items() if target == "id")

    @property
    def order_column(self) -> str:
        """Rows are written in this order so index insertions sweep their B-trees instead of hopping."""
        return self.references[0][0] if self.references else self.id_column


SOURCES: tuple[SourceFile, ...] = (
    SourceFile(
        t.households, {"household_id": "id", **_same("region", "municipality", "address_line", "postcode")},
        unique=(("household_id", "import_duplicate_id"),), subject="household",
    ),
    SourceFile(
        t.persons,
        {"person_id": "id", **_same(
            "given_names", "first_surname", "second_surname", "birth_date", "birth_place", "sex", "address_line",
            "municipality", "region", "postcode", "phone", "national_id", "photo_ref",
        )},
        unique=(("person_id", "import_duplicate_id"),), subject="person",
    ),
    SourceFile(
        t.memberships, _same("household_id", "person_id", "relationship", "valid_from"),
        unique=(("person_id", "import_duplicate_membership"),),
        references=(("household_id", "households"), ("person_id", "persons")),
    ),
    SourceFile(t.employment, _same("person_id", "status", "valid_from"), references=(("person_id", "persons"),)),
    SourceFile(
        t.incomes, _same("person_id", "source", "monthly_amount_minor", "valid_from"),
        references=(("person_id", "persons"),),
    ),
    SourceFile(
        t.properties, _same("household_id", "kind", "value_minor", "valid_from"),
        references=(("household_id", "households"),),
    ),
    SourceFile(
        t.health_needs, _same("person_id", "kind", "code", "degree_percent", "valid_from"),
        references=(("person_id", "persons"),),
    ),
    SourceFile(
        t.benefits_received, _same("person_id", "benefit", "monthly_amount_minor", "valid_from"),
        references=(("person_id", "persons"),),
    ),
)


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
        totals = _validate(duck, source_dir, report)
        with SqlUnitOfWork(engine, context, clock) as uow:
            conn = uow.connection
            writer = _writer(conn)
            now = clock.now()
            stamp = _Stamp(writer.timestamp(now), context.actor.id, f"bulk import {source_dir.resolve().name}")
            _refuse_present(conn, duck)
            log = _BulkAccessLog(writer)
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


# --- validation (DuckDB, whole files, before any write) ------------------------------------------


@dataclass(frozen=True)
class _Check:
    """A row-level rule as a DuckDB condition that is true on a bad row (identifiers and ? only)."""

    code: str
    column: str
    condition: str
    params: tuple[object, ...]
    problem: str
    shows_value: bool = False  # codes and ids may be quoted in the error; other values are personal


def _q(identifier: str) -> str:
    """Quote an identifier. SQL here is built from identifiers in SOURCES and tables.py only (hence
    the `noqa: S608`s); every value, including limits and code lists, is a bound parameter."""
    return '"' + identifier.replace('"', '""') + '"'


def _validate(duck: duckdb.DuckDBPyConnection, source_dir: Path, report: Progress) -> dict[str, int]:
    """Register each file as a DuckDB view named after its table; returns rows per file."""
    _register_vocabularies(duck)
    totals: dict[str, int] = {}
    for i, source in enumerate(SOURCES):
        _register_file(duck, source, source_dir)
        totals[source.name] = _check_rows(duck, source)
        _check_unique(duck, source)
        report("validate", i + 1, len(SOURCES))
    for source in SOURCES:
        _check_references(duck, source)
    return totals


def _register_vocabularies(duck: duckdb.DuckDBPyConnection) -> None:
    vocab = vocabulary()
    lists = {spec.codes for spec in _specs() if spec.codes} | {"disability_codes", "chronic_codes"}
    pairs = [(name, code) for name in sorted(lists) for code in vocab.labels(name)]
    duck.register("vocab", pa.table({"list": [p[0] for p in pairs], "code": [p[1] for p in pairs]}))
    regions = [(m, r.code) for r in vocab.regions.values() for m in r.municipalities]
    duck.register("municipality_regions", pa.table({"municipality": [m for m, _ in regions],
                                                    "region": [r for _, r in regions]}))


def _specs() -> Iterator[Any]:
    for source in SOURCES:
        for target in source.columns.values():
            yield allow_list().column(source.name, target)


def _register_file(duck: duckdb.DuckDBPyConnection, source: SourceFile, source_dir: Path) -> None:
    path = source_dir / f"{source.name}.parquet"
    if not path.is_file():
        raise InvalidInput("import_missing_file", f"{path.name} is missing from {source_dir}.", file=path.name)
    relation = duck.read_parquet(str(path))
    found = dict(zip(relation.columns, (str(kind) for kind in relation.types), strict=True))
    for column, target in source.columns.items():
        kind = allow_list().column(source.name, target).type
        if column not in found:
            raise InvalidInput(
                "import_missing_column", f"{path.name} has no column '{column}'.", file=path.name, column=column
            )
        if found[column] not in _PARQUET_TYPES[kind]:
            raise InvalidInput(
                "import_invalid_type", f"{path.name}: column '{column}' is {found[column]}, expected a {kind}.",
                file=path.name, column=column, example=found[column],
            )
    relation.create_view(source.name)


def _row_checks(source: SourceFile) -> list[_Check]:
    checks: list[_Check] = []
    for column, target in source.columns.items():
        checks += _column_checks(source, column, target)
    if source.name in ("households", "persons"):
        checks.append(_Check(
            "import_region_mismatch", "region",
            "region <> (SELECT m.region FROM municipality_regions m WHERE m.municipality = src.municipality)",
            (), "name a region that does not contain their municipality", shows_value=True,
        ))
    if source.name == "health_needs":
        checks += [
            _Check("import_unknown_code", "code", "code NOT IN (SELECT v.code FROM vocab v WHERE v.list = kind || ?)",
                   ("_codes",), "have a code that is not a code of their kind", shows_value=True),
            _Check("import_invalid_value", "degree_percent", "(kind = ?) <> (degree_percent IS NOT NULL)",
                   ("disability",), "have a degree on a chronic condition or none on a disability"),
        ]
    return checks


def _column_checks(source: SourceFile, column: str, target: str) -> list[_Check]:
    q, spec, sql_type = _q(column), allow_list().column(source.name, target), source.table.c[target].type
    checks = []
    if not source.table.c[target].nullable:
        checks.append(_Check("import_missing_value", column, f"{q} IS NULL", (), "have no value"))
    if spec.type == "id":
        checks.append(_Check("import_invalid_id", column, f"NOT regexp_full_match({q}, ?)", (ID_PATTERN,),
                             "are not a 32-character lowercase hex id", shows_value=True))
    elif spec.type == "code":
        in_vocab = f"{q} NOT IN (SELECT v.code FROM vocab v WHERE v.list = ?)"  # noqa: S608
        checks.append(_Check("import_unknown_code", column, in_vocab, (spec.codes,),
                             f"are not in the vocabulary '{spec.codes}'", shows_value=True))
    elif spec.type == "text":
        # PostgreSQL text cannot hold NUL (SQLite can): refuse it on both so the engines agree.
        checks.append(_Check("import_invalid_text", column, f"contains({q}, ?)", ("\x00",), "contain a NUL character"))
        if isinstance(sql_type, String) and sql_type.length:
            checks.append(_Check("import_value_too_long", column, f"length({q}) > ?", (sql_type.length,),
                                 f"are longer than {sql_type.length} characters"))
    elif spec.type == "money":
        checks.append(_Check("import_invalid_value", column, f"{q} < 0 OR {q} > ?", (MAX_MONEY_MINOR,),
                             "are negative or beyond any plausible amount"))
    elif spec.type == "integer":
        checks.append(_Check("import_invalid_value", column, f"{q} NOT BETWEEN 0 AND 100", (),
                             "are not a percentage from 0 to 100"))
    return checks


def _check_rows(duck: duckdb.DuckDBPyConnection, source: SourceFile) -> int:
    """All row-level checks of a file in one scan; the first failing one is reported."""
    checks = _row_checks(source)
    counts = ", ".join(f"count_if({c.condition})" for c in checks)
    params = [p for c in checks for p in c.params]
    row = duck.sql(f"SELECT count(*), {counts} FROM {_q(source.name)} AS src", params=params).fetchall()[0]  # noqa: S608
    for check, bad in zip(checks, row[1:], strict=True):
        if bad:
            _refuse_rows(duck, source, check, bad)
    return int(row[0])


def _refuse_rows(duck: duckdb.DuckDBPyConnection, source: SourceFile, check: _Check, bad: int) -> None:
    file = f"{source.name}.parquet"
    message = f"{file}: {bad} row(s) in column '{check.column}' {check.problem}"
    example = None
    if check.shows_value:
        query = f"SELECT {_q(check.column)} FROM {_q(source.name)} AS src WHERE {check.condition} LIMIT 1"  # noqa: S608
        example = str(duck.sql(query, params=list(check.params)).fetchall()[0][0])[:40]
        message += f", e.g. '{example}'"
    raise InvalidInput(check.code, message + ". Nothing was imported.", file=file, column=check.column,
                       example=example, rows=bad)


def _check_unique(duck: duckdb.DuckDBPyConnection, source: SourceFile) -> None:
    for column, code in source.unique:
        q = _q(column)
        query = f"SELECT {q} FROM {_q(source.name)} GROUP BY {q} HAVING count(*) > 1 LIMIT 1"  # noqa: S608
        found = duck.sql(query).fetchall()
        if found:
            file = f"{source.name}.parquet"
            raise InvalidInput(
                code, f"{file}: '{found[0][0]}' appears more than once in column '{column}'. Nothing was imported.",
                file=file, column=column, example=found[0][0],
            )


def _check_references(duck: duckdb.DuckDBPyConnection, source: SourceFile) -> None:
    by_name = {s.name: s for s in SOURCES}
    for column, other in source.references:
        q, target = _q(column), by_name[other]
        query = (
            f"SELECT src.{q} FROM {_q(source.name)} AS src WHERE NOT EXISTS "  # noqa: S608
            f"(SELECT 1 FROM {_q(other)} AS o WHERE o.{_q(target.id_column)} = src.{q}) LIMIT 1"
        )
        found = duck.sql(query).fetchall()
        if found:
            file = f"{source.name}.parquet"
            raise InvalidInput(
                "import_unknown_reference",
                f"{file}: column '{column}' names '{found[0][0]}', which is not in {other}.parquet. "
                "Nothing was imported.",
                file=file, column=column, example=found[0][0],
            )


def _refuse_present(conn: Connection, duck: duckdb.DuckDBPyConnection) -> None:
    """Refuse ids the database already holds (an extract is imported once)."""
    for source in SOURCES:
        if source.subject is None:
            continue
        id_col = source.table.c.id
        if conn.execute(select(id_col).limit(1)).first() is None:
            continue  # an empty table holds none of them
        for ids in _id_batches(duck, source, ID_CHECK_BATCH):
            held = conn.execute(select(id_col).where(id_col.in_(ids)).limit(1)).scalar()
            if held is not None:
                file = f"{source.name}.parquet"
                raise Conflict(
                    "import_already_present",
                    f"{file}: '{held}' is already in the registry; an extract is imported once. Nothing was imported.",
                    file=file, column=source.id_column, example=held,
                )


def _id_batches(duck: duckdb.DuckDBPyConnection, source: SourceFile, size: int) -> Iterator[list[str]]:
    query = f"SELECT {_q(source.id_column)} FROM {_q(source.name)} ORDER BY 1"  # noqa: S608
    reader = duck.sql(query).to_arrow_reader(size)
    for batch in reader:
        if batch.num_rows:
            yield batch.column(0).to_pylist()


# --- loading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stamp:
    """The technical values every imported row shares, already in the database's representation."""

    at: str
    actor: str
    reason: str


class _Writer(Protocol):
    def tuned(self) -> AbstractContextManager[None]: ...

    def timestamp(self, value: datetime) -> str: ...

    def write(self, table: Table, columns: Sequence[str], batches: Iterable[pa.Table]) -> int: ...


def _writer(conn: Connection) -> _Writer:
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        return _CopyWriter(conn)
    if conn.dialect.name == "sqlite":
        return _ExecutemanyWriter(conn)
    raise Unavailable("import_unsupported_database", f"Bulk import supports SQLite and PostgreSQL (psycopg), "
                      f"not {conn.dialect.name}+{conn.dialect.driver}.")


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


def _load_all(
    writer: _Writer, duck: duckdb.DuckDBPyConnection, stamp: _Stamp, totals: dict[str, int], report: Progress
) -> dict[str, int]:
    try:
        return {s.name: writer.write(s.table, _target_columns(s), _batches(duck, s, stamp, totals, report))
                for s in SOURCES}
    except (IntegrityError, psycopg.IntegrityError):
        # Validation should make this unreachable; a concurrent writer could still get here.
        raise Conflict("import_conflict", "The database refused the import (a constraint failed). "
                       "Nothing was imported.") from None


def _target_columns(source: SourceFile) -> list[str]:
    """Columns in table order: the mapped ones and the technical ones the import fills."""
    given = set(source.columns.values())
    return [c.name for c in source.table.columns if c.name in given or not c.nullable]


def _batches(
    duck: duckdb.DuckDBPyConnection, source: SourceFile, stamp: _Stamp, totals: dict[str, int], report: Progress
) -> Iterator[pa.Table]:
    selected = ", ".join(f"{_cast(source, s)} AS {_q(target)}" for s, target in source.columns.items())
    query = f"SELECT {selected} FROM {_q(source.name)} ORDER BY {_q(source.order_column)}"  # noqa: S608
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
    return f"CAST({_q(column)} AS {casts[kind]})" if kind in casts else _q(column)


def _with_technical(source: SourceFile, rows: pa.Table, stamp: _Stamp) -> pa.Table:
    for name in _target_columns(source):
        if name not in rows.column_names:
            rows = rows.append_column(name, _technical(name, rows, stamp))
    return rows


def _technical(name: str, rows: pa.Table, stamp: _Stamp) -> pa.Array:
    n = rows.num_rows
    constants: dict[str, object] = {
        "created_at": stamp.at, "enrolled_at": stamp.at, "recorded_at": stamp.at,
        "created_by": stamp.actor, "enrolled_by": stamp.actor, "recorded_by": stamp.actor,
        "reason": stamp.reason, "present": True,
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
    given_names: Sequence[str], first_surnames: Sequence[str], second_surnames: Sequence[str],
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


# --- access log -----------------------------------------------------------------------------------


class _BulkAccessLog:
    """An AccessLog that appends entries through the bulk writer (COPY on PostgreSQL)."""

    columns = ("occurred_at", "actor", "role", "purpose", "action", "subject_person_id", "subject_household_id",
               "categories", "detail")

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        self.entries = 0

    def append(self, entries: Sequence[AccessEntry]) -> None:
        if not entries:
            return
        times = {at: self.writer.timestamp(at) for at in {e.occurred_at for e in entries}}
        batch = pa.table({
            "occurred_at": [times[e.occurred_at] for e in entries],
            "actor": [e.actor for e in entries],
            "role": [e.role for e in entries],
            "purpose": [e.purpose for e in entries],
            "action": [e.action for e in entries],
            "subject_person_id": pa.array([e.subject.person_id if e.subject else None for e in entries], pa.string()),
            "subject_household_id": pa.array(
                [e.subject.household_id if e.subject else None for e in entries], pa.string()
            ),
            "categories": [" ".join(e.categories) for e in entries],
            "detail": [e.detail for e in entries],
        })
        columns = [c.name for c in t.access_log.columns if c.name in self.columns]
        self.entries += self.writer.write(t.access_log, columns, [batch])


def _log_subjects(
    log: _BulkAccessLog, duck: duckdb.DuckDBPyConnection, context: AccessContext, at: datetime,
    totals: dict[str, int], report: Progress,
) -> None:
    total = sum(totals[s.name] for s in SOURCES if s.subject)
    done = 0
    for source in SOURCES:
        if source.subject is None:
            continue
        make = Subject.person if source.subject == "person" else Subject.household
        for ids in _id_batches(duck, source, BATCH_ROWS):
            record_change(log, context, [make(i) for i in ids], SUBJECT_CATEGORIES[source.subject], DETAIL, at)
            done += len(ids)
            report("access_log", done, total)
