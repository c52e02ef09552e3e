"""The duplicate review queue's objects: candidate pairs, reviewers' decisions, merges and their undo."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from civicard.dedup.pairs import Reason
from civicard.identity.cards import CardStatus
from civicard.registry.model import Household, Membership, Person, RecordStatus

CandidateStatus = Literal["open", "unsure", "same", "different"]
Decision = Literal["same", "different", "unsure"]
Source = Literal["bulk", "enrollment"]
CANDIDATE_STATUSES: tuple[CandidateStatus, ...] = ("open", "unsure", "same", "different")
DECISIONS: tuple[Decision, ...] = ("same", "different", "unsure")
SOURCES: tuple[Source, ...] = ("bulk", "enrollment")
PENDING: tuple[CandidateStatus, ...] = ("open", "unsure")  # still waiting for a final answer


def ordered(a: str, b: str) -> tuple[str, str]:
    """A pair of person ids in stored order (smaller first): one row per unordered pair."""
    return (a, b) if a < b else (b, a)


@dataclass(frozen=True)
class Candidate:
    """Two records the matching model finds likely to be one person, and what a reviewer decided."""

    id: str
    person_id_l: str
    person_id_r: str
    match_probability: float
    reasons: tuple[Reason, ...]
    source: Source
    status: CandidateStatus
    raised_at: datetime
    raised_by: str
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_note: str | None = None

    @property
    def person_ids(self) -> tuple[str, str]:
        return (self.person_id_l, self.person_id_r)

    def other(self, person_id: str) -> str:
        return self.person_id_r if person_id == self.person_id_l else self.person_id_l


@dataclass(frozen=True)
class Merge:
    """A merge of `merged_id` into `survivor_id`, with every change it made so an undo can reverse it."""

    id: str
    candidate_id: str | None
    survivor_id: str
    merged_id: str
    merged_at: datetime
    merged_by: str
    reason: str
    ended_membership_id: str | None = None
    revoked_card_id: str | None = None
    replacement_card_id: str | None = None
    undone_at: datetime | None = None
    undone_by: str | None = None
    undo_reason: str | None = None
    restored_membership_id: str | None = None

    @property
    def undone(self) -> bool:
        return self.undone_at is not None


@dataclass(frozen=True)
class QueueItem:
    """A line of the queue: no names or values (those are shown only when the case is opened, and logged)."""

    candidate: Candidate
    held: bool  # one of the two is an enrollment held for this decision


@dataclass(frozen=True)
class CaseSide:
    """One of the two records as the reviewer sees it."""

    person_id: str
    record_status: RecordStatus
    merged_into: str | None
    person: Person | None  # None when the purpose does not grant identity
    household: Household | None
    membership: Membership | None
    card_status: CardStatus | None  # the current card's status (valid or suspended), None without one


@dataclass(frozen=True)
class Case:
    """Both records side by side, the model's reasons, and the merges ever made between them."""

    candidate: Candidate
    left: CaseSide
    right: CaseSide
    categories: frozenset[str]
    merges: list[Merge] = field(default_factory=list)
    merge_request_id: str | None = None  # a 'same' decision's merge waiting for a second account


@dataclass(frozen=True)
class Decided:
    """The outcome of a decision (or of an approved merge): the candidate as saved, the merge request
    a 'same' decision filed, or the merge its approval made; released holds."""

    candidate: Candidate
    merge: Merge | None = None
    released: tuple[str, ...] = ()  # held records that became active
    survivor_needs_pin: bool = False  # the survivor got a replacement card without a PIN
    merge_request_id: str | None = None  # 'same': the four-eyes merge request now waiting


@dataclass(frozen=True)
class Undone:
    """The outcome of undoing a merge; revoked cards stay revoked, so the alias needs a new card."""

    merge: Merge
    membership_restored: bool
    membership_problem: str | None  # why the alias could not rejoin its household (a stable code)
    new_card_needed: bool
