"""Duplicate screening on enrollment, on SQLite and PostgreSQL: candidates found by index, scored
exactly as Splink's bulk run scores them, shown with reasons, and likely duplicates held."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from sqlalchemy import select

from civicard.adapters.bulk.importer import import_population
from civicard.adapters.db import tables as t
from civicard.adapters.db.dedup_extract import registry_records
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.dedup.batch import run_batch
from civicard.dedup.matching import Matcher
from civicard.dedup.model import REVIEW_BAND, saved_model
from civicard.dedup.screening import rebuild_index, screen
from civicard.registry.enrollment import (
    CreateHousehold,
    EnrollPerson,
    PossibleDuplicates,
    check_duplicates,
    correct_person,
    create_household,
    enroll_person,
)
from civicard.registry.population import PopulationSpec, generate_population
from civicard.transparency.access import AccessContext, Actor

UowFor = Callable[..., SqlUnitOfWork]
SYSTEM = Actor("test:index", "system")

MARIA = EnrollPerson(
    given_names="María José",
    first_surname="Pérez",
    second_surname="Gómez",
    birth_date=date(1984, 3, 9),
    birth_place="San Rafael",
    sex="F",
    address_line="Calle 5 # 10-20",
    municipality="NOR-01",
    postcode="10001",
    phone="3005550101",
    national_id="52123456",
)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(saved_model(), duckdb.connect())


def _town(uow_for: UowFor, matcher: Matcher) -> dict[str, str]:
    """María's household (María, her husband, their twins) and a stranger, then the index."""
    with uow_for("enrollment") as uow:
        home = create_household(uow, CreateHousehold("NOR-01", "Calle 5 # 10-20", "10001")).id
    people = {
        "maria": replace(MARIA, household_id=home),
        "juan": replace(
            MARIA,
            given_names="Juan Carlos",
            sex="M",
            birth_date=date(1981, 7, 1),
            national_id="79111222",
            household_id=home,
            relationship="spouse",
        ),
        "ana": replace(
            MARIA,
            given_names="Ana",
            birth_date=date(2015, 5, 5),
            national_id=None,
            household_id=home,
            relationship="child",
        ),
        "eva": replace(
            MARIA,
            given_names="Eva",
            birth_date=date(2015, 5, 5),
            national_id=None,
            household_id=home,
            relationship="child",
        ),
        "luis": replace(
            MARIA,
            given_names="Luis",
            first_surname="Rojas",
            second_surname="Vera",
            sex="M",
            birth_date=date(1990, 1, 2),
            address_line="Carrera 9 # 1-1",
            postcode="10002",
            phone="3109998877",
            national_id="80999111",
        ),
    }
    ids = {}
    for name, command in people.items():
        with uow_for("enrollment") as uow:
            ids[name] = enroll_person(uow, command).id
    with uow_for("duplicate_screening", SYSTEM) as uow:
        rebuild_index(uow, duckdb.connect(), registry_records(uow))
    ids["home"] = home
    return ids


def test_a_near_copy_is_refused_until_confirmed_then_held_for_a_reviewer(uow_for: UowFor, matcher: Matcher) -> None:
    town = _town(uow_for, matcher)
    copy = replace(MARIA, given_names="Maria J.", birth_date=date(1984, 9, 3), national_id=None, phone=None)
    with uow_for("enrollment") as uow, pytest.raises(PossibleDuplicates) as refused:
        enroll_person(uow, copy, matcher)
    assert refused.value.code == "possible_duplicates"
    assert refused.value.pairs[0].id_r == town["maria"]
    with uow_for("enrollment") as uow:
        held = enroll_person(uow, replace(copy, confirmed_new_person=True), matcher)
    assert held.record_status == "held"
    with uow_for("enrollment") as uow:
        status = uow.connection.execute(select(t.persons.c.record_status).where(t.persons.c.id == held.id)).scalar_one()
        queued = uow.connection.execute(select(t.duplicate_candidates.c.source)).scalars().all()
        keys = (
            uow.connection.execute(
                select(t.person_match_keys.c.match_key).where(t.person_match_keys.c.person_id == held.id)
            )
            .scalars()
            .all()
        )
    assert status == "held" and queued == ["enrollment"] and keys


