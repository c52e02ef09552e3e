"""Four-eyes person merges on SQLite and PostgreSQL: a reviewer's 'same' files a request, a second
reviewer or oversight account carries the merge out; refusal and expiry put the pair back in the queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from civicard.dedup.review import decide, hold_for_review, list_queue, open_case
from civicard.governance import approvals
from civicard.governance.approvals import FOUR_EYES
from civicard.governance.kinds import KINDS, PERSON_MERGE
from civicard.registry.lookup import get_person
from civicard.shared.clock import Clock
from civicard.transparency.access import Actor

from ..conftest import FIXED_NOW, REGISTRAR
from .dedup_fixtures import (
    REVIEWER,
    SECOND_REVIEWER,
    Uow,
    approve_merge,
    candidate_id,
    code,
    enroll,
    issue,
    log_head,
    log_since,
    pair,
    queue,
    review_units,
)

OVERSIGHT = Actor("oversight-olga", "oversight")


@pytest.fixture
def uow(engine: Engine, clock: Clock) -> Uow:
    return review_units(engine, clock)


def _ask(uow: Uow, a: str, b: str) -> str:
    with uow() as u:
        decided = decide(u, candidate_id(uow, a, b), "same", "same birth certificate")
    assert decided.merge is None and decided.merge_request_id is not None
    return decided.merge_request_id


def _status(uow: Uow, person_id: str) -> str:
    with uow("enrollment", REGISTRAR) as u:
        return get_person(u, person_id).record_status


def test_same_merges_nothing_until_a_second_reviewer_approves(uow: Uow) -> None:
    older, alias = enroll(uow, days_ago=10), enroll(uow, "Maria Jose")
    card = issue(uow, alias)
    queue(uow, pair(older, alias))
    request_id = _ask(uow, older, alias)
    assert (_status(uow, older), _status(uow, alias)) == ("active", "active")
    with uow() as u:
        case = open_case(u, candidate_id(uow, older, alias))
        assert case.candidate.status == "same" and case.merge_request_id == request_id and case.merges == []
        assert list_queue(u) == []  # decided: out of the queue while the merge waits
        assert u.cards.by_handle(card.card.handle).status == "valid"  # type: ignore[union-attr]
    with uow(FOUR_EYES, SECOND_REVIEWER) as u:
        waiting = approvals.pending(u, KINDS)
    assert [(r.id, r.kind, r.data["survivor_id"]) for r in waiting] == [(request_id, PERSON_MERGE, older)]

    done = approve_merge(uow, request_id)
    assert done.request.status == "executed" and "survivor_needs_pin" in done.outcome
    assert (_status(uow, older), _status(uow, alias)) == ("active", "merged")
    with uow() as u:
        case = open_case(u, candidate_id(uow, older, alias))
        assert case.merge_request_id is None and [m.merged_by for m in case.merges] == [SECOND_REVIEWER.id]


def test_the_deciding_reviewer_and_other_roles_cannot_approve_but_oversight_can(uow: Uow) -> None:
    a, b = enroll(uow, days_ago=10), enroll(uow, "Maria Jose")
    queue(uow, pair(a, b))
    request_id = _ask(uow, a, b)
    assert code(lambda: approve_merge(uow, request_id, REVIEWER)) == "same_account"
    assert code(lambda: approve_merge(uow, request_id, REGISTRAR)) == "approver_role_not_allowed"
    assert code(lambda: approve_merge(uow, request_id, Actor("admin-ana", "program_admin"))) == (
        "approver_role_not_allowed"
    )
    assert _status(uow, b) == "active"
    before = log_head(uow)
    approve_merge(uow, request_id, OVERSIGHT)
    assert _status(uow, b) == "merged"
    entries = {(row[0], row[2], row[3].split(" ")[0]) for row in log_since(uow, before)}
    assert {
        (FOUR_EYES, a, "approval.approved"),
        (FOUR_EYES, b, "approval.executed"),
        ("person_merge", b, "person.merged"),
    } <= entries
    assert code(lambda: approve_merge(uow, request_id)) == "approval_already_decided"


def test_a_refusal_reopens_the_pair_and_keeps_a_held_record_held(uow: Uow) -> None:
    existing, newcomer = enroll(uow, days_ago=30), enroll(uow, "Maria Jose")
    with uow("enrollment", REGISTRAR) as u:
        hold_for_review(u, newcomer, [pair(newcomer, existing)])
        u.commit()
    request_id = _ask(uow, existing, newcomer)
    assert _status(uow, newcomer) == "held"  # a pending merge keeps the hold
    before = log_head(uow)
    with uow(FOUR_EYES, SECOND_REVIEWER) as u:
        refused = approvals.refuse(u, KINDS, request_id, "the birth places differ")
    assert refused.status == "refused"
    with uow() as u:
        assert [(i.candidate.status, i.held) for i in list_queue(u)] == [("open", True)]
    assert (_status(uow, existing), _status(uow, newcomer)) == ("active", "held")
    steps = {(row[1], row[3].split(" ")[0]) for row in log_since(uow, before)}
    assert {("write", "approval.refused"), ("write", "duplicate.reopened")} <= steps
    with uow() as u:
        assert decide(u, candidate_id(uow, existing, newcomer), "different").released == (newcomer,)


def test_an_expired_request_cannot_be_approved_and_reopens_the_pair(uow: Uow) -> None:
    a, b = enroll(uow, days_ago=10), enroll(uow, "Maria Jose")
    queue(uow, pair(a, b))
    request_id = _ask(uow, a, b)
    later = Clock.fixed(FIXED_NOW + KINDS.get(PERSON_MERGE).lifetime + timedelta(minutes=1))
    with uow(FOUR_EYES, SECOND_REVIEWER, later) as u:
        assert code(lambda: approvals.approve(u, KINDS, request_id)) == "approval_expired"
    with uow() as u:
        assert u.approvals.get(request_id).status == "expired"  # type: ignore[union-attr]
        assert [i.candidate.status for i in list_queue(u)] == ["open"]
    assert _status(uow, b) == "active"
    assert _ask(uow, a, b) != request_id  # decided again, asked again


def test_a_held_record_in_a_waiting_merge_is_not_released_by_another_decision(uow: Uow) -> None:
    first, second = enroll(uow, days_ago=30), enroll(uow, "María J.", days_ago=20)
    newcomer = enroll(uow, "Maria Jose")
    with uow("enrollment", REGISTRAR) as u:
        hold_for_review(u, newcomer, [pair(newcomer, first), pair(newcomer, second)])
        u.commit()
    request_id = _ask(uow, first, newcomer)
    with uow() as u:
        assert decide(u, candidate_id(uow, second, newcomer), "different").released == ()
    assert _status(uow, newcomer) == "held"
    approve_merge(uow, request_id)
    assert (_status(uow, first), _status(uow, newcomer)) == ("active", "merged")


def test_the_queue_marks_an_expired_merge_request_and_shows_the_pair_again(uow: Uow) -> None:
    a, b = enroll(uow, days_ago=10), enroll(uow, "Maria Jose")
    queue(uow, pair(a, b))
    request_id = _ask(uow, a, b)
    later = Clock.fixed(FIXED_NOW + KINDS.get(PERSON_MERGE).lifetime)
    with uow(at=later) as u:
        assert [i.candidate.status for i in list_queue(u)] == ["open"]
    with uow(at=later) as u:
        assert u.approvals.get(request_id).status == "expired"  # type: ignore[union-attr]
        assert open_case(u, candidate_id(uow, a, b)).merge_request_id is None
