"""/v1/duplicates and /v1/merges: the reviewer's queue, side-by-side cases, decisions and undoing merges.

Every operation runs under the `duplicate_review` purpose (X-Civicard-Purpose), which only
reviewers hold; opening a case logs the read for both persons before anything is returned.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from civicard.adapters.api.access import Access, App
from civicard.adapters.api.dedup_schemas import (
    CandidateStatusName,
    CaseOut,
    DecisionIn,
    DecisionOut,
    QueueItemOut,
    QueuePage,
    UndoIn,
    UndoOut,
)
from civicard.adapters.db.dedup_store import SqlReviewUnitOfWork
from civicard.bootstrap import Container
from civicard.dedup import merging, review
from civicard.transparency.access import AccessContext

router = APIRouter(prefix="/v1", tags=["duplicates"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read (not JSON or not UTF-8)"},
    401: {"description": "No (or not allowed) identity"},
    403: {"description": "Not a reviewer, or not under the duplicate_review purpose"},
    404: {"description": "Unknown candidate, merge or person"},
    409: {"description": "Already decided, already undone, or a record already merged"},
    422: {"description": "Invalid input; nothing was written"},
}


def _uow(app: Container, access: AccessContext) -> SqlReviewUnitOfWork:
    return SqlReviewUnitOfWork(app.engine, access, app.clock)


@router.get("/duplicates", responses=PROBLEMS)
def list_duplicates(
    app: App,
    access: Access,
    status: Annotated[list[CandidateStatusName] | None, Query(description="Default: open and unsure.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    after: Annotated[str | None, Query(max_length=32, description="Cursor: the last id of the previous page.")] = None,
) -> QueuePage:
    """The queue, most probable first; no names or values until a case is opened."""
    with _uow(app, access) as uow:
        page = review.list_queue(uow, status, limit, after)
    items = [QueueItemOut.of(i) for i in page]
    return QueuePage(items=items, next_cursor=items[-1].id if len(items) == limit else None)


@router.get("/duplicates/{candidate_id}", responses=PROBLEMS)
def read_case(candidate_id: str, app: App, access: Access) -> CaseOut:
    """Both records side by side, with how each field compared; the read is logged for both persons."""
    with _uow(app, access) as uow:
        case = review.open_case(uow, candidate_id)
    return CaseOut.of(case)


@router.post("/duplicates/{candidate_id}/decision", responses=PROBLEMS)
def decide(candidate_id: str, body: DecisionIn, app: App, access: Access) -> DecisionOut:
    """same (files a merge request: once a second reviewer or oversight account approves it, the other
    record becomes an alias and its card is revoked), different (remembered), unsure."""
    with _uow(app, access) as uow:
        decided = review.decide(uow, candidate_id, body.decision, body.note, body.survivor_id)
    return DecisionOut.of(decided)


@router.post("/merges/{merge_id}/undo", responses=PROBLEMS)
def undo(merge_id: str, body: UndoIn, app: App, access: Access) -> UndoOut:
    """The alias becomes a record of its own again; revoked cards stay revoked (issue a new one)."""
    with _uow(app, access) as uow:
        undone = merging.undo_merge(uow, merge_id, body.reason)
    return UndoOut.of(undone)
