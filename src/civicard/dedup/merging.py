"""Merging two records of one person, and undoing a merge; nothing is deleted either way.

A reviewer's 'same' decision does not merge: it files a four-eyes `person_merge` request
(governance/kinds.py), and the merge is carried out when a second account approves it
(`merge_approved`, its registry writes logged under the purpose `person_merge`). A refusal or
expiry reopens the pair (`reopen_pair`): it goes back to the queue for another look.

A merge keeps the survivor and turns the other record into an alias (`record_status` merged,
`merged_into` the survivor): the alias leaves its household (the membership is ended, not
removed), its card is revoked with reason `duplicate`, and the survivor gets that card's
successor if it had no card of its own. The merge row stores the ended membership and both cards,
so an undo knows exactly what to reverse. Revocation is final (the status list never takes a card
back), so after an undo the alias needs a new card.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from civicard.dedup.cases import Candidate, Merge, Undone
from civicard.dedup.ports import DuplicateStore, ReviewUnitOfWork
from civicard.governance.approvals import ApprovalStore, Payload
from civicard.identity.cards import DEFAULT_POLICY, CardKeys, CardPolicy, CardStore, transfer_card
from civicard.registry.model import Membership, Person
from civicard.registry.ports import HouseholdRepository, MembershipRepository, PersonRepository
from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from civicard.shared.ids import is_id, new_id
from civicard.shared.text import clean_text
from civicard.transparency.access import AccessContext, AccessLog, Subject, record_change

DUPLICATE_REVIEW = "duplicate_review"
PERSON_MERGE = "person_merge"  # the four-eyes kind, and the purpose an approved merge is logged under
DEFAULT_MERGE_REASON = "same person (duplicate review)"
MAX_REASON = 500


def require_reviewer(uow: ReviewUnitOfWork) -> None:
    """Deciding duplicates is a reviewer's work, under the purpose that says so (purposes.yaml)."""
    if uow.context.purpose != DUPLICATE_REVIEW:
        raise Forbidden("purpose_not_allowed", f"Duplicate review is done under the '{DUPLICATE_REVIEW}' purpose.")


def merge_pair(
    uow: ReviewUnitOfWork,
    keys: CardKeys,
    candidate: Candidate,
    survivor_id: str | None,
    note: str | None,
    policy: CardPolicy = DEFAULT_POLICY,
) -> tuple[Merge, bool]:
    """Inside the approver's transaction (no commit): merge the candidate's two records.

    Returns the merge and whether the survivor got a replacement card (which has no PIN yet).
    The survivor defaults to the record that is not held, then the earlier enrolled one; a held
    survivor stays held while it has other pairs pending (the caller releases it).
    """
    survivor = choose_survivor(uow, candidate, survivor_id)
    alias_id = candidate.other(survivor.id)
    now, actor = uow.clock.now(), uow.context.actor.id
    uow.duplicates.set_record_status(alias_id, "merged", survivor.id)
    membership = uow.memberships.current_of_person(alias_id)
    if membership is not None:
        uow.memberships.end(membership, uow.clock.today(), actor, f"merged into {survivor.id}")
    cards = transfer_card(uow, keys, alias_id, survivor.id, "duplicate", policy)
    merge = Merge(
        id=new_id(),
        candidate_id=candidate.id,
        survivor_id=survivor.id,
        merged_id=alias_id,
        merged_at=now,
        merged_by=actor,
        reason=note or DEFAULT_MERGE_REASON,
        ended_membership_id=membership.id if membership else None,
        revoked_card_id=cards.revoked.id if cards.revoked else None,
        replacement_card_id=cards.issued.card.id if cards.issued else None,
    )
    uow.duplicates.add_merge(merge)
    categories = ["identity", "household"] if membership else ["identity"]
    subjects = [Subject.person(survivor.id), Subject.person(alias_id)]
    record_change(uow.access_log, uow.context, subjects, categories, f"person.merged merge={merge.id}", now)
    return merge, cards.issued is not None


