"""Soak (issue 10, item 5): a steady mixed load on one civicard server and PostgreSQL for ten minutes.

    python bench/soak.py [--quick] [--seconds S] [--households N] [--json PATH] [--write/--no-write]

What it does, on the shared PostgreSQL at 127.0.0.1:5432 (CIVICARD_BENCH_POSTGRES_URL), in a
throw-away database dropped at the end:
  1. A synthetic town as bench/redemption_bench.py builds it (population generator + import, the
     published rules, this month's cycle, prices, 64 shop terminals, one card with a PIN per
     food-entitled household), the duplicate-matching index, one registrar account and resident
     sessions for the first card holders.
  2. One server process in production mode (a fresh random root key): uvicorn with the ASGI factory
     `civicard.adapters.api.asgi:create_app_from_environment`, as a deployment runs each worker.
  3. For --seconds (default 600; quick 20), paced streams at a steady rate, not flat out:
     enrollments (POST /v1/households, then POST /v1/persons as the registrar), redemptions
     (signed terminal requests, one unit of a food item the household still has), the resident
     portal (/me/data, /me/benefits, /me/log with a resident session) and, as the same-run
     reference, GET /healthz (no database). The server's RSS is read from /proc every few seconds.
  4. At the end: the access log is folded and checkpointed, and the whole stored log is verified
     (what `civicard audit verify` does).
Error: any 5xx, transport failure or 4xx that is not an expected refusal (possible_duplicates,
not_entitled, insufficient_remaining — counted apart). Memory is *flat* when the RSS at the end
(median of the last tenth of the samples) is less than 10 % above the RSS right after warm-up
(median of the samples in the tenth after the first fifth of the run); the least-squares slope
after warm-up is printed too. Exit code 0 when errors are 0, memory is flat and the log verifies.
Full mode (and --write) replaces the "## Soak (issue 10)" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]  # bench/: its modules import `figures`

import duckdb  # noqa: E402
import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from figures import Figures  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench.redemption_bench import (  # noqa: E402
    FOOD_ITEMS,
    Town,
    build_town,
    free_port,
    replace_section,
    say,
    scratch_database,
    uvicorn_process,
)
from civicard.adapters.db import tables as t  # noqa: E402
from civicard.adapters.db.dedup_extract import registry_records  # noqa: E402
from civicard.adapters.db.log_store import LogVerification, verify_stored_log  # noqa: E402
from civicard.adapters.db.migrate import upgrade  # noqa: E402
from civicard.bootstrap import Container, bootstrap  # noqa: E402
from civicard.dedup.screening import rebuild_index  # noqa: E402
from civicard.identity.terminal_auth import encode_signature, sign_request  # noqa: E402
from civicard.settings import Mode, Settings, generate_root_key_text  # noqa: E402
from civicard.transparency.access import AccessContext, Actor  # noqa: E402
from tests.integration.distribution_fixtures import PIN, system_uow  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Soak (issue 10)"
REDEEM_PATH = "/v1/redemptions"
KINDS = ("household", "enrollment", "redemption", "me_data", "me_benefits", "me_log", "healthz")
PORTAL_PAGES = {"me_data": "/me/data", "me_benefits": "/me/benefits", "me_log": "/me/log"}
EXPECTED_REFUSALS = {
    "enrollment": {"possible_duplicates"},
    "redemption": {"not_entitled", "insufficient_remaining"},
}
RESIDENTS = 50
WARMUP_SHARE = 0.2  # the first fifth of the run is warm-up: imports, caches, pools fill
FLAT_GROWTH = 0.10
REGISTRAR_NAME = "soak-registrar"
INDEX_CONTEXT = AccessContext(Actor("bench:soak-index", "system"), "duplicate_screening")
GIVEN = ("Ana", "Luis", "Carmen", "Jorge", "Elena", "Pablo", "Lucía", "Andrés", "Rosa", "Diego", "Marta", "Íñigo")
SURNAMES = ("García", "Rodríguez", "Muñoz", "Zapata", "Quintero", "Ibarra", "Salcedo", "Villamizar", "Ochoa", "Peña")


@dataclass(frozen=True)
class SoakPlan:
    """How long, how big, and the steady rate (requests/s) of each stream."""

    seconds: float
    households: int
    enrollments_per_s: float = 1.0  # each makes two requests: household, then person
    redemptions_per_s: float = 8.0
    portal_per_s: float = 6.0
    healthz_per_s: float = 2.0
    sample_seconds: float = 5.0

    @classmethod
    def quick(cls, seconds: float = 20) -> SoakPlan:
        return cls(seconds, 200, 1.0, 4.0, 3.0, 2.0, 1.0)


@dataclass
class Tally:
    """What every request came to, by kind; filled by the stream threads under one lock."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    refused: dict[str, Counter[str]] = field(default_factory=lambda: {k: Counter() for k in KINDS})
    errors: dict[str, Counter[str]] = field(default_factory=lambda: {k: Counter() for k in KINDS})
    error_samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, response: httpx.Response | None, failure: str = "") -> None:
        verdict, label = classify(kind, response) if response is not None else ("error", failure)
        with self.lock:
            self.latencies[kind].append(seconds)
            if verdict == "refused":
                self.refused[kind][label] += 1
            elif verdict == "error":
                self.errors[kind][label] += 1
                if len(self.error_samples) < 10:
                    body = response.text[:300] if response is not None else ""
                    self.error_samples.append(f"{kind} {label}: {body}")

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def error_count(self) -> int:
        return sum(sum(c.values()) for c in self.errors.values())


