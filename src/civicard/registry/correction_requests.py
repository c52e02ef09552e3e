"""A resident's request to correct a fact the registry holds about them, and a reviewer's answer.

The resident never changes their record: they name a category and say, in their words, which fact
is wrong and what is right. Filing is a change of the resident's own record under their own
self-scoped purpose `correction_request`, apart from `appeal`, so the access log tells a request to
correct a fact from an appeal against a decision; reading their requests is `self_access`.
Reviewers see the queue and answer under `correction_review`, correcting the fact itself with the
registry's correction services (recording.correct_fact) under the same purpose. Every step is
logged for the resident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from civicard.registry.ports import RegistryUnitOfWork
from civicard.shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from civicard.shared.ids import is_id, new_id
from civicard.shared.text import clean_text
from civicard.transparency.access import Subject, disclose, record_change

FILING, SELF_ACCESS, REVIEW = "correction_request", "self_access", "correction_review"
CATEGORIES = ("identity", "household", "income", "property", "health", "benefits")
STATUSES = ("open", "corrected", "declined")
OUTCOMES = ("corrected", "declined")
MAX_DETAILS, MIN_NOTE, MAX_NOTE = 1000, 10, 1000
MAX_OPEN = 10  # a resident with this many unanswered requests waits for answers before filing more
MAX_PAGE = 100
_MAX_RAW = 20_000  # longer input is refused before it is even cleaned


@dataclass(frozen=True)
class CorrectionRequest:
    id: str
    person_id: str
    household_id: str | None  # the resident's household when they filed, for the reviewer
    category: str  # which kind of fact: one of CATEGORIES
    details: str  # what is wrong and what is right, in the resident's words
    status: str  # open, corrected or declined
    filed_at: datetime
    answered_by: str | None = None
    answered_at: datetime | None = None
    answer_note: str | None = None  # the reviewer's answer, shown to the resident


@dataclass(frozen=True)
class QueuedRequest:
    request: CorrectionRequest
    full_name: str | None  # None if the person record is missing


class CorrectionRequestStore(Protocol):
    def add(self, request: CorrectionRequest) -> None: ...
    def get(self, request_id: str) -> CorrectionRequest | None: ...
    def of_person(self, person_id: str) -> list[CorrectionRequest]: ...
    def open_count(self, person_id: str) -> int: ...
    def queue(
        self, statuses: Sequence[str], limit: int, after: CorrectionRequest | None
    ) -> list[CorrectionRequest]: ...
    def save_answer(self, request: CorrectionRequest) -> bool: ...


class CorrectionUnitOfWork(RegistryUnitOfWork, Protocol):
    @property
    def correction_requests(self) -> CorrectionRequestStore: ...


# --- the resident -----------------------------------------------------------------------------


def request_correction(uow: CorrectionUnitOfWork, person_id: str, category: str, details: str) -> CorrectionRequest:
    """File the resident's request; a reviewer answers it."""
    _require_purpose(uow, FILING)
    if category not in CATEGORIES:
        raise InvalidInput("invalid_category", f"The category is one of: {', '.join(CATEGORIES)}.")
    text = _text(details, "details", 1, MAX_DETAILS)
    person = uow.persons.get(person_id) if is_id(person_id) else None
    if person is None:
        raise NotFound("unknown_person", "There is no record for this card holder.")
    if uow.correction_requests.open_count(person_id) >= MAX_OPEN:
        raise Conflict("too_many_open_requests", f"You have {MAX_OPEN} requests waiting; wait for their answers.")
    membership = uow.memberships.current_of_person(person_id)
    now = uow.clock.now()
    request = CorrectionRequest(
        new_id(), person_id, membership.household_id if membership else None, category, text, "open", now
    )
    uow.correction_requests.add(request)
    record_change(
        uow.access_log,
        uow.context,
        [Subject.person(person_id)],
        ["decisions"],
        f"correction.requested request={request.id} category={category}",
        now,
    )
    uow.commit()
    return request


