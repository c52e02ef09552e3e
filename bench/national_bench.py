"""National scale (issue 10, items 2–3): the whole pipeline on one machine, step by step, resumable.

    python bench/national_bench.py [--households N | --quick] [--database-url URL] [--work DIR]
                                   [--resume | --fresh] [--json PATH] [--out FILE] [--seed S]
                                   [--memory-limit 8GB] [--redemptions N] [--dedup-chunks N]

Default size 10,000,000 households (~30 M people) into a fresh PostgreSQL database
`civicard_national` on 127.0.0.1:5432; --quick is 20,000 households. Steps, in order:
  disk          estimate the bytes a household needs (a 2,000-household sample) and refuse if short
  database      create the database if missing and migrate it
  generate      the synthetic population to Parquet, in chunks of --chunk-households
  import        bulk import (COPY), one transaction, every person's write logged
  dedup         read the registry (logged) to Parquet page by page, count blocked candidate pairs at
                the full and at half the size (pairs per record: linear blocking keeps it flat), then
                the saved model with prediction in chunks, DuckDB memory_limit and temp_directory set
  cycle         publish the rule packs in rulepacks/, decide this month for every household
  entitlements  count the entitlements the cycle wrote, in the period's partition
  redemptions   prices, a shop, cards for --redemptions households, one sale each (service layer)
  throughput    POST /v1/redemptions under load on the loaded registry: bench/redemption_bench.py
                --on-database (uvicorn, 2 workers, wrk, 64 terminals) beside pgbench TPC-B, ledger checked
  settlement    close the period and settle every vendor; verify recomputes it from the ledger
  explain       EXPLAIN (ANALYZE at quick size) of the hot queries; partition pruning checked
Each step runs in its own process: its wall time and peak RSS (the process and its children, from
wait4) are measured from outside, and its result is written to WORK/results/NN-step.json as soon as
it finishes. --resume skips steps whose result file exists, so a run that stopped goes on where it
left off (a run of another size or seed in the same --work is refused); --fresh instead drops the
database and the earlier run's files first. The table (Markdown) goes to stdout, and to --out if
given; --json PATH writes the figures for bench/run_all.py (bench/figures.py), which runs this once
per `make bench` with --resume, so a finished national run is reported again rather than redone.
Exit codes: 0 done, 1 a step failed (its one-line reason on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

import sqlalchemy as sa  # noqa: E402
from figures import Figures  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/civicard_national"
FULL_HOUSEHOLDS = 10_000_000
QUICK_HOUSEHOLDS = 20_000
SAMPLE_HOUSEHOLDS = 2_000
# PostgreSQL holds a household's rows, their indexes, the access-log entries of the import, the dedup
# read and the cycle, decisions and entitlements: ~14.5× the Parquet bytes at 2,000 households
# (measured by this script's `import` step, which reports the ratio). DuckDB's spill and the
# registry extract take ~3× more. Headroom on top: 25 %.
POSTGRES_PER_PARQUET_BYTE = 15.0
WORK_PER_PARQUET_BYTE = 4.0
HEADROOM = 1.25
# The throughput step: bench/redemption_bench.py --on-database, one worker count, short timed runs.
THROUGHPUT_WORKERS = 2
THROUGHPUT_SECONDS = 20
THROUGHPUT_HOUSEHOLDS = 20_000  # carded for the load: 20 s at the target rate need ~50,000 units
QUICK_THROUGHPUT_SECONDS = 5
QUICK_THROUGHPUT_HOUSEHOLDS = 1_000
# Tables, their indexes and TOAST in the schema the URL works in (not the whole database: a test
# or a shared server holds other schemas).
SCHEMA_BYTES = (
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"
)
STEPS = (
    "disk",
    "database",
    "generate",
    "import",
    "dedup",
    "cycle",
    "entitlements",
    "redemptions",
    "throughput",
    "settlement",
    "explain",
)


class StepFailed(Exception):
    """A step cannot go on; the message says why in one line."""


@dataclass(frozen=True)
class Run:
    households: int
    url: str
    work: Path
    seed: int
    quick: bool
    memory_limit: str
    chunk_households: int
    redemptions: int
    dedup_chunks: int | None

    @property
    def results(self) -> Path:
        return self.work / "results"

    @property
    def population(self) -> Path:
        return self.work / "population"

    @property
    def manifest(self) -> Path:
        return self.results / "run.json"

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run: a resumed run must not mix sizes or seeds."""
        return {"households": self.households, "seed": self.seed, "database": make_url(self.url).database}

    def result_file(self, step: str) -> Path:
        return self.results / f"{STEPS.index(step):02d}-{step}.json"

    def details_file(self, step: str) -> Path:
        return self.results / f"{STEPS.index(step):02d}-{step}.details.json"

    def details(self, step: str) -> dict[str, Any]:
        """What an earlier step reported (the cycle's period, for instance)."""
        found: dict[str, Any] = json.loads(self.result_file(step).read_text(encoding="utf-8"))["details"]
        return found

    def engine(self) -> sa.Engine:
        from civicard.adapters.db.engine import make_engine

        return make_engine(self.url)

    @property
    def root_key_file(self) -> Path:
        return self.work / "root.key"

    def root_key(self) -> str:
        """The run's root key (base64), created on first use (0600): the redemptions step issues
        cards and publishes the status list with it, and the throughput step's bench and server use
        the same, as a real server holds its database's key (the cards of both verify alike)."""
        from civicard.settings import generate_root_key_text

        if not self.root_key_file.exists():
            self.work.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(generate_root_key_text() + "\n")
        return self.root_key_file.read_text(encoding="utf-8").strip()


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the steps (each runs in a child process: `--step NAME`) -----------------------------------------


