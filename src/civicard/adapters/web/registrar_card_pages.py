"""The registrar's card desk for one household member: set or change the card's PIN, ask to unlock
a locked PIN, revoke the card, replace it (revoke and issue its successor in one transaction,
then print), or issue a new one. Every action runs in one card unit of work under the
`card_service` purpose and calls the same services as the CLI; the PIN travels only in the POST
body, typed twice, never shown back.

A locked PIN is not changed here: the registrar asks for it to be unlocked (four-eyes request
`pin_reset`, purpose `four_eyes`), another registrar or a reviewer approves it (POST
/v1/approvals/{id}/approve or `civicard approvals approve`), which clears the PIN, and the holder
then chooses a new one with this page's PIN form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.web.i18n import N_, gettext, translated, use_request_locale
from civicard.adapters.web.pages import render, render_error, require_csrf, session_of, staff_context
from civicard.governance.approvals import FOUR_EYES
from civicard.governance.kinds import pin_reset_subject, request_pin_unlock
from civicard.identity.cards import (
    CARD_SERVICE,
    REVOKE_REASONS,
    Card,
    issue_card,
    replace_card,
    reset_card_pin,
    revoke_card,
    set_card_pin,
)
from civicard.identity.credentials import format_handle
from civicard.registry import lookup
from civicard.shared.errors import Conflict, DomainError, InvalidInput, NotFound
from civicard.shared.ids import is_id

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
CARD_NOTICES = {
    "pin_set": N_("PIN guardado."),
    "pin_changed": N_("PIN cambiado."),
    "unlock_requested": N_("Desbloqueo pedido: otro registrador o un revisor debe aprobarlo."),
    "revoked": N_("Tarjeta revocada: deja de funcionar en todos los terminales."),
    "replaced": N_("Tarjeta reemplazada: la anterior queda revocada. Imprima la nueva."),
    "issued": N_("Tarjeta emitida. Imprímala."),
}
REVOKE_REASON_LABELS = {
    "lost": N_("perdida"),
    "stolen": N_("robada"),
    "damaged": N_("dañada"),
    "deceased": N_("fallecimiento del titular"),
    "fraud": N_("uso fraudulento"),
    "holder_request": N_("a petición del titular"),
    "data_changed": N_("cambio de datos"),
    "duplicate": N_("duplicada"),
}
_REASON_ORDER = [c for c in REVOKE_REASON_LABELS if c in REVOKE_REASONS]
_REASON_ORDER += sorted(REVOKE_REASONS - set(_REASON_ORDER))  # a code added to the service shows as itself
# The codes a clerk meets most here, in the page's language (others keep the service's words).
ERROR_TEXTS = {
    "csrf_failed": N_("El formulario caducó; recargue la página y vuelva a intentarlo."),
    "pin_format": N_("El PIN tiene de 4 a 6 cifras."),
    "pin_too_weak": N_("Ese PIN es fácil de adivinar (cifras repetidas o seguidas, o la fecha de nacimiento)."),
    "pin_mismatch": N_("Los dos PIN no coinciden; el titular debe escribir el mismo PIN dos veces."),
    "pin_already_set": N_("La tarjeta ya tiene un PIN."),
    "pin_reset_needs_approval": N_("El PIN está bloqueado: pida el desbloqueo a otro registrador o a un revisor."),
    "approval_already_pending": N_("Ya hay un pedido de desbloqueo esperando aprobación."),
    "card_changed": N_("La tarjeta cambió mientras tanto; revise la página de nuevo."),
    "card_exists": N_("La persona ya tiene una tarjeta: reemplácela en lugar de emitir otra."),
    "card_revoked": N_("La tarjeta ya está revocada."),
    "no_valid_card": N_("La persona no tiene una tarjeta vigente; emita una."),
    "invalid_reason": N_("Elija un motivo de la lista."),
    "confirmation_required": N_("Confirme que la tarjeta debe dejar de funcionar."),
    "person_held_for_review": N_("La inscripción espera una revisión de duplicados; emita la tarjeta después."),
    "not_a_member": N_("Esa persona no es miembro actual de este hogar."),
}
CardAction = Callable[[SqlApprovalUnitOfWork, Card | None], str]


@router.get("/registrar/households/{household_id}/members/{person_id}/card", response_model=None)
def card_page(
    request: Request, app: App, household_id: str, person_id: str, done: Annotated[str, Query(max_length=20)] = ""
) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    notice = gettext(CARD_NOTICES[done]) if done in CARD_NOTICES else None
    return _card(request, app, session, household_id, person_id, notice=notice, done=done if notice else "")


@router.post("/registrar/households/{household_id}/members/{person_id}/card/pin", response_model=None)
def set_pin_page(
    request: Request,
    app: App,
    household_id: str,
    person_id: str,
    card_id: Annotated[str, Form(max_length=32)] = "",
    pin: Annotated[str, Form(max_length=64)] = "",
    pin_again: Annotated[str, Form(max_length=64)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Set the card's first PIN (also after an approved unlock cleared it), or change one that is not
    locked, as the holder types it twice."""

    def action(uow: SqlCardUnitOfWork, card: Card | None) -> str:
        card = _existing(card)
        chosen = _chosen_pin(pin, pin_again) or ""
        if uow.cards.pin(card.id) is None:
            set_card_pin(uow, app.card_keys, card.handle, chosen)
            return "pin_set"
        reset_card_pin(uow, app.card_keys, card.handle, chosen)
        return "pin_changed"

    return _card_action(request, app, household_id, person_id, csrf_token, card_id, action)


