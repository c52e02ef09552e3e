"""Decision and appeal pages: the resident's "my decisions" with an appeal form per decision, and
the reviewer's appeal queue and case (decision, reasons, facts used, fact corrections, outcome).

The resident's pages run under `self_access` (reading) and `appeal` (filing); the reviewer's under
`appeal_review`, which also lets the reviewer correct a wrong fact from the case page.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.web.i18n import N_, gettext, translated, use_request_locale
from civicard.adapters.web.pages import render, render_error, require_csrf, session_of, staff_context
from civicard.adapters.web.resident_pages import resident_session
from civicard.programs import appeals
from civicard.registry import recording
from civicard.registry.facts import FACT_KINDS
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import DomainError, InvalidInput
from civicard.shared.ids import is_id
from civicard.transparency.access import AccessContext

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
PAGE = 100
NOTICES = {
    "filed": N_("Recurso presentado: una persona revisora lo estudiará."),
    "corrected": N_("Dato corregido. Decida el recurso para volver a evaluar el hogar."),
    "upheld": N_("Recurso desestimado: la decisión se mantiene."),
    "overturned": N_("Recurso estimado: el hogar fue evaluado de nuevo con los datos corregidos."),
}
STATUS_LABELS = {
    "open": N_("abierto"),
    "upheld": N_("desestimado (se mantiene)"),
    "overturned": N_("estimado (cambió)"),
}
DECISION_LABELS = {
    "eligible": N_("elegible"),
    "not_eligible": N_("no elegible"),
    "unknown": N_("sin decidir"),
}



def _notices(notice: list[str] | None) -> list[str]:
    return [gettext(NOTICES[n]) for n in notice or () if n in NOTICES]


# --- the resident -----------------------------------------------------------------------------


@router.get("/me/decisions", response_model=None)
def my_decisions_page(
    request: Request, app: App, notice: Annotated[list[str] | None, Query(max_length=40)] = None
) -> Response:
    session = resident_session(request, app)
    if session is None:
        return RedirectResponse("/me", status_code=303)
    return _my_decisions(request, app, session, notices=_notices(notice))


def _my_decisions(
    request: Request, app: App, session: ActiveSession, error: DomainError | None = None, **page: Any
) -> Response:
    me = session.principal
    try:
        with app.uow(AccessContext(me.actor(), appeals.SELF_ACCESS)) as uow:
            mine = appeals.my_decisions(uow, me.id)
    except DomainError as exc:
        return render_error(request, "me_decisions.html", exc, session=session, mine=None, **page)
    labels, statuses = translated(DECISION_LABELS), translated(STATUS_LABELS)
    context = {"session": session, "mine": mine, "labels": labels, "statuses": statuses, **page}
    if error is not None:
        return render_error(request, "me_decisions.html", error, **context)
    return render(request, "me_decisions.html", **context)


@router.post("/me/decisions/appeal", response_model=None)
def file_appeal_page(
    request: Request,
    app: App,
    decision_id: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=20_000)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    session = resident_session(request, app)
    if session is None:
        return RedirectResponse("/me", status_code=303)
    me = session.principal
    try:
        require_csrf(session, csrf_token)
        with app.uow(AccessContext(me.actor(), appeals.FILING)) as uow:
            appeals.file_appeal(uow, me.id, decision_id, reason)
    except DomainError as exc:  # the form comes back with what was typed
        return _my_decisions(request, app, session, exc, failed_decision=decision_id, reason=reason)
    return RedirectResponse("/me/decisions?notice=filed", status_code=303)


# --- the reviewer -----------------------------------------------------------------------------


@router.get("/reviewer/appeals", response_model=None)
def appeal_queue_page(
    request: Request,
    app: App,
    status: Annotated[str, Query(max_length=20)] = "open",
    after: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    page: dict[str, Any] = {"session": session, "status": status, "statuses": translated(STATUS_LABELS)}
    try:
        with app.uow(staff_context(session, appeals.REVIEW)) as uow:
            items = appeals.list_appeals(uow, [status or "open"], PAGE, after or None)
    except DomainError as exc:
        return render_error(request, "appeal_queue.html", exc, items=None, next_after=None, **page)
    next_after = items[-1].id if len(items) == PAGE else None
    return render(request, "appeal_queue.html", items=items, next_after=next_after, **page)


@router.get("/reviewer/appeals/{appeal_id}", response_model=None)
def appeal_case_page(
    request: Request,
    app: App,
    appeal_id: str,
    notice: Annotated[list[str] | None, Query(max_length=40)] = None,
) -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    return _case(request, app, session, appeal_id, notices=_notices(notice))


def _case(
    request: Request, app: App, session: ActiveSession, appeal_id: str, error: DomainError | None = None, **page: Any
) -> Response:
    try:
        with app.uow(staff_context(session, appeals.REVIEW)) as uow:
            case = appeals.open_case(uow, appeal_id)
    except DomainError as exc:
        return render_error(request, "appeal_case.html", exc, case=None, session=session, **page)
    names = {m.person_id: p.full_name if p else m.person_id[:8] for m, p in case.household.members}
    context = {
        "case": case,
        "session": session,
        "labels": translated(DECISION_LABELS),
        "statuses": translated(STATUS_LABELS),
        "names": names,
        "facts": [_fact_form(f) for f in case.household.facts],
        "staff": {a.id: a.display_name for a in app.auth.list_staff_accounts()},
        **page,
    }
    if error is not None:
        return render_error(request, "appeal_case.html", error, **context)
    return render(request, "appeal_case.html", **context)


@router.post("/reviewer/appeals/{appeal_id}/decision", response_model=None)
def decide_appeal_page(
    request: Request,
    app: App,
    appeal_id: str,
    outcome: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=20_000)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    try:
        require_csrf(session, csrf_token)
        with app.uow(staff_context(session, appeals.REVIEW)) as uow:
            decided = appeals.decide_appeal(uow, appeal_id, outcome, note)
    except DomainError as exc:
        return _case(request, app, session, appeal_id, exc, note=note)
    return _to_case(decided.appeal.id, [decided.appeal.status])


@router.post("/reviewer/appeals/{appeal_id}/corrections", response_model=None)
async def correct_fact_page(request: Request, app: App, appeal_id: str) -> Response:
    """Correct one current fact of the appellant's household (purpose appeal_review); the form
    carries the fact's kind and version id and one field per value (money in units)."""
    session = session_of(request, app)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str) and len(v) <= 2000}
    try:
        require_csrf(session, fields.get("csrf_token", ""))
        kind = FACT_KINDS.get(fields.get("kind", ""))
        version_id = fields.get("version_id", "")
        if kind is None or not is_id(version_id):
            raise InvalidInput("unknown_fact", gettext("Elija un dato que corregir."))
        values = {name: _value(kind.column(name).type, name, fields.get(f"value_{name}", "")) for name in kind.values}
        with app.uow(staff_context(session, appeals.REVIEW)) as uow:
            recording.correct_fact(uow, kind.name, version_id, values, fields.get("reason", ""))
    except DomainError as exc:
        return _case(request, app, session, appeal_id, exc)
    return _to_case(appeal_id, ["corrected"]) if is_id(appeal_id) else RedirectResponse("/reviewer/appeals", 303)


