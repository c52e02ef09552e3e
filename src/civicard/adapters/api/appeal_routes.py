"""Decisions and appeals over HTTP: the resident's own decisions and appeals (/v1/me/...), and the
reviewer's queue, cases and outcomes (/v1/appeals, purpose appeal_review in X-Civicard-Purpose).

A reviewer corrects wrong facts through the registry's fact routes under the same purpose
(POST /v1/facts/{kind}/{version_id}/corrections, POST /v1/persons/{id}/facts …), then decides.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from civicard.adapters.api.access import Access, App, Resident
from civicard.adapters.api.appeal_schemas import (
    AppealCaseOut,
    AppealDecidedOut,
    AppealDecisionIn,
    AppealIn,
    AppealOut,
    AppealPage,
    AppealStatusName,
    Lang,
    MyAppealsOut,
    MyDecisionOut,
    MyDecisionsOut,
    QueueAppealOut,
)
from civicard.programs import appeals
from civicard.transparency.access import AccessContext

router = APIRouter(prefix="/v1", tags=["appeals"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read (not JSON or not UTF-8)"},
    401: {"description": "No valid session"},
    403: {"description": "Not a resident (own routes), or not a reviewer under appeal_review"},
    404: {"description": "Unknown appeal, or not your household's decision"},
    409: {"description": "Superseded or settled decision, already appealed or decided, or the outcome "
          "contradicts the re-decision"},
    422: {"description": "Invalid input; nothing was written"},
}  # fmt: skip
LangQuery = Annotated[Lang, Query(description="Language of the explanations.")]


@router.get("/me/decisions", responses=PROBLEMS)
def my_decisions(app: App, me: Resident, lang: LangQuery = "es") -> MyDecisionsOut:
    """Your household's current decisions with their reasons, the period's entitlements (granted
    and remaining) and your appeals."""
    with app.uow(AccessContext(me.actor(), appeals.SELF_ACCESS)) as uow:
        mine = appeals.my_decisions(uow, me.id)
    return MyDecisionsOut(
        decisions=[MyDecisionOut.of_view(v, lang, mine.items) for v in mine.decisions],
        appeals=[AppealOut.of(a) for a in mine.appeals],
    )


@router.post("/me/appeals", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def file_appeal(body: AppealIn, app: App, me: Resident) -> AppealOut:
    """Appeal one current decision about your household; a reviewer answers with a note."""
    with app.uow(AccessContext(me.actor(), appeals.FILING)) as uow:
        appeal = appeals.file_appeal(uow, me.id, body.decision_id, body.reason)
    return AppealOut.of(appeal)


@router.get("/me/appeals", responses=PROBLEMS)
def my_appeals(app: App, me: Resident) -> MyAppealsOut:
    """Your appeals with their status and the reviewer's note."""
    with app.uow(AccessContext(me.actor(), appeals.SELF_ACCESS)) as uow:
        found = appeals.my_appeals(uow, me.id)
    return MyAppealsOut(items=[AppealOut.of(a) for a in found])


@router.get("/appeals", responses=PROBLEMS)
def list_appeals(
    app: App,
    access: Access,
    status: Annotated[AppealStatusName, Query()] = "open",
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    after: Annotated[str | None, Query(max_length=32, description="Cursor: the last id of the previous page.")] = None,
) -> AppealPage:
    """The appeals queue, oldest first; no reasons or names until a case is opened."""
    with app.uow(access) as uow:
        page = appeals.list_appeals(uow, [status], limit, after)
    items = [QueueAppealOut.of(a) for a in page]
    return AppealPage(items=items, next_cursor=items[-1].id if len(items) == limit else None)


@router.get("/appeals/{appeal_id}", responses=PROBLEMS)
def read_appeal(appeal_id: str, app: App, access: Access, lang: LangQuery = "es") -> AppealCaseOut:
    """The case: the decision with its reasons, the facts it was made on, the household's current
    facts and its decision history. Logged for the household and the appellant."""
    with app.uow(access) as uow:
        case = appeals.open_case(uow, appeal_id)
    return AppealCaseOut.of(case, lang)


@router.post("/appeals/{appeal_id}/decision", responses=PROBLEMS)
def decide_appeal(appeal_id: str, body: AppealDecisionIn, app: App, access: Access) -> AppealDecidedOut:
    """Re-decide the household with its current facts: overturned if the decision changes
    (correct the facts first), upheld if it does not."""
    with app.uow(access) as uow:
        decided = appeals.decide_appeal(uow, appeal_id, body.outcome, body.note)
    return AppealDecidedOut.of(decided)
