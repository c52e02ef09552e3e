"""/v1/approvals: four-eyes requests waiting for a second staff account, and its decision.

Every operation runs under the `four_eyes` purpose (X-Civicard-Purpose) with a staff session. The
list shows the pending requests the caller's role may approve and the caller's own (marking
expired ones on the way), plus — for program administrators — the rule versions waiting for a
second program administrator, which are decided in the program register (/v1/program-versions).
Requests are filed where the action lives: `civicard users grant`, the registrar's card page or
`civicard cards request-unlock`, a reviewer's 'same' decision (a person merge, carried out on
approval) and `civicard export request` (a bulk export: approval stores it `approved`; its
requester runs it once with `civicard export run`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from civicard.adapters.api.access import Access, App
from civicard.adapters.api.schemas import Body
from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork
from civicard.bootstrap import Container
from civicard.governance import approvals
from civicard.governance.approvals import MAX_NOTE, ApprovalRequest
from civicard.governance.kinds import KINDS
from civicard.programs.publishing import PROGRAM_ADMIN, awaiting_decision, proposal_expires_at
from civicard.transparency.access import AccessContext

router = APIRouter(prefix="/v1", tags=["approvals"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read (not JSON or not UTF-8)"},
    401: {"description": "No valid session"},
    403: {"description": "Not under four_eyes, the requester itself, the account the request is about, "
          "or a role that may not decide this kind"},
    404: {"description": "Unknown request"},
    409: {"description": "Already decided, expired, or the action no longer applies (e.g. the PIN is no "
          "longer locked)"},
    422: {"description": "Invalid input; nothing was written"},
    503: {"description": "A kind that is not available yet"},
}  # fmt: skip


class ApprovalOut(BaseModel):
    id: str
    kind: str
    description: str = Field(description="What approving does, in words (ids, roles and codes only).")
    payload: dict[str, str] = Field(description="The action's parameters: ids, roles and codes.")
    reason: str
    requested_by: str = Field(description="The requesting staff account's id.")
    requested_role: str
    requested_at: datetime
    expires_at: datetime
    status: str = Field(
        description="pending, approved (its requester carries it out later), executed, refused or expired."
    )
    decided_by: str | None
    decided_role: str | None
    decided_at: datetime | None
    decision_note: str | None

    @classmethod
    def of(cls, r: ApprovalRequest) -> ApprovalOut:
        return cls(
            id=r.id,
            kind=r.kind,
            description=KINDS.get(r.kind).describe(r.data),
            payload=r.data,
            reason=r.reason,
            requested_by=r.requested_by,
            requested_role=r.requested_role,
            requested_at=r.requested_at,
            expires_at=r.expires_at,
            status=r.status,
            decided_by=r.decided_by,
            decided_role=r.decided_role,
            decided_at=r.decided_at,
            decision_note=r.decision_note,
        )


class ProposalOut(BaseModel):
    id: str
    program: str
    version: str
    proposed_by: str = Field(description="The proposing program administrator's username.")
    proposed_at: datetime
    expires_at: datetime = Field(description="After this it can no longer be approved; it is proposed again.")


class ApprovalsOut(BaseModel):
    items: list[ApprovalOut]
    program_proposals: list[ProposalOut] = Field(
        description="Rule versions waiting for a second program administrator (program administrators only); "
        "decided with POST /v1/program-versions/{id}/approval or /rejection, or the programs pages."
    )


class ApproveIn(Body):
    note: str | None = Field(default=None, max_length=MAX_NOTE * 4, description="Why you approve (optional).")


class RefuseIn(Body):
    note: str = Field(max_length=MAX_NOTE * 4, description="Why it is refused (required); the requester reads it.")


class ApprovedOut(BaseModel):
    request: ApprovalOut
    outcome: str = Field(
        description='What the execution did, as logged (e.g. "pin_cleared"), or "awaiting_execution" for a '
        "bulk export, which its requester runs once (civicard export run)."
    )


def _uow(app: Container, access: AccessContext) -> SqlApprovalUnitOfWork:
    return SqlApprovalUnitOfWork(app.engine, access, app.clock, card_keys=app.card_keys, root_key=app.root_key)


@router.get("/approvals", responses=PROBLEMS)
def list_approvals(app: App, access: Access) -> ApprovalsOut:
    """Pending requests you may decide, and your own, oldest first."""
    with _uow(app, access) as uow:
        waiting = approvals.pending(uow, KINDS)
        proposals = []
        if access.actor.role == PROGRAM_ADMIN:
            proposals = [
                ProposalOut(
                    id=v.id,
                    program=v.program,
                    version=v.version,
                    proposed_by=v.proposed_by,
                    proposed_at=v.proposed_at,
                    expires_at=proposal_expires_at(v),
                )
                for v in awaiting_decision(uow.register.all(), app.clock.now())
            ]
    return ApprovalsOut(items=[ApprovalOut.of(r) for r in waiting], program_proposals=proposals)


@router.post("/approvals/{request_id}/approve", responses=PROBLEMS)
def approve(request_id: str, body: ApproveIn, app: App, access: Access) -> ApprovedOut:
    """Approve as a different account than the requester; the action is carried out in the same step."""
    with _uow(app, access) as uow:
        done = approvals.approve(uow, KINDS, request_id, body.note)
    return ApprovedOut(request=ApprovalOut.of(done.request), outcome=done.outcome)


@router.post("/approvals/{request_id}/refuse", responses=PROBLEMS)
def refuse(request_id: str, body: RefuseIn, app: App, access: Access) -> ApprovalOut:
    """Refuse with a note (or withdraw your own request); nothing is carried out."""
    with _uow(app, access) as uow:
        refused = approvals.refuse(uow, KINDS, request_id, body.note)
    return ApprovalOut.of(refused)