def _to_case(appeal_id: str, notices: list[str]) -> RedirectResponse:
    # The id was checked to be an id (the service refused anything else).
    return RedirectResponse(f"/reviewer/appeals/{appeal_id}?{urlencode([('notice', n) for n in notices])}", 303)


def _value(column_type: str, name: str, text: str) -> Any:
    """A form value as the fact services take it: money in units → céntimos, flags, codes, numbers."""
    text = text.strip()
    if column_type == "money":
        try:
            amount = Decimal(text.replace(",", ""))
            whole = amount.is_finite() and amount == amount.quantize(Decimal("0.01"))
        except InvalidOperation:
            whole = False
        if not whole:
            message = gettext("%(name)s: escriba un importe como 1250.50 (dos decimales como máximo).")
            raise InvalidInput("invalid_amount", message % {"name": name})
        return int(amount * 100)
    if column_type == "boolean":
        return text == "true"
    if column_type == "integer":
        if not text:
            return None
        if not text.isdigit() or len(text) > 3:
            message = gettext("%(name)s: escriba un número entero de 0 a 100.")
            raise InvalidInput("invalid_percent", message % {"name": name})
        return int(text)
    return text


def _fact_form(fact: Any) -> dict[str, Any]:
    """How a current fact is shown and corrected: each value with its input type and choices."""
    kind = FACT_KINDS[fact.kind]
    fields = []
    for name in kind.values:
        column = kind.column(name)
        value = fact.values.get(name)
        choices = vocabulary().labels(column.codes) if column.type == "code" and column.codes else None
        shown = f"{value / 100:.2f}" if column.type == "money" and value is not None else value
        fields.append(
            {"name": name, "type": column.type, "value": shown, "label": column.description, "choices": choices}
        )
    return {"fact": fact, "fields": fields}