def step_disk(run: Run) -> dict[str, Any]:
    from civicard.registry.population import PopulationSpec, generate_population

    with tempfile.TemporaryDirectory(prefix="civicard-national-sample-") as tmp:
        generate_population(PopulationSpec(households=SAMPLE_HOUSEHOLDS, seed=run.seed), Path(tmp))
        parquet = sum(p.stat().st_size for p in Path(tmp).glob("*.parquet")) / SAMPLE_HOUSEHOLDS
    run.work.mkdir(parents=True, exist_ok=True)
    work_need = run.households * parquet * (1 + WORK_PER_PARQUET_BYTE) * HEADROOM
    pg_need = run.households * parquet * POSTGRES_PER_PARQUET_BYTE * HEADROOM
    work_free = shutil.disk_usage(run.work).free
    data_dir = _postgres_data_directory(run.url)
    same_disk = data_dir is None or os.stat(data_dir).st_dev == os.stat(run.work).st_dev
    pg_free = work_free if same_disk else shutil.disk_usage(data_dir or run.work).free
    checks = [(run.work, work_need + (pg_need if same_disk else 0), work_free)]
    if not same_disk:
        checks.append((Path(data_dir or ""), pg_need, pg_free))
    for where, need, free in checks:
        if need > free:
            raise StepFailed(
                f"not enough disk for {run.households:,} households: {need / 2**30:.1f} GiB needed on "
                f"{where}, {free / 2**30:.1f} GiB free"
            )
    return {
        "parquet_bytes_per_household": round(parquet),
        "work_need_gib": round(work_need / 2**30, 2),
        "postgres_need_gib": round(pg_need / 2**30, 2),
        "free_gib": round(work_free / 2**30, 1),
        "postgres_data_directory": data_dir or "unknown (not readable: work disk assumed)",
    }


def _postgres_data_directory(url: str) -> str | None:
    """The server's data directory when it is on this machine and readable, else None."""
    admin = sa.create_engine(make_url(url).set(database="postgres"))
    try:
        with admin.connect() as conn:
            found = str(conn.execute(sa.text("SHOW data_directory")).scalar_one())
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        admin.dispose()
    return found if Path(found).exists() else None


def step_database(run: Run) -> dict[str, Any]:
    from civicard.adapters.db.migrate import upgrade

    url = make_url(run.url)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": url.database}).first()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))  # name from the operator's URL
    finally:
        admin.dispose()
    upgrade(run.url)
    return {"database": url.database, "created": not exists}


def step_generate(run: Run) -> dict[str, Any]:
    from civicard.registry.population import PopulationSpec, generate_population

    if run.population.exists():
        shutil.rmtree(run.population)  # a half-written earlier attempt
    spec = PopulationSpec(households=run.households, seed=run.seed, chunk_households=run.chunk_households)
    summary = generate_population(spec, run.population)
    size = sum(p.stat().st_size for p in run.population.glob("*.parquet"))
    return {
        "households": summary.households,
        "persons": summary.persons,
        "parquet_mib": round(size / 2**20, 1),
        "chunk_households": run.chunk_households,
    }