class MergeUnit:
    """The approver's unit of work under the merge's own context: the same transaction, but the
    merge's registry writes are logged under `person_merge` (four_eyes opens no registry data)."""

    def __init__(self, uow: ReviewUnitOfWork, context: AccessContext) -> None:
        self._uow, self._context = uow, context

    @property
    def context(self) -> AccessContext:
        return self._context

    @property
    def clock(self) -> Clock:
        return self._uow.clock

    @property
    def persons(self) -> PersonRepository:
        return self._uow.persons

    @property
    def households(self) -> HouseholdRepository:
        return self._uow.households

    @property
    def memberships(self) -> MembershipRepository:
        return self._uow.memberships

    @property
    def cards(self) -> CardStore:
        return self._uow.cards

    @property
    def duplicates(self) -> DuplicateStore:
        return self._uow.duplicates

    @property
    def approvals(self) -> ApprovalStore:
        return self._uow.approvals

    @property
    def access_log(self) -> AccessLog:
        return self._uow.access_log

    def commit(self) -> None:
        raise RuntimeError("A merge runs inside the approval's transaction; the approval commits.")


def mergeable_pair(uow: ReviewUnitOfWork, candidate_id: str, survivor_id: str) -> Candidate:
    """The pair of a `person_merge` request, still decided 'same' and with neither record merged."""
    candidate = uow.duplicates.candidate(candidate_id) if is_id(candidate_id) else None
    if candidate is None:
        raise NotFound("unknown_candidate", f"No duplicate candidate with id '{candidate_id}'.")
    if candidate.status != "same":
        raise Conflict("decision_changed", f"This pair is no longer decided 'same' ({candidate.status}).")
    choose_survivor(uow, candidate, survivor_id)
    return candidate


def choose_survivor(uow: ReviewUnitOfWork, candidate: Candidate, survivor_id: str | None) -> Person:
    """The record that stays (the one not held, then the earlier enrolled, unless chosen); refuses a
    pair with a record already merged."""
    persons = uow.persons.get_many(list(candidate.person_ids))
    for person in persons.values():
        if person.record_status == "merged":
            raise Conflict("person_merged", "One of these records is already merged into another; undo that first.")
    return _survivor(persons, candidate, survivor_id)


def merge_approved(uow: ReviewUnitOfWork, keys: CardKeys, payload: Payload, policy: CardPolicy) -> tuple[Merge, bool]:
    """Inside the approver's transaction (no commit): carry out the approved merge of a 'same' pair
    and release held records that no longer wait for anything. Returns the merge and whether the
    survivor got a replacement card (which has no PIN yet)."""
    candidate = mergeable_pair(uow, payload["candidate_id"], payload["survivor_id"])
    locked = uow.duplicates.candidate(candidate.id, for_update=True) or candidate
    merge, needs_pin = merge_pair(uow, keys, locked, payload["survivor_id"], locked.decision_note, policy)
    release_holds(uow, locked.person_ids)
    return merge, needs_pin


def reopen_pair(uow: ReviewUnitOfWork, candidate_id: str, request_id: str) -> None:
    """Inside the transaction refusing or expiring a merge request (no commit): the pair goes back
    to the queue as open, so a reviewer looks again; held records stay held."""
    candidate = uow.duplicates.candidate(candidate_id, for_update=True) if is_id(candidate_id) else None
    if candidate is None or candidate.status != "same":
        return
    reopened = replace(candidate, status="open", decided_at=None, decided_by=None, decision_note=None)
    uow.duplicates.save_decision(reopened)
    subjects = [Subject.person(p) for p in candidate.person_ids]
    detail = f"duplicate.reopened candidate={candidate.id} request={request_id}"
    record_change(uow.access_log, uow.context, subjects, [], detail, uow.clock.now())


def release_holds(uow: ReviewUnitOfWork, person_ids: Sequence[str]) -> tuple[str, ...]:
    """Make held records active once none of their pairs is pending and no merge of theirs waits for
    approval (inside the caller's transaction)."""
    held = uow.duplicates.held_among(person_ids)
    if held:
        held -= _awaiting_merge(uow, held)
    released = tuple(sorted(p for p in held if not uow.duplicates.pending_count(p)))
    for person_id in released:
        uow.duplicates.set_record_status(person_id, "active", None)
    if released:
        record_change(
            uow.access_log,
            uow.context,
            [Subject.person(p) for p in released],
            ["identity"],
            "person.released_from_review",
            uow.clock.now(),
        )
    return released


