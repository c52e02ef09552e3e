"""A real civicard server for end-to-end tests: migrated database, a small seeded town, uvicorn.

Each test module gets its own server, data directory and database (module scope), so no module
depends on what another one wrote. The town is seeded through the real services and units of
work, exactly as a registrar at the desk would build it; the staff accounts through the real
AuthStore. Clients authenticate for real: a session from POST /v1/sessions, sent as a bearer token.

Sign-in is throttled per client address (20 attempts per 5 minutes) and every test comes from
127.0.0.1, so a module signs in once per server and shares the session; tests that need many
attempts use their own account or their own server. The throttle lives in each server's database.

Browser fixtures use Debian's Chromium; without it they skip loudly, except under CI=true, where
they fail.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyotp
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

from civicard.adapters.api.app import create_app
from civicard.adapters.db import tables as t
from civicard.adapters.db.dedup_extract import registry_records
from civicard.adapters.db.migrate import upgrade
from civicard.bootstrap import Container, bootstrap
from civicard.dedup.screening import rebuild_index
from civicard.identity.terminal_auth import encode_signature, sign_request
from civicard.registry.enrollment import CreateHousehold, EnrollPerson, create_household, enroll_person
from civicard.registry.recording import record_fact
from civicard.settings import Mode, Settings
from civicard.transparency.access import AccessContext, Actor
from tests.conftest import IN_CI, fresh_postgres_schema

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
SEEDED_BY = "e2e:seed"
STARTUP_SECONDS = 15.0
PING = "/v1/terminals/ping"
TERMINAL_LABEL = "Tienda La Esquina (e2e)"


@dataclass(frozen=True)
class StaffLogin:
    """A staff account the seed creates on every server, with what its holder types to sign in."""

    username: str
    role: str
    display_name: str
    password: str
    totp_secret: str | None = None

    def credentials(self, totp_code: str | None = None) -> dict[str, Any]:
        """The POST /v1/sessions body; a TOTP account gets the current code unless one is given."""
        body: dict[str, Any] = {"username": self.username, "password": self.password}
        if self.totp_secret is not None:
            body["totp_code"] = totp_code or pyotp.TOTP(self.totp_secret).now()
        return body


REGISTRAR = StaffLogin("registrar-e2e", "registrar", "Rosa Registradora (e2e)", "mesa-de-registro-e2e-2026")
REVIEWER = StaffLogin("reviewer-e2e", "reviewer", "Rubén Revisor (e2e)", "revision-de-casos-e2e-2026")
# program_admin needs a second factor; the secret is passed in so tests can compute codes.
PROGRAM_ADMIN = StaffLogin(
    "admin-e2e",
    "program_admin",
    "Ana Administradora (e2e)",
    "reglas-del-programa-e2e-2026",
    totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
)
STAFF: tuple[StaffLogin, ...] = (REGISTRAR, REVIEWER, PROGRAM_ADMIN)


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
    staff: dict[str, str] = field(default_factory=dict)  # username → account id

    def person(self, full_name: str) -> str:
        return self.town.person_ids[full_name]

    def account_id(self, login: StaffLogin) -> str:
        """The id create_staff_account returned: what the access log and recorded_by name."""
        return self.staff[login.username]

    def sign_in(self, login: StaffLogin, totp_code: str | None = None) -> httpx.Response:
        """POST /v1/sessions as `login` (one attempt against this server's per-address throttle)."""
        return httpx.post(f"{self.base_url}/v1/sessions", json=login.credentials(totp_code), timeout=10.0)

    def open_session(self, login: StaffLogin) -> dict[str, str]:
        """Sign in and return {token, csrf_token, role, display_name}; fails the test if refused."""
        response = self.sign_in(login)
        assert response.status_code == 201, response.text
        session: dict[str, str] = response.json()
        return session

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
    index = AccessContext(Actor("test:seed-index", "system"), "duplicate_screening")
    with container.uow(index) as uow:
        rebuild_index(uow, duckdb.connect(), registry_records(uow))
    return town


def seed_staff(container: Container) -> dict[str, str]:
    """Create STAFF through the real AuthStore; returns username → account id."""
    accounts = {}
    for login in STAFF:
        created = container.auth.create_staff_account(
            login.username, login.display_name, login.role, login.password, SEEDED_BY, totp_secret=login.totp_secret
        )
        assert created.totp_secret == login.totp_secret
        accounts[login.username] = created.account.id
    return accounts


def register_terminal(server: LiveServer) -> tuple[Ed25519PrivateKey, str]:
    """A new vendor terminal: its private device key (kept by the test) and the id the server gave it."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    terminal = server.container.auth.register_terminal(TERMINAL_LABEL, public, server.account_id(REGISTRAR))
    return key, terminal.id


def signed_headers(
    key: Ed25519PrivateKey,
    terminal_id: str,
    target: str = PING,
    body: bytes = b"",
    *,
    method: str = "POST",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """What a terminal sends: its id, the time, a fresh nonce and the signature over the request."""
    when = int(time.time()) if timestamp is None else timestamp
    once = secrets.token_urlsafe(24) if nonce is None else nonce
    signature = sign_request(key, method, target, body, when, once, terminal_id)
    return {
        "X-Civicard-Terminal": terminal_id,
        "X-Civicard-Timestamp": str(when),
        "X-Civicard-Nonce": once,
        "X-Civicard-Signature": encode_signature(signature),
    }


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
        staff = seed_staff(container)
        sock = _listening_socket()
        host, port = sock.getsockname()
        # "critical": uvicorn would log each 500 again ("Exception in ASGI application") after the
        # response is sent, formatting the traceback in the server thread while the test thread may
        # be formatting a failure; on CPython 3.11 both call ast.parse, which is not thread-safe
        # there ("SystemError: AST constructor recursion depth mismatch" crashed an xdist worker).
        # civicard's own handler logs unexpected errors before it answers, so nothing is lost.
        config = uvicorn.Config(create_app(container), host=host, port=port, log_level="critical")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-e2e", daemon=True)
        thread.start()
        base_url = f"http://{host}:{port}"
        try:
            _wait_until_healthy(base_url, thread)
            yield LiveServer(base_url=base_url, backend=backend, container=container, town=town, staff=staff)
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


@contextmanager
def serve_on(backend: str, data_dir: Path) -> Iterator[LiveServer]:
    """A seeded server on `backend`; PostgreSQL gets a fresh schema dropped afterwards."""
    if backend == "sqlite":
        with running_server(data_dir, f"sqlite:///{data_dir / 'civicard.db'}", "sqlite") as server:
            yield server
        return
    for database in fresh_postgres_schema():
        with running_server(data_dir, database.url, "postgresql") as server:
            yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Like `live_server`, on each backend; PostgreSQL gets a fresh schema dropped afterwards."""
    with serve_on(request.param, tmp_path_factory.mktemp(f"civicard-e2e-{request.param}")) as server:
        yield server


@pytest.fixture(scope="module")
def registrar_session(api_server: LiveServer) -> dict[str, str]:
    """One registrar session per server, signed in over HTTP once and shared by the module."""
    return api_server.open_session(REGISTRAR)


@pytest.fixture
def api(api_server: LiveServer, registrar_session: dict[str, str]) -> Iterator[httpx.Client]:
    """An HTTP client signed in as REGISTRAR (bearer token); each request adds its own purpose."""
    headers = {"Authorization": f"Bearer {registrar_session['token']}"}
    with httpx.Client(base_url=api_server.base_url, headers=headers, timeout=10.0) as client:
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


@contextmanager
def page_in_new_context(chromium: Any, storage_state: dict[str, Any] | None = None) -> Iterator[Any]:
    """A page in a browser context of its own, optionally starting with saved cookies."""
    context = chromium.new_context(locale="es-ES", viewport={"width": 1280, "height": 900}, storage_state=storage_state)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context and page per test: no cookies or history carried between tests."""
    with page_in_new_context(chromium) as page:
        yield page


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