def test_the_check_shows_reasons_and_logs_each_candidate_shown(uow_for: UowFor, matcher: Matcher) -> None:
    town = _town(uow_for, matcher)
    copy = replace(MARIA, given_names="Maria Jose", birth_date=date(1984, 9, 3), national_id=None)
    with uow_for("enrollment") as uow:
        screening = check_duplicates(uow, copy, matcher)
    best = screening.pairs[0]
    assert best.id_r == town["maria"] and best.match_probability >= REVIEW_BAND
    reasons = {r.field: (r.outcome, r.label) for r in best.reasons}
    assert reasons["dob"] == ("close", "one digit wrong, or day and month swapped")
    assert reasons["national_id"][0] == "missing"
    assert reasons["household"][0] == "agree"
    with uow_for("enrollment") as uow:
        logged = (
            uow.connection.execute(
                select(t.access_log.c.subject_person_id).where(t.access_log.c.detail == "duplicate_check")
            )
            .scalars()
            .all()
        )
    assert set(logged) == {p.id_r for p in screening.pairs}


def test_household_members_and_strangers_are_not_raised(uow_for: UowFor, matcher: Matcher) -> None:
    town = _town(uow_for, matcher)
    newborn = replace(
        MARIA,
        given_names="Sofía",
        birth_date=date(2025, 1, 1),
        national_id=None,
        household_id=town["home"],
        relationship="child",
    )
    with uow_for("enrollment") as uow:
        person = enroll_person(uow, newborn, matcher)
    assert person.record_status == "active"


def test_enrollment_probabilities_equal_splinks_bulk_run(uow_for: UowFor, matcher: Matcher) -> None:
    _town(uow_for, matcher)
    copy = replace(MARIA, given_names="Maria J.", birth_date=date(1984, 9, 3), national_id=None)
    with uow_for("enrollment") as uow:
        screening = check_duplicates(uow, copy, matcher)
    with uow_for("duplicate_screening", SYSTEM) as uow:
        records = registry_records(uow)
        snapshot: dict[str, dict[str, float]] = {}
        for column, value, frequency in uow.connection.execute(select(t.name_frequencies)):
            snapshot.setdefault(column, {})[value] = frequency
    new = pa.table(
        {
            name: [value]
            for name, value in {
                "record_id": "__new__",
                "first_name": "Maria J.",
                "surname": "Pérez Gómez",
                "date_of_birth": "1984-09-03",
                "sex": "F",
                "address": MARIA.address_line,
                "postcode": MARIA.postcode,
                "city": MARIA.municipality,
                "phone": MARIA.phone,
                "national_id": None,
                "household_id": None,
            }.items()
        },
        schema=records.schema,
    )
    con = duckdb.connect()
    con.register("everyone", pa.concat_tables([records, new]))
    # The same term frequencies as the enrollment path: the snapshot of the registry without the newcomer.
    run_batch(con, "everyone", model=saved_model(), review_band=0.0, term_frequencies=snapshot)
    bulk = {
        (r[1] if r[0] == "__new__" else r[0]): r[2]
        for r in con.execute(
            "SELECT unique_id_l, unique_id_r, match_probability FROM dedup_scored "
            "WHERE '__new__' IN (unique_id_l, unique_id_r)"
        ).fetchall()
    }
    assert screening.pairs
    for pair in screening.pairs:
        assert pair.match_probability == pytest.approx(bulk[pair.id_r], rel=1e-6, abs=1e-9)


