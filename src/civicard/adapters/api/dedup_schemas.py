"""Request and response bodies of the duplicate review API (separate from domain classes and tables)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from civicard.adapters.api.schemas import Body, IdentityOut
from civicard.dedup.cases import Candidate, Case, CaseSide, Decided, Merge, QueueItem, Undone
from civicard.dedup.pairs import Reason
from civicard.identity.cards import CardStatus
from civicard.registry.model import RecordStatus

DecisionName = Literal["same", "different", "unsure"]
CandidateStatusName = Literal["open", "unsure", "same", "different"]


class DecisionIn(Body):
    decision: DecisionName
    note: str | None = Field(default=None, max_length=1000, description="Why; kept with the decision.")
    survivor_id: str | None = Field(
        default=None, max_length=32, description="Only for 'same': the record that stays (default: not held, older)."
    )


class UndoIn(Body):
    reason: str = Field(max_length=500, examples=["the documents belong to twin sisters"])


class ReasonOut(BaseModel):
    field: str
    outcome: Literal["agree", "close", "disagree", "missing"]
    label: str
    weight: float = Field(description="Weight of evidence in bits; positive pushes towards 'same person'.")

    @classmethod
    def of(cls, r: Reason) -> ReasonOut:
        return cls(field=r.field, outcome=r.outcome, label=r.label, weight=r.weight)


class CandidateOut(BaseModel):
    id: str
    person_ids: list[str]
    match_probability: float
    source: Literal["bulk", "enrollment"]
    status: CandidateStatusName
    raised_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_note: str | None
    reasons: list[ReasonOut]

    @classmethod
    def of(cls, c: Candidate) -> CandidateOut:
        return cls(
            id=c.id,
            person_ids=list(c.person_ids),
            match_probability=c.match_probability,
            source=c.source,
            status=c.status,
            raised_at=c.raised_at,
            decided_at=c.decided_at,
            decided_by=c.decided_by,
            decision_note=c.decision_note,
            reasons=[ReasonOut.of(r) for r in c.reasons],
        )


class QueueItemOut(BaseModel):
    """A queue line: ids, probability and how fields compared — no names or values (open the case for those)."""

    id: str
    match_probability: float
    source: Literal["bulk", "enrollment"]
    status: CandidateStatusName
    held: bool = Field(description="One of the two is an enrollment held until this pair is decided.")
    raised_at: datetime
    reasons: list[ReasonOut]

    @classmethod
    def of(cls, item: QueueItem) -> QueueItemOut:
        c = item.candidate
        return cls(
            id=c.id,
            match_probability=c.match_probability,
            source=c.source,
            status=c.status,
            held=item.held,
            raised_at=c.raised_at,
            reasons=[ReasonOut.of(r) for r in c.reasons],
        )


class QueuePage(BaseModel):
    items: list[QueueItemOut]
    next_cursor: str | None = Field(description="Pass as `after` to get the next page; null on the last page.")


class HouseholdOfSideOut(BaseModel):
    household_id: str
    relationship: str
    since: date
    address_line: str | None
    municipality: str | None
    postcode: str | None


class CaseSideOut(BaseModel):
    person_id: str
    record_status: RecordStatus
    merged_into: str | None
    identity: IdentityOut | None
    household: HouseholdOfSideOut | None
    card_status: CardStatus | None = Field(description="The current card's status (valid or suspended); null: none.")

    @classmethod
    def of(cls, s: CaseSide) -> CaseSideOut:
        household = None
        if s.membership is not None:
            h = s.household
            household = HouseholdOfSideOut(
                household_id=s.membership.household_id,
                relationship=s.membership.relationship,
                since=s.membership.valid_from,
                address_line=h.address_line if h else None,
                municipality=h.municipality if h else None,
                postcode=h.postcode if h else None,
            )
        return cls(
            person_id=s.person_id,
            record_status=s.record_status,
            merged_into=s.merged_into,
            identity=IdentityOut.of(s.person) if s.person else None,
            household=household,
            card_status=s.card_status,
        )


class MergeOut(BaseModel):
    id: str
    candidate_id: str | None
    survivor_id: str
    merged_id: str
    merged_at: datetime
    merged_by: str
    reason: str
    revoked_card_id: str | None
    replacement_card_id: str | None
    undone_at: datetime | None
    undone_by: str | None
    undo_reason: str | None

    @classmethod
    def of(cls, m: Merge) -> MergeOut:
        return cls(**{name: getattr(m, name) for name in cls.model_fields})


class CaseOut(BaseModel):
    candidate: CandidateOut
    left: CaseSideOut
    right: CaseSideOut
    categories: list[str] = Field(description="Data categories the duplicate_review purpose allowed.")
    merges: list[MergeOut] = Field(description="Every merge ever made between these two records, undone or not.")
    merge_request_id: str | None = Field(
        default=None, description="A 'same' decision's merge waiting for a second account (/v1/approvals)."
    )

    @classmethod
    def of(cls, case: Case) -> CaseOut:
        return cls(
            candidate=CandidateOut.of(case.candidate),
            left=CaseSideOut.of(case.left),
            right=CaseSideOut.of(case.right),
            categories=sorted(case.categories),
            merges=[MergeOut.of(m) for m in case.merges],
            merge_request_id=case.merge_request_id,
        )


class DecisionOut(BaseModel):
    candidate: CandidateOut
    merge_request_id: str | None = Field(
        description="'same': the four-eyes merge request now waiting; a second reviewer or oversight account "
        "approves it (POST /v1/approvals/{id}/approve), which merges the records."
    )
    released: list[str] = Field(description="Held records this decision made active.")

    @classmethod
    def of(cls, d: Decided) -> DecisionOut:
        return cls(
            candidate=CandidateOut.of(d.candidate), merge_request_id=d.merge_request_id, released=list(d.released)
        )


class UndoOut(BaseModel):
    merge: MergeOut
    membership_restored: bool
    membership_problem: str | None = Field(description="Why the record could not rejoin its household, if so.")
    new_card_needed: bool = Field(description="The merge revoked the record's card; revocation is final.")

    @classmethod
    def of(cls, u: Undone) -> UndoOut:
        return cls(
            merge=MergeOut.of(u.merge),
            membership_restored=u.membership_restored,
            membership_problem=u.membership_problem,
            new_card_needed=u.new_card_needed,
        )
