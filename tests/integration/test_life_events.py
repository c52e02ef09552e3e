"""Life events on SQLite and PostgreSQL: each one transaction, history kept, seen by the next cycle."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from civicard.adapters.bulk.cycle import run_cycle
from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.life_event_store import SqlLifeEventUnitOfWork
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.identity.cards import CardKeys, issue_card
from civicard.registry.enrollment import CreateHousehold, EnrollPerson, create_household, enroll_person
from civicard.registry.life_events import (
    NewAddress,
    RecordBirth,
    events_about_person,
    events_of_household,
    merge_households,
    move_household,
    record_birth,
    record_death,
    split_household,
)
from civicard.registry.lookup import get_person
from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, DomainError, Forbidden, InvalidInput
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Actor

from ..conftest import REGISTRAR
from .test_cycle import RULES, register_published

KEYS = CardKeys.derive(RootKey(hashlib.sha256(b"civicard life event tests").digest()))
SYSTEM = Actor("test:cycle", "system")
CURRENT, NEXT = "2026-11", "2026-12"  # the fixed clock is 2026-11-15
ENROLLED = date(2026, 1, 10)  # the town was enrolled earlier in the year
UowFor = Callable[..., SqlUnitOfWork]


@dataclass(frozen=True)
class Town:
    family: str  # household: Ana (reference), Luis (spouse), Pablo (adult son)
    single: str  # household: Rosa (reference), alone
    ana: str
    luis: str
    pablo: str
    rosa: str


def _adult(given: str, born: date, household_id: str, relationship: str) -> EnrollPerson:
    return EnrollPerson(
        given_names=given,
        first_surname="Quintero",
        birth_date=born,
        birth_place="San Rafael",
        sex="F" if given in ("Ana", "Rosa") else "M",
        address_line="Calle 5 # 10-20",
        municipality="NOR-01",
        postcode="10001",
        household_id=household_id,
        relationship=relationship,
    )


@pytest.fixture
def town(engine: sa.Engine, clock: Clock, uow_for: UowFor) -> Town:
    def desk() -> SqlUnitOfWork:
        return SqlUnitOfWork(
            engine, AccessContext(REGISTRAR, "enrollment"), Clock.fixed(datetime(2026, 1, 10, 9, 0, tzinfo=UTC))
        )

    with desk() as uow:
        family = create_household(uow, CreateHousehold("NOR-01", "Calle 5 # 10-20", "10001")).id
    with desk() as uow:
        single = create_household(uow, CreateHousehold("NOR-02", "Carrera 9 # 3-4", "10002")).id
    ids = {}
    for given, born, household, relationship in (
        ("Ana", date(1980, 2, 1), family, "reference"),
        ("Luis", date(1978, 6, 3), family, "spouse"),
        ("Pablo", date(2004, 9, 9), family, "child"),
        ("Rosa", date(1950, 1, 20), single, "reference"),
    ):
        with desk() as uow:
            ids[given.lower()] = enroll_person(uow, _adult(given, born, household, relationship)).id
    with uow_for("cycle_run", SYSTEM) as uow:
        for path in sorted(RULES.glob("*/*.yaml")):
            if yaml.safe_load(path.read_text(encoding="utf-8"))["status"] != "draft":
                register_published(uow, path, clock)
        uow.commit()
    return Town(family, single, **ids)


def _events(
    engine: sa.Engine, clock: Clock, actor: Actor = REGISTRAR, purpose: str = "life_event"
) -> SqlLifeEventUnitOfWork:
    return SqlLifeEventUnitOfWork(engine, AccessContext(actor, purpose), clock)


def _cycle(uow_for: UowFor, tmp_path: Path, period: str) -> None:
    with uow_for("cycle_run", SYSTEM) as uow:
        run_cycle(uow, period, tmp_path / "out")
        uow.commit()


def _inputs(uow_for: UowFor, period: str, household_id: str) -> tuple[str, dict[str, Any]]:
    """The region and rule inputs the cycle of `period` stored for the household."""
    i = t.decision_inputs.c
    with uow_for("oversight_case", Actor("test:oversight", "oversight")) as uow:
        row = uow.connection.execute(
            sa.select(i.region, i.inputs).where(i.period == period, i.household_id == household_id)
        ).one()
    return row.region, json.loads(row.inputs)


def _counts(uow_for: UowFor) -> dict[str, int]:
    with uow_for("oversight_case", Actor("test:oversight", "oversight")) as uow:
        return {
            name: uow.connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for name, table in t.metadata.tables.items()
        }


def _memberships(uow_for: UowFor, person_id: str) -> list[tuple[str, date, date | None, str | None]]:
    m = t.memberships.c
    with uow_for("oversight_case", Actor("test:oversight", "oversight")) as uow:
        rows = uow.connection.execute(
            sa.select(m.household_id, m.valid_from, m.valid_to, m.end_reason)
            .where(m.person_id == person_id)
            .order_by(m.valid_from, m.recorded_at, m.valid_to.is_(None))
        )
        return [(r.household_id, r.valid_from, r.valid_to, r.end_reason) for r in rows]


def test_a_death_revokes_cards_keeps_the_record_and_stops_counting_from_the_next_cycle(
    town: Town, engine: sa.Engine, clock: Clock, uow_for: UowFor, tmp_path: Path
) -> None:
    with SqlCardUnitOfWork(engine, AccessContext(REGISTRAR, "card_service"), clock) as uow:
        card = issue_card(uow, KEYS, town.luis).card
    _cycle(uow_for, tmp_path, CURRENT)
    with uow_for("oversight_case", Actor("test:oversight", "oversight")) as uow:
        granted_before = uow.decisions.household_entitlements(town.family, CURRENT)

    with _events(engine, clock) as uow:
        event = record_death(uow, KEYS, town.luis, date(2026, 11, 10), "ACTA-2026/0042", "death certificate")

    assert (event.kind, event.person_id, event.household_id) == ("death", town.luis, town.family)
    assert event.details["cards_revoked"] == [card.id]
    with SqlCardUnitOfWork(engine, AccessContext(REGISTRAR, "card_service"), clock) as uow:
        revoked = uow.cards.by_id(card.id)
        assert revoked is not None and (revoked.status, revoked.status_reason) == ("revoked", "deceased")
        assert uow.cards.listed_statuses() == [(card.status_index, "revoked")]
    with uow_for("enrollment") as uow:
        record = get_person(uow, town.luis)
    assert record.record_status == "deceased" and record.membership is None
    assert record.person is not None and record.person.deceased_on == date(2026, 11, 10)
    assert _memberships(uow_for, town.luis) == [(town.family, ENROLLED, date(2026, 11, 10), "death")]

    _cycle(uow_for, tmp_path, NEXT)
    with uow_for("oversight_case", Actor("test:oversight", "oversight")) as uow:
        assert uow.decisions.household_entitlements(town.family, CURRENT) == granted_before
    assert _inputs(uow_for, CURRENT, town.family)[1]["household"]["member_count"] == 3.0
    assert _inputs(uow_for, NEXT, town.family)[1]["household"]["member_count"] == 2.0


def test_a_death_is_refused_twice_in_the_future_without_a_document_or_under_another_purpose(
    town: Town, engine: sa.Engine, clock: Clock, uow_for: UowFor
) -> None:
    before = _counts(uow_for)
    refusals = [
        (date(2026, 12, 1), "ACTA-1", "date_in_future"),
        (date(1977, 1, 1), "ACTA-1", "date_before_birth"),
        (date(2026, 11, 1), "  ", "missing_document_ref"),
        (date(2026, 11, 1), "<script>", "invalid_document_ref"),
    ]
    for died_on, ref, code in refusals:
        with _events(engine, clock) as uow, pytest.raises(InvalidInput) as refused:
            record_death(uow, KEYS, town.luis, died_on, ref, "death certificate")
        assert refused.value.code == code
    with _events(engine, clock, purpose="enrollment") as uow, pytest.raises(Forbidden):
        record_death(uow, KEYS, town.luis, date(2026, 11, 1), "ACTA-1", "death certificate")
    assert _counts(uow_for) == before
    with _events(engine, clock) as uow:
        record_death(uow, KEYS, town.luis, date(2026, 11, 1), "ACTA-1", "death certificate")
    with _events(engine, clock) as uow, pytest.raises(Conflict) as again:
        record_death(uow, KEYS, town.luis, date(2026, 11, 1), "ACTA-1", "death certificate")
    assert again.value.code == "already_deceased"


def test_a_birth_adds_the_child_from_the_birth_date_and_the_next_cycle_counts_them(
    town: Town, engine: sa.Engine, clock: Clock, uow_for: UowFor, tmp_path: Path
) -> None:
    _cycle(uow_for, tmp_path, CURRENT)
    birth = RecordBirth(
        household_id=town.family,
        given_names="Sofía",
        first_surname="Quintero",
        birth_date=date(2026, 11, 2),
        birth_place="San Rafael",
        sex="F",
        document_ref="RC-2026-118",
        reason="birth registered at the civil registry",
    )
    with _events(engine, clock) as uow:
        event = record_birth(uow, birth)
    assert event.kind == "birth" and event.household_id == town.family and event.document_ref == "RC-2026-118"
    assert event.person_id is not None
    assert _memberships(uow_for, event.person_id) == [(town.family, date(2026, 11, 2), None, None)]
    with uow_for("enrollment") as uow:
        child = get_person(uow, event.person_id).person
    assert child is not None and child.address_line == "Calle 5 # 10-20" and child.record_status == "active"

    _cycle(uow_for, tmp_path, NEXT)
    _, inputs = _inputs(uow_for, NEXT, town.family)
    assert inputs["household"]["member_count"] == 4.0
    assert sorted(m["age"] for m in inputs["members"])[0] == 0.0


def test_a_failing_step_leaves_nothing_behind(town: Town, engine: sa.Engine, clock: Clock, uow_for: UowFor) -> None:
    before = _counts(uow_for)
    # The child is registered before the membership is refused (the household has a reference person).
    refused = RecordBirth(
        town.family, "Sofía", "Quintero", date(2026, 11, 2), "San Rafael", "F", "RC-2026-118", "birth", "reference"
    )
    with _events(engine, clock) as uow, pytest.raises(Conflict) as birth:
        record_birth(uow, refused)
    assert birth.value.code == "reference_person_exists"
    with _events(engine, clock) as uow, pytest.raises(DomainError) as merge:
        merge_households(uow, town.single, town.family, date(2026, 11, 14), "moved in", {town.rosa: "reference"})
    assert merge.value.code == "reference_person_exists"
    with _events(engine, clock) as uow, pytest.raises(InvalidInput) as split:
        split_household(
            uow,
            town.family,
            {town.pablo: "reference"},
            NewAddress("SUR-02", "Avenida 1", "20002", region="NORTE"),
            date(2026, 11, 14),
            "left home",
        )
    assert split.value.code == "region_mismatch"
    assert _counts(uow_for) == before


def test_a_move_changes_the_region_for_the_next_cycle_and_keeps_the_old_codes(
    town: Town, engine: sa.Engine, clock: Clock, uow_for: UowFor, tmp_path: Path
) -> None:
    _cycle(uow_for, tmp_path, CURRENT)
    with _events(engine, clock) as uow:
        event = move_household(
            uow, town.single, NewAddress("SUR-02", "Avenida del Río 12", "20002"), date(2026, 11, 14), "moved south"
        )
    assert event.details["from"] == {"municipality": "NOR-02", "region": "NORTE", "postcode": "10002"}
    assert event.details["to"] == {"municipality": "SUR-02", "region": "SUR", "postcode": "20002"}
    with uow_for("enrollment") as uow:
        rosa = get_person(uow, town.rosa).person
        corrections = uow.connection.execute(
            sa.select(t.person_corrections.c.field, t.person_corrections.c.old_value).where(
                t.person_corrections.c.person_id == town.rosa
            )
        )
        old = {r.field: r.old_value for r in corrections}
    assert rosa is not None and (rosa.municipality, rosa.region) == ("SUR-02", "SUR")
    assert old == {"address_line": "Calle 5 # 10-20", "municipality": "NOR-01", "region": "NORTE", "postcode": "10001"}

    _cycle(uow_for, tmp_path, NEXT)
    assert _inputs(uow_for, CURRENT, town.single)[0] == "NORTE"
    assert _inputs(uow_for, NEXT, town.single)[0] == "SUR"


def test_split_and_merge_end_memberships_keep_history_and_show_to_the_resident(
    town: Town, engine: sa.Engine, clock: Clock, uow_for: UowFor, tmp_path: Path
) -> None:
    with _events(engine, clock) as uow:
        split = split_household(
            uow,
            town.family,
            {town.pablo: "reference"},
            NewAddress("NOR-03", "Calle 8 # 1-2", "10003"),
            date(2026, 11, 1),
            "left home",
        )
    new = split.other_household_id
    assert new is not None and split.details["person_ids"] == [town.pablo]
    with _events(engine, clock) as uow:
        merge = merge_households(uow, new, town.single, date(2026, 11, 14), "moved in with his grandmother")
    assert (merge.household_id, merge.other_household_id) == (new, town.single)
    assert _memberships(uow_for, town.pablo) == [
        (town.family, ENROLLED, date(2026, 11, 1), "household_split"),
        (new, date(2026, 11, 1), date(2026, 11, 14), "household_merge"),
        (town.single, date(2026, 11, 14), None, None),
    ]
    with _events(engine, clock, Actor(town.pablo, "resident"), "self_access") as uow:
        seen = events_about_person(uow, town.pablo)
    assert [e.kind for e in seen] == ["household_merge", "household_split"]
    with _events(engine, clock) as uow:
        assert [e.kind for e in events_of_household(uow, town.family)] == ["household_split"]

    _cycle(uow_for, tmp_path, NEXT)
    assert _inputs(uow_for, NEXT, town.family)[1]["household"]["member_count"] == 2.0
    assert _inputs(uow_for, NEXT, town.single)[1]["household"]["member_count"] == 2.0
    assert _inputs(uow_for, NEXT, new)[1]["household"]["member_count"] == 0.0