def step_import(run: Run) -> dict[str, Any]:
    from civicard.adapters.bulk.importer import import_population
    from civicard.shared.clock import Clock
    from tests.integration.distribution_fixtures import LOADER

    engine = run.engine()
    try:
        report = import_population(engine, run.population, LOADER, Clock(), None)
        with engine.connect() as conn:
            database_bytes = int(conn.execute(sa.text(SCHEMA_BYTES)).scalar_one())
        _analyze(engine)
    finally:
        engine.dispose()
    parquet = sum(p.stat().st_size for p in run.population.glob("*.parquet"))
    return {
        "households": report.households,
        "persons": report.persons,
        "rows": sum(report.rows.values()),
        "access_entries": report.access_entries,
        "schema_gib": round(database_bytes / 2**30, 3),
        "database_per_parquet_byte": round(database_bytes / max(parquet, 1), 1),
    }


def step_dedup(run: Run) -> dict[str, Any]:
    import duckdb

    from civicard.adapters.cli.dedup import _quiet_splink, connect
    from civicard.dedup.chunked import candidate_pairs, chunks_for, run_batch_in_chunks
    from civicard.dedup.model import saved_model

    extract = run.work / "dedup" / "registry.parquet"
    spill = run.work / "dedup" / "spill"
    spill.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    records = _registry_to_parquet(run, extract)
    read_seconds = time.perf_counter() - started
    _quiet_splink()
    model = saved_model()
    con = connect(run.memory_limit, spill)
    try:
        con.execute("CREATE TABLE dedup_input AS SELECT * FROM read_parquet(?)", [str(extract)])
        timings: dict[str, float] = {}

        def step(name: str) -> None:
            timings[name] = time.perf_counter()

        result = run_batch_in_chunks(con, "dedup_input", model=model, chunks=run.dedup_chunks, step=step)
        if result.records != records:
            raise StepFailed(f"dedup scored {result.records:,} records of the {records:,} read from the registry")
        names = list(timings)
        ends = [*(timings[n] for n in names[1:]), time.perf_counter()]
        seconds = {n: round(e - timings[n], 2) for n, e in zip(names, ends, strict=True)}
        # Exact counts (every record): with blocking that stays linear they are cheap (33 s at 3.5 M
        # records), and a 5 % sample misjudged sparse blocks by a quarter.
        counting = time.perf_counter()
        full = candidate_pairs(con, "dedup_features", model)
        con.execute(
            "CREATE TABLE dedup_features_half AS SELECT * FROM dedup_features "
            "WHERE hash(coalesce(household_id, unique_id)) % 2 = 0"
        )
        half_records = int(con.execute("SELECT count(*) FROM dedup_features_half").fetchall()[0][0])
        half = candidate_pairs(con, "dedup_features_half", model)
        counting_seconds = time.perf_counter() - counting
    except duckdb.Error as exc:
        raise StepFailed(f"dedup failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    return {
        "records": result.records,
        "chunks": run.dedup_chunks or chunks_for(result.records),
        "memory_limit": run.memory_limit,
        "pairs_at_review_band": result.pairs,
        "duplicate_clusters": result.duplicate_clusters,
        "records_in_clusters": result.records_in_clusters,
        "household_members_separated": result.household_members_separated,
        "candidate_pairs": full,
        "candidate_pairs_per_record": round(full / max(result.records, 1), 3),
        "half_records": half_records,
        "half_candidate_pairs": half,
        "half_candidate_pairs_per_record": round(half / max(half_records, 1), 3),
        "counting_pairs_seconds": round(counting_seconds, 2),
        "read_registry_seconds": round(read_seconds, 2),
        "seconds_by_stage": seconds,
    }


def _registry_to_parquet(run: Run, path: Path) -> int:
    """Every active person as a dedup input record, page by page into Parquet (bounded memory),
    each page's reads logged (duplicate_screening, identity) in one transaction."""
    import pyarrow.parquet as pq

    from civicard.adapters.db.dedup_extract import RECORD_SCHEMA, registry_pages
    from civicard.adapters.db.uow import SqlUnitOfWork
    from civicard.shared.clock import Clock
    from civicard.transparency.access import AccessContext, Actor

    path.parent.mkdir(parents=True, exist_ok=True)
    context = AccessContext(Actor("bench:national", "system"), "duplicate_screening")
    engine = run.engine()
    written = 0
    try:
        with SqlUnitOfWork(engine, context, Clock()) as uow, pq.ParquetWriter(path, RECORD_SCHEMA) as out:
            for page in registry_pages(uow):
                out.write_table(page)
                written += page.num_rows
            uow.commit()
    finally:
        engine.dispose()
    return written


