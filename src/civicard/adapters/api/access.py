"""Who is calling and why: sessions (staff and residents), terminals' signed requests, purposes.

Staff and residents present a session token — `Authorization: Bearer <token>` for API clients,
or the HttpOnly session cookie for pages. Cookie-authenticated unsafe requests must echo the
session's CSRF token (X-CSRF-Token header or `csrf_token` form field). Every request that touches
personal data names its purpose in X-Civicard-Purpose; the enforcement point checks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from civicard.adapters.db.auth_store import ActiveSession
from civicard.bootstrap import Container
from civicard.identity.principals import Principal
from civicard.identity.sessions import csrf_matches
from civicard.identity.terminal_auth import decode_signature
from civicard.shared.errors import Forbidden, InvalidInput, Unauthenticated
from civicard.transparency.access import AccessContext

SESSION_COOKIE = "civicard_session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_WORD = re.compile(r"^[a-z_]{1,60}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$", re.ASCII)


def container(request: Request) -> Container:
    found: Container = request.app.state.container
    return found


App = Annotated[Container, Depends(container)]


@dataclass(frozen=True)
class Caller:
    session: ActiveSession
    token: str
    via_cookie: bool

    @property
    def principal(self) -> Principal:
        return self.session.principal


def session_token(request: Request) -> tuple[str | None, bool]:
    """The presented token and whether it came from the cookie (ambient, so CSRF applies)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def caller(
    request: Request,
    app: App,
    x_csrf_token: Annotated[str | None, Header(description="Session CSRF token (cookie sessions only).")] = None,
) -> Caller:
    token, via_cookie = session_token(request)
    if not token:
        raise Unauthenticated("sign_in_required", "Sign in first (POST /v1/sessions) and send the session token.")
    session = app.auth.resolve_session(token)
    if via_cookie and request.method in UNSAFE_METHODS and not csrf_matches(session.csrf_token, x_csrf_token):
        raise Forbidden("csrf_failed", "The request did not carry this session's CSRF token.")
    return Caller(session, token, via_cookie)


def access_context(
    who: Annotated[Caller, Depends(caller)],
    x_civicard_purpose: Annotated[str | None, Header(description="Allow-listed purpose of this read or write.")] = None,
) -> AccessContext:
    if not x_civicard_purpose:
        raise Forbidden("purpose_required", "Name the purpose of this request in X-Civicard-Purpose.")
    if not _WORD.match(x_civicard_purpose):
        raise InvalidInput("unknown_purpose", "X-Civicard-Purpose must be an allow-listed purpose.")
    return AccessContext(who.principal.actor(), x_civicard_purpose)


def resident(who: Annotated[Caller, Depends(caller)]) -> Principal:
    if who.principal.kind != "resident":
        raise Forbidden("residents_only", "Only the card holder can read their own access log here.")
    return who.principal


@dataclass(frozen=True)
class SignedRequest:
    """A terminal's request as signed: who says they sent it, what, when, with which nonce."""

    terminal_id: str
    method: str
    target: str
    body: bytes
    timestamp: int
    nonce: str
    signature: bytes

    def verify(self, app: Container, conn: Connection | None = None, *, allow_revoked: bool = False) -> Principal:
        """The terminal's principal, if the signature, clock, nonce and registration hold."""
        return app.auth.verify_terminal_request(
            self.terminal_id,
            self.method,
            self.target,
            self.body,
            self.timestamp,
            self.nonce,
            self.signature,
            conn,
            allow_revoked=allow_revoked,
        )


async def signed_request(
    request: Request,
    x_civicard_terminal: Annotated[str, Header(max_length=32)],
    x_civicard_timestamp: Annotated[str, Header(max_length=20)],
    x_civicard_nonce: Annotated[str, Header(max_length=64)],
    x_civicard_signature: Annotated[str, Header(max_length=200)],
) -> SignedRequest:
    """The signed parts of a vendor terminal's request (not yet verified: no database needed)."""
    if not _TIMESTAMP.match(x_civicard_timestamp):
        raise InvalidInput("terminal_bad_request", "X-Civicard-Timestamp must be unix seconds.")
    signature = decode_signature(x_civicard_signature)
    target = request.scope["raw_path"].decode("latin-1")
    if request.scope.get("query_string"):
        target += "?" + request.scope["query_string"].decode("latin-1")
    body = await request.body()
    return SignedRequest(
        x_civicard_terminal, request.method, target, body, int(x_civicard_timestamp), x_civicard_nonce, signature
    )


async def terminal(app: App, signed: Annotated[SignedRequest, Depends(signed_request)]) -> Principal:
    """A vendor terminal's request, signed with its device key over the raw target and body."""
    principal: Principal = await run_in_threadpool(signed.verify, app)
    return principal


async def terminal_even_revoked(app: App, signed: Annotated[SignedRequest, Depends(signed_request)]) -> Principal:
    """Like `terminal`, but a revoked terminal's valid signature is accepted (to hand in receipts)."""
    principal: Principal = await run_in_threadpool(lambda: signed.verify(app, allow_revoked=True))
    return principal


Access = Annotated[AccessContext, Depends(access_context)]
Resident = Annotated[Principal, Depends(resident)]
Terminal = Annotated[Principal, Depends(terminal)]
TerminalEvenRevoked = Annotated[Principal, Depends(terminal_even_revoked)]
Signed = Annotated[SignedRequest, Depends(signed_request)]
