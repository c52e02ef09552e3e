"""Bulk import throughput: a synthetic population into SQLite and PostgreSQL, against DuckDB's bare read.

    python bench/import_bench.py [--households N] [--quick] [--seed S] [--json PATH]

Generates the population (civicard.registry.population) into a temp dir, imports it into a fresh
SQLite file and a fresh PostgreSQL schema (CIVICARD_TEST_POSTGRES_URL, default the local `test`
database; the schema is dropped afterwards), and prints a markdown table. The reference is the
time DuckDB takes to read the same Parquet files into Arrow, measured in the same run. --json writes
the figures for bench/run_all.py (bench/figures.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb
from databases import postgres_schema, sqlite_database
from figures import Figures
from sqlalchemy.exc import OperationalError

from civicard.adapters.bulk.importer import SOURCES, ImportReport, import_population
from civicard.adapters.db.engine import make_engine
from civicard.registry.population import PopulationSpec, generate_population
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext, Actor

IMPORTER = AccessContext(Actor("bench", "system"), "bulk_import")


def duckdb_read_seconds(extract: Path) -> float:
    """Reading every file completely into Arrow tables: the floor for any import."""
    with duckdb.connect() as duck:
        started = time.perf_counter()
        for source in SOURCES:
            duck.read_parquet(str(extract / f"{source.name}.parquet")).to_arrow_table()
        return time.perf_counter() - started


class Phases:
    """Progress callback that notes when validation and the data tables finish."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.marks: dict[str, float] = {}
        self.last_table = SOURCES[-1].name

    def __call__(self, stage: str, done: int, total: int) -> None:
        if done == total and stage in ("validate", self.last_table):
            self.marks[stage] = time.perf_counter() - self.started


def run_import(url: str, extract: Path) -> tuple[ImportReport, Phases]:
    engine = make_engine(url)
    try:
        phases = Phases()
        report = import_population(engine, extract, IMPORTER, Clock(), phases)
        return report, phases
    finally:
        engine.dispose()


def row(name: str, report: ImportReport, phases: Phases, reference: float) -> str:
    validated = phases.marks.get("validate", 0.0)
    loaded = phases.marks.get(phases.last_table, validated)
    cells = [
        name,
        f"{report.households:,}",
        f"{report.persons:,}",
        f"{sum(report.rows.values()):,}",
        f"{report.access_entries:,}",
        f"{validated:.2f}",
        f"{loaded - validated:.2f}",
        f"{report.seconds - loaded:.2f}",
        f"{report.seconds:.2f}",
        f"{report.households / report.seconds:,.0f}",
        f"{report.persons / report.seconds:,.0f}",
        f"{report.seconds / reference:.0f}×",
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="5,000 households")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here (for bench/run_all.py)")
    args = parser.parse_args(argv)
    households = 5_000 if args.quick else args.households
    figures = Figures("import", facts={"households": households, "seed": args.seed})
    with tempfile.TemporaryDirectory(prefix="civicard-import-bench-") as tmp:
        work = Path(tmp)
        extract = work / "population"
        started = time.perf_counter()
        summary = generate_population(PopulationSpec(households=households, seed=args.seed), extract)
        print(
            f"generated {summary.households:,} households, {summary.persons:,} persons "
            f"in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        reference = duckdb_read_seconds(extract)
        results: list[str] = []
        targets: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = [
            ("SQLite", lambda: sqlite_database(work, "bench.db")),
            ("PostgreSQL (COPY)", postgres_schema),
        ]
        for name, database in targets:
            try:
                with database() as url:
                    report, phases = run_import(url, extract)
            except OperationalError as exc:
                results.append(f"| {name} | not run: {type(exc.orig).__name__} |")
                continue
            results.append(row(name, report, phases, reference))
            figures.facts["persons"] = report.persons
            reading = "DuckDB reading the same Parquet into Arrow"
            figures.add(f"{name}: whole import", report.seconds, "s", reading, reference, better="lower")
            figures.add(f"{name}: households/s", report.households / report.seconds, "/s")
            print(f"{name}: {report.seconds:.1f} s", file=sys.stderr)
    print(
        f"\nBulk import of {households:,} generated households (seed {args.seed}); "
        f"DuckDB reads the same files into Arrow in {reference:.3f} s.\n"
    )
    print(
        "| database | households | persons | rows (8 tables) | log entries | validate s | load s | log + commit s "
        "| total s | households/s | persons/s | × DuckDB read |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    print("\n".join(results))
    figures.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
