"""Merging two records of one person, and undoing a merge; nothing is deleted either way.

A merge keeps the survivor and turns the other record into an alias (`record_status` merged,
`merged_into` the survivor): the alias leaves its household (the membership is ended, not
removed), its card is revoked with reason `duplicate`, and the survivor gets that card's
successor if it had no card of its own. The merge row stores the ended membership and both cards,
so an undo knows exactly what to reverse. Revocation is final (the status list never takes a card
back), so after an undo the alias needs a new card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from civicard.dedup.cases import Candidate, Merge, Undone
from civicard.dedup.ports import ReviewUnitOfWork
from civicard.identity.cards import DEFAULT_POLICY, CardKeys, CardPolicy, transfer_card
from civicard.registry.model import Membership, Person
from civicard.shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from civicard.shared.ids import is_id, new_id
from civicard.shared.text import clean_text
from civicard.transparency.access import Subject, record_change

DUPLICATE_REVIEW = "duplicate_review"
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
    """Inside the reviewer's transaction (no commit): merge the candidate's two records.

    Returns the merge and whether the survivor got a replacement card (which has no PIN yet).
    The survivor defaults to the record that is not held, then the earlier enrolled one; a held
    survivor stays held while it has other pairs pending (the caller releases it).
    """
    persons = uow.persons.get_many(list(candidate.person_ids))
    for person in persons.values():
        if person.record_status == "merged":
            raise Conflict("person_merged", "One of these records is already merged into another; undo that first.")
    survivor = _survivor(persons, candidate, survivor_id)
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
