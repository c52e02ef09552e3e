"""A real civicard server for end-to-end tests: migrated database, a small seeded town, uvicorn.

Each test module gets its own server, data directory and database (module scope), so no module
depends on what another one wrote. The town is seeded through the real services and units of
work, exactly as a registrar at the desk would build it. Browser fixtures use Debian's Chromium;
without it they skip loudly, except under CI=true, where they fail.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from civicard.adapters.api.app import create_app
from civicard.adapters.db import tables as t
from civicard.adapters.db.migrate import upgrade
from civicard.bootstrap import Container, bootstrap
from civicard.registry.enrollment import CreateHousehold, EnrollPerson, create_household, enroll_person
from civicard.registry.recording import record_fact
from civicard.settings import Mode, Settings
from civicard.transparency.access import AccessContext, Actor
from tests.conftest import IN_CI, _fresh_postgres_schema

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
SEED_CONTEXT = AccessContext(Actor("seed", "registrar"), "fact_correction")
DEMO_HEADERS = {"X-Civicard-Actor": "registrar-e2e", "X-Civicard-Role": "registrar"}
STARTUP_SECONDS = 15.0


@dataclass(frozen=True)
class Resident:
    given_names: str
    first_surname: str
    second_surname: str
    birth_date: date
    sex: str
    relationship: str
    national_id: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.given_names} {self.first_surname} {self.second_surname}"


@dataclass(frozen=True)
class Dwelling:
    municipality: str
    address_line: str
    postcode: str
    residents: tuple[Resident, ...]


# A small town: three households, eight people, accents everywhere a clerk would type none.
TOWN: tuple[Dwelling, ...] = (
    Dwelling(
        "NOR-01",
        "Calle 5 # 10-20",
        "10001",
        (
            Resident("María José", "Pérez", "Gómez", date(1984, 3, 9), "F", "reference", "52123456"),
            Resident("José Luis", "Martínez", "Ruiz", date(1981, 11, 2), "M", "spouse", "79456123"),
            Resident("Sofía", "Martínez", "Pérez", date(2012, 6, 21), "F", "child"),
        ),
    ),
    Dwelling(
        "SUR-02",
        "Carrera 8 # 3-15",
        "20002",
        (
            Resident("Ramón", "Núñez", "Peña", date(1950, 1, 30), "M", "reference", "17234567"),
            Resident("Inés", "Ibáñez", "Muñoz", date(1953, 8, 14), "F", "spouse", "41234987"),
        ),
    ),
    Dwelling(
        "CEN-01",
        "Avenida Bolívar 120, apto 3",
        "50010",
        (
            Resident("Lucía", "Fernández", "Ortíz", date(1992, 4, 5), "F", "reference", "1020304050"),
            Resident("Andrés Julián", "Gutiérrez", "Fernández", date(2015, 9, 1), "M", "child"),
            Resident("Águeda", "Fernández", "Ortíz", date(1960, 12, 24), "F", "parent", "30111222"),
        ),
    ),
)
FACTS_FROM = date(2024, 1, 1)


@dataclass
class SeededTown:
    """Ids of what the seed created: households in TOWN order, persons by full name."""

    household_ids: list[str] = field(default_factory=list)
    person_ids: dict[str, str] = field(default_factory=dict)
    chronic_person_id: str = ""


@dataclass
class LiveServer:
    base_url: str
    backend: str
    container: Container
    town: SeededTown

    def person(self, full_name: str) -> str:
        return self.town.person_ids[full_name]

    def access_log_since(self, seq: int) -> list[dict[str, Any]]:
        query = select(t.access_log).where(t.access_log.c.seq > seq).order_by(t.access_log.c.seq)
        with self.container.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def access_log_head(self) -> int:
        with self.container.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(t.access_log.c.seq), 0))).scalar_one())


def seed_town(container: Container) -> SeededTown:
    """Build TOWN through the enrollment and recording services, one unit of work per use case."""
    town = SeededTown()
    for dwelling in TOWN:
        with container.uow(SEED_CONTEXT) as uow:
            household = create_household(
                uow, CreateHousehold(dwelling.municipality, dwelling.address_line, dwelling.postcode)
            )
        town.household_ids.append(household.id)
        for r in dwelling.residents:
            with container.uow(SEED_CONTEXT) as uow:
                person = enroll_person(
                    uow,
                    EnrollPerson(
                        given_names=r.given_names,
                        first_surname=r.first_surname,
                        second_surname=r.second_surname,
                        birth_date=r.birth_date,
                        birth_place="San Rafael",
                        sex=r.sex,
                        address_line=dwelling.address_line,
                        municipality=dwelling.municipality,
                        postcode=dwelling.postcode,
                        national_id=r.national_id,
                        household_id=household.id,
                        relationship=r.relationship,
                    ),
                )
            town.person_ids[r.full_name] = person.id
    incomes = {
        "María José Pérez Gómez": ("wages", 180_000),
        "José Luis Martínez Ruiz": ("informal_work", 90_000),
        "Ramón Núñez Peña": ("pension", 65_000),
        "Lucía Fernández Ortíz": ("self_employment", 120_000),
    }
    for name, (source, amount) in incomes.items():
        _record(container, "incomes", town.person_ids[name], {"source": source}, {"monthly_amount_minor": amount})
    town.chronic_person_id = town.person_ids["Ramón Núñez Peña"]
    _record(container, "health_needs", town.chronic_person_id, {"kind": "chronic", "code": "E11"}, {"present": True})
    _record(container, "properties", town.household_ids[1], {"kind": "dwelling"}, {"value_minor": 4_500_000_00})
    return town


def _record(container: Container, kind: str, subject_id: str, key: dict[str, Any], values: dict[str, Any]) -> None:
    with container.uow(SEED_CONTEXT) as uow:
        record_fact(uow, kind, subject_id, key, values, FACTS_FROM, "seeded for end-to-end tests")


def _listening_socket() -> socket.socket:
    # Bound before uvicorn starts, so no other process can take the port in between.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _wait_until_healthy(base_url: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped before answering /healthz")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{base_url}/healthz did not answer within {STARTUP_SECONDS} s")


@contextmanager
def running_server(data_dir: Path, database_url: str, backend: str) -> Iterator[LiveServer]:
    """Migrate, bootstrap, seed and serve civicard on a free local port until the block ends."""
    settings = Settings(mode=Mode.DEMO, data_dir=data_dir, database_url=database_url)
    upgrade(database_url)
    container = bootstrap(settings)
    try:
        town = seed_town(container)
        sock = _listening_socket()
        host, port = sock.getsockname()
        server = uvicorn.Server(uvicorn.Config(create_app(container), host=host, port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-e2e", daemon=True)
        thread.start()
        base_url = f"http://{host}:{port}"
        try:
            _wait_until_healthy(base_url, thread)
            yield LiveServer(base_url=base_url, backend=backend, container=container, town=town)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()
    finally:
        container.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A seeded civicard on SQLite, private to the requesting test module."""
    data_dir = tmp_path_factory.mktemp("civicard-e2e")
    with running_server(data_dir, f"sqlite:///{data_dir / 'civicard.db'}", "sqlite") as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Like `live_server`, on each backend; PostgreSQL gets a fresh schema dropped afterwards."""
    data_dir = tmp_path_factory.mktemp(f"civicard-e2e-{request.param}")
    if request.param == "sqlite":
        with running_server(data_dir, f"sqlite:///{data_dir / 'civicard.db'}", "sqlite") as server:
            yield server
        return
    for database in _fresh_postgres_schema():
        with running_server(data_dir, database.url, "postgresql") as server:
            yield server


@pytest.fixture
def api(api_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client declaring the demo registrar; each request adds its own purpose."""
    with httpx.Client(base_url=api_server.base_url, headers=DEMO_HEADERS, timeout=10.0) as client:
        yield client


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install -y chromium); browser tests cannot run"
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(f"SKIPPING BROWSER TESTS — {reason}")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (never a Playwright-downloaded browser)."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context and page per test: no cookies or history carried between tests."""
    context = chromium.new_context(locale="es-ES", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
