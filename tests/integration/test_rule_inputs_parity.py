"""The bulk projection of the registry (DuckDB) and the per-household path compute the same inputs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from civicard.adapters.bulk.importer import import_population
from civicard.adapters.db.program_inputs import registry_inputs
from civicard.programs.household_inputs import facts_of_household
from civicard.registry.lookup import get_household
from civicard.registry.population import PopulationSpec, generate_population
from civicard.registry.recording import correct_fact, record_fact
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext, Actor

from ..conftest import REGISTRAR

LOADER = AccessContext(Actor("test:loader", "system"), "bulk_import")
CYCLE = AccessContext(Actor("test:cycle", "system"), "cycle_run")


@pytest.fixture
def town(engine, clock: Clock, tmp_path: Path, uow_for):  # type: ignore[no-untyped-def]
    source = tmp_path / "population"
    generate_population(PopulationSpec(households=80, seed=11, duplicate_share=0.0), source)
    import_population(engine, source, LOADER, clock, None)
    with uow_for("cycle_run", Actor("test:cycle", "system")) as uow:
        first = registry_inputs(uow, date(2026, 12, 1), "test").members.column("household_id")[0].as_py()
        record = get_household(uow, first)
    person = record.members[0][0].person_id
    # Edge cases the generator may not make: a correction, a future change, two sources, a chronic code.
    with uow_for() as uow:
        wrong = record_fact(
            uow, "incomes", person, {"source": "pension"}, {"monthly_amount_minor": 90_000}, date(2026, 1, 1), "t"
        )
    with uow_for() as uow:
        correct_fact(uow, "incomes", wrong.id, {"monthly_amount_minor": 12_345}, "typo")
    with uow_for() as uow:
        record_fact(
            uow, "incomes", person, {"source": "pension"}, {"monthly_amount_minor": 55_555}, date(2027, 1, 1), "t"
        )
    with uow_for() as uow:
        record_fact(
            uow, "health_needs", person, {"kind": "chronic", "code": "E11"}, {"present": True}, date(2026, 2, 1), "t"
        )
    with uow_for() as uow:
        record_fact(uow, "employment", person, {}, {"status": "retired"}, date(2026, 6, 1), "t")
    return engine


@pytest.mark.parametrize("day", [date(2026, 12, 1), date(2027, 1, 1), date(2025, 6, 1)])
def test_bulk_projection_equals_the_per_household_inputs(town, uow_for, day: date) -> None:  # type: ignore[no-untyped-def]
    with uow_for("cycle_run", Actor("test:cycle", "system")) as uow:
        bulk = registry_inputs(uow, day, "test")
        uow.commit()
        households = bulk.households.to_pylist()
        members = bulk.members.to_pylist()
        assert len(households) == 80
        checked = 0
        for row in households:
            facts = facts_of_household(get_household(uow, row["household_id"], on=day), day)
            expected = dict(facts.household)
            got = {k: row[k] for k in expected}
            assert got == expected, row["household_id"]
            mine = sorted(
                (
                    tuple(sorted((k, v) for k, v in m.items() if k != "household_id"))
                    for m in members
                    if m["household_id"] == row["household_id"]
                ),
            )
            theirs = sorted(tuple(sorted(m.items())) for m in facts.members)
            assert mine == theirs, row["household_id"]
            checked += 1
    assert checked == 80


def test_every_household_read_is_logged_under_the_cycle_purpose(town, uow_for) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from civicard.adapters.db import tables as t

    with uow_for("cycle_run", Actor("test:cycle", "system")) as uow:
        registry_inputs(uow, date(2026, 12, 1), "cycle 2026-12")
        uow.commit()
        logged = uow.connection.execute(
            select(func.count()).select_from(t.access_log).where(t.access_log.c.detail == "cycle 2026-12")
        ).scalar_one()
    assert logged == 80
    assert REGISTRAR.role == "registrar"
