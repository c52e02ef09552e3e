"""The verifiable access log: in memory, and stored on SQLite and PostgreSQL with the integrator running.

    python bench/log_bench.py [--quick] [--entries N] [--backends sqlite,postgresql] [--writers 8] [--seconds S]
                              [--backlog-only] [--json PATH]

In memory (reference: raw hashlib.sha256 of the same canonical leaves, same run): canonical encoding,
MerkleTree appends, inclusion/consistency proof generation and verification, offline bundle checks.

Stored, per backend (a fresh SQLite file; a fresh PostgreSQL schema in CIVICARD_TEST_POSTGRES_URL,
dropped afterwards): N access_log rows bulk-inserted (COPY / executemany), folded as
`civicard audit integrate` folds a backlog (`run_once(full=True)`, entries/s), then `--writers`
threads append one entry per transaction through SqlAccessLog for `--seconds` while the
background integrator runs (appends/s, and the lag from each commit to the first signed
checkpoint that covers it, observed by a 5 ms watcher), then stored inclusion-proof latency (one
query each), proof bundles, a resident's log, and a full `verify_stored_log`. `--backlog-only`
stops after the backlog (for profiling the integrator at national sizes). Prints markdown
tables; --json writes the figures for bench/run_all.py (bench/figures.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from databases import postgres_schema, sqlite_database
from figures import Figures
from sqlalchemy import Engine, exists, func, select

from civicard.adapters.db import tables as t
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.log_store import (
    Integrator,
    latest_checkpoint,
    prove_entry,
    resident_log,
    stored_inclusion_proof,
    verify_stored_log,
)
from civicard.adapters.db.repositories import SqlAccessLog
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessEntry, Subject
from civicard.transparency.checkpoints import Checkpoint, NoteSigner, sign_checkpoint
from civicard.transparency.log_entries import LogEntry, canonical_leaf, next_chain_head
from civicard.transparency.merkle import MerkleTree, verify_consistency, verify_inclusion
from civicard.transparency.proofs import ProofBundle, check_proof_bundle, verify_resident_log

QUICK_ENTRIES, FULL_ENTRIES = 20_000, 1_000_000
BASE_TIME = datetime(2026, 11, 15, 8, 0, tzinfo=UTC)
SIGNER = NoteSigner.from_seed("civicard.example/log", hashlib.sha256(b"log bench").digest())
COPY_COLUMNS = (
    "occurred_at",
    "actor",
    "role",
    "purpose",
    "action",
    "subject_person_id",
    "subject_household_id",
    "categories",
    "detail",
    "subject_salt",
)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def rate_row(name: str, count: int, seconds: float, note: str = "") -> str:
    return f"| {name} | {count:,} | {seconds:.3f} | {count / seconds:,.0f} | {note} |"


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    median, top = statistics.median(ordered), ordered[-1]
    return f"median {median * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {top * 1000:.2f} ms"


def p99_ms(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def synthetic_rows(count: int, persons: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """Access-log rows like the enforcement point writes: 1 in 20 about nobody, the rest about a person."""
    rng = random.Random(seed)
    purposes = ("enrollment", "card_service", "redemption", "fact_correction")
    for i in range(count):
        person = f"{rng.randrange(persons):032x}" if i % 20 else None
        yield (
            BASE_TIME + timedelta(milliseconds=i),
            f"terminal-{rng.randrange(20_000):05d}",
            "vendor" if i % 3 else "registrar",
            purposes[i % 4],
            "read",
            person,
            None,
            "household identity" if i % 3 == 0 else "",
            "person.read",
            secrets.token_hex(16) if person else "",
        )


# --------------------------------------------------------------------------- in memory


def bench_memory(entries: int, proofs: int, seed: int, figures: Figures) -> list[str]:
    rng = random.Random(seed)
    rows = [
        LogEntry(i + 1, at, actor, role, purpose, action, tuple(c.split(" ")) if c else (), detail, person, None, salt)
        for i, (at, actor, role, purpose, action, person, _, c, detail, salt) in enumerate(
            synthetic_rows(entries, max(1, entries // 10), seed)
        )
    ]
    heads: dict[str | None, bytes | None] = {}
    leaves: list[bytes] = []
    prevs: list[bytes | None] = []

    def encode() -> None:
        for entry in rows:
            prev = heads.get(entry.subject_id)
            leaf = canonical_leaf(entry, prev)
            leaves.append(leaf)
            prevs.append(prev)
            if entry.subject_id is not None:
                heads[entry.subject_id] = next_chain_head(prev, hashlib.sha256(b"\x00" + leaf).digest())

    encode_s = timed(encode)
    sha256 = hashlib.sha256
    raw_s = timed(lambda: [sha256(leaf).digest() for leaf in leaves])
    tree = MerkleTree()
    append = tree.append
    append_s = timed(lambda: [append(leaf) for leaf in leaves])
    size, root = tree.size, tree.root()
    indexes = [rng.randrange(size) for _ in range(proofs)]
    paths: list[list[bytes]] = []
    gen_s = timed(lambda: paths.extend(tree.inclusion_proof(i) for i in indexes))
    hashes = [tree.leaf(i) for i in indexes]
    ok: list[bool] = []
    verify_s = timed(
        lambda: ok.extend(verify_inclusion(hashes[k], i, size, paths[k], root) for k, i in enumerate(indexes))
    )
    olds = [rng.randrange(1, size) for _ in range(proofs)]
    cons: list[list[bytes]] = []
    cons_s = timed(lambda: cons.extend(tree.consistency_proof(o) for o in olds))
    old_roots = [tree.root(o) for o in olds]
    cons_verify_s = timed(
        lambda: ok.extend(verify_consistency(o, size, old_roots[k], root, cons[k]) for k, o in enumerate(olds))
    )
    note = sign_checkpoint(Checkpoint(SIGNER.name, size, root, BASE_TIME), SIGNER)
    bundles = [
        ProofBundle(SIGNER.name, i, size, rows[i], prevs[i], tree.leaf(i), tuple(paths[k]), note, SIGNER.verifier)
        for k, i in enumerate(indexes[: min(proofs, 5_000)])
    ]
    bundle_s = timed(lambda: ok.extend(check_proof_bundle(b, SIGNER.verifier).ok for b in bundles))
    if not all(ok):
        raise SystemExit("an in-memory proof failed to verify")
    figures.add("in memory: appends", size / append_s, "/s", "raw SHA-256 of the leaves", size / raw_s)
    figures.add("in memory: canonical encoding (integrator CPU per entry)", size / encode_s, "/s")
    figures.add("in memory: inclusion proof verification", proofs / verify_s, "/s")
    figures.add("in memory: offline proof-bundle checks", len(bundles) / bundle_s, "/s")
    return [
        f"### In memory — {size:,} canonical leaves (mean {sum(map(len, leaves)) / size:.0f} bytes), {proofs:,} proofs",
        "",
        "| operation | count | seconds | per second | note |",
        "| --- | ---: | ---: | ---: | --- |",
        rate_row("raw hashlib.sha256(leaf) (reference)", size, raw_s),
        rate_row(
            "MerkleTree.append(canonical leaf)",
            size,
            append_s,
            f"{(size / append_s) / (size / raw_s):.2f} × raw SHA-256; target ≥ 300,000/s",
        ),
        rate_row("canonical JSON + salted hashes + chain head", size, encode_s, "the integrator's CPU per entry"),
        rate_row("inclusion proof generation", proofs, gen_s),
        rate_row("inclusion proof verification", proofs, verify_s, "target ≥ 50,000/s"),
        rate_row("consistency proof generation", proofs, cons_s),
        rate_row("consistency proof verification", proofs, cons_verify_s),
        rate_row("offline bundle check (leaf + proof + Ed25519)", len(bundles), bundle_s, "`audit check-proof` core"),
        "",
    ]


# --------------------------------------------------------------------------- stored


def bulk_insert(engine: Engine, count: int, persons: int, seed: int) -> None:
    rows = synthetic_rows(count, persons, seed)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY access_log ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in rows:
                    copy.write_row(row)
        else:
            sql = f"INSERT INTO access_log ({', '.join(COPY_COLUMNS)}) VALUES ({', '.join('?' * len(COPY_COLUMNS))})"
            # SQLAlchemy's SQLite DateTime storage format
            cursor.executemany(sql, ((r[0].strftime("%Y-%m-%d %H:%M:%S.%f"), *r[1:]) for r in rows))
        raw.commit()
    finally:
        raw.close()


@dataclass
class Appends:
    commits: dict[str, float] = field(default_factory=dict)  # detail marker → commit time (monotonic)
    seen: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, signed tree size)


def concurrent_appends(
    engine: Engine, integrator: Integrator | None, writers: int, seconds: float, tag: str
) -> tuple[Appends, float]:
    """`writers` threads appending for `seconds`; with an integrator, also watch the signed size."""
    record = Appends()
    stop = threading.Event()
    lock = threading.Lock()

    def write(worker: int) -> None:
        n = 0
        while not stop.is_set():
            marker = f"{tag}:{worker}:{n}"
            entry = AccessEntry(
                datetime.now(UTC),
                f"terminal-{worker}",
                "vendor",
                "redemption",
                "read",
                Subject.person(f"{worker * 1000 + n % 50:032x}"),
                (),
                marker,
            )
            with engine.begin() as conn:
                SqlAccessLog(conn).append([entry])
            with lock:
                record.commits[marker] = time.monotonic()
            n += 1

    def watch() -> None:
        with engine.connect() as conn:
            while not stop.is_set() or len(record.seen) < 2:
                latest = latest_checkpoint(conn)
                conn.rollback()
                record.seen.append((time.monotonic(), latest.tree_size if latest else 0))
                time.sleep(0.005)
                if stop.is_set():
                    break

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    if integrator is not None:
        integrator.start(interval=0.2)
        threads.append(threading.Thread(target=watch))
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads[:writers]:
        thread.join()
    elapsed = time.perf_counter() - started
    if integrator is None:
        return record, elapsed
    # Let the integrator catch up, still watched, then stop it.
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(t.access_log)).scalar_one())
        while time.monotonic() < deadline:
            latest = latest_checkpoint(conn)
            conn.rollback()
            size = latest.tree_size if latest else 0
            record.seen.append((time.monotonic(), size))
            if size >= total:
                break
            time.sleep(0.005)
    threads[-1].join()
    integrator.stop()
    if integrator.last_error is not None:
        raise SystemExit(f"the integrator failed: {integrator.last_error!r}")
    return record, elapsed


def integration_lags(engine: Engine, record: Appends) -> list[float]:
    with engine.connect() as conn:
        leaf_of = dict(
            conn.execute(
                select(t.access_log.c.detail, t.log_leaves.c.leaf_index)
                .join(t.log_leaves, t.log_leaves.c.entry_seq == t.access_log.c.seq)
                .where(t.access_log.c.detail.like("bench:%"))  # the phase with the integrator running
            ).all()
        )
    seen = sorted(record.seen)
    lags = []
    for marker, committed in record.commits.items():
        index = leaf_of[marker]
        first = next((at for at, size in seen if size > index and at >= committed), None)
        if first is None:
            raise SystemExit(f"{marker} never reached a signed checkpoint")
        lags.append(first - committed)
    return lags


def bench_stored(
    backend: str,
    url: str,
    entries: int,
    writers: int,
    seconds: float,
    samples: int,
    seed: int,
    figures: Figures,
    backlog_only: bool = False,
) -> list[str]:
    engine = make_engine(url)
    rng = random.Random(seed)
    persons = max(1, entries // 10)
    lines = [
        f"### Stored on {backend} — {entries:,} bulk entries"
        + ("" if backlog_only else f", then {writers} writers for {seconds:.0f} s"),
        "",
        "| operation | count | seconds | per second | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    try:
        insert_s = timed(lambda: bulk_insert(engine, entries, persons, seed))
        lines.append(
            rate_row("bulk insert access_log rows" + (" (COPY)" if backend == "postgresql" else ""), entries, insert_s)
        )
        integrator = Integrator(engine, SIGNER, Clock())
        fold_s = timed(lambda: integrator.run_once(full=True))
        batch = f"{integrator.backlog_batch_size:,} a batch, one checkpoint each"
        lines.append(rate_row(f"integrate backlog, as `audit integrate` ({batch})", entries, fold_s))
        figures.add(f"{backend}: bulk insert of entries", entries / insert_s, "/s")
        figures.add(f"{backend}: integrating a backlog, entries", entries / fold_s, "/s")
        if backlog_only:
            return [*lines, ""]
        with engine.connect() as conn:
            sweep_s = timed(
                lambda: conn.execute(
                    select(t.access_log.c.seq)
                    .where(~exists().where(t.log_leaves.c.entry_seq == t.access_log.c.seq))
                    .order_by(t.access_log.c.seq)
                    .limit(10_000)
                ).all()
            )
        lines.append(f"| full-table anti-join, for scale (the integrator never runs it) | 1 | {sweep_s:.3f} | | |")
        fast = Integrator(engine, SIGNER, Clock())
        polls = [timed(fast.run_once) for _ in range(20)]
        lines.append(
            f"| integrator poll with nothing new (recent rows + one 5,000-seq sweep window) | 20 | | | "
            f"{ms(polls)}; no lock taken |"
        )

        alone, alone_s = concurrent_appends(engine, None, writers, seconds, "alone")
        lines.append(
            rate_row(
                f"appends, {writers} threads, 1 entry a transaction, no integrator (reference)",
                len(alone.commits),
                alone_s,
            )
        )
        fast.run_once()
        record, elapsed = concurrent_appends(engine, Integrator(engine, SIGNER, Clock()), writers, seconds, "bench")
        lags = integration_lags(engine, record)
        ratio = (len(record.commits) / elapsed) / (len(alone.commits) / alone_s)
        lines.append(
            rate_row(
                f"appends, {writers} threads, 1 entry a transaction, integrator running",
                len(record.commits),
                elapsed,
                f"{ratio:.2f} × without",
            )
        )
        lines.append(f"| commit → in a signed checkpoint | {len(lags):,} | | | {ms(lags)}; target ≤ 1 s |")
        figures.add(
            f"{backend}: appends by {writers} threads, integrator running",
            len(record.commits) / elapsed,
            "/s",
            "the same with no integrator",
            len(alone.commits) / alone_s,
        )
        if lags:
            figures.add(f"{backend}: commit → in a signed checkpoint, p99", p99_ms(lags), "ms", better="lower")

        with engine.connect() as conn:
            latest = latest_checkpoint(conn)
            assert latest is not None
            size = latest.tree_size
            picks = [rng.randrange(size) for _ in range(samples)]
            proof_times, bundle_times = [], []
            for index in picks:
                proof_times.append(timed(lambda i=index: stored_inclusion_proof(conn, i, size)))
                conn.rollback()
            for index in picks[: samples // 4]:
                bundle_times.append(timed(lambda i=index: prove_entry(conn, i, SIGNER.verifier)))
                conn.rollback()
            paths = [stored_inclusion_proof(conn, i, size) for i in picks]
            leaves = {
                i: h
                for i, h in conn.execute(
                    select(t.log_nodes.c.node_index, t.log_nodes.c.hash).where(
                        t.log_nodes.c.level == 0, t.log_nodes.c.node_index.in_(picks)
                    )
                )
            }
            checked: list[bool] = []
            verify_s = timed(
                lambda: checked.extend(
                    verify_inclusion(bytes(leaves[i]), i, size, paths[k], latest.root_hash) for k, i in enumerate(picks)
                )
            )
            if not all(checked):
                raise SystemExit("a stored proof failed to verify")
            person = f"{rng.randrange(persons):032x}"
            resident_times = []
            for _ in range(20):
                resident_times.append(timed(lambda: resident_log(conn, person, since_tree_size=size // 2)))
                conn.rollback()
            shown = resident_log(conn, person, since_tree_size=size // 2)
            assert verify_resident_log(shown, SIGNER.verifier).ok
            conn.rollback()
            verified: list[Any] = []
            verify_all_s = timed(lambda: verified.append(verify_stored_log(conn, SIGNER.verifier)))
            if not verified[0].ok:
                raise SystemExit(f"verify_stored_log failed: {verified[0].message}")
        lines += [
            f"| stored inclusion proof (one query), size {size:,} | {samples:,} | | | {ms(proof_times)}; "
            "target ≤ 5 ms |",
            f"| proof bundle (`audit prove`) | {len(bundle_times):,} | | | {ms(bundle_times)} |",
            rate_row("stored proof verification", samples, verify_s),
            f"| resident's log ({len(shown.entries)} entries, proofs + consistency) | 20 | | | {ms(resident_times)} |",
            rate_row("`audit verify` of the whole log", size, verify_all_s, "recomputes leaves, chains, nodes, roots"),
            "",
        ]
        figures.add(f"{backend}: stored inclusion proof latency, p99", p99_ms(proof_times), "ms", better="lower")
        figures.add(f"{backend}: stored proof verification", samples / verify_s, "/s")
        figures.add(f"{backend}: `audit verify` of the whole log", verify_all_s, "s", better="lower")
    finally:
        engine.dispose()
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ENTRIES:,} entries, short phases")
    parser.add_argument("--entries", type=int, default=None)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--seed", type=int, default=9162)
    parser.add_argument("--backlog-only", action="store_true", help="stored: bulk insert and fold the backlog only")
    parser.add_argument("--json", type=Path, help="also write the figures here (for bench/run_all.py)")
    args = parser.parse_args(argv)
    args.entries = args.entries or (QUICK_ENTRIES if args.quick else FULL_ENTRIES)
    args.seconds = args.seconds or (3.0 if args.quick else 10.0)
    args.proofs = 10_000 if args.quick else 100_000
    args.samples = 200 if args.quick else 1_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"Log benchmark: Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print()
    figures = Figures("log", facts={"entries": args.entries, "writers": args.writers, "seconds": args.seconds})
    if not args.backlog_only:
        for line in bench_memory(max(args.entries, 50_000), args.proofs, args.seed, figures):
            print(line, flush=True)
    backends: dict[str, Callable[[Path], AbstractContextManager[str]]] = {
        "sqlite": sqlite_database,
        "postgresql": lambda _: postgres_schema(),
    }
    with tempfile.TemporaryDirectory() as work:
        for backend in args.backends.split(","):
            with backends[backend](Path(work)) as url:
                for line in bench_stored(
                    backend,
                    url,
                    args.entries,
                    args.writers,
                    args.seconds,
                    args.samples,
                    args.seed,
                    figures,
                    args.backlog_only,
                ):
                    print(line, flush=True)
    figures.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
