"""A web-started cycle's job row, as two server workers (two engines) see it, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from civicard.adapters.db.cycle_job_store import STALE, CycleJob, CycleSummary, JobError, SqlCycleJobs
from civicard.adapters.db.engine import make_engine
from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict
from tests.conftest import FIXED_NOW, Database

SUMMARY = CycleSummary("2026-11", ("food_basket 2026.1",), 3, 3, 0, 2, 0, {"food_basket": 2}, "decisions.parquet")


@pytest.fixture
def workers(db: Database) -> Iterator[tuple[Engine, Engine]]:
    first, second = make_engine(db.url), make_engine(db.url)
    yield first, second
    first.dispose()
    second.dispose()


def job(job_id: str, period: str = "2026-11", after: timedelta = timedelta(0)) -> CycleJob:
    return CycleJob(job_id, period, "staff:admin", FIXED_NOW + after)


def test_a_job_started_on_one_worker_is_followed_and_blocked_on_another(workers: tuple[Engine, Engine]) -> None:
    clock = Clock.fixed(FIXED_NOW)
    a, b = SqlCycleJobs(workers[0], clock), SqlCycleJobs(workers[1], clock)
    a.claim(job("j1"))
    with pytest.raises(Conflict) as refused:
        b.claim(job("j2", "2026-12"))
    assert refused.value.code == "cycle_running" and "2026-11" in refused.value.message

    a.progress("j1", "decide", 40, 100)
    seen = b.get("j1")
    assert seen is not None and seen.stage == ("decide", 40, 100) and seen.percent == 40 and not seen.finished

    a.finish("j1", SUMMARY)
    done = b.latest()
    assert done is not None and done.id == "j1" and done.finished and done.report == SUMMARY and done.error is None
    a.progress("j1", "store", 1, 2)  # a late progress write does not reopen an ended job
    assert b.get("j1") == done

    b.claim(job("j2", "2026-12", timedelta(minutes=1)))  # the slot is free again
    b.finish("j2", error=JobError("period_closed", "Period 2026-12 is closed."))
    failed = a.get("j2")
    assert failed is not None and failed.finished and failed.report is None
    assert failed.error == JobError("period_closed", "Period 2026-12 is closed.")
    assert a.get("nope") is None


def test_a_job_whose_worker_stopped_reads_as_interrupted_and_frees_the_slot(workers: tuple[Engine, Engine]) -> None:
    a = SqlCycleJobs(workers[0], Clock.fixed(FIXED_NOW))
    a.claim(job("j1"))
    soon = SqlCycleJobs(workers[1], Clock.fixed(FIXED_NOW + STALE - timedelta(seconds=1)))
    running = soon.get("j1")
    assert running is not None and not running.finished
    with pytest.raises(Conflict):
        soon.claim(job("j2"))

    later = SqlCycleJobs(workers[1], Clock.fixed(FIXED_NOW + STALE + timedelta(seconds=1)))
    stopped = later.get("j1")
    assert stopped is not None and stopped.finished and stopped.error is not None
    assert stopped.error.code == "cycle_interrupted"
    later.claim(job("j2", after=STALE))
    latest = later.latest()
    assert latest is not None and latest.id == "j2" and not latest.finished
