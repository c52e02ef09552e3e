"""Errors as RFC 9457 problem details (application/problem+json) with a stable `code`.

The one place where error kinds become HTTP statuses; no stack traces or personal data leave.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from civicard.shared.errors import DomainError, ErrorKind

log = logging.getLogger("civicard.api")

STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.UNAVAILABLE: 503,
}
THROTTLED = frozenset({"too_many_attempts", "account_locked"})
PROBLEM = "application/problem+json"


def http_status(exc: DomainError) -> tuple[int, dict[str, str] | None]:
    """The HTTP status of a refusal, with Retry-After for throttling (details are never rendered)."""
    if exc.code in THROTTLED:
        retry = exc.details.get("retry_after_seconds")
        return 429, {"Retry-After": str(int(retry))} if isinstance(retry, int | float) else None
    return STATUS[exc.kind], None


def problem(
    status: int, code: str, title: str, detail: str, headers: Mapping[str, str] | None = None, **extra: object
) -> JSONResponse:
    body = {
        "type": f"https://civicard.example/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Methods the OpenAPI declares for this path (Starlette's 405 names only the first route's)."""
    paths: dict[str, dict[str, object]] = request.app.openapi()["paths"]
    if request.url.path in paths:  # a literal path wins over templates it also matches (/persons/{id})
        return sorted(m.upper() for m in paths[request.url.path])
    methods: set[str] = set()
    for template, operations in paths.items():
        regex, _, _ = compile_path(template)
        if regex.match(request.url.path):
            methods |= {m.upper() for m in operations}
    return sorted(methods)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        status, headers = http_status(exc)
        title = exc.kind.value.replace("_", " ").capitalize()
        return problem(status, exc.code, title, exc.message, headers=headers, **exc.public)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        return problem(
            422, "invalid_request", "Invalid request", "Some fields are missing or malformed.", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            allow = ", ".join(_allowed_methods(request))
            return problem(405, "method_not_allowed", "Method not allowed", f"Use {allow}.", headers={"Allow": allow})
        if exc.status_code == 400:  # the body could not be decoded at all (not JSON, not UTF-8)
            return problem(400, "malformed_request", "Malformed request", "The request body could not be read.")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail), headers=exc.headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # The database is unreachable or restarting: nothing was written (each request is one
        # transaction, or an idempotent claim a retry takes over); the client should retry.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem(
            503,
            "database_unavailable",
            "Service unavailable",
            "The database cannot be reached just now; nothing was changed. Try again in a few seconds.",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "Internal error", "Something went wrong; nothing was changed.")