def test_screening_generated_reenrollments_gives_splinks_probabilities(
    uow_for: UowFor, engine: Any, clock: Any, matcher: Matcher, tmp_path: Path
) -> None:
    """Every candidate of 25 generated second enrollments (typos, nicknames, swapped dates) gets
    exactly the probability Splink's bulk run gives the same pair with the same frequencies."""
    generate_population(PopulationSpec(households=250, seed=3, duplicate_share=0.05), tmp_path)
    import_population(engine, tmp_path, AccessContext(SYSTEM, "bulk_import"), clock)
    with uow_for("duplicate_screening", SYSTEM) as uow:
        records = registry_records(uow)
        rebuild_index(uow, duckdb.connect(), records)
        snapshot: dict[str, dict[str, float]] = {}
        for column, value, frequency in uow.connection.execute(select(t.name_frequencies)):
            snapshot.setdefault(column, {})[value] = frequency
    twice = duckdb.sql(
        f"SELECT person_id FROM '{tmp_path}/persons.parquet' WHERE truth_person_id IN "
        f"(SELECT truth_person_id FROM '{tmp_path}/persons.parquet' GROUP BY 1 HAVING count(*) > 1) ORDER BY 1 LIMIT 25"
    ).fetchall()
    by_id = {r["record_id"]: r for r in records.to_pylist()}
    newcomers = {f"__new__{i}": {**by_id[pid], "household_id": None} for i, (pid,) in enumerate(twice)}
    assert len(newcomers) == 25
    screened = {}
    with uow_for("enrollment") as uow:
        for new_id_, record in newcomers.items():
            screened[new_id_] = screen(uow, matcher, record).pairs
    everyone = pa.concat_tables(
        [records, pa.Table.from_pylist([{**r, "record_id": k} for k, r in newcomers.items()], schema=records.schema)]
    )
    con = duckdb.connect()
    con.register("everyone", everyone)
    run_batch(con, "everyone", model=saved_model(), review_band=0.0, term_frequencies=snapshot)
    bulk = {
        (row[0], row[1]): row[2]
        for row in con.execute("SELECT unique_id_l, unique_id_r, match_probability FROM dedup_scored").fetchall()
    }
    compared = 0
    for new_id_, pairs in screened.items():
        assert pairs, f"{new_id_} found no candidate, not even its own record"
        for pair in pairs:
            key = (min(new_id_, pair.id_r), max(new_id_, pair.id_r))
            assert pair.match_probability == pytest.approx(bulk[key], rel=1e-9, abs=1e-12)
            compared += 1
    assert compared >= 25


def test_a_corrected_name_moves_the_persons_match_keys(uow_for: UowFor, matcher: Matcher) -> None:
    town = _town(uow_for, matcher)
    with uow_for("enrollment") as uow:
        before = set(
            uow.connection.execute(
                select(t.person_match_keys.c.match_key).where(t.person_match_keys.c.person_id == town["luis"])
            ).scalars()
        )
    with uow_for("fact_correction") as uow:
        correct_person(uow, town["luis"], {"first_surname": "Rojo"}, "typo at enrollment", matcher)
    with uow_for("enrollment") as uow:
        after = set(
            uow.connection.execute(
                select(t.person_match_keys.c.match_key).where(t.person_match_keys.c.person_id == town["luis"])
            ).scalars()
        )
    old, new = "2:luis|rojas|1990-01-02", "2:luis|rojo|1990-01-02"
    assert old in before and new in after and old not in after


def test_the_registry_read_in_small_pages_equals_one_page(
    uow_for: UowFor, engine: Any, clock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from civicard.adapters.db import dedup_extract

    generate_population(PopulationSpec(households=60, seed=4), tmp_path)
    import_population(engine, tmp_path, AccessContext(SYSTEM, "bulk_import"), clock)
    with uow_for("duplicate_screening", SYSTEM) as uow:
        whole = registry_records(uow).to_pylist()
    monkeypatch.setattr(dedup_extract, "CHUNK", 7)  # many pages, each starting mid-registry
    with uow_for("duplicate_screening", SYSTEM) as uow:
        paged = registry_records(uow).to_pylist()
    assert len(whole) > 50 and paged == whole
    assert all(r["household_id"] is not None for r in paged)  # every page found its memberships
