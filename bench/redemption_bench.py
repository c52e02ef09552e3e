"""Redemption (issue 7): POST /v1/redemptions under load, beside pgbench TPC-B in the same run.

    python bench/redemption_bench.py [--quick] [--households N] [--seconds S] [--workers 2,3,4] [--write/--no-write]
                                     [--json PATH] [--on-database URL]

What it does, all on the shared PostgreSQL at 127.0.0.1:5432 (CIVICARD_BENCH_POSTGRES_URL), in
throw-away databases dropped at the end:
  1. Reference: `pgbench -i -s 10`, then `pgbench -c 16 -j 2 -T <seconds>` (TPC-B) on a scratch database.
  2. A synthetic town (population generator + import, default 30,000 households), the published
     rules, this month's cycle, prices, one vendor with 64 shop outlets and one counter terminal
     each, and one card with a PIN for the first adult of every food-entitled household (cards and
     PIN rows inserted in bulk, tokens signed with the real issuer key).
  3. For each worker count: uvicorn (uvloop + httptools) with that many worker processes, then
     `wrk` (Debian) with 2 threads and 64 connections replaying a pool of pre-signed requests
     through a Lua script. wrk's Lua cannot make Ed25519 signatures, so every request is signed
     here just before the run (a distinct nonce, timestamp and Idempotency-Key each; the run
     stays well inside terminal_auth.CLOCK_SKEW). Request i comes from terminal i mod 64 and the
     card of household i mod H, one unit of an item the household still has, so the 64 requests in
     flight are for distinct cards and households. A 3 s warm-up precedes each timed run.
  4. The ledger is checked after each run: redemptions written == 201 answers.
Prints redemptions/s, p50/p95/p99 latency, error rate, pgbench tps, the ratio and the machine;
full mode (and --write) replaces the "## Redemption (issue 7)" section of bench/RESULTS.md.
Quick mode: 3,000 households, 10 s runs, 2 workers, nothing written. --json writes the figures for
bench/run_all.py (bench/figures.py); its facts say whether the ledger check passed.

--on-database URL runs the same load in an existing, already-loaded civicard database (the national
registry, bench/national_bench.py's `throughput` step) instead of step 2's town: nothing is generated,
imported or decided, and nothing is dropped. This month's period must be open. The bench folds the
access-log entries not yet in the Merkle log (a bulk import's) as `civicard audit integrate` would,
then adds beside what is there, through the same function as the town: prices for items unpriced
this period, its own vendor with 64 shops and terminals, and cards with PINs for the first
--households households (by id) with food left, each for an adult holding no card yet. Set
CIVICARD_ROOT_KEY to the database's root key (the server the bench starts inherits it), so the
bench's cards are signed as the database's own are and the server verifies both. The sales are
real redemptions of the open period, settled with the rest. pgbench runs on a scratch database of
the same server (CIVICARD_BENCH_POSTGRES_URL overrides); RESULTS.md is not written.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# bench/ too: uvicorn imports this file as bench.redemption_bench, where bench/figures.py is not on the path.
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

import httpx  # noqa: E402
import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from figures import Figures  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from civicard.adapters.api.access import SignedRequest  # noqa: E402
from civicard.adapters.api.app import create_app  # noqa: E402
from civicard.adapters.api.redemption_routes import _claim_and_redeem  # noqa: E402
from civicard.adapters.bulk.importer import import_population  # noqa: E402
from civicard.adapters.db import tables as t  # noqa: E402
from civicard.adapters.db.card_store import SqlCardUnitOfWork  # noqa: E402
from civicard.adapters.db.migrate import upgrade  # noqa: E402
from civicard.bootstrap import Container, bootstrap  # noqa: E402
from civicard.distribution.redemption import RedeemCommand, RedemptionKeys  # noqa: E402
from civicard.distribution.sales import BasketLine  # noqa: E402
from civicard.identity.cards import DEFAULT_POLICY, Card, CardKeys, card_token, issue_card  # noqa: E402
from civicard.identity.credentials import new_handle  # noqa: E402
from civicard.identity.pins import hash_pin  # noqa: E402
from civicard.identity.terminal_auth import (  # noqa: E402
    CLOCK_SKEW,
    decode_signature,
    encode_signature,
    sign_request,
)
from civicard.programs.cycles import period_of  # noqa: E402
from civicard.registry.population import PopulationSpec, generate_population  # noqa: E402
from civicard.settings import Mode, Settings  # noqa: E402
from civicard.shared.clock import Clock  # noqa: E402
from civicard.shared.ids import new_id  # noqa: E402
from tests.integration.distribution_fixtures import (  # noqa: E402
    CARD_DESK,
    LOADER,
    PIN,
    add_terminal,
    load_items,
    register_rules,
    run_period,
    set_prices,
    system_uow,
)

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Redemption (issue 7)"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TERMINALS = 64
IN_PROCESS_SALES = 300
CONNECTIONS = 64
WRK_THREADS = 2
WARMUP_SECONDS = 3
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
MAX_RATE = 2_500  # requests signed per second of run: beyond any rate reached here (target 0.5 × ~4,000)
FOOD_ITEMS = ("RICE-1KG", "BEANS-1KG", "MAIZE-MEAL-1KG", "OIL-1L", "SUGAR-1KG", "SALT-1KG")
PATH = "/v1/redemptions"

WRK_SCRIPT = r"""
-- Replays pre-signed requests (one a line: terminal, timestamp, nonce, signature, key, body; TABs).
-- Thread k of n takes lines k, k+n, k+2n…; past its share it starts again (replays: refused 401).
local threads, count = {}, 0
function setup(thread)
  count = count + 1
  thread:set("id", count)
  table.insert(threads, thread)
