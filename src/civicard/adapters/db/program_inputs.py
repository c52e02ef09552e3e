"""The whole registry as rule inputs: raw rows read in keyset pages, projected in DuckDB.

Every household read is logged (one entry per household, purpose of `uow.context`, the
categories the purpose grants) in the caller's transaction, so a resident's access log shows
that a cycle or an impact preview read their household's rule inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.programs.projection import RAW_TABLES, RuleInputs, project
from civicard.transparency.access import Subject, disclose

PAGE = 50_000
_TYPES: dict[str, pa.DataType] = {
    "valid_from": pa.date32(),
    "birth_date": pa.date32(),
    "recorded_at": pa.timestamp("us", tz="UTC"),
    "monthly_amount_minor": pa.int64(),
    "value_minor": pa.int64(),
    "degree_percent": pa.int64(),
    "present": pa.bool_(),
}
CATEGORIES = ("identity", "household", "income", "property", "health", "benefits")

Progress = Callable[[str, int, int], None]


def registry_inputs(
    uow: SqlUnitOfWork,
    period_start: date,
    detail: str,
    progress: Progress = lambda _step, _done, _total: None,
) -> RuleInputs:
    """Rule inputs of every household on `period_start`; `detail` goes into each log entry."""
    conn = uow.connection
    con = duckdb.connect()
    try:
        con.execute("SET threads = 2")
        read = total = 0  # households are read first (RAW_TABLES order); their count is the total
        for name, columns in RAW_TABLES.items():
            table = _read(conn, name, columns)
            if name == "households":
                total = table.num_rows
                for start in range(0, table.num_rows, PAGE):
                    ids = table.column("id").slice(start, PAGE).to_pylist()
                    disclose(
                        uow.access_log,
                        uow.context,
                        [Subject.household(h) for h in ids],
                        CATEGORIES,
                        detail,
                        uow.clock.now(),
                    )
                    read += len(ids)
                    progress("read", read, total)
            con.register(name, table)
        progress("project", 0, total)
        inputs = project(con, period_start)
        progress("project", total, total)
        return inputs
    finally:
        con.close()


def _read(conn: sa.Connection, name: str, columns: tuple[str, ...]) -> pa.Table:
    table = t.metadata.tables[name]
    query = sa.select(*(table.c[c] for c in columns))
    if name == "memberships":
        query = query.where(table.c.valid_to.is_(None))
    key = table.c.id
    data: dict[str, list[Any]] = {c: [] for c in columns}
    last: str | None = None
    while True:  # keyset pages on the primary key: bounded cursors, works the same on both databases
        page_query = query.add_columns(key.label("_key")).order_by(key).limit(PAGE)
        if last is not None:
            page_query = page_query.where(key > last)
        rows = conn.execute(page_query).all()
        if not rows:
            break
        last = rows[-1]._key
        for index, column in enumerate(columns):
            data[column].extend(row[index] for row in rows)
        if len(rows) < PAGE:
            break
    return pa.table({c: pa.array(data[c], _TYPES.get(c, pa.string())) for c in columns})
