"""Cycles started from the program pages, kept in the database (table cycle_jobs, migration 0014).

The server runs with several workers; the page that starts a cycle and the polls that follow it
reach any of them. So a job's stage, counts and outcome live in a row, written by the worker whose
thread runs the cycle and read by whichever worker answers the poll. At most one cycle runs at a
time across all workers: a running job holds `slot = 'cycle'`, which is unique, so a second
start fails on the constraint instead of on a check two workers could pass together.

A worker that dies mid-cycle leaves its row running; its transaction is rolled back by the
database, so nothing of the cycle was stored. The running worker writes the stage and
`heartbeat_at` from a thread of its own at least every `HEARTBEAT`; a running row whose heartbeat
is older than `STALE` reads as `cycle_interrupted`, and the next start ends it and takes the slot.
Reads never write: on SQLite the cycle's own transaction holds the one write lock while it
stores its results, and a poll must not wait for it. `STALE` is long for the same reason: while
that lock is held the heartbeat cannot be written either.

The rows hold counts and codes only (no personal data), so they are read without an access
context, like the run list's counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from civicard.adapters.bulk.cycle import CycleReport
from civicard.adapters.db import tables as t
from civicard.shared.clock import Clock, as_utc
from civicard.shared.errors import Conflict

SLOT = "cycle"
HEARTBEAT = timedelta(seconds=15)
STALE = timedelta(minutes=10)
INTERRUPTED = (
    "cycle_interrupted",
    "The server running this cycle stopped before it finished; nothing was stored. Start it again.",
)


@dataclass(frozen=True)
class CycleSummary:
    """What the page shows of a finished cycle (`CycleReport` without its list of changes)."""

    period: str
    programs: tuple[str, ...]
    households: int
    decisions_new: int
    decisions_changed: int
    entitlements_new: int
    entitlements_changed: int
    eligible: dict[str, int]
    output_name: str

    @classmethod
    def of(cls, report: CycleReport) -> CycleSummary:
        return cls(
            report.period,
            report.programs,
            report.households,
            report.decisions_new,
            report.decisions_changed,
            report.entitlements_new,
            report.entitlements_changed,
            dict(report.eligible),
            report.output.name,
        )

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "programs": list(self.programs)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CycleSummary:
        data = json.loads(text)
        return cls(**{**data, "programs": tuple(data["programs"])})


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class CycleJob:
    """One started cycle as stored: where it is, and its summary or error once it has ended."""

    id: str
    period: str
    started_by: str
    started_at: datetime
    stage: tuple[str, int, int] = ("start", 0, 0)
    finished: bool = False
    report: CycleSummary | None = None
    error: JobError | None = None

    @property
    def percent(self) -> int:
        _, done, total = self.stage
        return 100 if self.finished else int(100 * done / total) if total else 0


class SqlCycleJobs:
    """The cycle_jobs table; every method is its own short transaction."""

    def __init__(self, engine: sa.Engine, clock: Clock) -> None:
        self.engine, self.clock = engine, clock

    def claim(self, job: CycleJob) -> None:
        """Store `job` as the one running cycle, or raise `cycle_running` naming the period that runs."""
        now = self.clock.now()
        try:
            with self.engine.begin() as conn:
                self._end_stale(conn, now)
        except OperationalError:  # SQLite: a running cycle holds the write lock while it stores
            raise Conflict("cycle_running", "A cycle is storing its results; wait for it to end.") from None
        row = {
            "id": job.id,
            "period": job.period,
            "started_by": job.started_by,
            "started_at": job.started_at,
            "slot": SLOT,
            "stage": job.stage[0],
            "done": job.stage[1],
            "total": job.stage[2],
            "heartbeat_at": now,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(t.cycle_jobs), row)
        except IntegrityError:
            with self.engine.connect() as conn:
                running = conn.execute(sa.select(t.cycle_jobs.c.period).where(t.cycle_jobs.c.slot == SLOT)).scalar()
            message = f"A cycle of {running or 'another period'} is running; wait for it to end."
            raise Conflict("cycle_running", message) from None

    def progress(self, job_id: str, stage: str, done: int, total: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t.cycle_jobs)
                .where(t.cycle_jobs.c.id == job_id, t.cycle_jobs.c.slot == SLOT)
                .values(stage=stage, done=done, total=total, heartbeat_at=self.clock.now())
            )

    def finish(self, job_id: str, summary: CycleSummary | None = None, error: JobError | None = None) -> None:
        """End the job with its summary, or with `error`; frees the slot for the next cycle."""
        values: dict[str, Any] = {"slot": None, "finished_at": self.clock.now()}
        if summary is not None:
            values |= {"stage": "done", "done": 1, "total": 1, "report": summary.to_json()}
        if error is not None:
            values |= {"error_code": error.code, "error_message": error.message}
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.cycle_jobs).where(t.cycle_jobs.c.id == job_id).values(**values))

    def get(self, job_id: str) -> CycleJob | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.cycle_jobs).where(t.cycle_jobs.c.id == job_id)).first()
        return _job(row, self.clock.now()) if row else None

    def latest(self) -> CycleJob | None:
        with self.engine.connect() as conn:
            query = sa.select(t.cycle_jobs).order_by(t.cycle_jobs.c.started_at.desc()).limit(1)
            row = conn.execute(query).first()
        return _job(row, self.clock.now()) if row else None

    def _end_stale(self, conn: sa.Connection, now: datetime) -> None:
        code, message = INTERRUPTED
        conn.execute(
            sa.update(t.cycle_jobs)
            .where(t.cycle_jobs.c.slot == SLOT, t.cycle_jobs.c.heartbeat_at < now - STALE)
            .values(slot=None, finished_at=now, error_code=code, error_message=message)
        )


def _job(row: Any, now: datetime) -> CycleJob:
    error = JobError(row.error_code, row.error_message or "") if row.error_code else None
    stale = row.slot is not None and as_utc(row.heartbeat_at) < now - STALE
    if stale:
        error = JobError(*INTERRUPTED)
    return CycleJob(
        id=row.id,
        period=row.period,
        started_by=row.started_by,
        started_at=as_utc(row.started_at),
        stage=(row.stage, int(row.done), int(row.total)),
        finished=row.slot is None or stale,
        report=CycleSummary.from_json(row.report) if row.report else None,
        error=error,
    )
