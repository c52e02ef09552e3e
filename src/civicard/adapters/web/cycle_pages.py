"""The cycle pages: the runs recorded, and "run a cycle" for a period with its progress.

A cycle runs in a thread of the server process (one at a time); the page polls its stage and
percent with htmx every second and shows the report when it is done. The run is one unit of work,
as on the command line: all of it commits, or nothing does (a failed run leaves no row; the page
shows why).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.bulk.cycle import CycleReport, run_cycle
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.web.i18n import N_, gettext, use_request_locale
from civicard.adapters.web.pages import render, render_error, require_csrf, session_of
from civicard.adapters.web.program_pages import program_admin
from civicard.bootstrap import Container
from civicard.identity.staff import StaffAccount
from civicard.programs.cycles import period_of, period_start
from civicard.shared.errors import Conflict, DomainError, NotFound, Unavailable
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
_STATE_LOCK = threading.Lock()


def cycle_actor(account: StaffAccount) -> Actor:
    """The system actor a web-started cycle runs as, named after the administrator (see module doc)."""
    return Actor(f"staff:{account.username}", "system")


@dataclass
class CycleJob:
    """A cycle started from the page: where it is, and its report or error once it ends."""

    id: str
    period: str
    started_by: str
    started_at: datetime
    stage: tuple[str, int, int] = ("start", 0, 0)  # replaced whole, so a poll never sees half of it
    report: CycleReport | None = None
    error: DomainError | None = None
    finished: bool = False

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage = (stage, done, total)

    @property
    def percent(self) -> int:
        _, done, total = self.stage
        return 100 if self.finished else int(100 * done / total) if total else 0

    @property
    def stage_label(self) -> str:
        """In the reader's language: the progress fragment reads it while it renders."""
        stage = self.stage[0]
        return gettext(STAGES[stage]) if stage in STAGES else stage


@dataclass
class CycleJobs:
    """The cycles this server process started. One runs at a time: a second would only wait on the
    first one's transaction, and two runs of one period must not race to supersede decisions."""

    jobs: dict[str, CycleJob] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, job: CycleJob, work: Callable[[CycleJob], CycleReport]) -> None:
        with self.lock:
            running = [j for j in self.jobs.values() if not j.finished]
            if running:
                message = gettext("Hay un ciclo de %(period)s en curso; espere a que termine.")
                raise Conflict("cycle_running", message % {"period": running[0].period})
            self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, work), name=f"cycle-{job.period}", daemon=True).start()

    def _run(self, job: CycleJob, work: Callable[[CycleJob], CycleReport]) -> None:
        try:
            job.report = work(job)
            job.stage = ("done", 1, 1)
        except DomainError as exc:
            job.error = exc
        except Exception as exc:  # the thread must end the job whatever happened, or the page polls forever
            log.error("cycle %s failed: %s", job.period, type(exc).__name__)  # no data, no traceback
            job.error = Unavailable("cycle_failed", "The cycle failed; nothing was stored. The server log says why.")
        finally:
            job.finished = True

    def get(self, job_id: str) -> CycleJob | None:
        return self.jobs.get(job_id)

    def latest(self) -> CycleJob | None:
        return max(self.jobs.values(), key=lambda j: j.started_at, default=None)


def cycle_jobs(request: Request) -> CycleJobs:
    """The application's job list, made on first use (on the app's state: one per server)."""
    state = request.app.state
    with _STATE_LOCK:
        jobs = getattr(state, "cycle_jobs", None)
        if jobs is None:
            jobs = state.cycle_jobs = CycleJobs()
    return jobs


def start_cycle(app: Container, jobs: CycleJobs, account: StaffAccount, period: str) -> CycleJob:
    period_start(period)  # a malformed period is refused here, not in the thread
    actor = cycle_actor(account)
    job = CycleJob(new_id(), period, actor.id, app.clock.now())

    def work(job: CycleJob) -> CycleReport:
        with app.uow(AccessContext(actor, CYCLE_RUN)) as uow:
            report = run_cycle(uow, period, app.settings.data_dir / "cycles", None, job.progress)
            uow.commit()
        return report

    jobs.start(job, work)
    return job


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
    jobs = cycle_jobs(request)
    return _cycles(request, app, session, job=jobs.get(job) if job else jobs.latest())


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
        job = start_cycle(app, cycle_jobs(request), program_admin(app, session), period.strip())
    except DomainError as exc:
        if fragment:
            return render_error(request, "cycle_job.html", exc, job=None, fresh_runs=None)
        return _cycles(request, app, session, exc, period=period)
    if fragment:
        return render(request, "cycle_job.html", job=job, fresh_runs=None)
    return RedirectResponse(f"/programs/cycles?job={job.id}", status_code=303)


@router.get("/programs/cycles/progress/{job_id}", response_model=None)
def cycle_progress(request: Request, app: App, job_id: Annotated[str, Path(max_length=32)]) -> Response:
    """The polled fragment: stage and percent; once finished, the report and the refreshed run list."""
    session = session_of(request, app)
    if session is None:
        return Response(status_code=401)
    try:
        account = program_admin(app, session)
        job = cycle_jobs(request).get(job_id)
        if job is None:
            message = gettext("Este servidor no tiene ningún ciclo con este id (¿se reinició?).")
            raise NotFound("cycle_not_found", message)
    except DomainError as exc:
        return render_error(request, "cycle_job.html", exc, job=None, fresh_runs=None)
    return render(request, "cycle_job.html", job=job, fresh_runs=_runs(app, account) if job.finished else None)
