"""The resident's pages: sign-in by card handle + PIN, and "who read my data" with verified marks.

The log page verifies every entry on the server against the signed checkpoint (inclusion proof,
the resident's hash chain) and offers each entry's proof bundle for offline checking.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.api.session_routes import client_address
from civicard.adapters.db import log_store
from civicard.adapters.db.fallback_store import TerminalOutlet, terminal_outlets
from civicard.adapters.web.i18n import N_, gettext, use_request_locale
from civicard.adapters.web.pages import render, render_error, session_of, with_session_cookie
from civicard.identity.staff import StaffAccount
from civicard.shared.errors import DomainError
from civicard.transparency.access import AccessContext, purpose_policy
from civicard.transparency.proofs import verify_resident_log

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
FALLBACK_DETAIL = "redemption.fallback "
FALLBACK_NOTE = N_("sin PIN, foto verificada, con supervisor")


@router.get("/me", response_class=HTMLResponse)
def resident_sign_in_page(request: Request) -> HTMLResponse:
    return render(request, "resident_signin.html", handle="")


@router.post("/me/signin", response_model=None)
def resident_sign_in(
    request: Request,
    app: App,
    handle: Annotated[str, Form(max_length=20)] = "",
    pin: Annotated[str, Form(max_length=6)] = "",
) -> Response:
    try:
        signed = app.resident_sign_in.open_session(handle, pin, client_address(request))
    except DomainError as exc:
        return render_error(request, "resident_signin.html", exc, handle=handle)
    return with_session_cookie(request, RedirectResponse("/me/log", status_code=303), signed)


@router.get("/me/log", response_model=None)
def my_log(request: Request, app: App) -> Response:
    session = session_of(request, app)
    if session is None or session.principal.kind != "resident":
        return RedirectResponse("/me", status_code=303)
    me = session.principal
    with app.uow(AccessContext(me.actor(), "self_access")) as uow:
        log = log_store.resident_log(uow, me.id)
        terminals = {e.entry.actor for e in log.entries if e.entry.role == "vendor"}
        outlets = terminal_outlets(uow.connection, terminals)
    verification = verify_resident_log(log, app.log_signer.verifier)
    verdicts = {v.seq: v for v in verification.entries}
    staff = {a.id: a for a in app.auth.list_staff_accounts()}
    rows = [
        {
            "entry": e.entry,
            "leaf_index": e.leaf_index,
            "verdict": verdicts.get(e.entry.seq),
            "who": _who(e.entry.actor, e.entry.role, me.id, staff, outlets, e.entry.detail),
        }
        for e in reversed(log.entries)
    ]
    return render(
        request,
        "resident_log.html",
        session=session,
        rows=rows,
        verification=verification,
        checkpoint=log.checkpoint,
        purposes=purpose_policy().descriptions,
    )


def _who(
    actor: str,
    role: str,
    me: str,
    staff: Mapping[str, StaffAccount],
    outlets: Mapping[str, TerminalOutlet],
    detail: str = "",
) -> str:
    """A person reads 'Tienda La Esquina (vendor)', not a terminal id; staff by their display name.
    A sale without PIN says so, since the holder did not type it."""
    if actor == me:
        return gettext("Usted")
    outlet = outlets.get(actor) if role == "vendor" else None
    if outlet is not None:
        served = f" — {gettext(FALLBACK_NOTE)}" if detail.startswith(FALLBACK_DETAIL) else ""
        return f"{outlet.label} ({role}){served}"
    account = staff.get(actor)
    return f"{account.display_name} ({role})" if account else f"{actor} ({role})"
