"""The resident portal's services on SQLite and PostgreSQL: "my data" by category (own facts only,
members by name and age), "my benefits" from the ledger, and correction requests from the form to
a reviewer's answer — each read and change logged for the resident, refusals with stable codes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.resident_store import SqlResidentUnitOfWork
from civicard.distribution.household_ledger import my_benefits
from civicard.registry import correction_requests as corrections
from civicard.registry.enrollment import CreateHousehold, EnrollPerson, correct_person, create_household, enroll_person
from civicard.registry.recording import record_fact
from civicard.registry.self_service import my_record
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.ids import new_id
from civicard.transparency.access import AccessContext, Actor
from tests.conftest import REGISTRAR

REVIEWER = Actor("reviewer-rita", "reviewer")
IMPORTER = Actor("test:importer", "system")
PERIOD = "2026-11"  # the fixed clock's month


@pytest.fixture
def household(engine: sa.Engine, clock: Clock) -> dict[str, str]:
    """A household of two: María (the resident) and Jorge; each has income and a health need."""

    def uow(purpose: str = "enrollment", actor: Actor = REGISTRAR) -> SqlResidentUnitOfWork:
        return SqlResidentUnitOfWork(engine, AccessContext(actor, purpose), clock)

    with uow() as w:
        home = create_household(w, CreateHousehold("NOR-01", "Calle 5 # 10-20", "10001"))
    people = {"household": home.id}
    for key, given, born, relationship in (
        ("maria", "María José", date(1984, 3, 9), "reference"),
        ("jorge", "Jorge", date(2010, 12, 1), "child"),
    ):
        with uow() as w:
            person = enroll_person(
                w,
                EnrollPerson(given, "Pérez", born, "San Rafael", "F" if key == "maria" else "M",
                             "Calle 5 # 10-20", "NOR-01", "10001", household_id=home.id,
                             relationship=relationship),
            )  # fmt: skip
        people[key] = person.id
    facts: list[tuple[str, str, dict[str, Any], dict[str, Any], Actor]] = [
        ("incomes", people["maria"], {"source": "wages"}, {"monthly_amount_minor": 180_000}, REGISTRAR),
        ("employment", people["maria"], {}, {"status": "employed"}, IMPORTER),
        ("health_needs", people["maria"], {"kind": "chronic", "code": "E11"}, {"present": True}, REGISTRAR),
        ("health_needs", people["jorge"], {"kind": "chronic", "code": "J45"}, {"present": True}, REGISTRAR),
        ("incomes", people["jorge"], {"source": "other"}, {"monthly_amount_minor": 5_000}, REGISTRAR),
        ("properties", home.id, {"kind": "dwelling"}, {"value_minor": 4_500_000_00}, REGISTRAR),
    ]
    for kind, subject, key, values, actor in facts:
        with uow("fact_correction" if actor is REGISTRAR else "bulk_import", actor) as w:
            record_fact(w, kind, subject, key, values, date(2024, 1, 1), "at the desk")
    with uow() as w:
        correct_person(w, people["maria"], {"phone": "+57 300 555 0101"}, "new phone")
    return people


def _as(engine: sa.Engine, clock: Clock, actor: Actor, purpose: str) -> SqlResidentUnitOfWork:
    return SqlResidentUnitOfWork(engine, AccessContext(actor, purpose), clock)


def _resident(person_id: str) -> Actor:
    return Actor(person_id, "resident")


def _log_since(engine: sa.Engine, clock: Clock, seq: int) -> list[dict[str, Any]]:
    with _as(engine, clock, Actor("test:oversight", "oversight"), "oversight_case") as uow:
        a = t.access_log
        rows = uow.connection.execute(sa.select(a).where(a.c.seq > seq).order_by(a.c.seq))
        return [dict(r._mapping) for r in rows]


def _head(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.access_log.c.seq), 0))).scalar_one())


def test_my_record_shows_every_category_with_own_facts_only_and_one_log_entry(
    engine: sa.Engine, clock: Clock, household: dict[str, str]
) -> None:
    maria = household["maria"]
    before = _head(engine)
    with _as(engine, clock, _resident(maria), "self_access") as uow:
        record = my_record(uow, maria)
    assert record.categories >= {"identity", "household", "income", "property", "health", "benefits"}
    identity = {d.name: d for d in record.identity}
    assert identity["given_names"].value == "María José" and not identity["given_names"].corrected
    assert identity["phone"].value == "+57 300 555 0101" and identity["phone"].corrected
    assert identity["phone"].recorded_by == REGISTRAR.id
    assert record.household is not None and record.household.id == household["household"]
    assert [(m.full_name, m.age, m.is_me) for m in record.housemates] == [
        ("María José Pérez", 42, True),
        ("Jorge Pérez", 15, False),
    ]
    kinds = {c: [(f.kind, f.subject_id) for f in facts] for c, facts in record.facts.items()}
    assert kinds["income"] == [("employment", maria), ("incomes", maria)]  # not Jorge's income
    assert kinds["health"] == [("health_needs", maria)]  # not Jorge's asthma
    assert kinds["property"] == [("properties", household["household"])]
    assert kinds["benefits"] == []
    assert record.recorders[REGISTRAR.id].role == "registrar"
    assert record.recorders[IMPORTER.id].role == "system"  # a process: the role it was logged under
    entries = _log_since(engine, clock, before)
    assert [(e["actor"], e["purpose"], e["action"], e["subject_person_id"], e["detail"]) for e in entries] == [
        (maria, "self_access", "read", maria, "self.record_read")
    ]
    assert entries[0]["categories"] == "benefits health household identity income property"


def test_my_record_is_refused_for_someone_else_or_another_purpose(
    engine: sa.Engine, clock: Clock, household: dict[str, str]
) -> None:
    before = _head(engine)
    with pytest.raises(DomainError) as other, _as(engine, clock, _resident(household["jorge"]), "self_access") as uow:
        my_record(uow, household["maria"])
    assert other.value.code == "not_your_record"
    with pytest.raises(DomainError) as purpose, _as(engine, clock, REGISTRAR, "enrollment") as uow:
        my_record(uow, household["maria"])
    assert purpose.value.code == "purpose_not_allowed"
    assert _log_since(engine, clock, before) == []


def _sale(engine: sa.Engine, clock: Clock, household_id: str, card_person: str) -> str:
    """An outlet, two entitlements and one two-item fallback sale, written straight into the ledger."""
    now = clock.now()
    vendor, outlet, card, sale = new_id(), new_id(), new_id(), new_id()
    lines = [("RICE-1KG", "Arroz 1 kg", 6, 2), ("OIL-1L", "Aceite 1 l", 2, 1)]
    rows: list[tuple[sa.Table, dict[str, Any]]] = [
        (t.vendors, {"id": vendor, "name": "Esquina S.A.", "tax_id": "900", "created_at": now, "created_by": "test"}),
        (t.outlets, {"id": outlet, "vendor_id": vendor, "name": "Tienda La Esquina", "kind": "shop",
                     "region": "NORTE", "municipality": "NOR-01", "address_line": "Calle 1", "created_at": now}),
        (t.cards, {"id": card, "handle": "ABCD2345XYZ", "person_id": card_person, "status_index": 7, "kid": 1,
                   "issued_at": now, "expires_at": now + timedelta(days=900), "issued_by": "test", "status": "valid"}),
        (t.redemptions, {"period": PERIOD, "id": sale, "household_id": household_id, "card_id": card,
                         "terminal_id": new_id(), "outlet_id": outlet, "vendor_id": vendor, "channel": "fallback",
                         "total_minor": 750, "subsidy_minor": 2250, "created_at": now}),
    ]  # fmt: skip
    for item, name, granted, taken in lines:
        rows += [
            (t.items, {"code": item, "name_es": name, "name_en": name, "unit": "u", "kind": "food", "updated_at": now}),
            (t.entitlements, {"period": PERIOD, "id": new_id(), "household_id": household_id,
                              "program": "food_basket", "item_code": item, "granted": granted,
                              "remaining": granted - taken, "decision_id": new_id(), "created_at": now,
                              "updated_at": now}),
            (t.ledger_lines, {"period": PERIOD, "id": new_id(), "redemption_id": sale, "entitlement_id": new_id(),
                              "household_id": household_id, "program": "food_basket", "item_code": item,
                              "quantity": taken, "reference_price_minor": 1000, "subsidized_price_minor": 250,
                              "subsidy_minor": 750 * taken, "vendor_id": vendor, "outlet_id": outlet,
                              "created_at": now}),
        ]  # fmt: skip
    with _as(engine, clock, Actor("test:seed", "system"), "demo_setup") as uow:
        for table, values in sorted(rows, key=lambda r: ORDER.index(r[0].name)):
            uow.connection.execute(sa.insert(table).values(**values))
        uow.commit()
    return sale


ORDER = ("vendors", "outlets", "items", "cards", "entitlements", "redemptions", "ledger_lines")


def test_my_benefits_reads_the_periods_entitlements_and_the_households_redemptions(
    engine: sa.Engine, clock: Clock, household: dict[str, str]
) -> None:
    maria, jorge = household["maria"], household["jorge"]
    sale = _sale(engine, clock, household["household"], card_person=jorge)
    before = _head(engine)
    with _as(engine, clock, _resident(maria), "self_access") as uow:
        mine = my_benefits(uow, maria)
    assert (mine.household_id, mine.period, mine.periods) == (household["household"], PERIOD, (PERIOD,))
    assert [(e.item_code, e.granted, e.remaining) for e in mine.entitlements] == [("OIL-1L", 2, 1), ("RICE-1KG", 6, 4)]
    [redemption] = mine.redemptions
    assert (redemption.id, redemption.outlet_name, redemption.channel, redemption.total_minor) == (
        sale, "Tienda La Esquina", "fallback", 750
    )  # fmt: skip
    assert [(i.item_code, i.quantity) for i in redemption.items] == [("OIL-1L", 1), ("RICE-1KG", 2)]
    assert redemption.with_my_card is False  # Jorge's card, María's household
    assert mine.items["RICE-1KG"]["es"] == "Arroz 1 kg"
    entries = _log_since(engine, clock, before)
    assert [(e["actor"], e["purpose"], e["subject_person_id"], e["categories"]) for e in entries] == [
        (maria, "self_access", maria, "decisions")
    ]
    with _as(engine, clock, _resident(jorge), "self_access") as uow:
        assert my_benefits(uow, jorge).redemptions[0].with_my_card is True
    with pytest.raises(DomainError) as bad, _as(engine, clock, _resident(maria), "self_access") as uow:
        my_benefits(uow, maria, "2026-13")
    assert bad.value.code == "invalid_period"
    with _as(engine, clock, _resident(maria), "self_access") as uow:
        empty = my_benefits(uow, maria, "2026-10")
    assert (empty.entitlements, empty.redemptions) == ((), ())


@pytest.mark.parametrize(
    ("category", "details", "code"),
    [
        ("income", "", "details_too_short"),
        ("income", "   ", "details_too_short"),
        ("income", "x" * 1001, "details_too_long"),
        ("religion", "my income is wrong", "invalid_category"),
        ("income", "bad\x00text", "invalid_details"),
    ],
)
def test_a_bad_correction_request_is_refused_and_writes_nothing(
    engine: sa.Engine, clock: Clock, household: dict[str, str], category: str, details: str, code: str
) -> None:
    maria = household["maria"]
    before = _head(engine)
    with pytest.raises(DomainError) as refused, _as(engine, clock, _resident(maria), "correction_request") as uow:
        corrections.request_correction(uow, maria, category, details)
    assert refused.value.code == code
    assert _log_since(engine, clock, before) == []


def test_a_correction_request_goes_from_the_resident_to_a_reviewer_and_back(
    engine: sa.Engine, clock: Clock, household: dict[str, str]
) -> None:
    maria = household["maria"]
    before = _head(engine)
    with _as(engine, clock, _resident(maria), "correction_request") as uow:
        filed = corrections.request_correction(uow, maria, "income", "  Mi salario es 1.500, no 1.800.  ")
    assert (filed.status, filed.details, filed.household_id) == (
        "open",
        "Mi salario es 1.500, no 1.800.",
        household["household"],
    )
    with pytest.raises(DomainError) as read_only, _as(engine, clock, _resident(maria), "self_access") as uow:
        corrections.request_correction(uow, maria, "income", "again")
    assert read_only.value.code == "purpose_not_allowed"
    with pytest.raises(DomainError) as appeal, _as(engine, clock, _resident(maria), "appeal") as uow:
        corrections.request_correction(uow, maria, "income", "again")
    assert appeal.value.code == "purpose_not_allowed"  # a correction request is not an appeal
    with pytest.raises(DomainError) as registrar, _as(engine, clock, REGISTRAR, "correction_review") as uow:
        corrections.correction_queue(uow)
    assert registrar.value.code == "purpose_not_allowed"  # a registrar's role lacks correction_review

    with _as(engine, clock, REVIEWER, "correction_review") as uow:
        queue = corrections.correction_queue(uow)
    assert [(q.request.id, q.full_name) for q in queue] == [(filed.id, "María José Pérez")]
    with pytest.raises(DomainError) as short, _as(engine, clock, REVIEWER, "correction_review") as uow:
        corrections.answer_correction(uow, filed.id, "corrected", "ok")
    assert short.value.code == "note_too_short"
    with _as(engine, clock, REVIEWER, "correction_review") as uow:
        answered = corrections.answer_correction(uow, filed.id, "corrected", "Corregido según su nómina.")
    assert (answered.status, answered.answered_by) == ("corrected", REVIEWER.id)
    with pytest.raises(DomainError) as twice, _as(engine, clock, REVIEWER, "correction_review") as uow:
        corrections.answer_correction(uow, filed.id, "declined", "Otra respuesta distinta.")
    assert twice.value.code == "request_answered"
    with _as(engine, clock, REVIEWER, "correction_review") as uow:
        assert corrections.correction_queue(uow) == []

    with _as(engine, clock, _resident(maria), "self_access") as uow:
        [mine] = corrections.my_correction_requests(uow, maria)
    assert (mine.status, mine.answer_note) == ("corrected", "Corregido según su nómina.")
    entries = [(e["actor"], e["purpose"], e["action"], e["subject_person_id"], e["detail"].split(" ")[0])
               for e in _log_since(engine, clock, before)]  # fmt: skip
    assert entries == [
        (maria, "correction_request", "write", maria, "correction.requested"),
        (REVIEWER.id, "correction_review", "read", maria, "correction.queue_read"),
        (REVIEWER.id, "correction_review", "write", maria, "correction.answered"),
        (maria, "self_access", "read", maria, "correction.requests_read"),
    ]


def test_the_queue_pages_oldest_first_and_a_resident_cannot_flood_it(
    engine: sa.Engine, household: dict[str, str]
) -> None:
    maria = household["maria"]
    start = datetime.now(UTC)
    for n in range(corrections.MAX_OPEN):
        at = Clock.fixed(start + timedelta(minutes=n))
        with _as(engine, at, _resident(maria), "correction_request") as uow:
            corrections.request_correction(uow, maria, "identity", f"request number {n}")
    with pytest.raises(DomainError) as flood, _as(engine, Clock(), _resident(maria), "correction_request") as uow:
        corrections.request_correction(uow, maria, "identity", "one too many")
    assert flood.value.code == "too_many_open_requests"
    with _as(engine, Clock(), REVIEWER, "correction_review") as uow:
        first = corrections.correction_queue(uow, ["open"], limit=4)
    with _as(engine, Clock(), REVIEWER, "correction_review") as uow:
        second = corrections.correction_queue(uow, ["open"], limit=4, after=first[-1].request.id)
    assert [q.request.details for q in first + second] == [f"request number {n}" for n in range(8)]
    with pytest.raises(DomainError) as status, _as(engine, Clock(), REVIEWER, "correction_review") as uow:
        corrections.correction_queue(uow, ["closed"])
    assert status.value.code == "invalid_status"
