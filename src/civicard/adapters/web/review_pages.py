"""The reviewer's pages: the duplicate queue, a case side by side with the model's reasons, the
decision (same / different / unsure) and the merge history with undo. Everything runs under the
`duplicate_review` purpose; opening a case logs the read for both persons."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from civicard.adapters.api.access import App
from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork
from civicard.adapters.db.auth_store import ActiveSession
from civicard.adapters.db.dedup_store import SqlReviewUnitOfWork
from civicard.adapters.web.i18n import N_, gettext, localized, use_request_locale
from civicard.adapters.web.pages import render, render_error, require_csrf, session_of, staff_context
from civicard.bootstrap import Container
from civicard.dedup import merging, review
from civicard.dedup.cases import CANDIDATE_STATUSES, Case, CaseSide
from civicard.governance import approvals
from civicard.governance.approvals import FOUR_EYES
from civicard.governance.kinds import KINDS
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import DomainError, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(use_request_locale)])
DUPLICATE_REVIEW = "duplicate_review"
PAGE = 100
NOTICES = {
    "same": N_("Decisión registrada: la unión espera la aprobación de un segundo revisor."),
    "different": N_("Decidido: son personas distintas; no se volverá a proponer."),
    "unsure": N_("Marcado como dudoso: sigue en la cola."),
    "undone": N_("Unión deshecha: el registro vuelve a ser independiente."),
    "restored": N_("Volvió a su hogar."),
    "reference_person_exists": N_("No volvió a su hogar: el hogar ya tiene otra persona de referencia."),
    "already_in_household": N_("No volvió a su hogar: ya pertenece a otro."),
    "membership_missing": N_("No se encontró su hogar anterior."),
    "card_needed": N_("Su tarjeta fue revocada y sigue revocada: emita una nueva."),
    "executed": N_("Unión aprobada y hecha: el otro registro es ahora un alias."),
    "refused": N_("Unión rechazada: el caso vuelve a la cola."),
}


def _approval_uow(app: Container, session: ActiveSession) -> SqlApprovalUnitOfWork:
    """The four-eyes step on a merge request: a merge may issue the survivor a replacement card."""
    return SqlApprovalUnitOfWork(app.engine, staff_context(session, FOUR_EYES), app.clock, card_keys=app.card_keys)


def _uow(app: Container, session: ActiveSession) -> SqlReviewUnitOfWork:
    return SqlReviewUnitOfWork(app.engine, staff_context(session, DUPLICATE_REVIEW), app.clock)


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
    notices = [gettext(NOTICES[n]) for n in notice or () if n in NOTICES]
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
        require_csrf(session, csrf_token)
        survivor = survivor_id if decision == "same" and survivor_id else None
        with _uow(app, session) as uow:
            decided = review.decide(uow, candidate_id, decision, note or None, survivor)
    except DomainError as exc:
        return render_error(request, "review_case.html", exc, case=None, session=session)
    return _to_case(decided.candidate.id, [decided.candidate.status])


@router.post("/reviewer/cases/{candidate_id}/merge-request/{verdict}", response_model=None)
def merge_request_page(
    request: Request,
    app: App,
    candidate_id: str,
    verdict: str,
    request_id: Annotated[str, Form(max_length=32)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """A second reviewer (or oversight) approves or refuses the merge a 'same' decision asked for;
    the approvals module checks that it is another account with the right role."""
    session = session_of(request, app)
    if session is None:
        return _to_sign_in()
    try:
        require_csrf(session, csrf_token)
        with _approval_uow(app, session) as uow:
            if verdict == "approve":
                status = approvals.approve(uow, KINDS, request_id, note or None).request.status
            elif verdict == "refuse":
                status = approvals.refuse(uow, KINDS, request_id, note).status
            else:
                raise NotFound("verdict_unknown", gettext("Elija aprobar o rechazar."))
    except DomainError as exc:
        return render_error(request, "review_case.html", exc, case=None, session=session)
    return _to_case(candidate_id, [status])


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
        require_csrf(session, csrf_token)
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
            return localized(municipalities[value]) if value in municipalities else str(value)
        if field == "birth_date" and value:
            return str(value.isoformat())
        if field == "enrolled_at" and value:
            return str(value.date().isoformat())
        return str(value) if value else "—"

    def household(side: CaseSide) -> str:
        if side.membership is None:
            return gettext("sin hogar")
        code = side.membership.relationship
        relationship = localized(relationships[code]) if code in relationships else code
        address = side.household.address_line if side.household else side.membership.household_id
        return f"{address} — {relationship}"

    def status(side: CaseSide) -> str:
        if side.record_status == "merged":
            return gettext("unido al registro %(id)s") % {"id": side.merged_into}
        if side.record_status == "held":
            return gettext("retenido para revisión")
        return gettext("activo")

    fields = [
        (gettext("Nombres"), "given_names"),
        (gettext("Primer apellido"), "first_surname"),
        (gettext("Segundo apellido"), "second_surname"),
        (gettext("Nacimiento"), "birth_date"),
        (gettext("Lugar de nacimiento"), "birth_place"),
        (gettext("Sexo"), "sex"),
        (gettext("Dirección"), "address_line"),
        (gettext("Municipio"), "municipality"),
        (gettext("Código postal"), "postcode"),
        (gettext("Teléfono"), "phone"),
        (gettext("Documento"), "national_id"),
        (gettext("Inscrito"), "enrolled_at"),
    ]
    rows = [(label, identity(case.left, f), identity(case.right, f)) for label, f in fields]
    rows.append((gettext("Hogar"), household(case.left), household(case.right)))
    no_card = gettext("sin tarjeta")
    rows.append((gettext("Tarjeta"), case.left.card_status or no_card, case.right.card_status or no_card))
    rows.append((gettext("Estado del registro"), status(case.left), status(case.right)))
    return rows
