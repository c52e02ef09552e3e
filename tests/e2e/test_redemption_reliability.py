"""Redemptions survive crashes: a SIGKILLed server and a restarted PostgreSQL lose and double nothing.

Both tests run `civicard serve` as a real process on PostgreSQL and drive POST /v1/redemptions from
several threads, each thread a terminal of its own with signed requests and a fresh Idempotency-Key
per purchase. Afterwards the ledger is checked against what the clients were told:
  * every acknowledged sale (201) is in the ledger exactly once, under its key;
  * no sale exists for a key that was never sent, and no key has two sales;
  * every unacknowledged request, retried with the same key, ends in one final answer (a replay,
    or one completion), and a refusal leaves no sale;
  * every sale has its ledger lines, and the ledger equals the entitlements' decrements.

A request cut off mid-flight leaves its key's claim pending; the server answers 409 to retries until
the claim is stale (STALE_CLAIM, 60 s). Rather than sleep through that, the tests age pending claims
in the database past it — exactly what the passing of time does.

The PostgreSQL test uses a throw-away cluster of its own (initdb into a temporary directory, on a
free port, as the postgres OS user when run as root), never the shared server. Without initdb it
skips loudly, except under CI=true, where it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.migrate import upgrade
from civicard.adapters.db.redemption_store import STALE_CLAIM
from civicard.bootstrap import Container, bootstrap
from civicard.settings import Mode, Settings
from tests.conftest import IN_CI, fresh_postgres_schema
from tests.e2e.conftest import signed_headers
from tests.integration.distribution_fixtures import (
    PIN,
    DistributionTown,
    HeldCard,
    Till,
    add_till,
    build_distribution_town,
    system_uow,
)

pytestmark = pytest.mark.e2e
REDEEM = "/v1/redemptions"
THREADS = 6
FOOD = ("RICE-1KG", "BEANS-1KG", "MAIZE-MEAL-1KG", "OIL-1L")
ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60.0
FINAL = {201, 422}


# --- a server process -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """`civicard serve` in a process of its own, so it can be killed like a real one."""

    database_url: str
    data_dir: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = os.environ | {
            "CIVICARD_MODE": "demo",
            "CIVICARD_DATA_DIR": str(self.data_dir),
            "CIVICARD_DATABASE_URL": self.database_url,
        }
        command = [sys.executable, "-m", "civicard.adapters.cli.main", "serve", "--port", str(self.port)]
        if shutil.which("civicard", path=str(Path(sys.executable).parent)):
            command = [str(Path(sys.executable).parent / "civicard"), "serve", "--port", str(self.port)]
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"civicard serve exited: {self.log()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"civicard serve did not answer within {STARTUP_SECONDS} s: {self.log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no rollback from the server's side."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def served(database_url: str, data_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(database_url, data_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- a town and its terminals ------------------------------------------------------------------------


@dataclass
class Setup:
    container: Container
    town: DistributionTown
    tills: list[Till]


@contextmanager
def town_on(database_url: str, data_dir: Path) -> Iterator[Setup]:
    """Migrate, build a distribution town with the demo key the server will read, and a till a thread."""
    upgrade(database_url)
    container = bootstrap(Settings(mode=Mode.DEMO, data_dir=data_dir, database_url=database_url))
    try:
        engine, clock = container.engine, container.clock
        town = build_distribution_town(
            engine, clock, data_dir / "town", households=120, cards=30, root_key=container.root_key
        )
        tills = [add_till(engine, "shop", f"Tienda {n}", clock.now()) for n in range(THREADS)]
        yield Setup(container, town, tills)
    finally:
        container.close()


# --- clients -----------------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One purchase attempt: its key and body, and every answer it got (None: no answer)."""

    till: Till
    key: str
    body: bytes
    answers: list[tuple[int | None, bytes, str]] = field(default_factory=list)

    @property
    def first(self) -> int | None:
        return self.answers[0][0] if self.answers else None

    @property
    def final(self) -> tuple[int, bytes] | None:
        """The first final answer (201 or 422), if any."""
        return next(((s, c) for s, c, _ in self.answers if s in FINAL), None)


def send(base_url: str, attempt: Attempt, timeout: float = 10.0) -> tuple[int | None, bytes, str]:
    """POST the attempt (signed afresh: a new nonce and time, the same key and body)."""
    headers = signed_headers(attempt.till.key, attempt.till.terminal_id, REDEEM, attempt.body) | {
        "Content-Type": "application/json",
        "Idempotency-Key": attempt.key,
    }
    try:
        response = httpx.post(f"{base_url}{REDEEM}", content=attempt.body, headers=headers, timeout=timeout)
    except httpx.TransportError as lost:
        answer: tuple[int | None, bytes, str] = (None, b"", type(lost).__name__)
    else:
        answer = (response.status_code, response.content, response.headers.get("content-type", ""))
    attempt.answers.append(answer)
    return answer


