"""Reviewing an offline conflict: a reviewer (or oversight) closes a receipt kept as a conflict.

The receipt itself never changes (it is the terminal's signed record); the review stamps who
closed it and when, and the reviewer's note goes to the access log of the household concerned,
in the same transaction. A reviewed conflict leaves the review queue (`offline_sync.list_conflicts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from civicard.transparency.access import AccessContext, AccessLog, Subject, record_change

REVIEW_PURPOSE = "offline_review"
MAX_NOTE = 500


@dataclass(frozen=True)
class StoredConflict:
    """A stored offline receipt as the review sees it (the household only for the access log)."""

    id: str
    status: str
    reason: str | None
    reviewed_at: datetime | None
    household_id: str | None


@dataclass(frozen=True)
class ConflictReview:
    id: str
    reason: str
    reviewed_by: str
    reviewed_at: datetime


class ReviewStore(Protocol):
    def stored_conflict(self, receipt_id: str) -> StoredConflict | None: ...
    def mark_reviewed(self, receipt_id: str, by: str, at: datetime) -> bool: ...


class ReviewUnitOfWork(Protocol):
    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def access_log(self) -> AccessLog: ...
    @property
    def reviews(self) -> ReviewStore: ...

    def commit(self) -> None: ...


def review_conflict(uow: ReviewUnitOfWork, receipt_id: str, note: str) -> ConflictReview:
    """Close one unreviewed conflict with the reviewer's note; refuses anything else with a code."""
    if uow.context.purpose != REVIEW_PURPOSE:
        raise Forbidden("purpose_not_allowed", f"Reviewing offline conflicts is done for '{REVIEW_PURPOSE}'.")
    text = " ".join(note.split())
    if not text or len(text) > MAX_NOTE:
        raise InvalidInput("invalid_note", f"A review note is 1–{MAX_NOTE} characters saying what was decided.")
    found = uow.reviews.stored_conflict(receipt_id)
    if found is None:
        raise NotFound("conflict_not_found", "There is no offline receipt with this id.")
    if found.status != "conflict":
        raise Conflict("not_a_conflict", "This offline receipt was applied; there is nothing to review.")
    now = uow.clock.now()
    if found.reviewed_at is not None or not uow.reviews.mark_reviewed(receipt_id, uow.context.actor.id, now):
        raise Conflict("conflict_already_reviewed", "This conflict has already been reviewed.")
    reason = found.reason or ""
    subjects = [Subject.household(found.household_id)] if found.household_id else []
    detail = f"offline conflict {receipt_id} ({reason}) reviewed: {text}"
    record_change(uow.access_log, uow.context, subjects, ["decisions"], detail, now)
    uow.commit()
    return ConflictReview(receipt_id, reason, uow.context.actor.id, now)