def my_correction_requests(uow: CorrectionUnitOfWork, person_id: str) -> list[CorrectionRequest]:
    """The resident's requests, newest first, with their status and the reviewer's answer."""
    _require_purpose(uow, SELF_ACCESS)
    disclose(
        uow.access_log,
        uow.context,
        [Subject.person(person_id)],
        ["decisions"],
        "correction.requests_read",
        uow.clock.now(),
    )
    found = uow.correction_requests.of_person(person_id)
    uow.commit()
    return found


# --- the reviewer -----------------------------------------------------------------------------


def correction_queue(
    uow: CorrectionUnitOfWork, statuses: Sequence[str] | None = None, limit: int = 50, after: str | None = None
) -> list[QueuedRequest]:
    """A page of requests, oldest first (default: open), with each resident's name and words.
    The listing shows personal data, so it is logged for every resident on the page."""
    _require_purpose(uow, REVIEW)
    wanted = tuple(statuses) if statuses else ("open",)
    if any(s not in STATUSES for s in wanted):
        raise InvalidInput("invalid_status", f"The status is one of: {', '.join(STATUSES)}.")
    cursor = None
    if after is not None:
        cursor = uow.correction_requests.get(after) if is_id(after) else None
        if cursor is None:
            raise InvalidInput("invalid_cursor", "The page cursor is not a correction request id.")
    page = uow.correction_requests.queue(wanted, max(1, min(limit, MAX_PAGE)), cursor)
    if not page:
        return []
    people = sorted({r.person_id for r in page})
    disclose(
        uow.access_log,
        uow.context,
        [Subject.person(p) for p in people],
        ["identity", "decisions"],
        "correction.queue_read",
        uow.clock.now(),
    )
    names = uow.persons.get_many(people)
    uow.commit()
    return [QueuedRequest(r, names[r.person_id].full_name if r.person_id in names else None) for r in page]


def answer_correction(uow: CorrectionUnitOfWork, request_id: str, outcome: str, note: str) -> CorrectionRequest:
    """Close a request: `corrected` once the fact was corrected, `declined` with the reason why not."""
    _require_purpose(uow, REVIEW)
    if outcome not in OUTCOMES:
        raise InvalidInput("invalid_outcome", f"The outcome is one of: {', '.join(OUTCOMES)}.")
    text = _text(note, "note", MIN_NOTE, MAX_NOTE)
    request = uow.correction_requests.get(request_id) if is_id(request_id) else None
    if request is None:
        raise NotFound("unknown_correction_request", f"No correction request with id '{request_id}'.")
    if request.status != "open":
        raise Conflict("request_answered", f"This request was already answered ({request.status}).")
    now = uow.clock.now()
    answered = replace(request, status=outcome, answered_by=uow.context.actor.id, answered_at=now, answer_note=text)
    if not uow.correction_requests.save_answer(answered):  # another reviewer answered it meanwhile
        raise Conflict("request_answered", "This request was answered by someone else meanwhile.")
    record_change(
        uow.access_log,
        uow.context,
        [Subject.person(request.person_id)],
        ["decisions"],
        f"correction.answered request={request.id} status={outcome}",
        now,
    )
    uow.commit()
    return answered


def _require_purpose(uow: CorrectionUnitOfWork, purpose: str) -> None:
    if uow.context.purpose != purpose:
        raise Forbidden("purpose_not_allowed", f"This is done under the '{purpose}' purpose.")


def _text(value: str, name: str, least: int, most: int) -> str:
    if isinstance(value, str) and len(value) > _MAX_RAW:
        raise InvalidInput(f"{name}_too_long", f"The {name} is longer than {most} characters.")
    text = clean_text(value, name, _MAX_RAW, required=False)
    if len(text) < least:
        raise InvalidInput(f"{name}_too_short", f"Write at least {least} characters.")
    if len(text) > most:
        raise InvalidInput(f"{name}_too_long", f"The {name} is longer than {most} characters.")
    return text
