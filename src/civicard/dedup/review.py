"""The duplicate review queue: raise candidate pairs, hold enrollments, list and open cases, decide.

A pair is queued once (ids in stored order), whatever its status; a pair decided 'different' is
never raised again, so a reviewer's answer is remembered. An enrollment whose best match falls in
the review band is saved but held (`hold_for_review`): no card until a reviewer settles it.
Reviewers see both records side by side through the access enforcement point (purpose
`duplicate_review`, each read logged), decide same / different / unsure, and every decision is
recorded in the same transaction as its log entries. 'same' merges nothing yet: it files a
four-eyes `person_merge` request that a second reviewer or oversight account approves
(governance/kinds.py); until then the case shows it waiting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

from civicard.dedup.cases import (
    CANDIDATE_STATUSES,
    DECISIONS,
    PENDING,
    SOURCES,
    Candidate,
    Case,
    CaseSide,
    Decided,
    QueueItem,
    ordered,
)
from civicard.dedup.merging import (
    DEFAULT_MERGE_REASON,
    PERSON_MERGE,
    choose_survivor,
    release_holds,
    require_reviewer,
)
from civicard.dedup.pairs import ScoredPair
from civicard.dedup.ports import QueueUnitOfWork, ReviewUnitOfWork
from civicard.governance.approvals import expire_due
from civicard.governance.kinds import KINDS, GovernedUnitOfWork, file_person_merge, merge_subject
from civicard.registry.model import Person
from civicard.shared.errors import Conflict, InvalidInput, NotFound
from civicard.shared.ids import is_id, new_id
from civicard.shared.text import clean_text
from civicard.transparency.access import Subject, disclose, record_change

MAX_PAGE = 100
MAX_NOTE = 1000


def raise_candidates(uow: ReviewUnitOfWork, pairs: Sequence[ScoredPair], source: str) -> int:
    """Queue the pairs never seen before (a bulk run's review band) and commit; returns how many."""
    raised = queue_pairs(uow, pairs, source)
    uow.commit()
    return raised


def queue_pairs(uow: QueueUnitOfWork, pairs: Iterable[ScoredPair], source: str) -> int:
    """Inside the caller's transaction (no commit): add open candidates for new pairs.

    Pairs already queued or decided (in either order) are skipped, as are pairs with a merged
    record; a pair given twice keeps its highest probability. Unknown person ids are refused.
    """
    if source not in SOURCES:
        raise InvalidInput("invalid_source", f"The source is one of: {', '.join(SOURCES)}.")
    wanted: dict[tuple[str, str], ScoredPair] = {}
    for pair in pairs:
        key = _pair_key(pair)
        if key not in wanted or pair.match_probability > wanted[key].match_probability:
            wanted[key] = pair
    known = uow.duplicates.queued_pairs(set(wanted)) if wanted else set()
    fresh = [key for key in wanted if key not in known]
    involved = {pid for key in fresh for pid in key}
    statuses = uow.duplicates.record_statuses(involved)
    missing = sorted(involved - set(statuses))
    if missing:
        raise NotFound("unknown_person", f"No person with id '{missing[0]}'.")
    merged = {pid for pid, status in statuses.items() if status == "merged"}
    now, actor = uow.clock.now(), uow.context.actor.id
    candidates = [
        Candidate(
            new_id(),
            left,
            right,
            wanted[(left, right)].match_probability,
            wanted[(left, right)].reasons,
            source,
            "open",
            now,
            actor,
        )
        for left, right in fresh
        if left not in merged and right not in merged
    ]
    if candidates:
        uow.duplicates.add_candidates(candidates)
        subjects = sorted({pid for c in candidates for pid in c.person_ids})
        record_change(
            uow.access_log,
            uow.context,
            [Subject.person(p) for p in subjects],
            ["identity"],
            f"duplicate.raised source={source}",
            now,
        )
    return len(candidates)


def hold_for_review(uow: QueueUnitOfWork, person_id: str, pairs: Sequence[ScoredPair]) -> int:
    """Inside the enrollment's transaction (no commit): queue the new person's likely duplicates
    and hold the record until a reviewer decides. Returns how many pairs were queued; a person
    with no pending pair afterwards is not held (nobody would ever be asked to release it)."""
    person = uow.persons.get(person_id) if is_id(person_id) else None
    if person is None:
        raise NotFound("unknown_person", f"No person with id '{person_id}'.")
    if any(person_id not in (p.id_l, p.id_r) for p in pairs):
        raise InvalidInput("not_a_candidate_person", "Every pair held for review must include the new person.")
    raised = queue_pairs(uow, pairs, "enrollment")
    if person.record_status == "active" and uow.duplicates.pending_count(person_id) > 0:
        uow.duplicates.set_record_status(person_id, "held", None)
        record_change(
            uow.access_log,
            uow.context,
            [Subject.person(person_id)],
            ["identity"],
            "person.held_for_review",
            uow.clock.now(),
        )
    return raised


def decided_distinct(uow: QueueUnitOfWork, person_ids: Iterable[str] | None) -> set[frozenset[str]]:
    """Pairs a reviewer decided are different people, touching any of `person_ids` (None: all),
    so matching can leave them out."""
    ids = None if person_ids is None else set(person_ids)
    return {frozenset(pair) for pair in uow.duplicates.distinct_pairs(ids)}


def list_queue(
    uow: GovernedUnitOfWork, statuses: Sequence[str] | None = None, limit: int = 50, after: str | None = None
) -> list[QueueItem]:
    """A page of candidates, most probable first (default: open and unsure); pass the last id as `after`.

    The queue shows no names or values, so listing it discloses nothing and is not logged. Merge
    requests past their expiry are marked expired first, which puts their pairs back in the queue.
    """
    require_reviewer(uow)
    expire_due(uow, KINDS, PERSON_MERGE)
    uow.commit()
    wanted = tuple(statuses) if statuses else PENDING
    unknown = [s for s in wanted if s not in CANDIDATE_STATUSES]
    if unknown:
        raise InvalidInput("invalid_status", f"The status is one of: {', '.join(CANDIDATE_STATUSES)}.")
    cursor = None
    if after is not None:
        cursor = uow.duplicates.candidate(after) if is_id(after) else None
        if cursor is None:
            raise InvalidInput("invalid_cursor", "The page cursor is not a candidate id.")
    chosen = {s for s in CANDIDATE_STATUSES if s in wanted}
    page = uow.duplicates.queue(chosen, max(1, min(limit, MAX_PAGE)), cursor)
    held = uow.duplicates.held_among({pid for c in page for pid in c.person_ids})
    return [QueueItem(c, bool(held & set(c.person_ids))) for c in page]


def open_case(uow: GovernedUnitOfWork, candidate_id: str) -> Case:
    """Both records side by side with the model's reasons; the read is logged for both persons."""
    require_reviewer(uow)
    expire_due(uow, KINDS, PERSON_MERGE)
    candidate = _require_candidate(uow, candidate_id)
    subjects = [Subject.person(pid) for pid in candidate.person_ids]
    granted = disclose(
        uow.access_log,
        uow.context,
        subjects,
        ["identity", "household"],
        f"duplicate.case_read candidate={candidate.id}",
        uow.clock.now(),
    )
    persons = uow.persons.get_many(list(candidate.person_ids))
    left, right = (_side(uow, pid, persons.get(pid), granted) for pid in candidate.person_ids)
    merges = uow.duplicates.merges_between(candidate.person_ids)
    waiting = uow.approvals.pending_for_subject(merge_subject(candidate.id))
    uow.commit()
    return Case(candidate, left, right, granted, merges, waiting.id if waiting else None)


def decide(
    uow: GovernedUnitOfWork,
    candidate_id: str,
    decision: str,
    note: str | None = None,
    survivor_id: str | None = None,
) -> Decided:
    """A reviewer's answer. 'different' is remembered for good; 'unsure' keeps the pair in the
    queue; 'same' files a `person_merge` request naming the survivor, and a second account's
    approval merges the two records (merging.py). A held record is released once none of its
    pairs is pending and no merge of its waits."""
    require_reviewer(uow)
    if decision not in DECISIONS:
        raise InvalidInput("invalid_decision", f"The decision is one of: {', '.join(DECISIONS)}.")
    if survivor_id is not None and decision != "same":
        raise InvalidInput("survivor_not_applicable", "A survivor is chosen only when both records are the same.")
    text = clean_text(note or "", "note", MAX_NOTE, required=False) or None
    candidate = _require_candidate(uow, candidate_id, for_update=True)
    if candidate.status not in PENDING:
        raise Conflict("already_decided", f"This pair was already decided ({candidate.status}).")
    now = uow.clock.now()
    decided = replace(candidate, status=decision, decided_at=now, decided_by=uow.context.actor.id, decision_note=text)
    survivor = choose_survivor(uow, candidate, survivor_id) if decision == "same" else None
    uow.duplicates.save_decision(decided)
    waiting = None
    if survivor is not None:
        waiting = file_person_merge(uow, candidate.id, survivor.id, text or DEFAULT_MERGE_REASON)
    # A hold ends when none of the held record's pairs is pending and no merge of its waits.
    released = release_holds(uow, candidate.person_ids) if decision == "different" else ()
    subjects = [Subject.person(pid) for pid in candidate.person_ids]
    record_change(
        uow.access_log,
        uow.context,
        subjects,
        ["identity"],
        f"duplicate.decided candidate={candidate.id} decision={decision}",
        now,
    )
    uow.commit()
    return Decided(decided, released=released, merge_request_id=waiting.id if waiting else None)


def _pair_key(pair: ScoredPair) -> tuple[str, str]:
    if not (is_id(pair.id_l) and is_id(pair.id_r)):
        raise InvalidInput("invalid_person_id", "A pair names persons by their 32-character ids.")
    if pair.id_l == pair.id_r:
        raise InvalidInput("same_record_pair", "A pair must name two different records.")
    if not (math.isfinite(pair.match_probability) and 0.0 <= pair.match_probability <= 1.0):
        raise InvalidInput("invalid_probability", "A match probability is between 0 and 1.")
    if not all(math.isfinite(r.weight) for r in pair.reasons):
        raise InvalidInput("invalid_reason_weight", "A reason's weight of evidence must be a finite number.")
    return ordered(pair.id_l, pair.id_r)


def _require_candidate(uow: ReviewUnitOfWork, candidate_id: str, for_update: bool = False) -> Candidate:
    candidate = uow.duplicates.candidate(candidate_id, for_update) if is_id(candidate_id) else None
    if candidate is None:
        raise NotFound("unknown_candidate", f"No duplicate candidate with id '{candidate_id}'.")
    return candidate


def _side(uow: ReviewUnitOfWork, person_id: str, person: Person | None, granted: frozenset[str]) -> CaseSide:
    if person is None:
        raise NotFound("unknown_person", f"No person with id '{person_id}'.")
    membership = uow.memberships.current_of_person(person_id) if "household" in granted else None
    household = uow.households.get(membership.household_id) if membership else None
    card = uow.cards.current_of_person(person_id)
    return CaseSide(
        person_id=person_id,
        record_status=person.record_status,
        merged_into=person.merged_into,
        person=person if "identity" in granted else None,
        household=household,
        membership=membership,
        card_status=card.status if card else None,
    )