def classify(kind: str, response: httpx.Response) -> tuple[str, str]:
    """("ok" | "refused" | "error", the status or the problem code)."""
    wanted = 201 if kind in ("household", "enrollment", "redemption") else 200
    if response.status_code == wanted:
        return "ok", str(wanted)
    code = str(response.status_code)
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        code = str(response.json().get("code", code))
    if 400 <= response.status_code < 500 and code in EXPECTED_REFUSALS.get(kind, set()):
        return "refused", code
    return "error", f"{response.status_code} {code}"


@dataclass
class Residents:
    """What the streams use: the town's card holders and terminals, resident sessions, a registrar."""

    town: Town
    sessions: list[str]
    registrar_password: str
    registrar_token: str = ""  # the session POST /v1/sessions gives, once the server is up
    lock: threading.Lock = field(default_factory=threading.Lock)
    cursor: int = 0

    def next_sale(self) -> tuple[str, str, str, Any]:
        """(card token, item, terminal id, terminal key) for one unit a household still has; once all
        is redeemed, any holder's first item (the server refuses it: insufficient_remaining)."""
        with self.lock:
            holders = self.town.holders
            for step in range(len(holders)):
                holder = holders[(self.cursor + step) % len(holders)]
                item = next((i for i in FOOD_ITEMS if holder.left.get(i, 0) > 0), None)
                if item is not None:
                    holder.left[item] -= 1
                    break
            else:
                holder, item = holders[self.cursor % len(holders)], FOOD_ITEMS[0]
            terminal_id, key = self.town.terminals[self.cursor % len(self.town.terminals)]
            self.cursor += 1
        return holder.token, item, terminal_id, key


# --- the streams -------------------------------------------------------------------------------------


def paced(rate: float, until: float, action: Callable[[], None]) -> None:
    """Call `action` `rate` times a second until `until` (monotonic); a late stream does not burst
    to catch up, it starts its schedule again from now (a steady load, not a backlog)."""
    interval = 1.0 / rate
    next_at = time.monotonic() + random.uniform(0, interval)  # spreads the streams' first requests
    while True:
        now = time.monotonic()
        if now >= until:
            return
        if next_at > now:
            time.sleep(min(next_at - now, until - now))
            continue
        action()
        next_at = max(next_at + interval, time.monotonic() - interval)


def timed(tally: Tally, kind: str, send: Callable[[], httpx.Response]) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = send()
    except httpx.TransportError as exc:
        tally.record(kind, time.perf_counter() - started, None, f"transport {type(exc).__name__}")
        return None
    tally.record(kind, time.perf_counter() - started, response)
    return response


def enrollment_stream(client: httpx.Client, tally: Tally, who: Residents) -> Callable[[], None]:
    headers = {"Authorization": f"Bearer {who.registrar_token}", "X-Civicard-Purpose": "enrollment"}
    rng = random.Random(secrets.randbits(32))  # made-up people, different each run

    def enroll() -> None:
        place = {"municipality": "NOR-01", "address_line": f"Calle {rng.randint(1, 200)} # {rng.randint(1, 99)}-1"}
        place["postcode"] = "10001"
        household = timed(tally, "household", lambda: client.post("/v1/households", json=place, headers=headers))
        if household is None or household.status_code != 201:
            return
        born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
        person = place | {
            "given_names": rng.choice(GIVEN),
            "first_surname": rng.choice(SURNAMES),
            "second_surname": rng.choice(SURNAMES),
            "birth_date": born.isoformat(),
            "birth_place": "San Rafael",
            "sex": rng.choice("FM"),
            "national_id": str(rng.randrange(10**9, 10**10)),
            "household_id": household.json()["id"],
        }
        timed(tally, "enrollment", lambda: client.post("/v1/persons", json=person, headers=headers))

    return enroll


