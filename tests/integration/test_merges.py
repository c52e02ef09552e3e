"""Merging two records of one person and undoing it, on SQLite and PostgreSQL: cards, households, log."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import PublishedCardMaterial
from civicard.dedup.cases import Decided
from civicard.dedup.merging import undo_merge
from civicard.dedup.review import decide, hold_for_review, list_queue
from civicard.identity.cards import card_token
from civicard.identity.terminal_check import OfflineVerifier
from civicard.registry.enrollment import add_member
from civicard.registry.lookup import get_household, get_person
from civicard.shared.clock import Clock

from ..conftest import FIXED_NOW, REGISTRAR
from .dedup_fixtures import (
    KEYS,
    Uow,
    approve_merge,
    candidate_id,
    code,
    enroll,
    household,
    issue,
    log_head,
    log_since,
    pair,
    queue,
    review_units,
)


@pytest.fixture
def uow(engine: Engine, clock: Clock) -> Uow:
    return review_units(engine, clock)


def _same(uow: Uow, a: str, b: str, survivor_id: str | None = None) -> Decided:
    """A reviewer decides 'same' and a second reviewer approves the merge request it filed."""
    with uow() as u:
        asked = decide(u, candidate_id(uow, a, b), "same", "same birth certificate", survivor_id)
    assert asked.merge is None and asked.merge_request_id is not None
    done = approve_merge(uow, asked.merge_request_id)
    with uow() as u:
        merges = [m for m in u.duplicates.merges_between((a, b)) if not m.undone]
    return Decided(asked.candidate, merges[0], (), "survivor_needs_pin" in done.outcome)


def _status(uow: Uow, person_id: str) -> tuple[str, str | None]:
    with uow("enrollment", REGISTRAR) as u:
        record = get_person(u, person_id)
    return record.record_status, record.merged_into


def _row_counts(engine: Engine, uow: Uow) -> dict[str, int]:
    with uow() as u:
        return {
            name: u.connection.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in t.metadata.tables.items()
            if name != "access_log"
        }


def test_merging_keeps_the_earlier_record_and_moves_the_card_to_it(uow: Uow, engine: Engine) -> None:
    home = household(uow)
    older = enroll(uow, days_ago=400)
    alias = enroll(uow, "Maria Jose", household_id=home)
    old_card = issue(uow, alias)
    queue(uow, pair(alias, older))
    before = log_head(uow)
    decided = _same(uow, alias, older)
    merge = decided.merge
    assert merge is not None and (merge.survivor_id, merge.merged_id) == (older, alias)
    assert merge.revoked_card_id == old_card.card.id and merge.replacement_card_id is not None
    assert decided.candidate.status == "same" and decided.survivor_needs_pin
    assert _status(uow, alias) == ("merged", older) and _status(uow, older) == ("active", None)
    with uow("card_service", REGISTRAR) as u:
        assert u.cards.current_of_person(alias) is None
        successor = u.cards.current_of_person(older)
        revoked = u.cards.by_handle(old_card.card.handle)
    assert successor is not None and successor.replaces_card_id == old_card.card.id
    assert revoked is not None and (revoked.status, revoked.status_reason) == ("revoked", "duplicate")
    latest = PublishedCardMaterial(engine).latest()
    assert latest is not None
    terminal = OfflineVerifier.from_published(KEYS.keyring.cose_key_set(), latest.signed_list)
    assert terminal.check(old_card.token, FIXED_NOW).code == "card_revoked"
    assert terminal.check(card_token(successor, KEYS), FIXED_NOW).code == "card_valid"
    with uow("enrollment", REGISTRAR) as u:
        assert get_household(u, home).members == []  # the alias left; its membership is ended, not deleted
        assert u.memberships.current_of_person(alias) is None
    details = {(row[0], row[2], row[3].split(" ")[0]) for row in log_since(uow, before)}
    assert {
        ("person_merge", alias, "person.merged"),
        ("person_merge", older, "person.merged"),
        ("person_merge", alias, "card.revoked"),
        ("person_merge", older, "card.replaced"),
        ("duplicate_review", alias, "duplicate.decided"),
    } <= details


def test_a_survivor_with_its_own_card_keeps_it_and_gets_no_second(uow: Uow) -> None:
    a, b = enroll(uow, days_ago=10), enroll(uow, "Maria Jose")
    kept, revoked = issue(uow, a), issue(uow, b)
    queue(uow, pair(a, b))
    decided = _same(uow, a, b)
    assert decided.merge is not None and decided.merge.replacement_card_id is None
    assert decided.merge.revoked_card_id == revoked.card.id and not decided.survivor_needs_pin
    with uow("card_service", REGISTRAR) as u:
        current = u.cards.current_of_person(a)
    assert current is not None and current.id == kept.card.id


def test_the_reviewer_may_choose_the_survivor_but_only_from_the_pair(uow: Uow) -> None:
    older, newer, stranger = enroll(uow, days_ago=10), enroll(uow, "Maria Jose"), enroll(uow, "Otra")
    queue(uow, pair(older, newer))
    assert code(lambda: _same(uow, older, newer, stranger)) == "not_a_candidate_person"
    decided = _same(uow, older, newer, survivor_id=newer)
    assert decided.merge is not None and decided.merge.survivor_id == newer
    assert _status(uow, older) == ("merged", newer)


def test_a_merged_record_gets_no_card_and_cannot_be_merged_again(uow: Uow) -> None:
    a, b, c = enroll(uow, days_ago=10), enroll(uow, "Maria Jose"), enroll(uow, "María J.")
    queue(uow, pair(a, b), pair(b, c))
    _same(uow, a, b)
    assert code(lambda: issue(uow, b)) == "person_merged"
    assert code(lambda: _same(uow, b, c)) == "person_merged"
    with uow() as u:
        different = decide(u, candidate_id(uow, b, c), "different")
    assert different.candidate.status == "different"


def test_a_held_enrollment_merged_into_an_existing_record_leaves_the_queue(uow: Uow) -> None:
    existing, newcomer = enroll(uow, days_ago=30), enroll(uow, "Maria Jose")
    with uow("enrollment", REGISTRAR) as u:
        hold_for_review(u, newcomer, [pair(newcomer, existing)])
        u.commit()
    decided = _same(uow, existing, newcomer)
    assert decided.merge is not None and decided.merge.survivor_id == existing  # held never survives by default
    assert _status(uow, newcomer) == ("merged", existing)
    with uow() as u:
        assert list_queue(u) == []


def test_undoing_a_merge_restores_the_alias_and_reopens_the_pair_without_deleting(uow: Uow, engine: Engine) -> None:
    home = household(uow)
    survivor = enroll(uow, days_ago=400)
    alias = enroll(uow, "Maria Jose", household_id=home, relationship="reference")
    issue(uow, alias)
    queue(uow, pair(alias, survivor))
    merge = _same(uow, alias, survivor).merge
    assert merge is not None
    counts = _row_counts(engine, uow)
    before = log_head(uow)
    with uow() as u:
        undone = undo_merge(u, merge.id, "the documents belong to twin sisters")
    assert undone.membership_restored and undone.membership_problem is None and undone.new_card_needed
    assert undone.merge.undone_at == FIXED_NOW and undone.merge.undo_reason == "the documents belong to twin sisters"
    assert _status(uow, alias) == ("active", None)
    with uow("enrollment", REGISTRAR) as u:
        members = get_household(u, home).members
        assert [(m.person_id, m.relationship) for m, _ in members] == [(alias, "reference")]
    with uow("card_service", REGISTRAR) as u:
        assert u.cards.current_of_person(alias) is None  # revocation is final: a new card must be issued
        assert u.cards.current_of_person(survivor) is not None
    with uow() as u:
        reopened = list_queue(u)
    assert [(i.candidate.id, i.candidate.status, i.candidate.decided_by) for i in reopened] == [
        (merge.candidate_id, "open", None)
    ]
    after = _row_counts(engine, uow)
    assert after["memberships"] == counts["memberships"] + 1  # a new membership; the ended one is kept
    assert all(after[name] >= counts[name] for name in counts)
    writes = {(row[2], row[3]) for row in log_since(uow, before) if row[1] == "write"}
    assert writes == {(p, f"person.merge_undone merge={merge.id}") for p in (alias, survivor)}
    assert issue(uow, alias).card.person_id == alias


def test_an_undo_says_so_when_the_household_has_a_new_reference_person(uow: Uow) -> None:
    home = household(uow)
    survivor = enroll(uow, days_ago=400)
    alias = enroll(uow, "Maria Jose", household_id=home, relationship="reference")
    queue(uow, pair(alias, survivor))
    merge = _same(uow, alias, survivor).merge
    assert merge is not None
    newcomer = enroll(uow, "Ana")
    with uow("enrollment", REGISTRAR) as u:
        add_member(u, home, newcomer, "reference", "took over the household")
    with uow() as u:
        undone = undo_merge(u, merge.id, "different people after all")
    assert (undone.membership_restored, undone.membership_problem) == (False, "reference_person_exists")
    assert not undone.new_card_needed
    with uow("enrollment", REGISTRAR) as u:
        assert u.memberships.current_of_person(alias) is None


def test_a_merge_is_undone_once_and_only_by_a_reviewer(uow: Uow) -> None:
    a, b = enroll(uow, days_ago=10), enroll(uow, "Maria Jose")
    queue(uow, pair(a, b))
    merge = _same(uow, a, b).merge
    assert merge is not None
    with uow("correction_review") as u:
        assert code(lambda: undo_merge(u, merge.id, "wrong")) == "purpose_not_allowed"
    with uow() as u:
        assert code(lambda: undo_merge(u, merge.id, "   ")) == "missing_reason"
        assert code(lambda: undo_merge(u, "0" * 32, "wrong")) == "unknown_merge"
        undo_merge(u, merge.id, "wrong")
    with uow() as u:
        assert code(lambda: undo_merge(u, merge.id, "wrong again")) == "merge_already_undone"
    decided = _same(uow, a, b)  # the reopened pair can be merged again
    assert decided.merge is not None and decided.merge.id != merge.id


def test_a_refused_merge_changes_nothing(uow: Uow, engine: Engine) -> None:
    a, b, c = enroll(uow, days_ago=10), enroll(uow, "Maria Jose"), enroll(uow, "Otra")
    issue(uow, b)
    queue(uow, pair(a, b))
    counts, before = _row_counts(engine, uow), log_head(uow)
    assert code(lambda: _same(uow, a, b, survivor_id=c)) == "not_a_candidate_person"
    assert _row_counts(engine, uow) == counts and log_since(uow, before) == []
    assert _status(uow, b) == ("active", None)


def test_a_held_survivor_stays_held_while_another_of_its_pairs_is_pending(uow: Uow) -> None:
    first, second = enroll(uow, days_ago=30), enroll(uow, "María J.", days_ago=20)
    newcomer = enroll(uow, "Maria Jose")
    with uow("enrollment", REGISTRAR) as u:
        hold_for_review(u, newcomer, [pair(newcomer, first), pair(newcomer, second)])
        u.commit()
    _same(uow, first, newcomer, survivor_id=newcomer)
    assert _status(uow, newcomer) == ("held", None)
    assert _status(uow, first) == ("merged", newcomer)
    with uow() as u:
        released = decide(u, candidate_id(uow, second, newcomer), "different").released
    assert released == (newcomer,) and _status(uow, newcomer) == ("active", None)