end
function init(args)
  local path, n = args[1], tonumber(args[2])
  pool, total, at, wrapped, statuses = {}, 0, 0, 0, {}
  local line_no = 0
  for line in io.lines(path) do
    if line_no % n == id - 1 then
      local term, ts, nonce, sig, key, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      total = total + 1
      pool[total] = wrk.format("POST", "/v1/redemptions", {
        ["Content-Type"] = "application/json", ["Idempotency-Key"] = key,
        ["X-Civicard-Terminal"] = term, ["X-Civicard-Timestamp"] = ts,
        ["X-Civicard-Nonce"] = nonce, ["X-Civicard-Signature"] = sig}, body)
    end
    line_no = line_no + 1
  end
end
function request()
  at = at + 1
  if at > total then at, wrapped = 1, wrapped + 1 end
  return pool[at]
end
function response(status, headers, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
end
function done(summary, latency, requests)
  local merged, wraps = {}, 0
  for _, th in ipairs(threads) do
    for k, v in pairs(th:get("statuses")) do merged[k] = (merged[k] or 0) + v end
    wraps = wraps + th:get("wrapped")
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s": %d', k, v)) end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "socket_errors": %d, "wrapped": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    wraps, latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    table.concat(parts, ", ")))
end
"""


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def server_app() -> FastAPI:
    """uvicorn's factory in each worker: settings from CIVICARD_* (set by the bench)."""
    return create_app(bootstrap(Settings()))


# --- machine and databases -------------------------------------------------------------------------


def machine_facts() -> dict[str, str]:
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total = re.search(r"MemTotal:\s+(\d+)", meminfo)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    pg = subprocess.run(["pgbench", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    import uvicorn

    return {
        "cores": str(os.cpu_count()),
        "memory": f"{int(total.group(1)) / 2**20:.1f} GiB" if total else "?",
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "load": f"{os.getloadavg()[0]:.1f}",
        "versions": f"Python {platform.python_version()}, uvicorn {uvicorn.__version__}, {pg}",
    }


def base_url(near: str | None = None) -> sa.URL:
    """The server scratch databases go on: CIVICARD_BENCH_POSTGRES_URL if set, else the server of
    `near` (a loaded database's URL, so pgbench measures the server the load runs on), else the local one."""
    if "CIVICARD_BENCH_POSTGRES_URL" in os.environ or near is None:
        return make_url(os.environ.get("CIVICARD_BENCH_POSTGRES_URL", DEFAULT_URL))
    return make_url(near).set(database="postgres", query={})


@contextmanager
def scratch_database(prefix: str, server: sa.URL | None = None) -> Iterator[sa.URL]:
    """A new database on the shared server (or `server`), dropped (connections forced out) afterwards."""
    server = server or base_url()
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pgbench_tps(seconds: int, server: sa.URL | None = None) -> float:
    """TPC-B (scale 10, 16 clients, 2 threads) on a scratch database: transactions/s."""
    with scratch_database("pgbench_ref", server) as url:
        conn = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
        subprocess.run(["pgbench", "-i", "-s", "10", "-q", *conn, str(url.database)], check=True, capture_output=True)
        done = subprocess.run(
            ["pgbench", "-c", "16", "-j", "2", "-T", str(seconds), *conn, str(url.database)],
            check=True,
            capture_output=True,
            text=True,
        )
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    if found is None:
        raise RuntimeError(f"pgbench printed no tps:\n{done.stdout}\n{done.stderr}")
    return float(found.group(1))


# --- the town ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    household_id: str
    token: str
    left: dict[str, int]  # food item → units still to redeem this period


@dataclass
class Town:
    households: int
    persons: int
    period: str
    holders: list[Holder]
    terminals: list[tuple[str, Ed25519PrivateKey]]
    seconds: dict[str, float] = field(default_factory=dict)
    loaded: str | None = None  # the existing database's name (--on-database); None: a throw-away town
    folded: int = 0  # access-log entries the bench folded before the load (--on-database)

    @property
    def capacity(self) -> int:
        return sum(sum(h.left.values()) for h in self.holders)

    def refresh(self, engine: sa.Engine, clock: Clock) -> None:
        """What is left, from the database (signed but unsent requests gave their units back)."""
        left = _food_left(engine, clock, self.period, [h.household_id for h in self.holders])
        for holder in self.holders:
            holder.left.clear()
            holder.left.update(left.get(holder.household_id, {}))


def build_town(container: Container, households: int, work: Path) -> Town:
    """A throw-away town: generated, imported, rules published, this month's cycle run, then equipped."""
    engine, clock = container.engine, container.clock
    period = period_of(clock.today())
    timings: dict[str, float] = {}
    started = time.perf_counter()
    source = work / "population"
    generate_population(PopulationSpec(households=households, seed=7, duplicate_share=0.0), source)
    report = import_population(engine, source, LOADER, clock, None)
    timings["import"] = time.perf_counter() - started
    started = time.perf_counter()
    register_rules(engine, clock)
    load_items(engine, clock.now())
    run_period(engine, clock, period, work / "cycle")
    timings["cycle"] = time.perf_counter() - started
    persons = int(getattr(report, "persons", 0))
    return equip_town(container, period, None, Town(households, persons, period, [], [], timings))


def loaded_town(container: Container, card_households: int) -> Town:
    """An existing, already-loaded database: nothing generated, imported or decided. This month's
    period must be open (its cycle run, not yet settled). Access-log entries not yet folded into the
    Merkle log (a bulk import's) are folded first, as `civicard audit integrate` does after an
    import, so the server's integrator only keeps up with the sales, as in steady state."""
    engine, clock = container.engine, container.clock
    period = period_of(clock.today())
    database = make_url(container.settings.effective_database_url).database or "?"
    with system_uow(engine, clock) as uow:
        conn = uow.connection
        bp = t.benefit_periods
        status = conn.execute(sa.select(bp.c.status).where(bp.c.period == period)).scalar()
        households = int(conn.execute(sa.select(sa.func.count()).select_from(t.households)).scalar_one())
        persons = int(conn.execute(sa.select(sa.func.count()).select_from(t.persons)).scalar_one())
    if status != "open":
        raise SystemExit(
            f"period {period} is {status or 'not opened'} in {database}: the load needs this month's cycle run "
            "and its period open (not settled)"
        )
    started = time.perf_counter()
    folded = container.integrator.run_once(full=True)
    timings = {"integrate": time.perf_counter() - started}
    town = Town(households, persons, period, [], [], timings, loaded=database, folded=folded)
    return equip_town(container, period, card_households, town)


def equip_town(container: Container, period: str, card_households: int | None, town: Town) -> Town:
    """What the load needs in a database whose `period` is open, added beside what is there: a price
    for every item that has none this period, one vendor with TERMINALS shops and one counter
    terminal each, and cards with PINs for up to `card_households` food-entitled households (all
    when None). The sales it enables are real redemptions, settled with the period's others."""
    engine, clock = container.engine, container.clock
    now = clock.now()
    started = time.perf_counter()
    _price_items(engine, period, now)
    town.terminals = _vendor(engine, now)
    town.seconds["shops"] = time.perf_counter() - started
    started = time.perf_counter()
    town.holders = _issue_cards(container, period, card_households)
    town.seconds["cards"] = time.perf_counter() - started
    return town


def _price_items(engine: sa.Engine, period: str, now: datetime) -> None:
    """The item catalogue if the database has none, and a price for each item unpriced in `period`."""
    with engine.connect() as conn:
        items = list(conn.execute(sa.select(t.items.c.code)).scalars())
        priced = set(
            conn.execute(sa.select(t.item_prices.c.item_code).where(t.item_prices.c.period == period)).scalars()
        )
    if not items:
        items = load_items(engine, now)
    unpriced = [item for item in items if item not in priced]
    if unpriced:
        set_prices(engine, period, unpriced, now)


def _vendor(engine: sa.Engine, now: datetime) -> list[tuple[str, Ed25519PrivateKey]]:
    """One chain with TERMINALS shops, one counter terminal each."""
    vendor_id = new_id()
    outlets = [new_id() for _ in range(TERMINALS)]
    with engine.connect() as conn:
        conn.execute(
            sa.insert(t.vendors).values(
                id=vendor_id, name="Supermercados Bench S.A.", tax_id="900999999", created_at=now, created_by="bench"
            )
        )
        conn.execute(
            sa.insert(t.outlets),
            [
                {
                    "id": outlet_id,
                    "vendor_id": vendor_id,
                    "name": f"Bench {n:02d}",
                    "kind": "shop",
                    "region": "NOR",
                    "municipality": "NOR-01",
                    "address_line": f"Calle {n} # 1-1",
                    "created_at": now,
                }
                for n, outlet_id in enumerate(outlets)
            ],
        )
        conn.commit()
    made = [add_terminal(engine, outlet_id, now) for outlet_id in outlets]
    return [(terminal_id, key) for key, terminal_id in made]


def _issue_cards(container: Container, period: str, households: int | None) -> list[Holder]:
    """One card (PIN `PIN`) for an adult of each of up to `households` food-entitled households, in bulk.

    The first goes through issue_card (which publishes the status list if the database has none);
    the rest are the same rows — card, PIN hash — inserted with executemany, tokens signed with the
    real issuer key (the container's root key: on an existing database, CIVICARD_ROOT_KEY should be
    the database's own, so its cards and the bench's verify alike).
    """
    engine, clock = container.engine, container.clock
    keys = CardKeys.derive(container.root_key)
    adults = card_holders(engine, clock, period, households)
    if not adults:
        raise SystemExit(f"no household with food left in {period} has an adult without a card")
    left = _food_left(engine, clock, period, list(adults))
    first_household, first_person = next(iter(adults.items()))
    with SqlCardUnitOfWork(engine, CARD_DESK, clock) as uow:
        first = issue_card(uow, keys, first_person, PIN)
    holders = [Holder(first_household, first.token, left[first_household])]
    now = clock.now().replace(microsecond=0)
    with SqlCardUnitOfWork(engine, CARD_DESK, clock) as uow:
        taken = set(uow.connection.execute(sa.select(t.cards.c.status_index)).scalars())
    free = (
        i for i in random.sample(range(DEFAULT_POLICY.status_list_capacity), len(adults) + len(taken)) if i not in taken
    )
    cards: list[dict[str, Any]] = []
    pins: list[dict[str, Any]] = []
    for household_id, person_id in itertools.islice(adults.items(), 1, None):
        card = Card(
            new_id(), new_handle(), person_id, next(free), keys.current_kid, now,
            now + DEFAULT_POLICY.card_validity, CARD_DESK.actor.id,
        )  # fmt: skip
        cards.append({c.name: getattr(card, c.name) for c in t.cards.columns})
        pins.append(
            {
                "card_id": card.id,
                "pin_hash": hash_pin(keys.pepper, card.handle, PIN),
                "consecutive_failures": 0,
                "locked": False,
                "set_at": now,
                "set_by": CARD_DESK.actor.id,
            }
        )
        holders.append(Holder(household_id, card_token(card, keys), left[household_id]))
    with SqlCardUnitOfWork(engine, CARD_DESK, clock) as uow:
        for chunk in range(0, len(cards), 5_000):
            uow.connection.execute(sa.insert(t.cards), cards[chunk : chunk + 5_000])
            uow.connection.execute(sa.insert(t.card_pins), pins[chunk : chunk + 5_000])
        uow.commit()
    return holders


def _food_left(engine: sa.Engine, clock: Clock, period: str, households: list[str]) -> dict[str, dict[str, int]]:
    """The given households → what each still has of food this period, by item."""
    e = t.entitlements
    left: dict[str, dict[str, int]] = {}
    with system_uow(engine, clock) as uow:
        for start in range(0, len(households), 10_000):
            rows = uow.connection.execute(
                sa.select(e.c.household_id, e.c.item_code, e.c.remaining).where(
                    e.c.period == period,
                    e.c.household_id.in_(households[start : start + 10_000]),
                    e.c.remaining > 0,
                    e.c.item_code.in_(FOOD_ITEMS),
                )
            ).all()
            for r in rows:
                items = left.setdefault(r.household_id, {})
                items[r.item_code] = items.get(r.item_code, 0) + int(r.remaining)
    return left


def card_holders(
    engine: sa.Engine, clock: Clock, period: str, households: int | None, items: tuple[str, ...] = FOOD_ITEMS
) -> dict[str, str]:
    """household → its first active adult member (by id) who holds no card yet, for the first
    `households` households (by id; all when None) with one of `items` left this period.

    Selected in SQL, so a national registry is never read whole; a member who already holds a card
    (an earlier sale's) is passed over for the next adult of the household."""
    e, m, p, c = t.entitlements, t.memberships, t.persons, t.cards
    today = clock.today()
    try:
        adult_born_by = today.replace(year=today.year - 18)
    except ValueError:  # 29 February: eighteen years ago had none
        adult_born_by = today.replace(year=today.year - 18, day=28)
    food = (
        sa.select(e.c.household_id)
        .where(e.c.period == period, e.c.remaining > 0, e.c.item_code.in_(items))
        .distinct()
        .order_by(e.c.household_id)
        .limit(households)
        .subquery()
    )
    with system_uow(engine, clock) as uow:
        rows = uow.connection.execute(
            sa.select(m.c.household_id, sa.func.min(p.c.id))
            .join(p, p.c.id == m.c.person_id)
            .where(
                m.c.household_id.in_(sa.select(food.c.household_id)),
                m.c.valid_to.is_(None),
                p.c.record_status == "active",
                p.c.birth_date <= adult_born_by,
                ~sa.exists().where(c.c.person_id == p.c.id),
            )
            .group_by(m.c.household_id)
            .order_by(m.c.household_id)
        ).all()
    return {r[0]: r[1] for r in rows}


# --- load -------------------------------------------------------------------------------------------


def sign_pool(town: Town, size: int, path: Path) -> int:
    """Write `size` signed requests (or as many as the entitlements still allow); returns the count.

    Request i: terminal i mod 64, holder i mod H, one unit of an item that holder still has.
    """
    now = int(time.time())
    order = list(range(len(town.holders)))
    written = 0
    with path.open("w", encoding="utf-8") as out:
        while written < size:
            progressed = False
            for h in order:
                holder = town.holders[h]
                item = next((i for i in FOOD_ITEMS if holder.left.get(i, 0) > 0), None)
                if item is None:
                    continue
                holder.left[item] -= 1
                progressed = True
                terminal_id, key = town.terminals[written % TERMINALS]
                body = json.dumps(
                    {"card_token": holder.token, "pin": PIN, "basket": [{"item": item, "quantity": 1}]},
                    separators=(",", ":"),
                ).encode()
                nonce = secrets.token_urlsafe(18)
                signature = encode_signature(sign_request(key, "POST", PATH, body, now, nonce, terminal_id))
                out.write(f"{terminal_id}\t{now}\t{nonce}\t{signature}\t{nonce}\t{body.decode()}\n")
                written += 1
                if written == size:
                    break
            if not progressed:
                break
    return written


@dataclass(frozen=True)
class InProcess:
    """One process, no HTTP: the route's own function for sequential sales, and the per-statement
    reference (`SELECT 1` through SQLAlchemy and through raw psycopg) on the same connection pool."""

    sales: int
    cpu_ms_per_sale: float
    statements_per_sale: float
    sqlalchemy_select1_ms: float
    psycopg_select1_ms: float


def measure_in_process(town: Town, container: Container, database_url: str, work: Path, sales: int) -> InProcess:
    """Sequential sales through `_claim_and_redeem` (what POST /v1/redemptions runs in its thread)."""
    town.refresh(container.engine, container.clock)
    pool = work / "in-process.tsv"
    count = sign_pool(town, sales, pool)
    keys = RedemptionKeys(container.card_keys, container.root_key)
    requests = []
    for line in pool.read_text(encoding="utf-8").splitlines():
        terminal_id, when, nonce, signature, key, body = line.split("\t", 5)
        raw = body.encode()
        payload = json.loads(body)
        basket = tuple(BasketLine(b["item"], b["quantity"]) for b in payload["basket"])
        signed = SignedRequest(terminal_id, "POST", PATH, raw, int(when), nonce, decode_signature(signature))
        command = RedeemCommand(payload["card_token"], payload["pin"], basket)
        requests.append((signed, command, key, hashlib.sha256(raw).hexdigest()))
    statements = 0

    def count_statement(*_: Any) -> None:
        nonlocal statements
        statements += 1

    sa.event.listen(container.engine, "before_cursor_execute", count_statement)
    try:
        started = time.thread_time()
        for signed, command, key, fingerprint in requests:
            _claim_and_redeem(container, keys, signed, command, key, fingerprint)
        cpu = time.thread_time() - started
    finally:
        sa.event.remove(container.engine, "before_cursor_execute", count_statement)
    return InProcess(
        count, 1000 * cpu / max(count, 1), statements / max(count, 1), *_select1_costs(container.engine, database_url)
    )


def _select1_costs(engine: sa.Engine, database_url: str, n: int = 2_000) -> tuple[float, float]:
    """CPU ms of one `SELECT 1` round trip through SQLAlchemy, and through raw psycopg."""
    with engine.connect() as conn:
        query = sa.text("SELECT 1")
        started = time.thread_time()
        for _ in range(n):
            conn.execute(query).scalar()
        through_sqlalchemy = 1000 * (time.thread_time() - started) / n
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as raw, raw.cursor() as cur:
        started = time.thread_time()
        for _ in range(n):
            cur.execute("SELECT 1")
            cur.fetchone()
        through_psycopg = 1000 * (time.thread_time() - started) / n
    return through_sqlalchemy, through_psycopg


@dataclass(frozen=True)
class LoadResult:
    workers: int
    seconds: float
    requests: int
    statuses: dict[str, int]
    socket_errors: int
    wrapped: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    written: int  # redemptions found in the ledger for this run
    server_cpu: float  # CPU seconds of the uvicorn workers during the timed run
    postgres_cpu: float  # CPU seconds of the database's backends during the timed run

    @property
    def server_ms_per_sale(self) -> float:
        return 1000 * self.server_cpu / max(self.written, 1)

    @property
    def postgres_ms_per_sale(self) -> float:
        return 1000 * self.postgres_cpu / max(self.written, 1)

    @property
    def approved(self) -> int:
        return self.statuses.get("201", 0)

    @property
    def rate(self) -> float:
        return self.approved / self.seconds

    @property
    def error_rate(self) -> float:
        return 1 - self.approved / self.requests if self.requests else 1.0


def run_wrk(url: str, pool: Path, seconds: int, script: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
         url, "--", str(pool), str(WRK_THREADS)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"^WRKJSON (.+)$", done.stdout, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(found.group(1))
    return result


def _cpu_seconds(match: Callable[[str, str], bool]) -> dict[int, float]:
    """utime + stime of every process whose (parent pid, command line) `match`es, by pid (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if match(fields[1], command):
            found[int(proc.name)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def uvicorn_process(
    command: list[str], cwd: Path, env: dict[str, str], log_path: Path, port: int
) -> Iterator[tuple[str, int]]:
    """Run `command` (a uvicorn on `port`) until the block ends: its URL and pid once /readyz
    answers 200 (90 s at most), then SIGINT and a wait. Output goes to `log_path`."""
    log = log_path.open("w")
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited; see {log.name}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not become ready in 90 s")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextmanager
def serving(database_url: str, data_dir: Path, workers: int) -> Iterator[tuple[str, int]]:
    """uvicorn with `workers` processes (uvloop, httptools, no access log) until the block ends."""
    port = free_port()
    env = os.environ | {
        "CIVICARD_MODE": "demo",
        "CIVICARD_DATABASE_URL": database_url,
        "CIVICARD_DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "bench.redemption_bench:server_app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with uvicorn_process(command, ROOT, env, data_dir / f"uvicorn-{workers}.log", port) as (url, pid):
        time.sleep(2.0 * workers)  # every worker has started (each warms its duplicate matcher)
        yield url, pid


def redemptions_written(engine: sa.Engine, clock: Clock) -> int:
    with system_uow(engine, clock) as uow:
        return int(uow.connection.execute(sa.select(sa.func.count()).select_from(t.redemptions)).scalar_one())


def _ledger_settled(engine: sa.Engine, quiet: float = 1.0, limit: float = 15.0) -> None:
    """Wait until the ledger has not grown for `quiet` seconds (the requests in flight when wrk
    stopped have committed), `limit` seconds at most."""
    deadline = time.monotonic() + limit
    seen = redemptions_written(engine, Clock())
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = redemptions_written(engine, Clock())
        if now == seen:
            return
        seen = now


def measure(
    town: Town,
    engine: sa.Engine,
    database_url: str,
    data_dir: Path,
    workers: int,
    seconds: int,
    script: Path,
    profile: Path | None = None,
) -> LoadResult:
    with serving(database_url, data_dir, workers) as (url, pid):
        warm = data_dir / "warm.tsv"
        sign_pool(town, WARMUP_SECONDS * MAX_RATE // 2, warm)
        run_wrk(url, warm, WARMUP_SECONDS, script)
        # The warm-up's unsent requests give their units back once its last answers are in the ledger.
        _ledger_settled(engine)
        town.refresh(engine, Clock())
        pool = data_dir / "pool.tsv"
        signed = sign_pool(town, seconds * MAX_RATE, pool)
        if signed < seconds * MAX_RATE:
            say(f"only {signed:,} redemptions left to sign: a fast run may replay (401s)")
        before = redemptions_written(engine, Clock())
        database = make_url(database_url).database or ""
        workers_of = str(pid)

        def server(ppid: str, command: str) -> bool:
            return ppid == workers_of and "multiprocessing" in command

        def backend(_: str, command: str) -> bool:
            return command.startswith("postgres:") and f" {database} " in command

        cpu_before = (_cpu_seconds(server), _cpu_seconds(backend))
        started = time.time()
        spy = None
        if profile is not None:  # py-spy (pip install py-spy) samples every worker during the timed run
            spy = subprocess.Popen(
                [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
                 "--subprocesses", "--nonblocking", "--format", "raw", "--duration", str(seconds),
                 "--output", str(profile.with_suffix(f".{workers}w.txt"))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        raw = run_wrk(url, pool, seconds, script)
        if spy is not None:
            spy.wait()
        if time.time() - started > CLOCK_SKEW.total_seconds():
            say("WARNING: the run outlasted the signatures' clock-skew window")
        cpu_after = (_cpu_seconds(server), _cpu_seconds(backend))
        written = redemptions_written(engine, Clock()) - before
    return LoadResult(
        workers,
        raw["duration_us"] / 1e6,
        int(raw["requests"]),
        {str(k): int(v) for k, v in raw["statuses"].items()},
        int(raw["socket_errors"]),
        int(raw["wrapped"]),
        raw["p50_us"] / 1000,
        raw["p95_us"] / 1000,
        raw["p99_us"] / 1000,
        raw["max_us"] / 1000,
        written,
        cpu_used(cpu_before[0], cpu_after[0]),
        cpu_used(cpu_before[1], cpu_after[1]),
    )


# --- report -----------------------------------------------------------------------------------------


def describe(r: LoadResult) -> str:
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(r.statuses.items()))
    return (
        f"{r.workers} workers: {r.rate:,.0f} redemptions/s over {r.seconds:.1f} s; p50 {r.p50_ms:.1f} ms, "
        f"p95 {r.p95_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, max {r.max_ms:.0f} ms; errors {r.error_rate:.2%} "
        f"({statuses}; socket errors {r.socket_errors}); ledger {r.written:,} sales for {r.approved:,} 201s; "
        f"CPU per sale: server {r.server_ms_per_sale:.1f} ms, PostgreSQL {r.postgres_ms_per_sale:.1f} ms"
    )


def section(
    facts: dict[str, str], town: Town, tps: float, results: list[LoadResult], alone: InProcess, command: str
) -> str:
    best = max(results, key=lambda r: r.rate)
    ratio = best.rate / tps
    rows = "\n".join(
        f"| {r.workers} | {r.rate:,.0f} | {r.rate / tps:.2f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} "
        f"| {r.error_rate:.2%} | {r.written:,} / {r.approved:,} "
        f"| {r.server_ms_per_sale:.1f} | {r.postgres_ms_per_sale:.1f} |"
        for r in results
    )
    cores = int(facts["cores"])
    per_sale = best.server_ms_per_sale + best.postgres_ms_per_sale
    ceiling = 1000 * cores / per_sale if per_sale else float("nan")
    load_after = os.getloadavg()[0]
    header = "| uvicorn workers | redemptions/s | × pgbench | p50 ms | p95 ms | p99 ms | errors | ledger sales / 201s "
    header += "| server CPU ms / sale | PostgreSQL CPU ms / sale |"
    verdict_rate = "✔" if ratio >= TARGET_RATIO else "✘"
    verdict_p99 = "✔" if best.p99_ms <= TARGET_P99_MS else "✘"
    where = (
        f"the load on the existing database `{town.loaded}`, kept afterwards"
        if town.loaded
        else "the bench's own database created and dropped around the run"
    )
    return f"""{SECTION} — `bench/redemption_bench.py`

{datetime.now(UTC):%Y-%m-%d}, `{command}`; {facts["cores"]} cores ({facts["cpu"]}), {facts["memory"]},
1-minute load {facts["load"]} before the run and {load_after:.1f} after it (other work shared the machine);
{facts["versions"]}. PostgreSQL is the shared server (default settings), {where}; server, load generator
and PostgreSQL share the same cores.

{_town_text(town)} Load: `wrk -t{WRK_THREADS} -c{CONNECTIONS}` replaying pre-signed requests
(Ed25519 over the canonical request, a fresh nonce and Idempotency-Key each), request i from terminal
i mod {TERMINALS} for household i mod {len(town.holders):,}, one unit of one food item; uvicorn (uvloop,
httptools) with N worker processes; {WARMUP_SECONDS} s warm-up, then {results[0].seconds:.0f} s timed.
Reference in the same run: pgbench TPC-B scale 10, 16 clients, 2 threads: **{tps:,.0f} tps**.

{header}
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

Best: {best.workers} workers, **{best.rate:,.0f} redemptions/s = {ratio:.2f} × pgbench** (target ≥ {TARGET_RATIO}
{verdict_rate}), **p99 {best.p99_ms:.1f} ms** (target ≤ {TARGET_P99_MS:.0f} ms {verdict_p99}). Ledger: every 201 is
a sale; the few sales beyond the 201s are the requests still in flight when wrk stopped (≤ {CONNECTIONS}).
CPU per sale (from /proc; it rises when other work contends for the cores):
{best.server_ms_per_sale:.1f} ms in the uvicorn workers (their access-log integrator threads included)
plus {best.postgres_ms_per_sale:.1f} ms in PostgreSQL backends,
so with the {cores} cores to itself this design would top out near {ceiling:,.0f} redemptions/s (wrk and the
OS not counted).

Where the time goes: one redemption is two transactions on one pooled connection (terminal nonce +
Idempotency-Key claim; then the sale with its stored answer), no pre-ping; the period is
share-locked once, and item kinds, units, prices and serving rules come in one query. In one
process without HTTP ({alone.sales} sequential sales through the route's own function, same run):
**{alone.cpu_ms_per_sale:.1f} ms of CPU and {alone.statements_per_sale:.1f} SQL statements per sale**, where a
bare `SELECT 1` costs {alone.sqlalchemy_select1_ms:.2f} ms of CPU through SQLAlchemy and
{alone.psycopg_select1_ms:.2f} ms through raw psycopg.
The cost is Python per statement (building, caching, executing and reading each one), spread
evenly rather than one hot spot (py-spy, `--profile`); Ed25519 (request signature and card token)
is about 0.5 ms. 0.5 × pgbench on {cores} cores allows about 1 ms of CPU per sale including HTTP: that
needs the sale as one server-side statement or function (one round trip) and a leaner request
path — a redesign, not tuning.

"""


def _town_text(town: Town) -> str:
    cards = (
        f"{len(town.holders):,} cards (one per food-entitled household, PIN set), one vendor with {TERMINALS} shops "
        "and one counter terminal each"
    )
    people = f"{town.households:,} households ({town.persons:,} persons)"
    if town.loaded is None:
        return f"Town: {people} imported, this month's cycle run,\n{cards}."
    integrate = town.seconds.get("integrate", 0.0)
    return (
        f"Registry: the existing database `{town.loaded}` with {people} already loaded and period {town.period} "
        f"open;\n{town.folded:,} access-log entries not yet in the Merkle log folded first ({integrate:.1f} s); "
        f"added beside what is there: prices where missing,\n{cards}."
    )


def replace_section(text: str, new: str, title: str = SECTION) -> str:
    """`text` with the section whose heading starts with `title` replaced by `new` (appended when absent)."""
    start = text.find(title)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + new
    following = text.find("\n## ", start + len(title))
    return text[:start] + new + (text[following + 1 :] if following >= 0 else "")


def json_figures(
    tps: float, results: list[LoadResult], alone: InProcess, town: Town, consistent: bool, details: str
) -> Figures:
    """Per worker count: redemptions/s beside pgbench TPC-B of the same run, p99 and errors; CPU per sale.
    The facts say whether the ledger held every 201 (`ledger consistent`) and how many sales it gained."""
    facts: dict[str, Any] = {"households": town.households, "cards": len(town.holders), "ledger consistent": consistent}
    facts["sales written"] = sum(r.written for r in results)
    if town.loaded is not None:
        facts["database"] = town.loaded
        facts["access-log entries folded"] = town.folded
        facts["fold seconds"] = round(town.seconds.get("integrate", 0.0), 1)
    figures = Figures("redemption", facts=facts, details=details)
    for r in results:
        figures.add(f"{r.workers} workers: redemptions/s", r.rate, "/s", "pgbench TPC-B tps", tps)
        figures.add(f"{r.workers} workers: p99 latency", r.p99_ms, "ms", better="lower")
        figures.add(f"{r.workers} workers: error rate", r.error_rate, "share", better="lower")
    figures.add(
        "in process, no HTTP: CPU per sale",
        alone.cpu_ms_per_sale,
        "ms",
        "`SELECT 1` through SQLAlchemy",
        alone.sqlalchemy_select1_ms,
        better="lower",
    )
    return figures


def require_tools() -> None:
    missing = [tool for tool in ("wrk", "pgbench") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `bash scripts/system-deps.sh` (Debian packages)")


@contextmanager
def bench_database(existing: str | None) -> Iterator[str]:
    """The database the load runs in: `existing` as it is (neither migrated nor dropped here), or a
    throw-away one, migrated, dropped afterwards."""
    if existing is not None:
        yield existing
        return
    with scratch_database("redemption_bench") as url:
        database_url = url.render_as_string(hide_password=False)
        upgrade(database_url)
        yield database_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 households, 10 s runs, 2 workers")
    parser.add_argument(
        "--on-database",
        metavar="URL",
        help="run the load in this existing, already-loaded civicard database (this month's period open) "
        "instead of a throw-away town; what the bench adds stays",
    )
    parser.add_argument(
        "--households", type=int, help="default 30,000 (quick 3,000); with --on-database, the households given cards"
    )
    parser.add_argument("--seconds", type=int, help="timed run and pgbench length (default 20; quick 10)")
    parser.add_argument("--workers", help="uvicorn worker counts to try, comma-separated (default 2,3,4; quick 2)")
    parser.add_argument("--profile", type=Path, help="write py-spy collapsed stacks to PROFILE.<N>w.txt")
    parser.add_argument(
        "--write", action=argparse.BooleanOptionalAction, default=None, help="replace the section (not --on-database)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here (for bench/run_all.py)")
    args = parser.parse_args(argv)
    require_tools()
    households = args.households or (3_000 if args.quick else 30_000)
    seconds = args.seconds or (10 if args.quick else 20)
    worker_counts = [int(w) for w in (args.workers or ("2" if args.quick else "2,3,4")).split(",")]
    facts = machine_facts()
    say(f"machine: {facts}")
    say(f"pgbench TPC-B, {seconds} s…")
    tps = pgbench_tps(seconds, base_url(args.on_database))
    say(f"pgbench: {tps:,.0f} tps")
    results: list[LoadResult] = []
    with tempfile.TemporaryDirectory(prefix="redemption-bench-") as tmp, bench_database(args.on_database) as url:
        work = Path(tmp)
        container = bootstrap(Settings(mode=Mode.DEMO, data_dir=work, database_url=url))
        try:
            if args.on_database:
                say(f"equipping the loaded database for the load (cards for up to {households:,} households)…")
                town = loaded_town(container, households)
            else:
                say(f"building a town of {households:,} households…")
                town = build_town(container, households, work)
            say(
                f"town: {town.households:,} households, {town.persons:,} persons, {len(town.holders):,} cards, "
                f"{town.capacity:,} units to redeem; " + ", ".join(f"{k} {v:.1f} s" for k, v in town.seconds.items())
            )
            script = work / "redeem.lua"
            script.write_text(WRK_SCRIPT, encoding="utf-8")
            for workers in worker_counts:
                town.refresh(container.engine, container.clock)
                result = measure(town, container.engine, url, work, workers, seconds, script, args.profile)
                say(describe(result))
                results.append(result)
            say(f"in one process, no HTTP: {IN_PROCESS_SALES} sequential sales…")
            alone = measure_in_process(town, container, url, work, IN_PROCESS_SALES)
            say(
                f"in process: {alone.cpu_ms_per_sale:.1f} ms CPU and {alone.statements_per_sale:.1f} statements per "
                f"sale ({alone.sales} sales); SELECT 1 costs {alone.sqlalchemy_select1_ms:.2f} ms CPU through "
                f"SQLAlchemy, {alone.psycopg_select1_ms:.2f} ms through raw psycopg"
            )
        finally:
            container.close()
    best = max(results, key=lambda r: r.rate)
    say(
        f"best: {best.workers} workers, {best.rate:,.0f} redemptions/s = {best.rate / tps:.2f} × pgbench "
        f"({tps:,.0f} tps; target ≥ {TARGET_RATIO}), p99 {best.p99_ms:.1f} ms (target ≤ {TARGET_P99_MS:.0f})"
    )
    # A sale whose answer was still in flight when wrk stopped is in the ledger without a counted 201.
    consistent = all(0 <= r.written - r.approved <= CONNECTIONS for r in results)
    if not consistent:
        say("LEDGER MISMATCH: redemptions written differ from 201 answers")
    command = "python bench/redemption_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    details = section(facts, town, tps, results, alone, _without_credentials(command.strip()))
    if args.write if args.write is not None else not (args.quick or args.on_database):
        RESULTS.write_text(replace_section(RESULTS.read_text(encoding="utf-8"), details), encoding="utf-8")
        say(f"wrote the section to {RESULTS}")
    json_figures(tps, results, alone, town, consistent, details).write(args.json)
    return 0 if consistent else 1


def _without_credentials(command: str) -> str:
    """The command line as printed in the results: a database URL's password hidden."""
    return re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", command)


if __name__ == "__main__":
    sys.exit(main())