def step_cycle(run: Run) -> dict[str, Any]:
    from civicard.adapters.bulk.cycle import run_cycle
    from civicard.adapters.db.uow import SqlUnitOfWork
    from civicard.programs.cycles import period_of
    from civicard.shared.clock import Clock
    from tests.integration.distribution_fixtures import CYCLE, register_rules

    clock = Clock()
    period = period_of(clock.today())
    engine = run.engine()
    try:
        register_rules(engine, clock)
        with SqlUnitOfWork(engine, CYCLE, clock) as uow:
            report = run_cycle(uow, period, run.work / "cycle")
            uow.commit()
        _analyze(engine)
    finally:
        engine.dispose()
    return {
        "period": period,
        "programs": list(report.programs),
        "households": report.households,
        "decisions": report.decisions_new,
        "entitlements_written": report.entitlements_new,
        "eligible": report.eligible,
    }


def _analyze(engine: sa.Engine) -> None:
    """Fresh planner statistics after a bulk step, committed (an ANALYZE in a transaction that is
    rolled back leaves none: at 1 M households the stale estimates turned a card-holder query into a
    nested loop over 3.4 M rows that never finished). Autovacuum would get there, later."""
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))


def step_entitlements(run: Run) -> dict[str, Any]:
    period = run.details("cycle")["period"]
    partition = f"entitlements_p{period.replace('-', '_')}"
    engine = run.engine()
    try:
        with _oversight(engine) as uow:
            conn = uow.connection
            conn.execute(sa.text("ANALYZE entitlements"))
            in_partition = int(conn.execute(sa.text(f"SELECT count(*) FROM {partition}")).scalar_one())
            households = int(
                conn.execute(
                    sa.text("SELECT count(DISTINCT household_id) FROM entitlements WHERE period = :p"), {"p": period}
                ).scalar_one()
            )
            size = int(conn.execute(sa.text("SELECT pg_total_relation_size(:t)"), {"t": partition}).scalar_one())
    finally:
        engine.dispose()
    expected = int(run.details("cycle")["entitlements_written"])
    if in_partition != expected:
        raise StepFailed(f"{partition} holds {in_partition:,} rows, the cycle wrote {expected:,}")
    return {
        "period": period,
        "partition": partition,
        "rows": in_partition,
        "households": households,
        "partition_mib": round(size / 2**20, 1),
    }


def _oversight(engine: sa.Engine) -> Any:
    """A read-only unit of work for counts and plans over personal tables (the guard wants one)."""
    from civicard.shared.clock import Clock
    from tests.integration.distribution_fixtures import system_uow

    return system_uow(engine, Clock())


def step_redemptions(run: Run) -> dict[str, Any]:
    from bench.redemption_bench import card_holders
    from civicard.distribution.redemption import RedemptionKeys
    from civicard.identity.cards import CardKeys
    from civicard.shared.clock import Clock
    from civicard.shared.keys import RootKey, parse_root_key
    from tests.integration.distribution_fixtures import (
        DistributionTown,
        add_till,
        issue,
        load_items,
        redeem_once,
        set_prices,
    )

    period = run.details("cycle")["period"]
    clock = Clock()
    engine = run.engine()
    try:
        now = clock.now()
        set_prices(engine, period, load_items(engine, now), now)
        shop = add_till(engine, "shop", "Tienda Nacional", now)
        root = RootKey(parse_root_key(run.root_key()))
        card_keys = CardKeys.derive(root)
        town = DistributionTown(engine, clock, period, card_keys, RedemptionKeys(card_keys, root), shop, shop)
        holders = card_holders(engine, clock, period, run.redemptions, items=("RICE-1KG",)).items()
        started = time.perf_counter()
        cards = [issue(engine, clock, card_keys, person, household) for household, person in holders]
        cards_seconds = time.perf_counter() - started
        started = time.perf_counter()
        answers = [
            redeem_once(town, shop, card.token, {"RICE-1KG": 1}, f"national-{n}")[0] for n, card in enumerate(cards)
        ]
        sales_seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    refused = sum(a != 201 for a in answers)
    if refused:
        raise StepFailed(f"{refused} of {len(answers)} redemptions refused")
    return {
        "period": period,
        "vendor_id": shop.vendor_id,
        "cards_issued": len(cards),
        "redemptions": len(answers),
        "cards_per_second": round(len(cards) / max(cards_seconds, 1e-9), 1),
        "redemptions_per_second": round(len(answers) / max(sales_seconds, 1e-9), 1),
    }


