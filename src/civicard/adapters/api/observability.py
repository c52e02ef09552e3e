"""Observability: request ids, JSON logs without personal data, Prometheus metrics, the log backlog.

Logs. `configure_logging` gives the process one handler on the root logger (stderr; one JSON object
a line, or plain text: CIVICARD_LOG_FORMAT) and silences uvicorn's access log, which would write
the raw path, the query string and the client address. `ObservedRequests` writes one line per
request instead: method, route *template* (`/v1/persons/{person_id}`), status and duration, under
the request id (a caller's `X-Request-Id` if it is a hex or UUID token, else a new one; echoed in
the response). Every line logged during a request carries its id; messages have that request's raw
path, query and path values replaced by the template, and exceptions are reduced to their type and
where civicard raised them — never a message (a driver's can quote values) or a stack trace.

Metrics (GET /metrics, text format; `metrics_token` set → `Authorization: Bearer <token>`). Labels
are route templates, status classes, redemption channels and stable outcome codes: never an id, a
path or a name. The duplicate queue's length is read through `guard.count_unlogged`, the guard's
one fixed exception: a whole-table count that reads no personal column. Going through a unit of
work would append a subjectless access-log entry at every scrape, which tells no resident anything.

Several uvicorn workers: set PROMETHEUS_MULTIPROC_DIR to an empty directory before the server
starts (prometheus-client reads it when first imported). Each worker then writes its counters and
histograms to files there and /metrics, answered by whichever worker, adds them up; the figures
read from the database at scrape time are the same in every worker. Empty the directory at each
restart.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from civicard.adapters.api.problems import problem
from civicard.adapters.db import tables as t
from civicard.adapters.db.guard import OPEN_DUPLICATE_CANDIDATES, count_unlogged
from civicard.settings import LogFormat, Settings
from civicard.shared.clock import as_utc
from civicard.shared.errors import DomainError

if TYPE_CHECKING:  # a light import for bulk/cycle.py, which only needs the cycle timer
    from civicard.bootstrap import Container

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("civicard.metrics")
access_log = logging.getLogger("civicard.access")

HANDLER_NAME = "civicard"
UNMATCHED = "unmatched"  # the route label of a request no route matched (its path is never a label)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes log at DEBUG
_REQUEST_ID = re.compile(rb"[0-9A-Fa-f-]{16,64}")  # hex or a UUID: nothing a name or a sentence fits in
_CODE = re.compile(r"[a-z0-9_]{1,48}")  # outcome labels: stable machine codes only (bounded cardinality)

HTTP_DURATION = Histogram(
    "civicard_http_request_duration_seconds",
    "Requests by method, route template and status class; _count is the request rate.",
    ("method", "route", "status_class"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)
REDEMPTIONS = Counter(
    "civicard_redemptions",
    "Redemption answers by channel (online, fallback, offline) and outcome (approved or the refusal code).",
    ("channel", "outcome"),
    registry=None,
)
CYCLE_DURATION = Histogram(
    "civicard_cycle_duration_seconds",
    "Benefit cycle runs (run_cycle) by outcome: done, a refusal code, or failed.",
    ("outcome",),
    buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0, 7200.0),
    registry=None,
)
_PROCESS_METRICS = (HTTP_DURATION, REDEMPTIONS, CYCLE_DURATION)


# --------------------------------------------------------------------------- logs


@dataclass(frozen=True)
class _Current:
    request_id: str
    scope: Scope  # routing adds "route" and "path_params" to this same dict


_CURRENT: ContextVar[_Current | None] = ContextVar("civicard_request", default=None)


def route_template(scope: Scope) -> str:
    """The matched route's path template, `unmatched` if none: what labels and logs name."""
    route = scope.get("route")
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def _scrubbed(message: str, scope: Scope) -> str:
    """`message` with the request's query, raw path and path values replaced (a safety net: a
    handler that logs `request.url.path` must not put an id in the log)."""
    query = scope.get("query_string", b"").decode("latin-1")
    if query:
        message = message.replace(query, "…")
    path, template = scope.get("path", ""), route_template(scope)
    if len(path) > 1 and path != template:
        message = message.replace(path, template)
    for name, value in scope.get("path_params", {}).items():
        if isinstance(value, str) and len(value) >= 8:
            message = message.replace(value, f"{{{name}}}")
    return message


