"""Decisions, their input snapshots, entitlements and benefit periods (migration 0006).

Bulk writes use COPY on PostgreSQL and executemany on SQLite. On PostgreSQL each period gets its
own partition of the per-period tables before its first row is written.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter

from civicard.adapters.db import tables as t
from civicard.programs.cycles import Stored, WriteSet
from civicard.programs.engines import Outcome

PARTITIONED = ("decision_inputs", "decisions", "entitlements", "redemptions", "ledger_lines")
_IN = 500  # ids per IN (...) list


def period_status(conn: sa.Connection, period: str, share_lock: bool = False) -> str | None:
    """The benefit period's status (None before its first cycle). With `share_lock`, the row is
    share-locked until the transaction ends, so a period cannot be closed under a sale in flight."""
    query = _STATUS_SHARED if share_lock else _STATUS
    status: str | None = conn.execute(query, {"period": period}).scalar_one_or_none()
    return status


_STATUS = sa.select(t.benefit_periods.c.status).where(t.benefit_periods.c.period == sa.bindparam("period"))
_STATUS_SHARED = _STATUS.with_for_update(read=True)


@dataclass(frozen=True)
class StoredDecision:
    """A decision as the resident, a reviewer or the API sees it (with its input snapshot)."""

    id: str
    period: str
    household_id: str
    program: str
    program_version_id: str
    rules_sha256: str
    inputs_sha256: str
    outcome: Outcome
    origin: str
    decided_at: datetime
    superseded_at: datetime | None
    superseded_by: str | None
    inputs: str | None


class SqlDecisions:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    # --- periods ---------------------------------------------------------------------------------
    def period_status(self, period: str) -> str | None:
        return period_status(self.conn, period)

    def open_period(self, period: str, now: datetime) -> str:
        """The period's status, opening it (and its partitions) on first use."""
        status = self.period_status(period)
        if status is None:
            self.conn.execute(sa.insert(t.benefit_periods).values(period=period, status="open", opened_at=now))
            self._partitions(period)
            status = "open"
        return status

    def open_periods(self) -> list[str]:
        bp = t.benefit_periods
        return list(
            self.conn.execute(sa.select(bp.c.period).where(bp.c.status == "open").order_by(bp.c.period)).scalars()
        )

    def _partitions(self, period: str) -> None:
        if self.conn.dialect.name != "postgresql":
            return
        suffix = period.replace("-", "_")
        for table in PARTITIONED:
            # The DEFAULT partition holds no row of a period that has not been opened.
            self.conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {table}_p{suffix} PARTITION OF {table} FOR VALUES IN ('{period}')"
            )

    # --- reads -----------------------------------------------------------------------------------
    def current(self, period: str, household_ids: Sequence[str] | None = None) -> dict[tuple[str, str], Stored]:
        d = t.decisions
        query = sa.select(
            d.c.id,
            d.c.household_id,
            d.c.program,
            d.c.rules_sha256,
            d.c.inputs_sha256,
            d.c.status,
            d.c.amount_minor,
            d.c.conditions,
            d.c["items"],
        ).where(d.c.period == period, d.c.superseded_at.is_(None))
        found: dict[tuple[str, str], Stored] = {}
        for chunk in _chunks(household_ids):
            rows = self.conn.execute(query if chunk is None else query.where(d.c.household_id.in_(chunk)))
            for r in rows:
                outcome = Outcome.from_json(r.status, r.amount_minor, r.conditions, r._mapping["items"])
                found[(r.household_id, r.program)] = Stored(
                    r.id, r.household_id, r.program, r.rules_sha256, r.inputs_sha256, outcome
                )
        return found

    def current_keys(
        self, period: str, household_range: tuple[str, str] | None = None
    ) -> dict[tuple[str, str], tuple[str, str]]:
        """(household, program) → (rules hash, inputs hash) of the period's current decisions:
        enough to tell which households a new run must look at, without reading the outcomes.
        With `household_range` (first, last id), only those households' (a cycle's chunk)."""
        d = t.decisions
        query = sa.select(d.c.household_id, d.c.program, d.c.rules_sha256, d.c.inputs_sha256).where(
            d.c.period == period, d.c.superseded_at.is_(None)
        )
        if household_range is not None:
            query = query.where(d.c.household_id.between(*household_range))
        return {(r[0], r[1]): (r[2], r[3]) for r in self.conn.execute(query)}

    def entitlements(
        self, period: str, household_ids: Sequence[str]
    ) -> dict[tuple[str, str], dict[str, tuple[str, int, int]]]:
        e = t.entitlements
        found: dict[tuple[str, str], dict[str, tuple[str, int, int]]] = {}
        for chunk in _chunks(household_ids):
            rows = self.conn.execute(
                sa.select(e.c.id, e.c.household_id, e.c.program, e.c.item_code, e.c.granted, e.c.remaining).where(
                    e.c.period == period, e.c.household_id.in_(chunk or [])
                )
            )
            for r in rows:
                found.setdefault((r.household_id, r.program), {})[r.item_code] = (r.id, r.granted, r.remaining)
        return found

    def of_household(self, household_id: str, current_only: bool = True) -> list[StoredDecision]:
        """The household's decisions, newest period first, with their input snapshots."""
        d, i = t.decisions, t.decision_inputs
        query = (
            sa.select(d, i.c.inputs)
            .select_from(
                d.outerjoin(
                    i,
                    (i.c.period == d.c.period)
                    & (i.c.household_id == d.c.household_id)
                    & (i.c.inputs_sha256 == d.c.inputs_sha256),
                )
            )
            .where(d.c.household_id == household_id)
            .order_by(d.c.period.desc(), d.c.program, d.c.decided_at.desc())
        )
        if current_only:
            query = query.where(d.c.superseded_at.is_(None))
        return [_stored(r) for r in self.conn.execute(query)]

    def get(self, decision_id: str) -> StoredDecision | None:
        d, i = t.decisions, t.decision_inputs
        row = self.conn.execute(
            sa.select(d, i.c.inputs)
            .select_from(
                d.outerjoin(
                    i,
                    (i.c.period == d.c.period)
                    & (i.c.household_id == d.c.household_id)
                    & (i.c.inputs_sha256 == d.c.inputs_sha256),
                )
            )
            .where(d.c.id == decision_id)
        ).first()
        return _stored(row) if row else None

    def household_entitlements(self, household_id: str, period: str | None = None) -> list[dict[str, Any]]:
        e = t.entitlements
        query = (
            sa.select(e).where(e.c.household_id == household_id).order_by(e.c.period.desc(), e.c.program, e.c.item_code)
        )
        if period is not None:
            query = query.where(e.c.period == period)
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def has_inputs(self, period: str, household_id: str, sha: str) -> bool:
        i = t.decision_inputs
        return (
            self.conn.execute(
                sa.select(sa.literal(1)).where(
                    i.c.period == period, i.c.household_id == household_id, i.c.inputs_sha256 == sha
                )
            ).first()
            is not None
        )

    def known_inputs(self, period: str, household_range: tuple[str, str] | None = None) -> set[tuple[str, str]]:
        """(household, inputs hash) of the period's stored snapshots; with `household_range`
        (first, last id), only those households'."""
        i = t.decision_inputs
        query = sa.select(i.c.household_id, i.c.inputs_sha256).where(i.c.period == period)
        if household_range is not None:
            query = query.where(i.c.household_id.between(*household_range))
        return {(r[0], r[1]) for r in self.conn.execute(query)}

    # --- writes ----------------------------------------------------------------------------------
    def add_inputs(self, rows: Sequence[dict[str, Any]]) -> None:
        self._bulk_insert(t.decision_inputs, rows)

    def write(self, period: str, changes: WriteSet) -> None:
        now = changes.decisions[0]["decided_at"] if changes.decisions else None
        d, e = t.decisions, t.entitlements
        if changes.superseded:
            # Mark the old ones first: the partial unique index allows one current decision per slot.
            self.conn.execute(
                sa.update(d)
                .where(d.c.period == period, d.c.id == sa.bindparam("old_id"))
                .values(superseded_at=now, superseded_by=sa.bindparam("new_id")),
                [{"old_id": old, "new_id": new} for old, new in changes.superseded],
            )
        self._bulk_insert(d, changes.decisions)
        if changes.superseded:
            self.conn.execute(
                sa.update(e)
                .where(e.c.period == period, e.c.decision_id == sa.bindparam("old_id"))
                .values(decision_id=sa.bindparam("new_id"), updated_at=now),
                [{"old_id": old, "new_id": new} for old, new in changes.superseded],
            )
        if changes.entitlements_changed:
            self.conn.execute(
                sa.update(e)
                .where(e.c.period == period, e.c.id == sa.bindparam("eid"))
                .values(granted=sa.bindparam("g"), remaining=sa.bindparam("r"), updated_at=now),
                [{"eid": i, "g": g, "r": r} for i, g, r in changes.entitlements_changed],
            )
        self._bulk_insert(e, changes.entitlements_new)

    def add_run(self, row: dict[str, Any]) -> None:
        self.conn.execute(sa.insert(t.cycle_runs), row)

    def finish_run(self, run_id: str, **values: Any) -> None:
        self.conn.execute(sa.update(t.cycle_runs).where(t.cycle_runs.c.id == run_id).values(**values))

    def runs(self, period: str | None = None) -> list[dict[str, Any]]:
        c = t.cycle_runs
        query = sa.select(c).order_by(c.c.started_at.desc())
        if period is not None:
            query = query.where(c.c.period == period)
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def _bulk_insert(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.conn.dialect.name == "postgresql" and len(rows) > 200:
            _copy_csv(self.conn, table, rows)
            return
        self.conn.execute(sa.insert(table), list(rows))


_COPY_BATCH = 50_000  # rows encoded at a time


def _copy_csv(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """COPY the rows in CSV that Arrow encodes column by column: a cycle writes millions of rows,
    and encoding them one by one in Python was most of its store time. Arrow writes NULL as an
    empty field and an empty string as `""`, which is what PostgreSQL's CSV format reads back."""
    columns = [c.name for c in table.columns]
    raw = conn.connection.driver_connection
    options = pa_csv.WriteOptions(include_header=False)
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
    with raw.cursor() as cur, cur.copy(statement, writer=QueuedLibpqWriter(cur)) as copy:  # type: ignore[union-attr]
        for start in range(0, len(rows), _COPY_BATCH):
            batch = rows[start : start + _COPY_BATCH]
            encoded = io.BytesIO()
            pa_csv.write_csv(pa.table({c: [row.get(c) for row in batch] for c in columns}), encoded, options)
            copy.write(encoded.getbuffer())


def _chunks(ids: Sequence[str] | None) -> Iterable[list[str] | None]:
    if ids is None:
        yield None
        return
    for start in range(0, len(ids), _IN):
        yield list(ids[start : start + _IN])


def _stored(row: sa.Row[Any]) -> StoredDecision:
    m = row._mapping
    return StoredDecision(
        id=m["id"],
        period=m["period"],
        household_id=m["household_id"],
        program=m["program"],
        program_version_id=m["program_version_id"],
        rules_sha256=m["rules_sha256"],
        inputs_sha256=m["inputs_sha256"],
        outcome=Outcome.from_json(m["status"], m["amount_minor"], m["conditions"], m["items"]),
        origin=m["origin"],
        decided_at=m["decided_at"],
        superseded_at=m["superseded_at"],
        superseded_by=m["superseded_by"],
        inputs=m.get("inputs"),
    )


def decision_json(decision: StoredDecision) -> dict[str, Any]:
    return {
        "id": decision.id,
        "period": decision.period,
        "program": decision.program,
        "status": decision.outcome.status,
        "amount_minor": decision.outcome.amount_minor,
        "items": dict(decision.outcome.items),
        "conditions": [[n, m] for n, m in decision.outcome.conditions],
        "rules_sha256": decision.rules_sha256,
        "inputs_sha256": decision.inputs_sha256,
        "decided_at": decision.decided_at.isoformat(),
        "superseded": decision.superseded_at is not None,
        "inputs": json.loads(decision.inputs) if decision.inputs else None,
    }