def step_throughput(run: Run) -> dict[str, Any]:
    """The redemption bench's load on the loaded registry (bench/redemption_bench.py --on-database,
    in its own process with the run's root key): redemptions/s, p99 and errors beside pgbench TPC-B
    of the same run. Its sales are real redemptions of the open period; settlement settles them too."""
    from figures import read_figures

    period = run.details("cycle")["period"]
    seconds = QUICK_THROUGHPUT_SECONDS if run.quick else THROUGHPUT_SECONDS
    households = QUICK_THROUGHPUT_HOUSEHOLDS if run.quick else THROUGHPUT_HOUSEHOLDS
    out = run.work / "throughput"
    out.mkdir(parents=True, exist_ok=True)
    figures_file = out / "figures.json"
    figures_file.unlink(missing_ok=True)  # an earlier, failed attempt's
    before = _sales_in(run, period)
    command = [
        sys.executable, str(ROOT / "bench" / "redemption_bench.py"), "--on-database", run.url,
        "--households", str(households), "--seconds", str(seconds), "--workers", str(THROUGHPUT_WORKERS),
        "--no-write", "--json", str(figures_file),
    ]  # fmt: skip
    with (out / "bench.log").open("w", encoding="utf-8") as log:
        done = subprocess.run(
            command, env=os.environ | {"CIVICARD_ROOT_KEY": run.root_key()}, stdout=log, stderr=subprocess.PIPE,
            text=True, check=False,
        )  # fmt: skip
        log.write(done.stderr)
    if not figures_file.exists():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise StepFailed(f"redemption bench exited {done.returncode}: {lines[-1] if lines else 'see ' + log.name}")
    found = read_figures(figures_file)
    by_name = {f.name: f for f in found.figures}
    rate = by_name[f"{THROUGHPUT_WORKERS} workers: redemptions/s"]
    if not found.facts["ledger consistent"] or done.returncode != 0:
        raise StepFailed(f"redemption bench: the ledger does not match the 201 answers (see {out / 'bench.log'})")
    tps = float(rate.reference_value or 0.0)
    return {
        "period": period,
        "workers": THROUGHPUT_WORKERS,
        "seconds": seconds,
        "cards": found.facts["cards"],
        "redemptions_per_second": round(rate.value, 1),
        "p99_ms": round(by_name[f"{THROUGHPUT_WORKERS} workers: p99 latency"].value, 1),
        "error_rate": by_name[f"{THROUGHPUT_WORKERS} workers: error rate"].value,
        "pgbench_tps": round(tps, 1),
        "ratio": round(rate.value / tps, 3) if tps else None,
        "ledger_consistent": True,
        "sales_written": found.facts["sales written"],
        "sales_added": _sales_in(run, period) - before,
        "log_entries_folded": found.facts["access-log entries folded"],
        "fold_seconds": found.facts["fold seconds"],
    }


def _sales_in(run: Run, period: str) -> int:
    """Redemptions in the period's ledger (the step's own count, beside what the bench reports)."""
    from civicard.adapters.db import tables as t

    engine = run.engine()
    try:
        with _oversight(engine) as uow:
            r = t.redemptions
            return int(uow.connection.execute(sa.select(sa.func.count()).where(r.c.period == period)).scalar_one())
    finally:
        engine.dispose()


def step_settlement(run: Run) -> dict[str, Any]:
    from civicard.adapters.db.settlement_store import SqlSettlementUnitOfWork
    from civicard.distribution import settlement
    from civicard.shared.clock import Clock
    from civicard.transparency.access import AccessContext, Actor

    period = run.details("cycle")["period"]
    clock = Clock()
    engine = run.engine()
    actor = Actor("bench:national", "system")
    try:
        started = time.perf_counter()
        with SqlSettlementUnitOfWork(engine, AccessContext(actor, "distribution_admin"), clock) as uow:
            result = settlement.settle(uow, period, actor.id)
        settle_seconds = time.perf_counter() - started
        with SqlSettlementUnitOfWork(engine, AccessContext(actor, "settlement"), clock) as uow:
            differences = settlement.verify(uow, period)
    finally:
        engine.dispose()
    if differences:
        raise StepFailed(f"verify found {len(differences)} difference(s) right after settling {period}")
    return {
        "period": period,
        "vendors": len(result.totals),
        "redemptions": sum(total.redemptions for total in result.totals),
        "subsidy_minor": sum(total.subsidy_minor for total in result.totals),
        "settle_seconds": round(settle_seconds, 3),
        "verified": True,
    }


# --- EXPLAIN ------------------------------------------------------------------------------------------