def _where(exc: BaseException) -> str:
    """The exception's type and the innermost civicard frame it passed through."""
    where = ""
    for frame, line in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if "civicard" in filename or not where:
            short = filename.rsplit("/src/", 1)[-1].rsplit("/site-packages/", 1)[-1]
            where = f"{short}:{line} in {frame.f_code.co_name}"
    return f"{type(exc).__name__} at {where}" if where else type(exc).__name__


def _entry(record: logging.LogRecord) -> dict[str, Any]:
    current = _CURRENT.get()
    message = record.getMessage()
    entry: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": _scrubbed(message, current.scope) if current else message,
        "request_id": current.request_id if current else None,
    }
    if current is not None:
        entry["method"] = current.scope.get("method")
        entry["route"] = route_template(current.scope)
    for key in ("status", "duration_ms"):
        if (value := record.__dict__.get(key)) is not None:
            entry[key] = value
    if record.exc_info and record.exc_info[1] is not None:
        entry["error"] = _where(record.exc_info[1])
    return entry


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_entry(record), ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        e = _entry(record)
        extra = " ".join(f"{k}={e[k]}" for k in ("route", "status", "duration_ms", "error") if k in e)
        line = f"{e['time']} {e['level']:<7} {e['logger']} [{e['request_id'] or '-'}] {e['message']}"
        return f"{line}  ({extra})" if extra else line


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is when a record arrives (a test's capture sees the lines)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # logging's contract: report on stderr, never raise into the caller
            self.handleError(record)


def configure_logging(settings: Settings) -> None:
    """The process's log output: one stderr handler on the root logger, uvicorn's loggers through
    it, and uvicorn's access log off (ObservedRequests logs each request). Idempotent."""
    handler = _StderrHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if settings.log_format is LogFormat.JSON else PlainFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = name != "uvicorn.access"


# --------------------------------------------------------------------------- requests


class ObservedRequests:
    """ASGI middleware: request id in and out, one log line and one histogram sample per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        echoed = (b"x-request-id", request_id.encode())
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        token = _CURRENT.set(_Current(request_id, scope))
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            _observe(scope, status, started)
            raise  # the id stays set: the 500 handler outside this middleware logs under it
        _observe(scope, status, started)
        _CURRENT.reset(token)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
            return str(value.decode("ascii"))
    return secrets.token_hex(16)


def _observe(scope: Scope, status: int, started: float) -> None:
    seconds = time.perf_counter() - started
    method = scope["method"] if scope["method"] in _METHODS else "OTHER"
    route = route_template(scope)
    HTTP_DURATION.labels(method, route, f"{status // 100}xx").observe(seconds)
    level = logging.DEBUG if route in _QUIET else logging.ERROR if status >= 500 else logging.INFO
    if access_log.isEnabledFor(level):
        extra = {"status": status, "duration_ms": round(seconds * 1000, 1)}
        access_log.log(level, "%s %s %d", method, route, status, extra=extra)


# --------------------------------------------------------------------------- counters


def record_redemption(channel: str, outcome: str) -> None:
    """Count one redemption answer: `approved`, or the refusal's stable code."""
    REDEMPTIONS.labels(channel, outcome if _CODE.fullmatch(outcome) else "other").inc()


def record_redemptions(channel: str, outcomes: Iterable[str]) -> None:
    for outcome in outcomes:
        record_redemption(channel, outcome)


def observed_cycle(run: Callable[P, R]) -> Callable[P, R]:
    """Time each call in civicard_cycle_duration_seconds (the run, not the caller's commit)."""

    @wraps(run)
    def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        started, outcome = time.perf_counter(), "failed"
        try:
            result = run(*args, **kwargs)
            outcome = "done"
            return result
        except DomainError as refused:
            outcome = refused.code if _CODE.fullmatch(refused.code) else "other"
            raise
        finally:
            CYCLE_DURATION.labels(outcome).observe(time.perf_counter() - started)

    return timed


# --------------------------------------------------------------------------- database figures


@dataclass(frozen=True)
class LogBacklog:
    """Access-log entries above the highest one folded into the tree (an entry committed late
    below it is folded by the integrator's lookback within a poll, and not counted here)."""

    entries: int  # seq distance: exact unless sequence gaps (rolled-back inserts) lie in between
    oldest_waiting_seconds: float  # how long the first waiting entry has waited
    stalled_seconds: float  # how long entries have waited with the integrator folding none


def log_backlog(conn: Connection, now: datetime) -> LogBacklog:
    """Four index lookups (both maxima, the first waiting entry, the newest leaf), on any log size."""
    a, leaves = t.access_log.c, t.log_leaves.c
    folded = int(conn.execute(select(func.max(leaves.entry_seq))).scalar() or 0)
    newest = int(conn.execute(select(func.max(a.seq))).scalar() or 0)
    waiting = conn.execute(select(a.occurred_at).where(a.seq > folded).order_by(a.seq).limit(1)).scalar()
    if newest <= folded or waiting is None:
        return LogBacklog(0, 0.0, 0.0)
    since = as_utc(waiting)
    last_fold = conn.execute(select(leaves.integrated_at).order_by(leaves.leaf_index.desc()).limit(1)).scalar()
    stalled_since = since if last_fold is None else max(since, as_utc(last_fold))
    return LogBacklog(
        newest - folded, max(0.0, (now - since).total_seconds()), max(0.0, (now - stalled_since).total_seconds())
    )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class _DatabaseFigures:
    """Figures computed at scrape time from the database (the same whichever worker answers)."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def collect(self) -> Iterable[Metric]:
        app = self.container
        failing = float(app.integrator.last_error is not None)
        yield _gauge("civicard_log_integrator_failing", "1 if this process's integrator failed its last poll.", failing)
        try:
            with app.engine.connect() as conn:
                backlog = log_backlog(conn, app.clock.now())
                queue = count_unlogged(conn, OPEN_DUPLICATE_CANDIDATES)
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer: %s", type(exc).__name__)
            yield _gauge("civicard_database_up", "1 if the database answered this scrape.", 0)
            return
        yield _gauge("civicard_database_up", "1 if the database answered this scrape.", 1)
        yield _gauge(
            "civicard_log_backlog_entries", "Access-log entries not yet folded into the tree.", backlog.entries
        )
        yield _gauge(
            "civicard_log_backlog_oldest_seconds",
            "Age of the oldest access-log entry not yet in a signed checkpoint.",
            backlog.oldest_waiting_seconds,
        )
        yield _gauge(
            "civicard_log_backlog_stalled_seconds",
            "How long entries have waited with the integrator folding none (/readyz limit: log_stall_seconds).",
            backlog.stalled_seconds,
        )
        yield _gauge("civicard_dedup_queue_candidates", "Possible duplicates awaiting review (open, unsure).", queue)


# --------------------------------------------------------------------------- wiring


def metrics_registry(container: Container) -> CollectorRegistry:
    """This process's metrics, or every worker's when PROMETHEUS_MULTIPROC_DIR is set."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # it registers itself
    else:
        for metric in _PROCESS_METRICS:
            registry.register(metric)
        ProcessCollector(registry=registry)  # process_*: CPU, memory, open files
    registry.register(_DatabaseFigures(container))
    return registry


def install_observability(app: FastAPI, container: Container) -> None:
    """The request middleware and GET /metrics (left out of the OpenAPI: it is for the scraper)."""
    registry = metrics_registry(container)
    app.add_middleware(ObservedRequests)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        token = container.settings.metrics_token
        if token is not None and not _bearer_matches(request, token.get_secret_value()):
            return problem(
                401,
                "metrics_token_required",
                "Unauthenticated",
                "Send the metrics token as Authorization: Bearer <token>.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(presented.strip().encode(), token.encode())
