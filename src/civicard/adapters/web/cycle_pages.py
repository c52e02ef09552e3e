"""The cycle pages: the runs recorded, and "run a cycle" for a period with its progress.

A cycle runs in a thread of the server worker that got the request, one at a time across all
workers; its stage and outcome are kept in the database (adapters/db/cycle_job_store.py), so the
page's htmx poll, every second, may reach any worker. The page shows the report when it is done.
The run is one unit of work, as on the command line: all of it commits, or nothing does (a failed
run leaves no run row; the page shows why).

Who the access log records. `cycle_run` is a purpose of the `system` role only: a cycle applies
published rules to every household, with no person's judgement in it, and a program
administrator's own role may read no household. So the run is logged as a system actor, never
under the administrator's staff role, and that actor's id names who started it —
`staff:<username>` — so every household's entry, and the run's `started_by`, say which
administrator pressed the button (the CLI's runs read `cli:cycle`, the demo's `demo:cycle`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.bulk.cycle import run_cycle
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.db.cycle_job_store import HEARTBEAT, CycleJob, CycleSummary, JobError, SqlCycleJobs
from civicard.adapters.web.i18n import N_, gettext, use_request_locale
from civicard.adapters.web.pages import render, render_error, require_csrf, session_of
from civicard.adapters.web.program_pages import program_admin
from civicard.bootstrap import Container
from civicard.identity.staff import StaffAccount
from civicard.programs.cycles import period_of, period_start
from civicard.shared.errors import Conflict, DomainError, NotFound
from civicard.shared.ids import new_id
from civicard.transparency.access import AccessContext, Actor

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
log = logging.getLogger(__name__)
CYCLE_RUN = "cycle_run"
PUBLICATION = "program_publication"
STAGES = {
    "start": N_("empezando"),
    "read": N_("leyendo los hogares"),
    "project": N_("preparando los datos de las reglas"),
    "decide": N_("decidiendo"),
    "store": N_("guardando decisiones y derechos"),
    "done": N_("terminado"),
}


def cycle_actor(account: StaffAccount) -> Actor:
    """The system actor a web-started cycle runs as, named after the administrator (see module doc)."""
    return Actor(f"staff:{account.username}", "system")


def stage_label(job: CycleJob) -> str:
    """The job's stage in the reader's language."""
    stage = job.stage[0]
    return gettext(STAGES[stage]) if stage in STAGES else stage


class _Reporter:
    """Keeps a running job's latest stage and writes it with the heartbeat from a thread of its own,
    once a second when it changed and every `HEARTBEAT` regardless. The cycle thread never writes:
    on SQLite its own transaction holds the write lock while it stores (see cycle_job_store)."""

    def __init__(self, jobs: SqlCycleJobs, job_id: str) -> None:
        self.jobs, self.job_id = jobs, job_id
        self.stage: tuple[str, int, int] = ("start", 0, 0)  # replaced whole: the writer never sees half
        self.stopped = threading.Event()
        self.writer = threading.Thread(target=self._write, name=f"cycle-progress-{job_id}", daemon=True)

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage = (stage, done, total)

    def _write(self) -> None:
        written, at = self.stage, time.monotonic()
        while not self.stopped.wait(1.0):
            current = self.stage
            if current == written and time.monotonic() - at < HEARTBEAT.total_seconds():
                continue
            try:
                self.jobs.progress(self.job_id, *current)
                written, at = current, time.monotonic()
            except Exception as exc:  # a lost progress write must not fail the cycle itself
                log.warning("cycle %s: progress not stored: %s", self.job_id, type(exc).__name__)


def start_cycle(app: Container, account: StaffAccount, period: str) -> CycleJob:
    """Claim the one cycle slot for `period` and run the cycle in a thread of this worker."""
    period_start(period)  # a malformed period is refused here, not in the thread
    actor = cycle_actor(account)
    job = CycleJob(new_id(), period, actor.id, app.clock.now())
    jobs = SqlCycleJobs(app.engine, app.clock)
    try:
        jobs.claim(job)
    except Conflict:
        running = jobs.latest()
        message = gettext("Hay un ciclo de %(period)s en curso; espere a que termine.")
        raise Conflict("cycle_running", message % {"period": running.period if running else period}) from None
    threading.Thread(target=_run, args=(app, jobs, job, actor), name=f"cycle-{period}", daemon=True).start()
    return job


def _run(app: Container, jobs: SqlCycleJobs, job: CycleJob, actor: Actor) -> None:
    reporter = _Reporter(jobs, job.id)
    reporter.writer.start()
    summary: CycleSummary | None = None
    error: JobError | None = None
    try:
        with app.uow(AccessContext(actor, CYCLE_RUN)) as uow:
            report = run_cycle(uow, job.period, app.settings.data_dir / "cycles", None, reporter.progress)
            uow.commit()
        summary = CycleSummary.of(report)
    except DomainError as exc:
        error = JobError(exc.code, exc.message)
    except Exception as exc:  # the job must end whatever happened, or the page polls forever
        log.error("cycle %s failed: %s", job.period, type(exc).__name__)  # no data, no traceback
        error = JobError("cycle_failed", "The cycle failed; nothing was stored. The server log says why.")
    finally:
        reporter.stopped.set()
        reporter.writer.join(timeout=60)  # its last write must not land after the outcome
        try:
            jobs.finish(job.id, summary, error)
        except Exception as exc:  # the row then ends as interrupted once its heartbeat is stale
            log.error("cycle %s: outcome not stored: %s", job.period, type(exc).__name__)


def _runs(app: Container, account: StaffAccount) -> list[dict[str, Any]]:
    """The recorded runs, newest first: counts and who started them, no personal data, so read under
    the administrator's own purpose (a unit of work: the guard wants a context for the table)."""
    with app.uow(AccessContext(Actor(account.id, account.role), PUBLICATION)) as uow:
        return uow.decisions.runs()


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303)