@router.post("/registrar/households/{household_id}/members/{person_id}/card/pin-unlock", response_model=None)
def request_unlock_page(
    request: Request,
    app: App,
    household_id: str,
    person_id: str,
    card_id: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Ask a second registrar or a reviewer to unlock the card's locked PIN (four-eyes `pin_reset`)."""

    def action(uow: SqlApprovalUnitOfWork, card: Card | None) -> str:
        request_pin_unlock(uow, _existing(card).handle, reason)
        return "unlock_requested"

    return _card_action(request, app, household_id, person_id, csrf_token, card_id, action, FOUR_EYES)


@router.post("/registrar/households/{household_id}/members/{person_id}/card/revoke", response_model=None)
def revoke_page(
    request: Request,
    app: App,
    household_id: str,
    person_id: str,
    card_id: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=40)] = "",
    confirm: Annotated[str, Form(max_length=5)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Revoke for good (lost, stolen, deceased…); the status list is republished at once."""

    def action(uow: SqlCardUnitOfWork, card: Card | None) -> str:
        card = _existing(card)
        if confirm != "yes":
            raise InvalidInput("confirmation_required", "Confirm that the card must stop working.")
        revoke_card(uow, app.card_keys, card.handle, reason)
        return "revoked"

    return _card_action(request, app, household_id, person_id, csrf_token, card_id, action)


@router.post("/registrar/households/{household_id}/members/{person_id}/card/replace", response_model=None)
def replace_page(
    request: Request,
    app: App,
    household_id: str,
    person_id: str,
    card_id: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=40)] = "",
    pin: Annotated[str, Form(max_length=64)] = "",
    pin_again: Annotated[str, Form(max_length=64)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Revoke the card and issue its successor in one transaction (`replace_card`), then print."""

    def action(uow: SqlCardUnitOfWork, card: Card | None) -> str:
        card = _existing(card)
        replace_card(uow, app.card_keys, card.handle, reason, _chosen_pin(pin, pin_again))
        return "replaced"

    return _card_action(request, app, household_id, person_id, csrf_token, card_id, action)


@router.post("/registrar/households/{household_id}/members/{person_id}/card/issue", response_model=None)
def issue_page(
    request: Request,
    app: App,
    household_id: str,
    person_id: str,
    pin: Annotated[str, Form(max_length=64)] = "",
    pin_again: Annotated[str, Form(max_length=64)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """A new card for a member who has none valid (first card, or after a revocation)."""

    def action(uow: SqlCardUnitOfWork, _: Card | None) -> str:
        issue_card(uow, app.card_keys, person_id, _chosen_pin(pin, pin_again))
        return "issued"

    return _card_action(request, app, household_id, person_id, csrf_token, "", action)


def _card_action(
    request: Request,
    app: App,
    household_id: str,
    person_id: str,
    csrf_token: str,
    card_id: str,
    action: CardAction,
    purpose: str = CARD_SERVICE,
) -> Response:
    """One unit of work under `purpose` (card_service; four_eyes to ask for an unlock): the member's
    current card must be the one the form showed (`card_id`, or none for an issue); `action` calls
    the service and names the notice to show."""
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    try:
        require_csrf(session, csrf_token)
        with SqlApprovalUnitOfWork(app.engine, staff_context(session, purpose), app.clock) as uow:
            membership = uow.memberships.current_of_person(person_id) if is_id(person_id) else None
            if membership is None or membership.household_id != household_id:
                raise NotFound("not_a_member", "This person is not a current member of the household.")
            card = uow.cards.current_of_person(person_id)
            if (card.id if card else "") != card_id:
                raise Conflict("card_changed", "The card changed since the page was shown.")
            done = action(uow, card)
    except DomainError as exc:
        return _card(request, app, session, household_id, person_id, error=exc)
    path = f"/registrar/households/{quote(household_id, safe='')}/members/{quote(person_id, safe='')}/card"
    return RedirectResponse(f"{path}?done={done}", status_code=303)


def _card(
    request: Request,
    app: App,
    session: ActiveSession,
    household_id: str,
    person_id: str,
    *,
    error: DomainError | None = None,
    **page: Any,
) -> Response:
    reasons = translated(REVOKE_REASON_LABELS)
    context: dict[str, Any] = {
        "session": session,
        "household_id": household_id,
        "person_id": person_id,
        "reasons": [(code, reasons.get(code, code)) for code in _REASON_ORDER],
        **page,
    }
    try:
        with SqlApprovalUnitOfWork(app.engine, staff_context(session, CARD_SERVICE), app.clock) as uow:
            record = lookup.get_person(uow, person_id)
            if record.membership is None or record.membership.household_id != household_id:
                raise NotFound("not_a_member", "This person is not a current member of the household.")
            card = uow.cards.current_of_person(person_id)
            stored = uow.cards.pin(card.id) if card else None
            asked = uow.approvals.pending_for_subject(pin_reset_subject(card.id)) if card else None
    except DomainError as exc:
        return render_error(request, "registrar_card.html", _clear(error or exc), person=None, **context)
    pin_state = "none" if stored is None else "locked" if stored.counter.locked else "set"
    context |= {
        "person": record.person,
        "card": card,
        "handle": format_handle(card.handle) if card else "",
        "pin_state": pin_state,
        # A pending unlock request past its expiry can no longer be approved: ask again.
        "unlock_request": asked if asked and not asked.expired(app.clock.now()) else None,
    }
    if error is not None:
        return render_error(request, "registrar_card.html", _clear(error), **context)
    return render(request, "registrar_card.html", **context)


def _existing(card: Card | None) -> Card:
    if card is None:
        raise Conflict("no_valid_card", "This person has no card to change; issue one.")
    return card


def _chosen_pin(pin: str, pin_again: str) -> str | None:
    """The PIN the holder typed twice; None when both are left empty (the card gets none yet)."""
    if pin != pin_again:
        raise InvalidInput("pin_mismatch", "The two PINs differ.")
    return pin or None



def _clear(exc: DomainError) -> DomainError:
    """The refusal with its code unchanged and, where the page knows one, a message in the reader's language."""
    text = ERROR_TEXTS.get(exc.code)
    return type(exc)(exc.code, gettext(text)) if text else exc


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303)
