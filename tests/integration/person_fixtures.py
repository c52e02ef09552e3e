"""One enrolled person (María José Pérez, born 1984) in a household of her own, as several tests need."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Engine

from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.registry.enrollment import CreateHousehold, EnrollPerson, create_household, enroll_person
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext
from tests.conftest import REGISTRAR


def enroll_in_new_household(engine: Engine, clock: Clock, national_id: str = "52123456") -> tuple[str, str]:
    """A new household in NOR-01 and its reference person, enrolled by REGISTRAR: (household id, person id)."""
    desk = AccessContext(REGISTRAR, "enrollment")
    with SqlUnitOfWork(engine, desk, clock) as uow:
        home = create_household(uow, CreateHousehold("NOR-01", "Calle 5 # 10-20", "10001")).id
    person = EnrollPerson(
        given_names="María José",
        first_surname="Pérez",
        birth_date=date(1984, 3, 9),
        birth_place="San Rafael",
        sex="F",
        address_line="Calle 5 # 10-20",
        municipality="NOR-01",
        postcode="10001",
        national_id=national_id,
        household_id=home,
    )
    with SqlUnitOfWork(engine, desk, clock) as uow:
        return home, enroll_person(uow, person).id
