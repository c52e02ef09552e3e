"""The registrar's life-event desk, reached from the household page: record a death, a birth, a
household split or merge, or a move (purpose `life_event`), and see the household's events.

Every handler opens the life-event unit of work with the clerk's AccessContext and calls the same
services as /v1/life-events, so the enforcement point logs each read and write.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.db.life_event_store import SqlLifeEventUnitOfWork
from civicard.adapters.web.i18n import N_, gettext, use_request_locale
from civicard.adapters.web.pages import render, render_error, require_csrf, session_of, staff_context
from civicard.bootstrap import Container
from civicard.registry import life_events, lookup
from civicard.registry.life_events import LIFE_EVENT, LifeEvent, NewAddress, RecordBirth
from civicard.shared.errors import DomainError, InvalidInput

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
KIND_LABELS = {
    "death": N_("Fallecimiento"),
    "birth": N_("Nacimiento"),
    "household_split": N_("División del hogar"),
    "household_merge": N_("Unión de hogares"),
    "move": N_("Cambio de domicilio"),
}
NOTICES = {
    "death": N_("Fallecimiento registrado: la persona sale del hogar y sus tarjetas quedan revocadas."),
    "birth": N_("Nacimiento registrado: el niño o la niña figura en el hogar desde su nacimiento."),
    "household_split": N_("División registrada: los miembros elegidos forman un hogar nuevo."),
    "household_merge": N_("Unión registrada: los miembros se incorporaron a este hogar."),
    "move": N_("Cambio de domicilio registrado para el hogar y sus miembros."),
}
ERROR_TEXTS = {
    "csrf_failed": N_("El formulario caducó; recargue la página y vuelva a intentarlo."),
    "missing_document_ref": N_("Escriba la referencia del documento que lo acredita."),
    "invalid_document_ref": N_("La referencia del documento tiene de 3 a 60 letras, cifras, «/», «.» o «-»."),
    "date_in_future": N_("La fecha no puede ser futura."),
    "date_before_birth": N_("La fecha es anterior al nacimiento de la persona."),
    "invalid_date": N_("Escriba una fecha válida (AAAA-MM-DD)."),
    "missing_reason": N_("Escriba el motivo."),
    "already_deceased": N_("El fallecimiento de esta persona ya está registrado."),
    "one_reference_person": N_("Elija exactamente una persona de referencia para el hogar nuevo."),
    "split_takes_everyone": N_("Se irían todos: registre un cambio de domicilio del hogar."),
    "possible_duplicates": N_(
        "Puede que esta persona ya esté inscrita; compruébelo y marque «es una persona nueva» para continuar."
    ),
}
_FORMS = ("death", "birth", "household_split", "household_merge", "move")


def events_shown(events: list[LifeEvent], person_id: str | None = None) -> list[dict[str, Any]]:
    """Events as a page lists them: label in the page's language, date, and whether about `person_id`."""
    return [
        {
            "event": e,
            "label": gettext(KIND_LABELS[e.kind]),
            "about_person": person_id is not None and e.person_id == person_id,
        }
        for e in events
    ]


@router.get("/registrar/households/{household_id}/life-events", response_model=None)
def life_events_page(request: Request, app: App, household_id: str, done: str = "") -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    notice = gettext(NOTICES[done]) if done in NOTICES else None
    return _page(request, app, session, household_id, notice=notice, done=done)


@router.post("/registrar/households/{household_id}/life-events/{kind}", response_model=None)
async def record_life_event_page(request: Request, app: App, household_id: str, kind: str) -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    form = await request.form()
    typed = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        require_csrf(session, typed.get("csrf_token", ""))
        if kind not in _FORMS:
            raise InvalidInput("unknown_life_event", "Unknown kind of life event.")
        with SqlLifeEventUnitOfWork(app.engine, staff_context(session, LIFE_EVENT), app.clock) as uow:
            event = _record(uow, app, kind, household_id, typed)
    except DomainError as exc:
        return _page(request, app, session, household_id, error=exc, typed=typed, opened=kind)
    target = event.other_household_id if kind == "household_merge" and event.other_household_id else household_id
    return RedirectResponse(f"/registrar/households/{target}/life-events?done={kind}", status_code=303)


def _record(
    uow: SqlLifeEventUnitOfWork, app: Container, kind: str, household_id: str, typed: dict[str, str]
) -> LifeEvent:
    reason = typed.get("reason", "")
    if kind == "death":
        day = _day(typed.get("died_on", ""))
        return life_events.record_death(
            uow, app.card_keys, typed.get("person_id", ""), day, typed.get("document_ref", ""), reason
        )
    if kind == "birth":
        birth = RecordBirth(
            household_id=household_id,
            given_names=typed.get("given_names", ""),
            first_surname=typed.get("first_surname", ""),
            second_surname=typed.get("second_surname", ""),
            birth_date=_day(typed.get("birth_date", "")),
            birth_place=typed.get("birth_place", ""),
            sex=typed.get("sex", ""),
            relationship=typed.get("relationship", "child"),
            document_ref=typed.get("document_ref", ""),
            reason=reason,
            confirmed_new_person=typed.get("confirmed_new_person") == "yes",
        )
        return life_events.record_birth(uow, birth, app.matcher)
    day = _day(typed.get("effective_on", ""))
    if kind == "household_merge":
        into = typed.get("into_household_id", "").strip()
        return life_events.merge_households(uow, household_id, into, day, reason, matcher=app.matcher)
    address = NewAddress(typed.get("municipality", ""), typed.get("address_line", ""), typed.get("postcode", ""))
    if kind == "move":
        return life_events.move_household(uow, household_id, address, day, reason, app.matcher)
    members = {k.removeprefix("leaves_"): v for k, v in typed.items() if k.startswith("leaves_") and v}
    return life_events.split_household(uow, household_id, members, address, day, reason, app.matcher)


def _page(
    request: Request,
    app: App,
    session: ActiveSession,
    household_id: str,
    *,
    error: DomainError | None = None,
    typed: dict[str, str] | None = None,
    opened: str = "",
    **page: Any,
) -> Response:
    context: dict[str, Any] = {"session": session, "household_id": household_id, "typed": typed or {}, **page}
    context |= {"opened": opened, "today": app.clock.today().isoformat()}
    try:
        with SqlLifeEventUnitOfWork(app.engine, staff_context(session, LIFE_EVENT), app.clock) as uow:
            record = lookup.get_household(uow, household_id)
            events = life_events.events_of_household(uow, household_id)
    except DomainError as exc:
        return render_error(request, "registrar_life_events.html", _clear(exc), record=None, **context)
    context |= {"record": record, "events": events_shown(events)}
    if error is not None:
        return render_error(request, "registrar_life_events.html", _clear(error), **context)
    return render(request, "registrar_life_events.html", **context)


def _clear(exc: DomainError) -> DomainError:
    """The refusal with the page-language message for the codes a clerk meets most."""
    if exc.code in ERROR_TEXTS:
        clear = type(exc)(exc.code, gettext(ERROR_TEXTS[exc.code]))
        clear.public = exc.public
        return clear
    return exc


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput("invalid_date", "Write the date as YYYY-MM-DD.") from None
