"""A possible duplicate in the seeded town: a second enrollment of a resident, queued for review."""

from __future__ import annotations

from datetime import date

from sqlalchemy import or_, select

from civicard.adapters.db import tables as t
from civicard.adapters.db.dedup_store import SqlReviewUnitOfWork
from civicard.dedup.pairs import Reason, ScoredPair
from civicard.dedup.review import raise_candidates
from civicard.registry.enrollment import EnrollPerson, enroll_person
from civicard.transparency.access import AccessContext, Actor
from tests.e2e.conftest import SEED_CONTEXT, LiveServer

DEDUP_RUN = AccessContext(Actor("e2e:dedup", "system"), "bulk_import")
REASONS = (
    Reason("name", "close", "accents missing", 7.2),
    Reason("birth_date", "agree", "same date", 9.8),
    Reason("national_id", "missing", "no document on one side", 0.0),
)


def seed_duplicate(
    server: LiveServer, original: str, given: str, household_id: str | None = None, probability: float = 0.94
) -> tuple[str, str]:
    """Enroll a second record of `original` (a seeded full name) and queue the pair; returns (alias, candidate)."""
    _, surname, second = original.rsplit(" ", 2)
    cmd = EnrollPerson(
        given_names=given,
        first_surname=surname,
        second_surname=second,
        birth_date=date(1984, 3, 9),
        birth_place="San Rafael",
        sex="F",
        address_line="Calle 5 # 10-20",
        municipality="NOR-01",
        postcode="10001",
        household_id=household_id,
        relationship="other_relative",
    )
    container = server.container
    with container.uow(SEED_CONTEXT) as uow:
        alias = enroll_person(uow, cmd).id
    pair = ScoredPair(alias, server.person(original), probability, REASONS)
    with SqlReviewUnitOfWork(container.engine, DEDUP_RUN, container.clock) as uow:
        assert raise_candidates(uow, [pair], "bulk") == 1
    with SqlReviewUnitOfWork(container.engine, DEDUP_RUN, container.clock) as uow:
        return alias, _candidate_of(uow, alias)


def _candidate_of(uow: SqlReviewUnitOfWork, person_id: str) -> str:
    c = t.duplicate_candidates.c
    query = select(c.id).where(or_(c.person_id_l == person_id, c.person_id_r == person_id))
    return str(uow.connection.execute(query).scalar_one())
