"""The reviewer's pages: the duplicate queue, a case side by side with the model's reasons, the
decision (same / different / unsure) and the merge history with undo. Everything runs under the
`duplicate_review` purpose; opening a case logs the read for both persons."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.db.dedup_store import SqlReviewUnitOfWork
from civicard.adapters.web.pages import render, render_error, session_of, staff_context
from civicard.bootstrap import Container
from civicard.dedup import merging, review
from civicard.dedup.cases import CANDIDATE_STATUSES, Case, CaseSide
from civicard.identity.sessions import csrf_matches
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import DomainError, Forbidden

router = APIRouter(include_in_schema=False)
DUPLICATE_REVIEW = "duplicate_review"
PAGE = 100
NOTICES = {
    "same": "Registros unidos: el otro registro es ahora un alias. / Records merged: the other record is now an alias.",
    "different": "Decidido: son personas distintas; no se volverá a proponer. / Decided: different people; "
    "this pair will not be raised again.",
    "unsure": "Marcado como dudoso: sigue en la cola. / Marked unsure: it stays in the queue.",
    "pin": "El registro que queda recibió una tarjeta de reemplazo sin PIN: fíjelo en la ventanilla. / The "
    "surviving record got a replacement card without a PIN: set it at the desk.",
    "undone": "Unión deshecha: el registro vuelve a ser independiente. / Merge undone: the record stands on its own.",
    "restored": "Volvió a su hogar. / It rejoined its household.",
    "reference_person_exists": "No volvió a su hogar: el hogar ya tiene otra persona de referencia. / It did not "
    "rejoin its household: the household has another reference person.",
    "already_in_household": "No volvió a su hogar: ya pertenece a otro. / It did not rejoin its household: it "
    "already belongs to another one.",
    "membership_missing": "No se encontró su hogar anterior. / Its former household membership was not found.",
    "card_needed": "Su tarjeta fue revocada y sigue revocada: emita una nueva. / Its card was revoked and stays "
    "revoked: issue a new one.",
}


def _uow(app: Container, session: ActiveSession) -> SqlReviewUnitOfWork:
    return SqlReviewUnitOfWork(app.engine, staff_context(session, DUPLICATE_REVIEW), app.clock)


def _require_csrf(session: ActiveSession, token: str) -> None:
    if not csrf_matches(session.csrf_token, token):
        raise Forbidden("csrf_failed", "The form has expired; reload the page and try again.")


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303)


@router.get("/reviewer", response_model=None)
def queue_page(
    request: Request,
    app: App,
    status: Annotated[str, Query(max_length=20)] = "",
    after: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    page: dict[str, Any] = {"session": session, "status": status, "statuses": CANDIDATE_STATUSES}
    try:
        with _uow(app, session) as uow:
            items = review.list_queue(uow, [status] if status else None, PAGE, after or None)
    except DomainError as exc:
        return render_error(request, "review_queue.html", exc, items=None, next_after=None, **page)
    next_after = items[-1].candidate.id if len(items) == PAGE else None
    return render(request, "review_queue.html", items=items, next_after=next_after, **page)


@router.get("/reviewer/cases/{candidate_id}", response_model=None)
def case_page(
    request: Request,
    app: App,
    candidate_id: str,
    notice: Annotated[list[str] | None, Query(max_length=40)] = None,
) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    try:
        with _uow(app, session) as uow:
            case = review.open_case(uow, candidate_id)
    except DomainError as exc:
        return render_error(request, "review_case.html", exc, case=None, session=session)
    notices = [NOTICES[n] for n in notice or () if n in NOTICES]
    staff = {a.id: a.display_name for a in app.auth.list_staff_accounts()}
    return render(
        request,
        "review_case.html",
        case=case,
        rows=_rows(case),
        session=session,
        notices=notices,
        staff=staff,
        pending=case.candidate.status in ("open", "unsure"),
    )


@router.post("/reviewer/cases/{candidate_id}/decision", response_model=None)
def decide_page(
    request: Request,
    app: App,
    candidate_id: str,
    decision: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
    survivor_id: Annotated[str, Form(max_length=32)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    try:
        _require_csrf(session, csrf_token)
        survivor = survivor_id if decision == "same" and survivor_id else None
        with _uow(app, session) as uow:
            decided = review.decide(uow, app.card_keys, candidate_id, decision, note or None, survivor)
    except DomainError as exc:
        return render_error(request, "review_case.html", exc, case=None, session=session)
    notices = [decided.candidate.status] + (["pin"] if decided.survivor_needs_pin else [])
    return _to_case(decided.candidate.id, notices)


@router.post("/reviewer/merges/{merge_id}/undo", response_model=None)
def undo_page(
    request: Request,
    app: App,
    merge_id: str,
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    try:
        _require_csrf(session, csrf_token)
        with _uow(app, session) as uow:
            undone = merging.undo_merge(uow, merge_id, reason)
    except DomainError as exc:
        return render_error(request, "review_case.html", exc, case=None, session=session)
    notices = ["undone", "restored" if undone.membership_restored else undone.membership_problem or ""]
    notices += ["card_needed"] if undone.new_card_needed else []
    if undone.merge.candidate_id is None:
        return RedirectResponse("/reviewer", status_code=303)
    return _to_case(undone.merge.candidate_id, [n for n in notices if n])


def _to_case(candidate_id: str, notices: list[str]) -> RedirectResponse:
    # The id comes from the database (the service refused anything that is not an id).
    query = urlencode([("notice", n) for n in notices])
    return RedirectResponse(f"/reviewer/cases/{candidate_id}?{query}", status_code=303)


def _rows(case: Case) -> list[tuple[str, str, str]]:
    """The side-by-side table: (label, left value, right value), in the order a reviewer compares."""
    municipalities = vocabulary().labels("municipalities")
    relationships = vocabulary().labels("relationships")

    def identity(side: CaseSide, field: str) -> str:
        value = getattr(side.person, field) if side.person else None
        if field == "municipality" and value:
            return str(municipalities.get(value, {}).get("es", value))
        if field == "birth_date" and value:
            return str(value.isoformat())
        if field == "enrolled_at" and value:
            return str(value.date().isoformat())
        return str(value) if value else "—"

    def household(side: CaseSide) -> str:
        if side.membership is None:
            return "sin hogar / none"
        relationship = relationships.get(side.membership.relationship, {}).get("es", side.membership.relationship)
        address = side.household.address_line if side.household else side.membership.household_id
        return f"{address} — {relationship}"

    def status(side: CaseSide) -> str:
        if side.record_status == "merged":
            return f"unido a / merged into {side.merged_into}"
        return {"held": "retenido / held for review"}.get(side.record_status, "activo / active")

    fields = [
        ("Nombres / Given names", "given_names"),
        ("Primer apellido / First surname", "first_surname"),
        ("Segundo apellido / Second surname", "second_surname"),
        ("Nacimiento / Born", "birth_date"),
        ("Lugar de nacimiento / Birth place", "birth_place"),
        ("Sexo / Sex", "sex"),
        ("Dirección / Address", "address_line"),
        ("Municipio / Municipality", "municipality"),
        ("Código postal / Postcode", "postcode"),
        ("Teléfono / Phone", "phone"),
        ("Documento / Document", "national_id"),
        ("Inscrito / Enrolled", "enrolled_at"),
    ]
    rows = [(label, identity(case.left, f), identity(case.right, f)) for label, f in fields]
    rows.append(("Hogar / Household", household(case.left), household(case.right)))
    rows.append(
        (
            "Tarjeta / Card",
            case.left.card_status or "sin tarjeta / none",
            case.right.card_status or "sin tarjeta / none",
        )
    )
    rows.append(("Estado / Record status", status(case.left), status(case.right)))
    return rows