def redemption_stream(client: httpx.Client, tally: Tally, who: Residents) -> Callable[[], None]:
    def redeem() -> None:
        token, item, terminal_id, key = who.next_sale()
        body = json.dumps({"card_token": token, "pin": PIN, "basket": [{"item": item, "quantity": 1}]}).encode()
        when, nonce = int(time.time()), secrets.token_urlsafe(18)
        signature = sign_request(key, "POST", REDEEM_PATH, body, when, nonce, terminal_id)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": nonce,
            "X-Civicard-Terminal": terminal_id,
            "X-Civicard-Timestamp": str(when),
            "X-Civicard-Nonce": nonce,
            "X-Civicard-Signature": encode_signature(signature),
        }
        timed(tally, "redemption", lambda: client.post(REDEEM_PATH, content=body, headers=headers))

    return redeem


def portal_stream(client: httpx.Client, tally: Tally, who: Residents) -> Callable[[], None]:
    turn = iter(range(10**12))

    def read() -> None:
        n = next(turn)
        kind = list(PORTAL_PAGES)[n % len(PORTAL_PAGES)]
        client.cookies.clear()  # the client is this stream's alone: a browser per resident, in turn
        client.cookies.set("civicard_session", who.sessions[(n // len(PORTAL_PAGES)) % len(who.sessions)])
        timed(tally, kind, lambda: client.get(PORTAL_PAGES[kind]))

    return read


def healthz_stream(client: httpx.Client, tally: Tally, _: Residents) -> Callable[[], None]:
    def check() -> None:
        timed(tally, "healthz", lambda: client.get("/healthz"))

    return check


# --- the server and its memory -----------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextmanager
def serving(settings_env: dict[str, str], work: Path) -> Iterator[tuple[str, int]]:
    """One uvicorn process (the ASGI factory, production settings from the environment)."""
    port = free_port()
    env = os.environ | settings_env | {"PYTHONPATH": str(ROOT / "src")}
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "civicard.adapters.api.asgi:create_app_from_environment",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with uvicorn_process(command, work, env, work / "server.log", port) as served:
        yield served


@dataclass(frozen=True)
class Memory:
    samples: list[tuple[float, int]]  # (seconds since the load started, RSS KiB)
    seconds: float

    def _median_between(self, start: float, end: float) -> float:
        inside = [kib for at, kib in self.samples if start <= at <= end] or [self.samples[-1][1]]
        return float(statistics.median(inside))

    @property
    def after_warmup_kib(self) -> float:
        start = WARMUP_SHARE * self.seconds
        return self._median_between(start, start + 0.1 * self.seconds)

    @property
    def end_kib(self) -> float:
        return self._median_between(0.9 * self.seconds, self.seconds + 60)

    @property
    def growth(self) -> float:
        return (self.end_kib - self.after_warmup_kib) / self.after_warmup_kib

    @property
    def flat(self) -> bool:
        return self.growth < FLAT_GROWTH

    @property
    def slope_mib_per_min(self) -> float:
        """Least-squares slope of RSS after warm-up, MiB per minute."""
        later = [(at, kib) for at, kib in self.samples if at >= WARMUP_SHARE * self.seconds]
        if len(later) < 2:
            return 0.0
        slope = statistics.linear_regression([a for a, _ in later], [k for _, k in later]).slope
        return slope * 60 / 1024

    def at(self, share: float) -> float:
        """RSS (MiB) of the sample nearest `share` of the run."""
        return min(self.samples, key=lambda s: abs(s[0] - share * self.seconds))[1] / 1024


def sample_memory(pid: int, every: float, started: float, stop: threading.Event, into: list[tuple[float, int]]) -> None:
    while True:
        into.append((time.monotonic() - started, rss_kib(pid)))
        if stop.wait(every):
            into.append((time.monotonic() - started, rss_kib(pid)))
            return


# --- the run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakResult:
    plan: SoakPlan
    seconds: float
    tally: Tally
    memory: Memory
    log: LogVerification
    checkpoints_signed: int
    town_households: int
    card_holders: int

    @property
    def error_rate(self) -> float:
        return self.tally.error_count / max(self.tally.requests, 1)

    @property
    def ok(self) -> bool:
        return self.tally.error_count == 0 and self.memory.flat and self.log.ok

    def percentile_ms(self, kind: str, q: int) -> float:
        values = sorted(self.tally.latencies[kind])
        if not values:
            return float("nan")
        return 1000 * values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def prepare(container: Container, plan: SoakPlan, work: Path) -> Residents:
    """The town, the match index, a registrar account (signed in later over HTTP), resident sessions."""
    started = time.perf_counter()
    town = build_town(container, plan.households, work)
    with container.uow(INDEX_CONTEXT) as uow:
        rebuild_index(uow, duckdb.connect(), registry_records(uow))
    say(f"town: {len(town.holders):,} cards, {town.capacity:,} units to redeem; {time.perf_counter() - started:.1f} s")
    password = secrets.token_urlsafe(24)
    container.auth.create_staff_account(REGISTRAR_NAME, "Registro (soak)", "registrar", password, "bench:soak")
    with system_uow(container.engine, container.clock) as uow:
        query = sa.select(t.cards.c.person_id).order_by(t.cards.c.id).limit(RESIDENTS)
        persons = list(uow.connection.execute(query).scalars())
    sessions = [container.auth.open_resident_session(p).session_token for p in persons]
    return Residents(town, sessions, password)


def run_soak(database_url: str, work: Path, plan: SoakPlan) -> SoakResult:
    """Build the town, serve it, load it for plan.seconds, then verify the stored access log."""
    root_key = generate_root_key_text()
    env = {
        "CIVICARD_MODE": "production",
        "CIVICARD_ROOT_KEY": root_key,
        "CIVICARD_DATABASE_URL": database_url,
        "CIVICARD_DATA_DIR": str(work),
        "CIVICARD_LOG_LEVEL": "WARNING",
    }
    upgrade(database_url)
    settings = Settings(mode=Mode.PRODUCTION, root_key=SecretStr(root_key), database_url=database_url, data_dir=work)
    container = bootstrap(settings)
    try:
        who = prepare(container, plan, work)
        with serving(env, work) as (url, pid):
            signed_in = httpx.post(
                f"{url}/v1/sessions", json={"username": REGISTRAR_NAME, "password": who.registrar_password}, timeout=30
            )
            signed_in.raise_for_status()
            who.registrar_token = signed_in.json()["token"]
            say(f"server {url} (pid {pid}) ready; {plan.seconds:g} s of load…")
            checkpoints_before = _checkpoints(container.engine)
            tally, samples, elapsed = _load(url, pid, who, plan)
        container.integrator.run_once(full=True)
        with container.engine.connect() as conn:
            verified = verify_stored_log(conn, container.log_signer.verifier)
        signed = _checkpoints(container.engine) - checkpoints_before
    finally:
        container.close()
    memory = Memory(samples, elapsed)
    return SoakResult(plan, elapsed, tally, memory, verified, signed, plan.households, len(who.town.holders))


def _load(url: str, pid: int, who: Residents, plan: SoakPlan) -> tuple[Tally, list[tuple[float, int]], float]:
    tally, stop = Tally(), threading.Event()
    samples: list[tuple[float, int]] = []
    streams = [
        (enrollment_stream, plan.enrollments_per_s),
        (redemption_stream, plan.redemptions_per_s / 2),
        (redemption_stream, plan.redemptions_per_s / 2),  # two, so one slow sale does not hold up the next
        (portal_stream, plan.portal_per_s),
        (healthz_stream, plan.healthz_per_s),
    ]
    started = time.monotonic()
    until = started + plan.seconds
    sampler = threading.Thread(target=sample_memory, args=(pid, plan.sample_seconds, started, stop, samples))
    sampler.start()

    def run(make: Callable[[httpx.Client, Tally, Residents], Callable[[], None]], rate: float) -> None:
        with httpx.Client(base_url=url, timeout=30.0) as client:
            paced(rate, until, make(client, tally, who))

    threads = [threading.Thread(target=run, args=stream, name=f"soak-{n}") for n, stream in enumerate(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    return tally, samples, elapsed


def _checkpoints(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.log_checkpoints)).scalar_one())


# --- report ----------------------------------------------------------------------------------------


def table(result: SoakResult) -> str:
    rows = [
        "| request | count | per s | refused (expected) | errors | p50 ms | p95 ms | p99 ms |",
        "|---|" + "---:|" * 7,
    ]
    for kind in KINDS:
        count = len(result.tally.latencies[kind])
        refused = ", ".join(f"{c} {n}" for c, n in result.tally.refused[kind].items()) or "0"
        errors = sum(result.tally.errors[kind].values())
        rows.append(
            f"| {kind} | {count:,} | {count / result.seconds:.1f} | {refused} | {errors} "
            f"| {result.percentile_ms(kind, 50):.1f} | {result.percentile_ms(kind, 95):.1f} "
            f"| {result.percentile_ms(kind, 99):.1f} |"
        )
    m = result.memory
    verdict = "flat ✔" if m.flat else "GROWING ✘"
    return "\n".join(rows) + (
        f"\n\nErrors: **{result.tally.error_count} of {result.tally.requests:,} requests "
        f"({result.error_rate:.3%})**. Server RSS (MiB): start {m.at(0):.0f}, middle {m.at(0.5):.0f}, "
        f"end {m.at(1):.0f}; after warm-up (first {WARMUP_SHARE:.0%}) {m.after_warmup_kib / 1024:.0f} → end "
        f"{m.end_kib / 1024:.0f}: {m.growth:+.1%} (flat = under {FLAT_GROWTH:.0%}) — **{verdict}**; slope after "
        f"warm-up {m.slope_mib_per_min:+.2f} MiB/min over {len(m.samples)} samples.\n"
        f"Access log: {result.log.message} ({result.log.code}); {result.checkpoints_signed} checkpoints "
        f"signed during the run and the final fold.\n"
    )


def figures(result: SoakResult) -> Figures:
    found = Figures("soak", facts={"seconds": round(result.seconds), "households": result.town_households})
    found.add("error rate", 100 * result.error_rate, "%", better="lower")
    floor = result.percentile_ms("healthz", 99)
    for kind in KINDS[:-1]:
        found.add(f"{kind} p99", result.percentile_ms(kind, 99), "ms", "GET /healthz p99", floor, better="lower")
    found.add("RSS growth after warm-up", 100 * result.memory.growth, "%", better="lower")
    found.add("RSS slope after warm-up", result.memory.slope_mib_per_min, "MiB/min", better="lower")
    found.add("access log verifies", 1.0 if result.log.ok else 0.0, "yes=1")
    found.details = table(result)
    return found


def section(result: SoakResult, command: str) -> str:
    p = result.plan
    return (
        f"{SECTION} — `bench/soak.py`\n\n{datetime.now(UTC):%Y-%m-%d}, `{command}`; {os.cpu_count()} cores, "
        f"1-minute load {os.getloadavg()[0]:.1f} at the end. One uvicorn process (production settings, ASGI "
        f"factory) on PostgreSQL; a town of {result.town_households:,} households, {result.card_holders:,} cards. "
        f"{result.seconds:.0f} s of steady load: {p.enrollments_per_s:g} enrollments/s (household + person), "
        f"{p.redemptions_per_s:g} redemptions/s, {p.portal_per_s:g} portal pages/s, {p.healthz_per_s:g} "
        f"/healthz/s (the reference: no database).\n\n{table(result)}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 s, 200 households, lighter rates")
    parser.add_argument("--seconds", type=float, help="length of the load (default 600; quick 20)")
    parser.add_argument("--households", type=int, help="town size (default 5,000; quick 200)")
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/figures.py)")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=None, help="replace the section")
    args = parser.parse_args(argv)
    plan = SoakPlan.quick() if args.quick else SoakPlan(600, 5_000)
    plan = replace(plan, seconds=args.seconds or plan.seconds, households=args.households or plan.households)
    say(f"soak: {plan}")
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp, scratch_database("soak_bench") as url:
            result = run_soak(url.render_as_string(hide_password=False), Path(tmp), plan)
    except (RuntimeError, httpx.HTTPError, sa.exc.SQLAlchemyError) as exc:
        say(f"soak could not run: {str(exc).splitlines()[0]}")
        return 1
    print(table(result), flush=True)
    for sample in result.tally.error_samples:
        say(f"error: {sample}")
    figures(result).write(args.json)
    if args.write if args.write is not None else not args.quick:
        command = ("python bench/soak.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
        # Its own title: replace_section defaults to the redemption bench's section.
        text = replace_section(RESULTS.read_text(encoding="utf-8"), section(result, command), SECTION)
        RESULTS.write_text(text, "utf-8")
        say(f"wrote the section to {RESULTS}")
    if not result.ok:
        reasons = [
            f"{result.tally.error_count} errors" if result.tally.error_count else "",
            "memory grew" if not result.memory.flat else "",
            f"log: {result.log.code}" if not result.log.ok else "",
        ]
        say("soak failed: " + ", ".join(r for r in reasons if r))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
