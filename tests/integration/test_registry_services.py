"""Registry use cases on SQLite and PostgreSQL: each one transaction, bad input writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from sqlalchemy import func, select, text

from civicard.adapters.db import tables as t
from civicard.adapters.db.guard import UnloggedPersonalDataAccess
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.registry.enrollment import (
    CreateHousehold,
    EnrollPerson,
    add_member,
    correct_person,
    create_household,
    enroll_person,
    move_member,
    remove_member,
)
from civicard.registry.lookup import get_household, get_person, list_households, search_persons
from civicard.registry.recording import correct_fact, record_fact
from civicard.shared.errors import DomainError
from civicard.transparency.access import Actor

UowFor = Callable[..., SqlUnitOfWork]


def _person(**overrides: object) -> EnrollPerson:
    fields: dict[str, object] = dict(
        given_names="María José",
        first_surname="Pérez",
        second_surname="Gómez",
        birth_date=date(1984, 3, 9),
        birth_place="San Rafael",
        sex="F",
        address_line="Calle 5 # 10-20",
        municipality="NOR-01",
        postcode="10001",
        phone="+57 300 555 0101",
        national_id="52123456",
    )
    return EnrollPerson(**(fields | overrides))  # type: ignore[arg-type]


def _household(uow_for: UowFor) -> str:
    with uow_for("enrollment") as uow:
        return create_household(uow, CreateHousehold("NOR-01", "Calle 5 # 10-20", "10001")).id


def _counts(uow_for: UowFor) -> dict[str, int]:
    with uow_for("fact_correction") as uow:
        return {
            name: uow.connection.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in t.metadata.tables.items()
        }


def test_enrolling_into_a_household_records_person_membership_and_log(uow_for: UowFor) -> None:
    household_id = _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=household_id))
    with uow_for("enrollment") as uow:
        record = get_household(uow, household_id)
    assert [(m.person_id, m.relationship) for m, _ in record.members] == [(person.id, "reference")]
    assert record.members[0][1] is not None and record.members[0][1].full_name == "María José Pérez Gómez"
    assert record.household.region == "NORTE"
    assert len(person.id) == 32 and person.id != household_id


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"household_id": "0" * 32}, "unknown_household"),
        ({"birth_date": date(2027, 1, 1)}, "birth_date_in_future"),
        ({"municipality": "XXX-99"}, "unknown_municipality"),
        ({"sex": "Q"}, "unknown_sex"),
        ({"given_names": "  "}, "missing_given_names"),
        ({"postcode": "!!"}, "invalid_postcode"),
        ({"given_names": "Ana\x00"}, "invalid_given_names"),
        ({"relationship": "cousin_of_mayor"}, "unknown_relationship"),
    ],
)
def test_bad_enrollment_is_refused_with_its_code_and_writes_nothing(
    uow_for: UowFor, overrides: dict[str, object], code: str
) -> None:
    household_id = _household(uow_for)
    before = _counts(uow_for)
    with pytest.raises(DomainError) as refused, uow_for("enrollment") as uow:
        enroll_person(uow, _person(**({"household_id": household_id} | overrides)))
    assert refused.value.code == code
    assert _counts(uow_for) == before


def test_a_person_cannot_be_member_of_two_households(uow_for: UowFor) -> None:
    first, second = _household(uow_for), _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=first))
    before = _counts(uow_for)
    with pytest.raises(DomainError) as refused, uow_for("enrollment") as uow:
        add_member(uow, second, person.id, "reference", "second household")
    assert refused.value.code == "already_in_household"
    assert _counts(uow_for) == before


def test_the_database_itself_refuses_a_second_current_membership(uow_for: UowFor) -> None:
    first, second = _household(uow_for), _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=first))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), uow_for("enrollment") as uow:
        uow.connection.execute(
            t.memberships.insert().values(
                id="f" * 32,
                household_id=second,
                person_id=person.id,
                relationship="reference",
                valid_from=date(2026, 1, 1),
                recorded_at=uow.clock.now(),
                recorded_by="x",
                reason="bypass",
            )
        )


def test_moving_a_member_ends_the_old_membership_and_keeps_it(uow_for: UowFor) -> None:
    first, second = _household(uow_for), _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=first))
    with uow_for("enrollment") as uow:
        move_member(uow, person.id, second, "reference", "moved in with family")
    with uow_for("enrollment") as uow:
        assert get_household(uow, first).members == []
        assert [m.person_id for m, _ in get_household(uow, second).members] == [person.id]
        rows = uow.connection.execute(select(t.memberships.c.household_id, t.memberships.c.valid_to)).all()
    assert {(r.household_id, r.valid_to is None) for r in rows} == {(first, False), (second, True)}


def test_removing_a_member_leaves_them_in_no_household(uow_for: UowFor) -> None:
    household_id = _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=household_id))
    with uow_for("enrollment") as uow:
        remove_member(uow, person.id, "left the country")
    with uow_for("enrollment") as uow:
        assert get_person(uow, person.id).membership is None
    with pytest.raises(DomainError) as refused, uow_for("enrollment") as uow:
        remove_member(uow, person.id, "again")
    assert refused.value.code == "not_in_household"


@pytest.mark.parametrize(
    ("kind", "key", "values", "code"),
    [
        ("incomes", {"source": "wages"}, {"monthly_amount_minor": -100}, "negative_amount"),
        ("incomes", {"source": "lottery"}, {"monthly_amount_minor": 100}, "unknown_source"),
        ("health_needs", {"kind": "chronic", "code": "Z99"}, {}, "unknown_condition_code"),
        ("health_needs", {"kind": "chronic", "code": "DIS-MOB"}, {}, "unknown_condition_code"),
        ("health_needs", {"kind": "disability", "code": "DIS-MOB"}, {}, "missing_field"),
        ("employment", {}, {"status": "influencer"}, "unknown_status"),
        ("incomes", {"source": "wages"}, {"monthly_amount_minor": "41000"}, "invalid_amount"),
        ("religion", {}, {}, "unknown_fact_kind"),
    ],
)
def test_bad_facts_are_refused_and_write_nothing(
    uow_for: UowFor, kind: str, key: dict[str, object], values: dict[str, object], code: str
) -> None:
    household_id = _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=household_id))
    before = _counts(uow_for)
    with pytest.raises(DomainError) as refused, uow_for("fact_correction") as uow:
        record_fact(uow, kind, person.id, key, values, date(2026, 1, 1), "declared")
    assert refused.value.code == code
    assert _counts(uow_for) == before


def test_a_corrected_fact_keeps_its_history_and_the_correction_is_in_force(uow_for: UowFor) -> None:
    household_id = _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=household_id))
    with uow_for() as uow:
        wrong = record_fact(
            uow,
            "incomes",
            person.id,
            {"source": "wages"},
            {"monthly_amount_minor": 410_00},
            date(2026, 1, 1),
            "declared at the desk",
        )
    with uow_for() as uow:
        right = correct_fact(uow, "incomes", wrong.id, {"monthly_amount_minor": 310_00}, "payslip shows 310")
    with uow_for() as uow:
        in_force = [f for f in get_person(uow, person.id).facts if f.kind == "incomes"]
        history = uow.connection.execute(select(t.incomes.c.id, t.incomes.c.monthly_amount_minor)).all()
    assert [(f.id, f.values) for f in in_force] == [(right.id, {"monthly_amount_minor": 310_00})]
    assert right.supersedes_id == wrong.id and right.reason == "payslip shows 310"
    assert sorted(r.monthly_amount_minor for r in history) == [310_00, 410_00]
    with pytest.raises(DomainError) as refused, uow_for() as uow:
        correct_fact(uow, "incomes", wrong.id, {"monthly_amount_minor": 1}, "again")
    assert refused.value.code == "fact_already_corrected"


def test_a_later_fact_version_takes_over_from_its_date(uow_for: UowFor) -> None:
    household_id = _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=household_id))
    with uow_for() as uow:
        record_fact(uow, "employment", person.id, {}, {"status": "employed"}, date(2025, 1, 1), "declared")
    with uow_for() as uow:
        record_fact(uow, "employment", person.id, {}, {"status": "unemployed"}, date(2026, 6, 1), "lost job")
    with uow_for() as uow:
        before = get_person(uow, person.id, on=date(2026, 5, 31)).facts
        after = get_person(uow, person.id, on=date(2026, 6, 1)).facts
    assert [f.values["status"] for f in before] == ["employed"]
    assert [f.values["status"] for f in after] == ["unemployed"]


def test_identity_correction_keeps_old_and_new_values(uow_for: UowFor) -> None:
    household_id = _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=household_id))
    with uow_for() as uow:
        correct_person(uow, person.id, {"first_surname": "Peres", "birth_date": date(1984, 9, 3)}, "id card shown")
    with uow_for() as uow:
        rows = uow.connection.execute(select(t.person_corrections)).all()
        found = search_persons(uow, "peres")
    assert {(r.field, r.old_value, r.new_value) for r in rows} == {
        ("first_surname", "Pérez", "Peres"),
        ("birth_date", "1984-03-09", "1984-09-03"),
    }
    assert [m.person.id for m in found] == [person.id]


def test_search_ignores_accents_and_case_and_finds_document_numbers(uow_for: UowFor) -> None:
    household_id = _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=household_id))
    with uow_for("enrollment") as uow:
        assert [m.person.id for m in search_persons(uow, "MARIA perez")] == [person.id]
        assert [m.person.id for m in search_persons(uow, "52123456")] == [person.id]
        assert search_persons(uow, "100%_") == []


def test_each_read_appends_one_log_entry_per_subject_with_its_purpose(uow_for: UowFor) -> None:
    household_id = _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=household_id))
    before = _counts(uow_for)["access_log"]
    with uow_for("enrollment") as uow:
        get_person(uow, person.id)
    with uow_for("enrollment") as uow:
        rows = uow.connection.execute(select(t.access_log).where(t.access_log.c.seq > before)).all()
    assert [(r.actor, r.purpose, r.action, r.subject_person_id, r.detail) for r in rows] == [
        ("registrar-ana", "enrollment", "read", person.id, "person.read")
    ]
    assert rows[0].categories == "benefits household identity income property"  # no health for enrollment


def test_a_purpose_the_role_lacks_is_refused_before_any_query(uow_for: UowFor) -> None:
    household_id = _household(uow_for)
    before = _counts(uow_for)
    vendor = Actor("shop-1", "vendor")
    with pytest.raises(DomainError) as refused, uow_for("enrollment", vendor) as uow:
        get_household(uow, household_id)
    assert refused.value.code == "purpose_not_allowed"
    assert _counts(uow_for) == before


def test_a_read_without_health_purpose_does_not_see_health_facts(uow_for: UowFor) -> None:
    household_id = _household(uow_for)
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, _person(household_id=household_id))
    with uow_for("fact_correction") as uow:
        record_fact(uow, "health_needs", person.id, {"kind": "chronic", "code": "E11"}, {}, date(2024, 1, 1), "clinic")
    with uow_for("enrollment") as uow:
        assert get_person(uow, person.id).facts == []
    with uow_for("fact_correction") as uow:
        assert [f.key for f in get_person(uow, person.id).facts] == [{"kind": "chronic", "code": "E11"}]


def test_household_pages_follow_the_cursor_without_gaps(uow_for: UowFor) -> None:
    ids = sorted(_household(uow_for) for _ in range(5))
    with uow_for("enrollment") as uow:
        first = list_households(uow, limit=3)
    with uow_for("enrollment") as uow:
        second = list_households(uow, limit=3, after=first[-1].household.id)
    assert [r.household.id for r in first + second] == ids


def test_a_raw_query_on_personal_tables_without_access_context_fails(engine: object) -> None:
    with pytest.raises(UnloggedPersonalDataAccess), engine.connect() as conn:  # type: ignore[attr-defined]
        conn.execute(text("SELECT given_names FROM persons"))