@router.get("/programs/cycles", response_model=None)
def cycles_page(request: Request, app: App, job: Annotated[str, Query(max_length=32)] = "") -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    jobs = SqlCycleJobs(app.engine, app.clock)
    shown = jobs.get(job) if job else jobs.latest()
    return _cycles(request, app, session, job=shown, stage_label=stage_label(shown) if shown else "")


def _cycles(
    request: Request, app: App, session: ActiveSession, error: DomainError | None = None, **page: Any
) -> Response:
    context: dict[str, Any] = {
        "session": session,
        "period": period_of(app.clock.today()),
        "job": None,
        "fresh_runs": None,
        **page,
    }
    try:
        account = program_admin(app, session)
    except DomainError as exc:
        return render_error(request, "cycles.html", exc, runs=None, **context)
    context["run_as"] = cycle_actor(account).id
    context["runs"] = _runs(app, account)
    if error is not None:
        return render_error(request, "cycles.html", error, **context)
    return render(request, "cycles.html", **context)


@router.post("/programs/cycles/run", response_model=None)
def run_cycle_page(
    request: Request,
    app: App,
    period: Annotated[str, Form(max_length=10)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Start a cycle; htmx gets the progress fragment, a plain post the page that polls it."""
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    fragment = request.headers.get("HX-Request") == "true"
    try:
        require_csrf(session, csrf_token)
        job = start_cycle(app, program_admin(app, session), period.strip())
    except DomainError as exc:
        if fragment:
            return render_error(request, "cycle_job.html", exc, job=None, fresh_runs=None)
        return _cycles(request, app, session, exc, period=period)
    if fragment:
        return render(request, "cycle_job.html", job=job, stage_label=stage_label(job), fresh_runs=None)
    return RedirectResponse(f"/programs/cycles?job={job.id}", status_code=303)


@router.get("/programs/cycles/progress/{job_id}", response_model=None)
def cycle_progress(request: Request, app: App, job_id: Annotated[str, Path(max_length=32)]) -> Response:
    """The polled fragment: stage and percent; once finished, the report and the refreshed run list."""
    session = session_of(request, app)
    if session is None:
        return Response(status_code=401)
    try:
        account = program_admin(app, session)
        job = SqlCycleJobs(app.engine, app.clock).get(job_id)
        if job is None:
            message = gettext("No hay ningún ciclo con este id.")
            raise NotFound("cycle_not_found", message)
    except DomainError as exc:
        return render_error(request, "cycle_job.html", exc, job=None, fresh_runs=None)
    fresh_runs = _runs(app, account) if job.finished else None
    return render(request, "cycle_job.html", job=job, stage_label=stage_label(job), fresh_runs=fresh_runs)