def new_attempt(till: Till, card: HeldCard, n: int, tag: str) -> Attempt:
    basket = [{"item": FOOD[n % len(FOOD)], "quantity": 1}]
    body = json.dumps({"card_token": card.token, "pin": PIN, "basket": basket}).encode()
    return Attempt(till, f"{tag}-{till.terminal_id[:8]}-{n}", body)


class Load:
    """THREADS terminals sending purchases (distinct keys) until stopped; each records its attempts."""

    def __init__(self, base_url: str, setup: Setup, tag: str, stop_on_loss: bool) -> None:
        self.base_url, self.setup, self.tag, self.stop_on_loss = base_url, setup, tag, stop_on_loss
        self.attempts: list[Attempt] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(THREADS)]

    def _run(self, index: int) -> None:
        cards = self.setup.town.adults
        n = 0
        while not self.stop.is_set():
            card = cards[(index + n * THREADS) % len(cards)]
            attempt = new_attempt(self.setup.tills[index], card, n, self.tag)
            with self._lock:
                self.attempts.append(attempt)
            status, _, _ = send(self.base_url, attempt, timeout=5.0)
            n += 1
            if status is None:
                if self.stop_on_loss:
                    return
                time.sleep(0.05)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def acknowledged(self) -> int:
        with self._lock:
            return sum(1 for a in self.attempts if a.first in FINAL)

    def wait_for(self, acknowledged: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.acknowledged() < acknowledged and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.acknowledged() >= acknowledged, f"only {self.acknowledged()} answers in {seconds} s"


# --- the ledger --------------------------------------------------------------------------------------


def age_pending_claims(setup: Setup) -> int:
    """Move pending claims past STALE_CLAIM, as if their dead requests were a minute old."""
    k = t.idempotency_keys
    with system_uow(setup.container.engine, setup.container.clock) as uow:
        aged = uow.connection.execute(
            sa.update(k)
            .where(k.c.state == "pending")
            .values(created_at=k.c.created_at - STALE_CLAIM - timedelta(seconds=5))
        ).rowcount
        uow.connection.commit()
    return int(aged)


def settle_retries(base_url: str, setup: Setup, attempts: list[Attempt]) -> None:
    """Retry every attempt without a final answer (same key, same body) until it has one."""
    for attempt in [a for a in attempts if a.final is None]:
        status, _, _ = send(base_url, attempt)
        assert status in {*FINAL, 409}, (status, attempt.answers)
    age_pending_claims(setup)
    for attempt in [a for a in attempts if a.final is None]:
        status, content, _ = send(base_url, attempt)
        assert status in FINAL, (status, content)


def check_ledger(setup: Setup, attempts: list[Attempt]) -> dict[str, int]:
    """Every final answer matches the ledger, sale for sale; the ledger matches the entitlements."""
    r, ll, e = t.redemptions, t.ledger_lines, t.entitlements
    with system_uow(setup.container.engine, setup.container.clock) as uow:
        conn = uow.connection
        sales = conn.execute(sa.select(r.c.id, r.c.terminal_id, r.c.idempotency_key)).all()
        lines = dict(
            conn.execute(sa.select(ll.c.redemption_id, sa.func.sum(ll.c.quantity)).group_by(ll.c.redemption_id)).all()
        )
        ledger = {
            (row.household_id, row.item_code): int(row.quantity)
            for row in conn.execute(
                sa.select(ll.c.household_id, ll.c.item_code, sa.func.sum(ll.c.quantity).label("quantity")).group_by(
                    ll.c.household_id, ll.c.item_code
                )
            )
        }
        decrements = {
            (row.household_id, row.item_code): int(row.taken)
            for row in conn.execute(
                sa.select(e.c.household_id, e.c.item_code, sa.func.sum(e.c.granted - e.c.remaining).label("taken"))
                .where(e.c.period == setup.town.period)
                .group_by(e.c.household_id, e.c.item_code)
            )
            if row.taken
        }
    by_key: dict[tuple[str, str], list[str]] = {}
    for sale in sales:
        by_key.setdefault((sale.terminal_id, sale.idempotency_key), []).append(sale.id)
    sent = {(a.till.terminal_id, a.key): a for a in attempts}
    assert set(by_key) <= set(sent), "a sale exists for a request nobody sent"
    assert all(len(ids) == 1 for ids in by_key.values()), "a key has two sales"
    assert all(lines.get(sale.id, 0) > 0 for sale in sales), "a sale without its ledger lines"
    assert ledger == decrements, "the ledger differs from the entitlements' decrements"
    for ident, attempt in sent.items():
        final = attempt.final
        assert final is not None, attempt.answers
        status, content = final
        if status == 201:
            assert by_key.get(ident) == [json.loads(content)["transaction_id"]], attempt.answers
            assert all(s != 201 or c == content for s, c, _ in attempt.answers), "two different receipts for one key"
        else:
            assert ident not in by_key, f"a refused request has a sale: {attempt.answers}"
    return {
        "sales": len(sales),
        "acknowledged": sum(1 for a in attempts if a.first in FINAL),
        "unacknowledged": sum(1 for a in attempts if a.first not in FINAL),
    }


# --- (a) SIGKILL the server mid-run ------------------------------------------------------------------


def test_a_server_killed_mid_run_loses_and_doubles_no_redemption(tmp_path: Path) -> None:
    for database in fresh_postgres_schema():
        with town_on(database.url, tmp_path) as setup:
            server = ServerProcess(database.url, tmp_path)
            server.start()
            try:
                with Load(server.base_url, setup, "kill", stop_on_loss=True) as load:
                    load.wait_for(acknowledged=40, seconds=30)
                    server.kill()
                attempts = load.attempts
                assert any(a.first is None for a in attempts), "the kill cut off no request"
                server.start()  # the same database, a new process
                settle_retries(server.base_url, setup, attempts)
                counts = check_ledger(setup, attempts)
            finally:
                server.stop()
            assert counts["sales"] > 0 and counts["unacknowledged"] >= 1, counts


# --- (b) restart PostgreSQL mid-run ------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    bindir: Path
    base: Path
    port: int
    as_postgres: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/civicard"

    def start(self) -> None:
        # Port and socket directory on every start: the cluster's own config would say 5432.
        options = f"-p {self.port} -k {self.base / 'sockets'} -c listen_addresses=127.0.0.1"
        self.pg_ctl("start", "-w", "-l", str(self.base / "postgres.log"), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-w", "-m", mode)

    def pg_ctl(self, *args: str) -> None:
        command = [*self.as_postgres, str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=60)


def _postgres_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and (Path(initdb).parent / "pg_ctl").exists() else None


def _require_initdb() -> Path:
    bindir = _postgres_bindir()
    reason = None
    if bindir is None:
        reason = "initdb/pg_ctl not found (apt-get install postgresql)"
    elif os.geteuid() == 0 and shutil.which("runuser") is None:
        reason = "running as root without runuser to start PostgreSQL as the postgres user"
    if reason is None and bindir is not None:
        return bindir
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(f"SKIPPING THE POSTGRESQL RESTART TEST — {reason}")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A throw-away PostgreSQL cluster on a free port, socket in its own directory; removed after."""
    bindir = _require_initdb()
    base = Path(tempfile.mkdtemp(prefix="civicard-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    if as_postgres:
        for path in (base, sockets):
            shutil.chown(path, "postgres", "postgres")
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]
    subprocess.run([*as_postgres, *initdb], check=True, capture_output=True, timeout=120)
    made = Cluster(bindir, base, _free_port(), as_postgres)
    made.start()
    try:
        admin = sa.create_engine(made.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE civicard"))
        admin.dispose()
        yield made
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            made.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def clean_failure(status: int | None, content: bytes, content_type: str) -> bool:
    """No connection at all, or a problem document with no trace of the machinery behind it.

    A lost database connection is 503 `database_unavailable` with Retry-After.
    """
    if status is None:
        return True
    leaks = (b"Traceback", b"psycopg", b"sqlalchemy", b"OperationalError")
    if content_type != "application/problem+json" or any(leak in content for leak in leaks):
        return False
    code = json.loads(content)["code"]
    return (status, code) == (503, "database_unavailable")


def test_requests_fail_cleanly_while_postgres_restarts_and_succeed_after(cluster: Cluster, tmp_path: Path) -> None:
    with town_on(cluster.url, tmp_path) as setup, served(cluster.url, tmp_path) as server:
        with Load(server.base_url, setup, "pg", stop_on_loss=False) as load:
            load.wait_for(acknowledged=20, seconds=30)
            cluster.stop()
            down_from = len(load.attempts)
            time.sleep(1.5)
            cluster.start()
            setup.container.engine.dispose()  # this test's own pooled connections died with the server
            back_from = len(load.attempts)
            load.wait_for(acknowledged=load.acknowledged() + 20, seconds=30)
        attempts = load.attempts
        answers = [answer for a in attempts for answer in a.answers]
        failed = [(s, c, ct) for s, c, ct in answers if s not in FINAL]
        assert failed, "no request met the restart"
        for status, content, content_type in failed:
            assert clean_failure(status, content, content_type), (status, content[:300])
        assert any(a.first == 201 for a in attempts[:down_from]), "nothing succeeded before the restart"
        assert any(a.first == 201 for a in attempts[back_from:]), "nothing succeeded after the restart"
        settle_retries(server.base_url, setup, attempts)
        counts = check_ledger(setup, attempts)
        assert counts["sales"] > 0, counts


def test_a_redemption_while_postgres_is_down_is_a_503_problem(cluster: Cluster, tmp_path: Path) -> None:
    with town_on(cluster.url, tmp_path) as setup, served(cluster.url, tmp_path) as server:
        attempt = new_attempt(setup.tills[0], setup.town.adults[0], 0, "down")
        assert send(server.base_url, attempt)[0] == 201
        cluster.stop()
        try:
            status, content, content_type = send(
                server.base_url, new_attempt(setup.tills[0], setup.town.adults[0], 1, "down")
            )
        finally:
            cluster.start()
        assert (status, content_type) == (503, "application/problem+json"), (status, content[:300])
        assert json.loads(content)["code"] == "database_unavailable"
