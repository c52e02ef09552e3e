"""The registry as rule inputs, a chunk of households at a time: raw rows staged in DuckDB, projected.

The raw registry rows (RAW_TABLES) are read once — by COPY on PostgreSQL, in keyset pages on
SQLite — into a DuckDB database file in a temporary folder (memory-limited, spilling to disk); then the
households are taken in chunks of consecutive ids and each chunk is projected from its own rows
only (its current memberships, those members' persons and facts, its properties). A household's
inputs depend only on its own rows, so chunk by chunk gives exactly what all at once gives, and
memory stays bounded by a page and a chunk, not by the registry. Reading each table once in
primary-key order beats fetching each chunk's rows from the database: with random ids a chunk's
members are spread over the whole persons and facts tables (an index lookup per member, or a
full scan per chunk).

Every household read is logged (one entry per household, purpose of `uow.context`, the
categories the purpose grants) in the caller's transaction, so a resident's access log shows
that a cycle or an impact preview read their household's rule inputs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.log_partitions import make_room_for
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.programs.projection import RAW_TABLES, RuleInputs, project
from civicard.transparency.access import Subject, disclose

CHUNK_HOUSEHOLDS = 100_000  # households projected (and decided, stored) together
PAGE = 50_000  # rows per keyset page read from the database
MEMORY_LIMIT = "2GB"  # DuckDB's, while staging and projecting; beyond it, it spills to the folder
_TYPES: dict[str, pa.DataType] = {
    "valid_from": pa.date32(),
    "birth_date": pa.date32(),
    "recorded_at": pa.timestamp("us", tz="UTC"),
    "monthly_amount_minor": pa.int64(),
    "value_minor": pa.int64(),
    "degree_percent": pa.int64(),
    "present": pa.bool_(),
}
_DUCKDB_TYPES = {
    pa.date32(): "DATE",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
}
CATEGORIES = ("identity", "household", "income", "property", "health", "benefits")
# Each raw table restricted to one chunk's households (ids from $lo up to, not including, $hi).
_CHUNK_ROWS = {
    "households": "SELECT * FROM raw.households WHERE id >= $lo AND ($hi IS NULL OR id < $hi)",
    "memberships": "SELECT * FROM raw.memberships WHERE household_id >= $lo AND ($hi IS NULL OR household_id < $hi)",
    "properties": "SELECT * FROM raw.properties WHERE household_id >= $lo AND ($hi IS NULL OR household_id < $hi)",
    "persons": "SELECT * FROM raw.persons WHERE id IN (SELECT person_id FROM memberships)",
}
_PERSON_FACTS = "SELECT * FROM raw.{name} WHERE person_id IN (SELECT person_id FROM memberships)"
# The chunk's memberships first: its persons and their facts are those of its members.
_CHUNK_ORDER = ("households", "memberships", *(n for n in RAW_TABLES if n not in ("households", "memberships")))

Progress = Callable[[str, int, int], None]


def registry_inputs(
    uow: SqlUnitOfWork,
    period_start: date,
    detail: str,
    progress: Progress = lambda _step, _done, _total: None,
) -> RuleInputs:
    """Rule inputs of every household on `period_start`, in one table pair; `detail` goes into
    each log entry. For the whole registry at once (an impact preview); a cycle takes chunks."""
    chunks = list(registry_input_chunks(uow, period_start, detail, CHUNK_HOUSEHOLDS, progress))
    return RuleInputs(pa.concat_tables([c.households for c in chunks]), pa.concat_tables([c.members for c in chunks]))


def registry_input_chunks(
    uow: SqlUnitOfWork,
    period_start: date,
    detail: str,
    chunk_households: int = CHUNK_HOUSEHOLDS,
    progress: Progress = lambda _step, _done, _total: None,
    work_dir: Path | None = None,
) -> Generator[RuleInputs, None, None]:
    """Rule inputs on `period_start`, `chunk_households` households at a time in household id
    order (an empty registry gives one empty chunk). Every household is logged as it is read,
    before the first chunk; the staging files live in a temporary folder under `work_dir`
    (default: the system's) and are gone when the iteration ends. Progress: "read" counts rows
    of the registry's households, "project" households of the chunks done."""
    with tempfile.TemporaryDirectory(prefix="civicard-inputs-", dir=work_dir) as folder:
        con = duckdb.connect(str(Path(folder) / "stage.duckdb"))
        try:
            con.execute("SET threads = 2")
            con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            con.execute("SET temp_directory = ?", [str(Path(folder) / "spill")])
            con.execute("SET preserve_insertion_order = false")
            _stage(uow, con, Path(folder), detail, progress)
            total = con.execute("SELECT count(*) FROM raw.households").fetchone()[0]  # type: ignore[index]
            starts = [
                r[0]
                for r in con.execute(
                    "SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM raw.households) "
                    "WHERE n % $size = 0 ORDER BY id",
                    {"size": chunk_households},
                ).fetchall()
            ]
            done = 0
            for index, lo in enumerate(starts or [""]):
                hi = starts[index + 1] if index + 1 < len(starts) else None
                inputs = _chunk(con, period_start, lo, hi)
                done += inputs.count
                progress("project", done, total)
                yield inputs
        finally:
            con.close()


def _stage(uow: SqlUnitOfWork, con: duckdb.DuckDBPyConnection, folder: Path, detail: str, progress: Progress) -> None:
    """Copy the raw tables into schema `raw` of `con`, then log every household read, a page of
    ids at a time (in the caller's transaction, like the reads)."""
    conn = uow.connection
    con.execute("CREATE SCHEMA raw")
    for name, columns in RAW_TABLES.items():
        con.register("page", _arrow(columns, []))
        con.execute(f"CREATE TABLE raw.{name} AS SELECT * FROM page")  # noqa: S608 (names: RAW_TABLES)
        con.unregister("page")
        if conn.dialect.name == "postgresql":
            _copy_out(conn, con, name, columns, folder / f"{name}.csv")
            continue
        for rows in _pages(conn, name, columns):
            con.register("page", _arrow(columns, rows))
            con.execute(f"INSERT INTO raw.{name} SELECT * FROM page")  # noqa: S608 (names: RAW_TABLES)
            con.unregister("page")
    total = con.execute("SELECT count(*) FROM raw.households").fetchone()[0]  # type: ignore[index]
    make_room_for(uow.engine, total)  # one read entry a household, in this transaction: partitions first
    read = 0
    progress("read", 0, total)
    households = con.execute("SELECT id FROM raw.households ORDER BY id")
    while ids := [r[0] for r in households.fetchmany(PAGE)]:
        disclose(uow.access_log, uow.context, [Subject.household(h) for h in ids], CATEGORIES, detail, uow.clock.now())
        read += len(ids)
        progress("read", read, total)


def _copy_out(
    conn: sa.Connection, con: duckdb.DuckDBPyConnection, name: str, columns: tuple[str, ...], path: Path
) -> None:
    """On PostgreSQL, the table's rows by COPY TO (streamed to a CSV file, no Python object per
    value), loaded with DuckDB's CSV reader: several times faster than fetching rows. The driver
    connection is the unit of work's own, so the read is in its transaction."""
    query = _rows_query(name, columns)
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy, path.open("wb") as out:  # type: ignore[union-attr]
        for block in copy:
            out.write(block)
    types = ", ".join(f"'{c}': '{_DUCKDB_TYPES.get(_TYPES.get(c, pa.string()), 'VARCHAR')}'" for c in columns)
    # PostgreSQL's CSV exactly: no sniffing (a file of a few rows can fool it); "" is an empty string.
    con.execute(
        f"INSERT INTO raw.{name} SELECT * FROM read_csv(?, auto_detect = false, header = false, "  # noqa: S608 (names: RAW_TABLES)
        f"delim = ',', quote = '\"', escape = '\"', allow_quoted_nulls = false, columns = {{{types}}})",
        [str(path)],
    )
    path.unlink()


def _rows_query(name: str, columns: tuple[str, ...]) -> sa.Select[Any]:
    table = t.metadata.tables[name]
    query = sa.select(*(table.c[c] for c in columns))
    if name == "memberships":
        query = query.where(table.c.valid_to.is_(None))
    return query


def _pages(conn: sa.Connection, name: str, columns: tuple[str, ...]) -> Iterator[Sequence[Sequence[Any]]]:
    """The table's rows (current memberships only) in keyset pages on its primary key: bounded
    cursors, the same on both databases."""
    query = _rows_query(name, columns)
    key = t.metadata.tables[name].c.id
    last: str | None = None
    while True:
        page_query = query.add_columns(key.label("_key")).order_by(key).limit(PAGE)
        if last is not None:
            page_query = page_query.where(key > last)
        rows = conn.execute(page_query).all()
        if not rows:
            return
        last = rows[-1][-1]
        yield rows
        if len(rows) < PAGE:
            return


def _arrow(columns: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> pa.Table:
    """`columns` of the rows (a trailing keyset column, if any, is left out)."""
    values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pa.table({c: pa.array(values[i], _TYPES.get(c, pa.string())) for i, c in enumerate(columns)})


def _chunk(con: duckdb.DuckDBPyConnection, period_start: date, lo: str, hi: str | None) -> RuleInputs:
    """Rule inputs of the households with ids from `lo` up to (not including) `hi` (None: the end)."""
    for name in _CHUNK_ORDER:
        rows = _CHUNK_ROWS.get(name, _PERSON_FACTS.format(name=name))
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {rows}", {"lo": lo, "hi": hi} if "$lo" in rows else None)
    return project(con, period_start)
