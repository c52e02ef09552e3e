"""The duplicate review queue on SQLite and PostgreSQL: raising pairs, holds, listing, opening, deciding."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from civicard.dedup.review import decide, decided_distinct, hold_for_review, list_queue, open_case, queue_pairs
from civicard.registry.lookup import get_person
from civicard.shared.clock import Clock
from civicard.transparency.access import Actor

from ..conftest import REGISTRAR
from .dedup_fixtures import (
    REASONS,
    Uow,
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


def _decide(uow: Uow, candidate: str, decision: str, **kw: object) -> object:
    with uow() as u:
        return decide(u, candidate, decision, **kw)  # type: ignore[arg-type]


def test_a_pair_is_queued_once_whatever_the_order_of_its_ids(uow: Uow) -> None:
    a, b, c = enroll(uow), enroll(uow, "Maria Jose"), enroll(uow, "María J.")
    assert queue(uow, pair(a, b), pair(b, a, 0.97), pair(a, c)) == 2
    assert queue(uow, pair(b, a), pair(c, a)) == 0
    with uow() as u:
        items = list_queue(u)
    assert [i.candidate.match_probability for i in items] == [0.97, 0.93]
    assert items[0].candidate.person_ids == tuple(sorted((a, b)))
    assert items[0].candidate.reasons == REASONS and items[0].candidate.source == "bulk"


def test_a_pair_decided_different_is_remembered_and_never_raised_again(uow: Uow) -> None:
    a, b = enroll(uow), enroll(uow, "Maria Jose")
    queue(uow, pair(a, b))
    _decide(uow, candidate_id(uow, a, b), "different", note="sisters, different birth certificates")
    assert queue(uow, pair(b, a, 0.99)) == 0
    with uow() as u:
        assert decided_distinct(u, [a]) == {frozenset((a, b))}
        assert decided_distinct(u, None) == {frozenset((a, b))}
        assert decided_distinct(u, [enroll(uow, "Otra")]) == set()
        assert list_queue(u) == []
        assert [i.candidate.status for i in list_queue(u, ["different"])] == ["different"]


def test_deciding_a_decided_pair_again_is_refused(uow: Uow) -> None:
    a, b = enroll(uow), enroll(uow, "Maria Jose")
    queue(uow, pair(a, b))
    candidate = candidate_id(uow, a, b)
    _decide(uow, candidate, "different")
    assert code(lambda: _decide(uow, candidate, "same")) == "already_decided"
    assert code(lambda: _decide(uow, "0" * 32, "same")) == "unknown_candidate"
    assert code(lambda: _decide(uow, "not-an-id", "same")) == "unknown_candidate"


def test_unsure_keeps_the_pair_in_the_queue_and_can_be_filtered(uow: Uow) -> None:
    a, b, c = enroll(uow), enroll(uow, "Maria Jose"), enroll(uow, "María J.")
    queue(uow, pair(a, b, 0.9), pair(a, c, 0.8))
    _decide(uow, candidate_id(uow, a, b), "unsure", note="ask for the birth certificate")
    with uow() as u:
        assert [i.candidate.status for i in list_queue(u)] == ["unsure", "open"]
        unsure = list_queue(u, ["unsure"])
    assert [i.candidate.decision_note for i in unsure] == ["ask for the birth certificate"]
    _decide(uow, candidate_id(uow, a, b), "different")  # an unsure pair can still be decided
    with uow() as u:
        assert [i.candidate.status for i in list_queue(u)] == ["open"]


def test_the_queue_pages_follow_the_cursor_most_probable_first(uow: Uow) -> None:
    anchor = enroll(uow)
    others = [enroll(uow, f"Persona {n}") for n in range(5)]
    queue(uow, *(pair(anchor, o, 0.5 + n / 10) for n, o in enumerate(others)))
    with uow() as u:
        first = list_queue(u, limit=3)
        second = list_queue(u, limit=3, after=first[-1].candidate.id)
        assert code(lambda: list_queue(u, ["closed"])) == "invalid_status"
        assert code(lambda: list_queue(u, after="x")) == "invalid_cursor"
    probabilities = [i.candidate.match_probability for i in first + second]
    assert probabilities == sorted(probabilities, reverse=True) and len(set(probabilities)) == 5


def test_opening_a_case_shows_both_records_side_by_side_and_logs_each_read(uow: Uow) -> None:
    home = household(uow)
    a = enroll(uow, household_id=home, national_id="52123456")
    b = enroll(uow, "Maria Jose")
    issue(uow, a)
    queue(uow, pair(a, b))
    before = log_head(uow)
    with uow() as u:
        case = open_case(u, candidate_id(uow, a, b))
    sides = {s.person_id: s for s in (case.left, case.right)}
    assert sides[a].person is not None and sides[a].person.national_id == "52123456"
    assert sides[a].household is not None and sides[a].household.id == home
    assert (sides[a].card_status, sides[b].card_status) == ("valid", None)
    assert sides[b].membership is None and case.candidate.reasons == REASONS
    assert case.categories == frozenset({"identity", "household"})
    logged = log_since(uow, before)
    assert sorted(row[2] or "" for row in logged) == sorted((a, b))
    assert all(row[:2] == ("duplicate_review", "read") for row in logged)
    assert all(row[3] == f"duplicate.case_read candidate={case.candidate.id}" for row in logged)


def test_only_a_reviewer_under_duplicate_review_sees_or_decides_the_queue(uow: Uow) -> None:
    a, b = enroll(uow), enroll(uow, "Maria Jose")
    queue(uow, pair(a, b))
    candidate = candidate_id(uow, a, b)
    assert code(lambda: uow(actor=REGISTRAR).__enter__()) == "purpose_not_allowed"
    with uow("appeal_review") as u:
        assert code(lambda: decide(u, candidate, "same")) == "purpose_not_allowed"
        assert code(lambda: open_case(u, candidate)) == "purpose_not_allowed"
        assert code(lambda: list_queue(u)) == "purpose_not_allowed"
    auditor = Actor("auditor-ana", "oversight")
    assert code(lambda: uow(actor=auditor).__enter__()) == "purpose_not_allowed"


def test_an_enrollment_held_for_review_gets_no_card_until_a_reviewer_releases_it(uow: Uow) -> None:
    existing = enroll(uow, days_ago=30)
    newcomer = enroll(uow, "Maria Jose")
    with uow("enrollment", REGISTRAR) as u:
        assert hold_for_review(u, newcomer, [pair(newcomer, existing, 0.91)]) == 1
        u.commit()
    assert code(lambda: issue(uow, newcomer)) == "person_held_for_review"
    with uow() as u:
        assert [i.held for i in list_queue(u)] == [True]
        assert list_queue(u)[0].candidate.source == "enrollment"
    decided = _decide(uow, candidate_id(uow, existing, newcomer), "different")
    assert decided.released == (newcomer,)  # type: ignore[attr-defined]
    assert issue(uow, newcomer).card.person_id == newcomer


def test_a_hold_lasts_while_any_of_its_pairs_is_pending(uow: Uow) -> None:
    first, second = enroll(uow, days_ago=30), enroll(uow, "María J.", days_ago=20)
    newcomer = enroll(uow, "Maria Jose")
    with uow("enrollment", REGISTRAR) as u:
        hold_for_review(u, newcomer, [pair(newcomer, first), pair(second, newcomer)])
        u.commit()
    _decide(uow, candidate_id(uow, first, newcomer), "different")
    _decide(uow, candidate_id(uow, second, newcomer), "unsure")
    with uow("enrollment", REGISTRAR) as u:
        assert get_person(u, newcomer).record_status == "held"
    _decide(uow, candidate_id(uow, second, newcomer), "different")
    with uow("enrollment", REGISTRAR) as u:
        assert get_person(u, newcomer).record_status == "active"


def test_holding_refuses_pairs_without_the_person_and_bad_pairs(uow: Uow) -> None:
    a, b, c = enroll(uow), enroll(uow, "Maria Jose"), enroll(uow, "María J.")
    with uow("enrollment", REGISTRAR) as u:
        assert code(lambda: hold_for_review(u, a, [pair(b, c)])) == "not_a_candidate_person"
        assert code(lambda: hold_for_review(u, "0" * 32, [pair(b, c)])) == "unknown_person"
        assert code(lambda: queue_pairs(u, [pair(a, a)], "bulk")) == "same_record_pair"
        assert code(lambda: queue_pairs(u, [pair(a, "0" * 32)], "bulk")) == "unknown_person"
        assert code(lambda: queue_pairs(u, [pair(a, b, 1.5)], "bulk")) == "invalid_probability"
        assert code(lambda: queue_pairs(u, [pair(a, b)], "manual")) == "invalid_source"


def test_holding_is_part_of_the_enrollment_transaction(uow: Uow) -> None:
    existing, newcomer = enroll(uow), enroll(uow, "Maria Jose")
    with uow("enrollment", REGISTRAR) as u:
        hold_for_review(u, newcomer, [pair(newcomer, existing)])  # no commit: rolled back on exit
    with uow() as u:
        assert list_queue(u) == []
    assert issue(uow, newcomer).card.person_id == newcomer


def test_a_decision_is_logged_for_both_persons(uow: Uow) -> None:
    a, b = enroll(uow), enroll(uow, "Maria Jose")
    queue(uow, pair(a, b))
    before = log_head(uow)
    candidate = candidate_id(uow, a, b)
    _decide(uow, candidate, "different")
    logged = log_since(uow, before)
    assert {(row[0], row[1], row[3]) for row in logged} == {
        ("duplicate_review", "write", f"duplicate.decided candidate={candidate} decision=different")
    }
    assert sorted(row[2] or "" for row in logged) == sorted((a, b))
