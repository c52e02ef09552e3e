"""The FastAPI application factory: receives a bootstrapped container, connects nothing itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from civicard import __version__
from civicard.adapters.api.access import App
from civicard.adapters.api.appeal_routes import router as appeal_router
from civicard.adapters.api.approval_routes import router as approval_router
from civicard.adapters.api.card_routes import router as card_router
from civicard.adapters.api.dedup_routes import router as dedup_router
from civicard.adapters.api.fallback_routes import router as fallback_router
from civicard.adapters.api.life_event_routes import router as life_event_router
from civicard.adapters.api.log_routes import router as log_router
from civicard.adapters.api.observability import configure_logging, install_observability, log_backlog
from civicard.adapters.api.offline_routes import router as offline_router
from civicard.adapters.api.problems import install_problem_handlers, problem
from civicard.adapters.api.program_routes import router as program_router
from civicard.adapters.api.redemption_routes import router as redemption_router
from civicard.adapters.api.registry_routes import router as registry_router
from civicard.adapters.api.security_headers import SecurityHeaders
from civicard.adapters.api.session_routes import router as session_router
from civicard.adapters.api.settlement_routes import router as settlement_router
from civicard.adapters.api.transparency_routes import router as transparency_router
from civicard.adapters.db.migrate import head_revision
from civicard.adapters.web.appeal_pages import router as appeal_pages_router
from civicard.adapters.web.card_pages import router as card_pages_router
from civicard.adapters.web.correction_pages import router as correction_pages_router
from civicard.adapters.web.cycle_pages import router as cycle_pages_router
from civicard.adapters.web.enroll_pages import router as enroll_pages_router
from civicard.adapters.web.life_event_pages import router as life_event_pages_router
from civicard.adapters.web.pages import mount_static
from civicard.adapters.web.pages import router as pages_router
from civicard.adapters.web.program_pages import router as program_pages_router
from civicard.adapters.web.registrar_pages import router as registrar_pages_router
from civicard.adapters.web.resident_download_pages import router as resident_download_router
from civicard.adapters.web.resident_pages import router as resident_router
from civicard.adapters.web.review_pages import router as review_pages_router
from civicard.adapters.web.terminal_pages import router as terminal_pages_router
from civicard.adapters.web.transparency_pages import router as transparency_pages_router
from civicard.bootstrap import Container


def create_app(container: Container) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        configure_logging(container.settings)  # JSON lines on stderr; uvicorn's raw-path access log off
        container.integrator.start()  # entries reach a signed checkpoint within about a second
        container.matcher.warm_up()  # the saved model loads and its SQL compiles before the first enrollment
        try:
            yield
        finally:
            container.integrator.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="civicard",
        version=__version__,
        description="Identity cards and need-based benefits, with an access log residents can verify. "
        "Every request that touches personal data names a purpose (X-Civicard-Purpose) and is logged.",
    )
    app.state.container = container
    install_problem_handlers(app)
    app.add_middleware(SecurityHeaders)  # CSP, no framing, no cross-site referrer, HSTS over HTTPS
    install_observability(app, container)  # request ids, one log line per request, GET /metrics
    app.include_router(registry_router)
    app.include_router(life_event_router)
    app.include_router(session_router)
    app.include_router(log_router)
    app.include_router(card_router)
    app.include_router(dedup_router)
    app.include_router(appeal_router)
    app.include_router(approval_router)
    app.include_router(program_router)
    app.include_router(offline_router)
    app.include_router(settlement_router)
    app.include_router(fallback_router)
    app.include_router(redemption_router)
    app.include_router(transparency_router)
    _health(app)
    app.include_router(pages_router)
    app.include_router(resident_router)
    app.include_router(resident_download_router)
    app.include_router(card_pages_router)
    app.include_router(registrar_pages_router)
    app.include_router(enroll_pages_router)
    app.include_router(life_event_pages_router)
    app.include_router(review_pages_router)
    app.include_router(appeal_pages_router)
    app.include_router(correction_pages_router)
    app.include_router(cycle_pages_router)
    app.include_router(program_pages_router)
    app.include_router(terminal_pages_router)
    app.include_router(transparency_pages_router)
    mount_static(app)
    return app


def _health(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready"}})
    def readyz(container: App) -> JSONResponse:
        """The database answers, its schema is at the code's migration head, and the access-log
        integrator works: its last poll succeeded and no entry has waited `log_stall_seconds` unfolded."""
        try:
            with container.engine.connect() as conn:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                at_head = current == head_revision()
                backlog = log_backlog(conn, container.clock.now()) if at_head else None
        except Exception:  # any database failure means not ready; the reason goes to the log only
            return problem(503, "database_unavailable", "Not ready", "The database does not answer.")
        if backlog is None:
            return problem(503, "schema_outdated", "Not ready", "Run `civicard db upgrade`.")
        if container.integrator.last_error is not None:
            return problem(503, "log_integrator_failing", "Not ready", "The access-log integrator is failing.")
        if backlog.stalled_seconds > container.settings.log_stall_seconds:
            waited = f"{backlog.entries} access-log entries have waited {backlog.stalled_seconds:.0f} s unfolded."
            return problem(503, "log_integrator_lagging", "Not ready", waited)
        return JSONResponse({"status": "ready", "schema": current})