HOT_QUERIES = {
    "entitlements of a household in a period": (
        "SELECT * FROM entitlements WHERE period = :period AND household_id = :household",
        "entitlements",
    ),
    "redemptions of a household in a period": (
        "SELECT * FROM redemptions WHERE period = :period AND household_id = :household",
        "redemptions",
    ),
    "access log of a subject": (
        "SELECT * FROM access_log WHERE subject_person_id = :person ORDER BY seq",
        None,
    ),
    "card by handle": ("SELECT * FROM cards WHERE handle = :handle", None),
}


def step_explain(run: Run) -> dict[str, Any]:
    period = run.details("cycle")["period"]
    suffix = period.replace("-", "_")
    engine = run.engine()
    plans: dict[str, Any] = {}
    try:
        with _oversight(engine) as uow:
            conn = uow.connection
            conn.execute(sa.text("ANALYZE"))
            household, person, handle = conn.execute(
                sa.text(
                    "SELECT r.household_id, c.person_id, c.handle FROM redemptions r "
                    "JOIN cards c ON c.id = r.card_id WHERE r.period = :p LIMIT 1"
                ),
                {"p": period},
            ).one()
            values = {"period": period, "household": household, "person": person, "handle": handle}
            options = "ANALYZE, BUFFERS, FORMAT JSON" if run.quick else "FORMAT JSON"
            for name, (query, partitioned) in HOT_QUERIES.items():
                plan = conn.execute(sa.text(f"EXPLAIN ({options}) {query}"), values).scalar_one()
                root = (plan if isinstance(plan, list) else json.loads(plan))[0]
                relations = sorted(_relations(root["Plan"]))
                pruned = partitioned is None or relations == [f"{partitioned}_p{suffix}"]
                plans[name] = {
                    "relations": relations,
                    "indexed": any("Index" in n for n in _node_types(root["Plan"])),
                    "partition_pruned": pruned if partitioned else None,
                    "ms": root.get("Execution Time"),
                }
            access_log_partitioned = bool(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid "
                        "WHERE c.relname = 'access_log' AND pg_table_is_visible(c.oid)"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()
    unpruned = [n for n, p in plans.items() if p["partition_pruned"] is False]
    if unpruned:
        raise StepFailed(f"no partition pruning in: {', '.join(unpruned)}")
    return {"analyze": run.quick, "plans": plans, "access_log_partitioned": access_log_partitioned}


def _relations(node: dict[str, Any]) -> set[str]:
    found = {node["Relation Name"]} if "Relation Name" in node else set()
    for child in node.get("Plans", []):
        found |= _relations(child)
    return found


def _node_types(node: dict[str, Any]) -> list[str]:
    return [node["Node Type"], *(t for child in node.get("Plans", []) for t in _node_types(child))]


STEP_FUNCTIONS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "disk": step_disk,
    "database": step_database,
    "generate": step_generate,
    "import": step_import,
    "dedup": step_dedup,
    "cycle": step_cycle,
    "entitlements": step_entitlements,
    "redemptions": step_redemptions,
    "throughput": step_throughput,
    "settlement": step_settlement,
    "explain": step_explain,
}


# --- orchestration ------------------------------------------------------------------------------------