def _awaiting_merge(uow: ReviewUnitOfWork, person_ids: Collection[str]) -> set[str]:
    """Which of these records are in a pair whose merge waits for a second account."""
    waiting = set()
    for found in uow.approvals.pending():
        if found.kind == PERSON_MERGE:
            candidate = uow.duplicates.candidate(found.data["candidate_id"])
            if candidate is not None:
                waiting |= set(candidate.person_ids) & set(person_ids)
    return waiting


def undo_merge(uow: ReviewUnitOfWork, merge_id: str, reason: str) -> Undone:
    """Make the alias a record of its own again and put its pair back in the queue.

    The alias rejoins the household it left if it still can (not in another household since, and
    no new reference person when it was the reference); otherwise it stays in none and the result
    says why. Its revoked card stays revoked: a new card must be issued at the desk.
    """
    require_reviewer(uow)
    why = clean_text(reason, "reason", MAX_REASON)
    merge = uow.duplicates.merge(merge_id, for_update=True) if is_id(merge_id) else None
    if merge is None:
        raise NotFound("unknown_merge", f"No merge with id '{merge_id}'.")
    if merge.undone:
        raise Conflict("merge_already_undone", "This merge was already undone.")
    alias = uow.persons.get(merge.merged_id)
    if alias is None or alias.record_status != "merged" or alias.merged_into != merge.survivor_id:
        raise Conflict("merge_not_current", "The record is no longer an alias from this merge.")
    now, actor = uow.clock.now(), uow.context.actor.id
    uow.duplicates.set_record_status(alias.id, "active", None)
    restored, problem = _rejoin(uow, merge, alias.id, why)
    undone = replace(
        merge, undone_at=now, undone_by=actor, undo_reason=why, restored_membership_id=restored.id if restored else None
    )
    uow.duplicates.save_undo(undone)
    if merge.candidate_id is not None:
        candidate = uow.duplicates.candidate(merge.candidate_id, for_update=True)
        if candidate is not None:
            reopened = replace(candidate, status="open", decided_at=None, decided_by=None, decision_note=None)
            uow.duplicates.save_decision(reopened)
    categories = ["identity", "household"] if restored else ["identity"]
    subjects = [Subject.person(merge.survivor_id), Subject.person(alias.id)]
    record_change(uow.access_log, uow.context, subjects, categories, f"person.merge_undone merge={merge.id}", now)
    uow.commit()
    return Undone(undone, restored is not None, problem, new_card_needed=merge.revoked_card_id is not None)


def _survivor(persons: Mapping[str, Person], candidate: Candidate, survivor_id: str | None) -> Person:
    if len(persons) != 2:
        raise NotFound("unknown_person", "A record of this pair no longer exists.")
    if survivor_id is None:
        return min(persons.values(), key=lambda p: (p.record_status == "held", p.enrolled_at, p.id))
    if survivor_id not in candidate.person_ids:
        raise InvalidInput("not_a_candidate_person", "The survivor must be one of the two records of this pair.")
    return persons[survivor_id]


def _rejoin(uow: ReviewUnitOfWork, merge: Merge, alias_id: str, why: str) -> tuple[Membership | None, str | None]:
    """The alias back in the household the merge took it out of, or why that is no longer possible."""
    if merge.ended_membership_id is None:
        return None, None
    ended = uow.duplicates.membership(merge.ended_membership_id)
    if ended is None:
        return None, "membership_missing"
    if uow.memberships.current_of_person(alias_id) is not None:
        return None, "already_in_household"
    members = uow.memberships.current_of_household(ended.household_id)
    if ended.relationship == "reference" and any(m.relationship == "reference" for m in members):
        return None, "reference_person_exists"
    membership = Membership(
        id=new_id(),
        household_id=ended.household_id,
        person_id=alias_id,
        relationship=ended.relationship,
        valid_from=uow.clock.today(),
        valid_to=None,
        recorded_at=uow.clock.now(),
        recorded_by=uow.context.actor.id,
        reason=f"merge undone: {why}",
    )
    uow.memberships.add(membership)
    return membership, None
