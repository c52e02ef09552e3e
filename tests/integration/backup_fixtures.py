"""Fixtures for the backup tests: a source town on each backend, an empty database to restore into."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from civicard.adapters.db.repositories import SqlAccessLog
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.bootstrap import Container, bootstrap
from civicard.registry.enrollment import CreateHousehold, EnrollPerson, create_household, enroll_person
from civicard.registry.lookup import get_person
from civicard.settings import Mode, Settings
from civicard.transparency.access import AccessEntry
from tests.conftest import FIXED_NOW, PG_URL

UowFor = Callable[..., SqlUnitOfWork]


def container(url: str, data_dir: Path, root_key: str | None = None) -> Container:
    return bootstrap(Settings(mode=Mode.DEMO, data_dir=data_dir, database_url=url, root_key=root_key))


@contextmanager
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a database of `backend` that holds nothing yet (PostgreSQL: a scratch database,
    dropped afterwards), to restore into."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored' / 'civicard.db'}"
        return
    name = f"restore_{secrets.token_hex(6)}"
    admin = create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _person(given: str, national_id: str, household_id: str, relationship: str) -> EnrollPerson:
    return EnrollPerson(
        given_names=given,
        first_surname="Pérez",
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


def build_town(built: Container, uow_for: UowFor) -> None:
    """A household of two, a few reads of Ana, all folded into a signed checkpoint."""
    with uow_for("enrollment") as uow:
        household = create_household(uow, CreateHousehold("NOR-01", "Calle 5 # 10-20", "10001")).id
    with uow_for("enrollment") as uow:
        ana = enroll_person(uow, _person("Ana", "52123456", household, "reference")).id
    with uow_for("enrollment") as uow:
        enroll_person(uow, _person("Luis", "52123457", household, "spouse"))
    with uow_for("card_service") as uow:
        get_person(uow, ana)
    built.integrator.run_once(full=True)


def log_more(built: Container, entries: int = 3) -> None:
    """Later activity: more access-log entries, folded and signed into a larger checkpoint."""
    rows = [
        AccessEntry(FIXED_NOW, "registrar-ana", "registrar", "enrollment", "read", None, ("identity",), f"later {i}")
        for i in range(entries)
    ]
    with built.engine.begin() as conn:
        SqlAccessLog(conn).append(rows)
    built.integrator.run_once(full=True)