def run_step_here(run: Run, name: str) -> int:
    """The child's side: run one step, write its details; a failure is one line on stderr, exit 1."""
    from civicard.shared.errors import DomainError

    try:
        details = STEP_FUNCTIONS[name](run)
    except (StepFailed, DomainError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except sa.exc.OperationalError as exc:
        print(f"{name}: database unusable: {str(exc.orig).splitlines()[0]}", file=sys.stderr)
        return 1
    run.details_file(name).write_text(json.dumps(details, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


def measure_step(run: Run, name: str, argv: list[str]) -> dict[str, Any]:
    """Run the step in a child process; wall time, and peak RSS from wait4 (the child's largest
    moment, its own children included)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *argv, "--step", name], stderr=subprocess.PIPE, text=True
    )
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read() if child.stderr is not None else ""
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        raise StepFailed(lines[-1] if lines else f"{name}: exited with {child.returncode}")
    details = json.loads(run.details_file(name).read_text(encoding="utf-8"))
    result = {
        "step": name,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "details": details,
    }
    run.result_file(name).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def summary(step: str, details: dict[str, Any]) -> str:
    d = details
    match step:
        case "disk":
            return (
                f"{d['parquet_bytes_per_household']} Parquet bytes/household; need {d['work_need_gib']} GiB work + "
                f"{d['postgres_need_gib']} GiB PostgreSQL, {d['free_gib']} GiB free"
            )
        case "generate":
            return f"{d['households']:,} households, {d['persons']:,} persons, {d['parquet_mib']} MiB Parquet"
        case "import":
            return (
                f"{d['rows']:,} rows, {d['access_entries']:,} log entries; tables {d['schema_gib']} GiB "
                f"({d['database_per_parquet_byte']}× Parquet)"
            )
        case "dedup":
            return (
                f"{d['records']:,} records in {d['chunks']} chunk(s); {d['duplicate_clusters']:,} duplicate clusters; "
                f"candidate pairs/record {d['candidate_pairs_per_record']} (at {d['half_records']:,} records: "
                f"{d['half_candidate_pairs_per_record']})"
            )
        case "cycle":
            return f"{d['households']:,} households × {len(d['programs'])} programs, period {d['period']}"
        case "entitlements":
            return (
                f"{d['rows']:,} rows for {d['households']:,} households in {d['partition']} ({d['partition_mib']} MiB)"
            )
        case "redemptions":
            return (
                f"{d['cards_issued']:,} cards, {d['redemptions']:,} sales ({d['redemptions_per_second']}/s, one client)"
            )
        case "throughput":
            return (
                f"{d['redemptions_per_second']:,.0f} redemptions/s = {d['ratio']:.2f} × pgbench TPC-B "
                f"({d['pgbench_tps']:,.0f} tps), p99 {d['p99_ms']:.1f} ms, errors {d['error_rate']:.2%}; "
                f"{d['workers']} workers, {d['seconds']} s, {d['cards']:,} cards; ledger "
                f"{'matches' if d['ledger_consistent'] else 'MISMATCH'} ({d['sales_added']:,} sales added); "
                f"first {d['log_entries_folded']:,} access-log entries folded in {d['fold_seconds']} s"
            )
        case "settlement":
            return f"{d['vendors']} vendor(s), {d['redemptions']:,} redemptions settled and verified"
        case "explain":
            pruned = all(p["partition_pruned"] is not False for p in d["plans"].values())
            indexed = sum(p["indexed"] for p in d["plans"].values())
            return (
                f"partition pruning {'yes' if pruned else 'NO'}; {indexed}/{len(d['plans'])} plans use an index; "
                f"access log partitioned: {'yes' if d['access_log_partitioned'] else 'no'}"
            )
    return str(d.get("database", ""))


def markdown(run: Run, results: list[dict[str, Any]]) -> str:
    lines = [
        f"National pipeline, {run.households:,} households (seed {run.seed}) on {os.cpu_count()} cores, "
        f"{_memory_gib()} GiB, {platform.python_version()}; DuckDB memory_limit {run.memory_limit}.",
        "",
        "| step | wall s | peak RSS MiB | CPU s | result |",
        "|---|--:|--:|--:|---|",
    ]
    for r in results:
        cells = [r["step"], f"{r['seconds']:.2f}", f"{r['peak_rss_mib']:,.0f}", f"{r['cpu_seconds']:.1f}"]
        lines.append("| " + " | ".join([*cells, summary(r["step"], r["details"])]) + " |")
    lines.append(f"| **total** | {sum(r['seconds'] for r in results):.1f} | "
                 f"{max((r['peak_rss_mib'] for r in results), default=0):,.0f} | "
                 f"{sum(r['cpu_seconds'] for r in results):.1f} | |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _memory_gib() -> str:
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return "?"
    kib = next((int(line.split()[1]) for line in meminfo.read_text().splitlines() if line.startswith("MemTotal")), 0)
    return f"{kib / 2**20:.1f}"


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Run]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--households", type=int, default=FULL_HOUSEHOLDS)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_HOUSEHOLDS:,} households, EXPLAIN ANALYZE")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "national")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-limit", default="8GB", help="DuckDB memory limit for dedup")
    parser.add_argument("--chunk-households", type=int, default=200_000)
    parser.add_argument(
        "--redemptions", type=int, default=None, help="sales before settlement (default 5,000; 200 quick)"
    )
    parser.add_argument("--dedup-chunks", type=int, default=None, help="default one per million records")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="skip steps whose result file exists")
    again.add_argument("--fresh", action="store_true", help="drop the database and the earlier run's files first")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here (bench/figures.py format)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.households < 1 or args.chunk_households < 1:
        parser.error("--households and --chunk-households must be positive")
    run = Run(
        households=QUICK_HOUSEHOLDS if args.quick else args.households,
        url=args.database_url,
        work=args.work.resolve(),
        seed=args.seed,
        quick=args.quick or args.households <= 50_000,
        memory_limit=args.memory_limit,
        chunk_households=args.chunk_households,
        redemptions=args.redemptions or (200 if args.quick or args.households <= 50_000 else 5_000),
        dedup_chunks=args.dedup_chunks,
    )
    return args, run


def main(argv: list[str] | None = None) -> int:
    args, run = parse(argv)
    if args.step is not None:
        return run_step_here(run, args.step)
    passed = _step_arguments(argv if argv is not None else sys.argv[1:])
    if args.fresh:
        _start_afresh(run)
    run.results.mkdir(parents=True, exist_ok=True)
    if not args.resume and any(run.results.glob("*.json")):
        print(
            f"{run.results} holds an earlier run's results: pass --resume or --fresh, or another --work",
            file=sys.stderr,
        )
        return 1
    if run.manifest.exists() and json.loads(run.manifest.read_text(encoding="utf-8")) != run.identity():
        earlier = json.loads(run.manifest.read_text(encoding="utf-8"))
        print(f"{run.results} holds a run of {earlier}, not {run.identity()}: pass --fresh", file=sys.stderr)
        return 1
    run.manifest.write_text(json.dumps(run.identity()) + "\n", encoding="utf-8")
    results: list[dict[str, Any]] = []
    for name in STEPS:
        if args.resume and run.result_file(name).exists():
            results.append(json.loads(run.result_file(name).read_text(encoding="utf-8")))
            say(f"{name}: done earlier, skipped")
            continue
        say(f"{name}…")
        try:
            results.append(measure_step(run, name, passed))
        except StepFailed as exc:
            print(str(exc), file=sys.stderr)
            return 1
        say(f"{name}: {results[-1]['seconds']:.1f} s, peak {results[-1]['peak_rss_mib']:,.0f} MiB")
    text = markdown(run, results)
    sys.stdout.write(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    figures(run, results, text).write(args.json)
    return 0


def load_results(run: Run) -> list[dict[str, Any]]:
    """The finished steps' results, in step order (what the table is made of)."""
    found = [run.result_file(name) for name in STEPS if run.result_file(name).exists()]
    return [json.loads(path.read_text(encoding="utf-8")) for path in found]


def figures(run: Run, results: list[dict[str, Any]], table: str) -> Figures:
    """The run's figures for bench/run_all.py: each step's wall time, the largest peak, the
    linearity check with its same-run reference (candidate pairs per record at half the records),
    and redemptions per second on the loaded registry beside pgbench TPC-B of the same run."""
    out = Figures("national", details=table)
    steps = {r["step"]: r for r in results}
    out.facts = {"households": steps["import"]["details"]["households"] if "import" in steps else run.households}
    if "import" in steps:
        out.facts["persons"] = steps["import"]["details"]["persons"]
    out.facts |= {"seed": run.seed, "DuckDB memory_limit": run.memory_limit}
    for r in results:
        out.add(f"{r['step']}: wall time", r["seconds"], "s", better="lower")
    out.add("all steps: wall time", sum(r["seconds"] for r in results), "s", better="lower")
    out.add("largest peak memory of a step", max(r["peak_rss_mib"] for r in results), "MiB", better="lower")
    if "dedup" in steps:
        d = steps["dedup"]["details"]
        out.add(
            "dedup: candidate pairs per record",
            d["candidate_pairs_per_record"],
            "pairs",
            reference=f"the same at half the records ({d['half_records']:,})",
            reference_value=d["half_candidate_pairs_per_record"],
            better="lower",
        )
    if "throughput" in steps:
        d = steps["throughput"]["details"]
        out.add(
            "throughput: redemptions per second",
            d["redemptions_per_second"],
            "/s",
            reference="pgbench TPC-B tps in the same run",
            reference_value=d["pgbench_tps"],
        )
    return out


def _step_arguments(argv: list[str]) -> list[str]:
    """The command line a step's child process gets: without the options that only the parent reads."""
    passed, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--resume", "--fresh"):
            continue
        elif arg in ("--json", "--out"):
            skip = True
        elif not arg.startswith(("--json=", "--out=")):
            passed.append(arg)
    return passed


def _start_afresh(run: Run) -> None:
    """Drop the run's database and its files in --work (results, population, dedup extract)."""
    url = make_url(run.url)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))  # the operator's URL
    finally:
        admin.dispose()
    for name in ("results", "population", "dedup", "cycle", "throughput"):
        shutil.rmtree(run.work / name, ignore_errors=True)
    run.root_key_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
