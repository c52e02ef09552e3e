"""Correction request pages: the resident's form and their requests (/me/corrections), and the
reviewer's queue with an answer per request (/reviewer/corrections).

The resident files under `correction_request` and reads under `self_access`; the reviewer reads and answers
under `correction_review`. Every view and every change is logged for the resident concerned.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.db.resident_store import SqlResidentUnitOfWork
from civicard.adapters.web.i18n import N_, gettext, translated, use_request_locale
from civicard.adapters.web.pages import render, render_error, require_csrf, session_of, staff_context
from civicard.adapters.web.resident_pages import resident_session
from civicard.registry import correction_requests as corrections
from civicard.registry.allowlist import allow_list
from civicard.shared.errors import DomainError
from civicard.transparency.access import AccessContext

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
PAGE = 50
NOTICES = {
    "filed": N_("Solicitud enviada: una persona revisora la estudiará y le responderá aquí."),
    "answered": N_("Respuesta guardada; la persona la verá en su página."),
}
STATUS_LABELS = {
    "open": N_("pendiente"),
    "corrected": N_("corregido"),
    "declined": N_("no corregido"),
}



def _notices(notice: list[str] | None) -> list[str]:
    return [gettext(NOTICES[n]) for n in notice or () if n in NOTICES]


# --- the resident -----------------------------------------------------------------------------


@router.get("/me/corrections", response_model=None)
def my_corrections_page(
    request: Request, app: App, notice: Annotated[list[str] | None, Query(max_length=40)] = None
) -> Response:
    session = resident_session(request, app)
    if session is None:
        return RedirectResponse("/me", status_code=303)
    return _my_corrections(request, app, session, notices=_notices(notice))


def _my_corrections(
    request: Request, app: App, session: ActiveSession, error: DomainError | None = None, **page: Any
) -> Response:
    me = session.principal
    context: dict[str, Any] = {
        "session": session,
        "categories": {c: allow_list().categories[c] for c in corrections.CATEGORIES},
        "statuses": translated(STATUS_LABELS),
        "max_details": corrections.MAX_DETAILS,
        **page,
    }
    try:
        with SqlResidentUnitOfWork(app.engine, AccessContext(me.actor(), corrections.SELF_ACCESS), app.clock) as uow:
            mine = corrections.my_correction_requests(uow, me.id)
    except DomainError as exc:
        return render_error(request, "me_corrections.html", exc, mine=None, **context)
    if error is not None:
        return render_error(request, "me_corrections.html", error, mine=mine, **context)
    return render(request, "me_corrections.html", mine=mine, **context)


@router.post("/me/corrections", response_model=None)
def request_correction_page(
    request: Request,
    app: App,
    category: Annotated[str, Form(max_length=40)] = "",
    details: Annotated[str, Form(max_length=20_000)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    session = resident_session(request, app)
    if session is None:
        return RedirectResponse("/me", status_code=303)
    me = session.principal
    try:
        require_csrf(session, csrf_token)
        with SqlResidentUnitOfWork(app.engine, AccessContext(me.actor(), corrections.FILING), app.clock) as uow:
            corrections.request_correction(uow, me.id, category, details)
    except DomainError as exc:  # the form comes back with what was typed
        return _my_corrections(request, app, session, exc, category=category, details=details)
    return RedirectResponse("/me/corrections?notice=filed", status_code=303)


# --- the reviewer -----------------------------------------------------------------------------


@router.get("/reviewer/corrections", response_model=None)
def correction_queue_page(
    request: Request,
    app: App,
    status: Annotated[str, Query(max_length=20)] = "open",
    after: Annotated[str, Query(max_length=32)] = "",
    notice: Annotated[list[str] | None, Query(max_length=40)] = None,
) -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    return _queue(request, app, session, status or "open", after, notices=_notices(notice))


def _queue(
    request: Request,
    app: App,
    session: ActiveSession,
    status: str,
    after: str = "",
    error: DomainError | None = None,
    **page: Any,
) -> Response:
    context: dict[str, Any] = {
        "session": session,
        "status": status,
        "statuses": translated(STATUS_LABELS),
        "categories": allow_list().categories,
        **page,
    }
    try:
        with SqlResidentUnitOfWork(app.engine, staff_context(session, corrections.REVIEW), app.clock) as uow:
            items = corrections.correction_queue(uow, [status], PAGE, after or None)
    except DomainError as exc:
        return render_error(request, "reviewer_corrections.html", exc, items=None, next_after=None, **context)
    next_after = items[-1].request.id if len(items) == PAGE else None
    if error is not None:
        return render_error(request, "reviewer_corrections.html", error, items=items, next_after=next_after, **context)
    return render(request, "reviewer_corrections.html", items=items, next_after=next_after, **context)


@router.post("/reviewer/corrections/{request_id}/answer", response_model=None)
def answer_correction_page(
    request: Request,
    app: App,
    request_id: str,
    outcome: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=20_000)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    try:
        require_csrf(session, csrf_token)
        with SqlResidentUnitOfWork(app.engine, staff_context(session, corrections.REVIEW), app.clock) as uow:
            corrections.answer_correction(uow, request_id, outcome, note)
    except DomainError as exc:
        return _queue(request, app, session, "open", error=exc, failed_request=request_id, note=note)
    return RedirectResponse("/reviewer/corrections?notice=answered", status_code=303)
