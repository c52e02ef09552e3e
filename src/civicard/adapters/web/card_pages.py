"""The registrar's card actions on the household page: issue a card (with the PIN the person
chooses at the desk) and print it as a CR80 PDF. Both run under the `card_service` purpose."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.web.i18n import gettext, use_request_locale
from civicard.adapters.web.pages import render_error, session_of, staff_context
from civicard.identity.cards import issue_card, print_cards
from civicard.identity.sessions import csrf_matches
from civicard.shared.errors import DomainError, Forbidden

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
CARD_SERVICE = "card_service"


@router.post("/registrar/persons/{person_id}/card", response_model=None)
def issue(
    request: Request,
    app: App,
    person_id: str,
    household_id: Annotated[str, Form(max_length=32)],
    pin: Annotated[str, Form(max_length=6)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    try:
        if not csrf_matches(session.csrf_token, csrf_token):
            raise Forbidden("csrf_failed", gettext("El formulario caducó; recargue la página y vuelva a intentarlo."))
        with SqlCardUnitOfWork(app.engine, staff_context(session, CARD_SERVICE), app.clock) as uow:
            issue_card(uow, app.card_keys, person_id, pin=pin or None)
    except DomainError as exc:
        return render_error(request, "household.html", exc, record=None, purpose=CARD_SERVICE, session=session)
    return RedirectResponse(f"/registrar/households/{household_id}?purpose={CARD_SERVICE}", status_code=303)


@router.get("/registrar/persons/{person_id}/card.pdf", response_model=None)
def print_card(request: Request, app: App, person_id: str) -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    try:
        with SqlCardUnitOfWork(app.engine, staff_context(session, CARD_SERVICE), app.clock) as uow:
            pdf = print_cards(uow, app.card_keys, [person_id])
    except DomainError as exc:
        return render_error(request, "household.html", exc, record=None, purpose=CARD_SERVICE, session=session)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": 'inline; filename="civicard-card.pdf"', "Cache-Control": "no-store"},
    )
