"""Shared helpers for the duplicate review tests: enroll people, queue pairs, open reviewer units of work."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, select

from civicard.adapters.db import tables as t
from civicard.adapters.db.dedup_store import SqlReviewUnitOfWork
from civicard.dedup.pairs import Reason, ScoredPair
from civicard.dedup.review import raise_candidates
from civicard.governance import approvals
from civicard.governance.approvals import FOUR_EYES, Approved
from civicard.governance.kinds import KINDS
from civicard.identity.cards import CardKeys, CardPolicy, IssuedCard, issue_card
from civicard.registry.enrollment import CreateHousehold, EnrollPerson, create_household, enroll_person
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Actor

from ..conftest import FIXED_NOW, REGISTRAR

KEYS = CardKeys.derive(RootKey(hashlib.sha256(b"civicard dedup tests").digest()))
POLICY = CardPolicy(status_list_capacity=2**20)
REVIEWER = Actor("reviewer-rita", "reviewer")
SECOND_REVIEWER = Actor("reviewer-raul", "reviewer")
SYSTEM = Actor("dedup-run", "system")
REASONS = (
    Reason("name", "close", "one letter different", 6.1),
    Reason("birth_date", "agree", "same date", 9.3),
    Reason("national_id", "missing", "no document on one side", 0.0),
)
Uow = Callable[..., SqlReviewUnitOfWork]


def review_units(engine: Engine, clock: Clock) -> Uow:
    """`make(purpose="duplicate_review", actor=REVIEWER, at=clock)`: a unit of work like a request's."""

    def make(purpose: str = "duplicate_review", actor: Actor = REVIEWER, at: Clock = clock) -> SqlReviewUnitOfWork:
        return SqlReviewUnitOfWork(engine, AccessContext(actor, purpose), at, card_keys=KEYS, card_policy=POLICY)

    return make


def approve_merge(review_uow: Uow, request_id: str, actor: Actor = SECOND_REVIEWER) -> Approved:
    """A second account approves a 'same' decision's merge request (four eyes), which merges."""
    with review_uow(FOUR_EYES, actor) as uow:
        return approvals.approve(uow, KINDS, request_id, "checked both documents")


def household(review_uow: Uow, street: str = "Calle 5 # 10-20") -> str:
    with review_uow("enrollment", REGISTRAR) as uow:
        return create_household(uow, CreateHousehold("NOR-01", street, "10001")).id


def enroll(
    review_uow: Uow,
    given: str = "María José",
    household_id: str | None = None,
    relationship: str = "reference",
    days_ago: int = 0,
    national_id: str | None = None,
) -> str:
    cmd = EnrollPerson(
        given_names=given,
        first_surname="Pérez",
        second_surname="Gómez",
        birth_date=date(1984, 3, 9),
        birth_place="San Rafael",
        sex="F",
        address_line="Calle 5 # 10-20",
        municipality="NOR-01",
        postcode="10001",
        national_id=national_id,
        household_id=household_id,
        relationship=relationship,
    )
    with review_uow("enrollment", REGISTRAR, Clock.fixed(FIXED_NOW - timedelta(days=days_ago))) as uow:
        return enroll_person(uow, cmd).id


def issue(review_uow: Uow, person_id: str) -> IssuedCard:
    with review_uow("card_service", REGISTRAR) as uow:
        return issue_card(uow, KEYS, person_id, "4821", POLICY)


def pair(a: str, b: str, probability: float = 0.93) -> ScoredPair:
    return ScoredPair(a, b, probability, REASONS)


def queue(review_uow: Uow, *pairs: ScoredPair) -> int:
    with review_uow("bulk_import", SYSTEM) as uow:
        return raise_candidates(uow, pairs, "bulk")


def candidate_id(review_uow: Uow, a: str, b: str) -> str:
    left, right = sorted((a, b))
    c = t.duplicate_candidates.c
    with review_uow() as uow:
        found = uow.connection.execute(select(c.id).where(c.person_id_l == left, c.person_id_r == right)).scalar()
    assert found is not None
    return str(found)


def code(action: Callable[[], object]) -> str:
    with pytest.raises(DomainError) as refused:
        action()
    return refused.value.code


def log_since(review_uow: Uow, seq: int) -> list[tuple[str, str, str | None, str]]:
    a = t.access_log.c
    with review_uow() as uow:
        rows = uow.connection.execute(select(t.access_log).where(a.seq > seq).order_by(a.seq))
        return [(r.purpose, r.action, r.subject_person_id, r.detail) for r in rows]


def log_head(review_uow: Uow) -> int:
    with review_uow() as uow:
        return int(uow.connection.execute(select(t.access_log.c.seq).order_by(t.access_log.c.seq.desc())).scalar() or 0)
