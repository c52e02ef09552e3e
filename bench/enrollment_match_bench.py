"""One new enrollment against the registry (issue 5): duplicate screening latency on SQLite and PostgreSQL.

    python bench/enrollment_match_bench.py [--quick] [--households N] [--probes N] [--seed S]
                                           [--write/--no-write] [--profile] [--no-postgres] [--no-analyze]
                                           [--json PATH]

Full mode (the default, `make bench`): a generated population of 300,000 households (~1 M persons)
is bulk-imported into a fresh SQLite file and a throw-away PostgreSQL schema (CIVICARD_TEST_POSTGRES_URL,
default the local `test` database), and the match index is built with `civicard dedup index`'s own
function (`index_registry`). Import and indexing are timed separately. On PostgreSQL the bench then
runs ANALYZE (neither the import nor the index does; see `analyze_postgres`).

Then 200 existing persons re-enroll with realistic errors (the generator's own misspellings and
misdatings, a missing document, a new phone, a new address) and 50 people who are not in the
registry enroll. Each is screened with `screen(uow, matcher, record)` inside a registrar's
`enrollment` unit of work, after a warm-up. Reported per database: p50/p95/p99/max of `screen`,
split into candidate SQL (`match_index.candidates` + `frequencies`), normalising and
`Matcher.score` (timed by wrapping those calls); candidates per record; top-1 recall; the whole
request (open the unit of work, screen, log the shown candidates, commit).

Reference in the same run: Splink's own per-call path on the same candidates and term frequencies
(`Linker(db_api.register(candidates), saved_model())` + `linker.inference.predict_between`), with
its probabilities checked against ours.

Quick mode (`--quick`): 3,000 households, 50 + 50 probes, nothing written unless --write. --json
writes the figures for bench/run_all.py (bench/figures.py).
`--profile` also runs the probes on SQLite under cProfile (stats to stderr and var/enrollment_match.prof).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import splink
from databases import postgres_schema, sqlite_database
from figures import Figures
from splink import DuckDBAPI, Linker
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

import civicard.dedup.matching as matching
from civicard.adapters.bulk.importer import import_population
from civicard.adapters.cli.dedup import index_registry
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.dedup.matching import NEW_RECORD_ID, Matcher, _with_tf
from civicard.dedup.model import BLOCKING_KEYS, REVIEW_BAND, TF_COLUMNS, saved_model, saved_model_path
from civicard.dedup.pairs import ScoredPair
from civicard.dedup.screening import Screening, screen
from civicard.registry.population import PopulationSpec, generate_population
from civicard.registry.population.names import strip_accents
from civicard.registry.population.typos import _NICKNAMES, _misdate, _misspell_given, _misspell_surnames
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext, Actor, Subject, disclose

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Enrollment duplicate check (issue 5)"
TARGET_MS = 100.0

FULL_HOUSEHOLDS = 300_000
QUICK_HOUSEHOLDS = 3_000
WARMUP = 15
STRANGERS = 50

IMPORTER = AccessContext(Actor("bench", "system"), "bulk_import")
REGISTRAR = AccessContext(Actor("bench-registrar", "registrar"), "enrollment")
GIVEN_KINDS = ("typo", "accents", "nickname", "initial", "middle name dropped")
DATE_KINDS = ("digit typo", "day/month swapped", "year off")


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- probes: re-enrollments with errors, and people not in the registry ----------------------------


@dataclass(frozen=True)
class Probe:
    record: dict[str, Any]
    source: str | None
    """The person id this is a re-enrollment of; None for someone not in the registry."""
    errors: tuple[str, ...]


PERSON_COLUMNS = [
    "person_id",
    "truth_person_id",
    "given_names",
    "first_surname",
    "second_surname",
    "birth_date",
    "sex",
    "address_line",
    "municipality",
    "postcode",
    "phone",
    "national_id",
]


def as_record(p: dict[str, Any]) -> dict[str, Any]:
    """A generated person in the dedup input shape (as `enrollment.dedup_record` builds it)."""
    return {
        "first_name": p["given_names"],
        "surname": f"{p['first_surname']} {p['second_surname'] or ''}".strip(),
        "date_of_birth": p["birth_date"].isoformat(),
        "sex": p["sex"],
        "address": p["address_line"],
        "postcode": p["postcode"],
        "city": p["municipality"],
        "phone": p["phone"],
        "national_id": p["national_id"],
        "household_id": None,
    }


def given_error(names: str, wrong: str) -> str:
    """What `_misspell_given` did (it falls back to a typo when the asked-for error changes nothing)."""
    words = names.split()
    if wrong == strip_accents(names):
        return "accents"
    if wrong == _NICKNAMES.get(words[0]):
        return "nickname"
    if len(words) > 1 and wrong == words[0]:
        return "middle name dropped"
    if wrong.endswith(".") and not names.endswith("."):
        return "initial"
    return "typo"


def reenrolled(person: dict[str, Any], elsewhere: dict[str, Any], rng: np.random.Generator) -> Probe:
    """`person` enrolling again: each error independently, at least one."""
    p = dict(person)
    errors: list[str] = []
    u = rng.random(16)
    if u[0] < 0.40:
        kind = int(u[1] * len(GIVEN_KINDS))
        p["given_names"] = _misspell_given(person["given_names"], kind, u[2:5])
        errors.append(f"given name: {given_error(person['given_names'], p['given_names'])}")
    if u[5] < 0.20:
        first, second = _misspell_surnames(p["first_surname"], p["second_surname"] or "", int(u[6] * 5), u[7:10])
        p["first_surname"], p["second_surname"] = first, second
        errors.append("surname")
    if u[10] < 0.25:
        kind = int(u[11] * len(DATE_KINDS))
        p["birth_date"] = _misdate(p["birth_date"], kind, u[12:14], date(2026, 11, 1))
        errors.append(f"birth date: {DATE_KINDS[kind]}")
    u2 = rng.random(4)
    if p["national_id"] and u2[0] < 0.40:
        p["national_id"] = None
        errors.append("no document")
    if u2[1] < 0.30:
        p["phone"] = f"3{int(rng.integers(0, 10**9)):09d}"
        errors.append("new phone")
    if u2[2] < 0.20:
        for column in ("address_line", "postcode", "municipality"):
            p[column] = elsewhere[column]
        errors.append("moved")
    if not errors:
        p["given_names"] = _misspell_given(p["given_names"], 0, rng.random(3))
        errors.append("given name: typo")
    return Probe(as_record(p), str(person["person_id"]), tuple(errors))


def make_probes(
    persons_file: Path, strangers_dir: Path, count: int, seed: int
) -> tuple[list[Probe], list[Probe], dict[str, str]]:
    """(warm-up probes, timed probes, person id → true person id for every registry person)."""
    rng = np.random.default_rng(seed)
    table = pq.read_table(persons_file, columns=PERSON_COLUMNS)
    truth = dict(zip(table["person_id"].to_pylist(), table["truth_person_id"].to_pylist(), strict=True))
    picked = rng.choice(table.num_rows, size=2 * (count + WARMUP), replace=False)
    rows = table.take(pa.array(picked)).to_pylist()
    sources, elsewhere = rows[: count + WARMUP], rows[count + WARMUP :]
    probes = [reenrolled(p, o, rng) for p, o in zip(sources, elsewhere, strict=True)]
    generate_population(PopulationSpec(households=2 * STRANGERS, seed=seed + 7919), strangers_dir)
    others = pq.read_table(strangers_dir / "persons.parquet", columns=PERSON_COLUMNS).to_pylist()
    others = list({p["truth_person_id"]: p for p in others}.values())  # one record per true person
    taken = {str(x) for x in table["national_id"].to_pylist() if x}
    new = []
    for p in (others[int(i)] for i in rng.permutation(len(others))[:STRANGERS]):
        if p["national_id"] in taken:  # another generator run may issue the same number
            p = {**p, "national_id": None}
        new.append(Probe(as_record(p), None, ()))
    return probes[:WARMUP], probes[WARMUP:] + new, truth


# --- timing the pieces of `screen` ----------------------------------------------------------------


@dataclass
class Timing:
    """Seconds spent in each piece during one call, and what the pieces returned."""

    parts: dict[str, float] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    frequencies: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.parts[name] = self.parts.get(name, 0.0) + seconds


class TimedIndex:
    """The unit of work's match index, with its two reads timed."""

    def __init__(self, inner: Any, timing: Timing) -> None:
        self.inner = inner
        self.timing = timing

    def candidates(self, keys: Sequence[str], limit: int) -> list[dict[str, Any]]:
        started = time.perf_counter()
        out: list[dict[str, Any]] = self.inner.candidates(keys, limit)
        self.timing.add("candidates", time.perf_counter() - started)
        self.timing.candidates = out
        return out

    def frequencies(self, values: dict[str, list[str]]) -> dict[str, dict[str, float]]:
        started = time.perf_counter()
        out: dict[str, dict[str, float]] = self.inner.frequencies(values)
        self.timing.add("frequencies", time.perf_counter() - started)
        self.timing.frequencies = out
        return out


class TimedMatcher(Matcher):
    """Matcher with `features`, scoring (`score`, or `score_features` for records `screen` has
    already normalised), Splink's `compare_records` and the scratch-table cleanup timed."""

    timing = Timing()
    _depth = 0  # > 0 while scoring

    def features(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        try:
            return super().features(records)
        finally:
            self.timing.add("score.features" if self._depth else "features", time.perf_counter() - started)

    def _scoring(self, scoring: Callable[..., list[ScoredPair]], *args: Any) -> list[ScoredPair]:
        started = time.perf_counter()
        self._depth += 1
        try:
            return scoring(*args)
        finally:
            self._depth -= 1
            if not self._depth:
                self.timing.add("score", time.perf_counter() - started)

    def score(
        self, new: dict[str, Any], candidates: Sequence[dict[str, Any]], frequencies: dict[str, dict[str, float]]
    ) -> list[ScoredPair]:
        return self._scoring(super().score, new, candidates, frequencies)

    def score_features(
        self, new: dict[str, Any], candidates: Sequence[dict[str, Any]], frequencies: dict[str, dict[str, float]]
    ) -> list[ScoredPair]:
        return self._scoring(super().score_features, new, candidates, frequencies)

    def _drop_scratch_tables(self) -> None:
        started = time.perf_counter()
        try:
            super()._drop_scratch_tables()
        finally:
            self.timing.add("score.drop_scratch", time.perf_counter() - started)


_compare_records = matching.compare_records


def _timed_compare_records(*args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    result = _compare_records(*args, **kwargs)
    rows = result.as_record_list()  # the SQL runs here; as_record_list on the result below re-reads it
    TimedMatcher.timing.add("score.compare_records", time.perf_counter() - started)
    return _Listed(rows)


class _Listed:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def as_record_list(self) -> list[dict[str, Any]]:
        return self.rows


matching.compare_records = _timed_compare_records  # type: ignore[assignment]


# --- one database --------------------------------------------------------------------------------


@dataclass
class Sample:
    probe: Probe
    screen_s: float
    screen_cpu_s: float
    """CPU time of this process (all its threads) during `screen`: less disturbed by a busy machine."""
    request_s: float
    parts: dict[str, float]
    candidates: list[dict[str, Any]]
    frequencies: dict[str, dict[str, float]]
    screening: Screening


@dataclass
class Run:
    name: str
    persons: int = 0
    import_s: float = 0.0
    index_s: float = 0.0
    index_steps: dict[str, float] = field(default_factory=dict)
    keys: int = 0
    names: int = 0
    analyzed_by_autovacuum: bool | None = None
    """PostgreSQL: whether person_match_keys had statistics when indexing finished."""
    analyze_s: float | None = None
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None


class Built:
    """What `index_registry` needs of the CLI's container: units of work on one engine."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def uow(self, context: AccessContext) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, context, self.clock)


class StepClock:
    """A `staged_progress` stand-in noting when each indexing step starts."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, _label: str) -> Iterator[Callable[[str, int, int], None]]:
        def report(stage: str, _done: int, _total: int) -> None:
            if not self.marks or self.marks[-1][0] != stage:
                self.marks.append((stage, time.perf_counter()))

        yield report

    def durations(self, started: float, ended: float) -> dict[str, float]:
        """Seconds per step; "registry" (reported after each chunk read) runs from `started`."""
        steps = [("registry", started), *((s, at) for s, at in self.marks if s != "registry")]
        bounds = [*(at for _, at in steps[1:]), ended]
        return {stage: end - at for (stage, at), end in zip(steps, bounds, strict=True)}


STATISTICS_TABLES = ("persons", "memberships", "person_match_keys", "name_frequencies")


def analyze_postgres(engine: Engine, run: Run) -> None:
    """Note whether autovacuum has analysed the fresh match index yet, then ANALYZE the tables the
    screening reads. Without statistics, once psycopg prepares the candidate query server-side (after
    5 executions), PostgreSQL may pick a generic plan that walks all of person_match_keys: seconds per
    lookup. The raw DBAPI connection skips the personal-data guard: this reads no personal data."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(
            "SELECT coalesce(last_analyze, last_autoanalyze) IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relid = 'person_match_keys'::regclass"
        )
        row = cur.fetchone()
        run.analyzed_by_autovacuum = bool(row and row[0])
        started = time.perf_counter()
        cur.execute("ANALYZE " + ", ".join(STATISTICS_TABLES))
        raw.commit()
        run.analyze_s = time.perf_counter() - started
    finally:
        raw.close()


def measure(
    run: Run,
    url: str,
    extract: Path,
    matcher: TimedMatcher,
    warmup: list[Probe],
    probes: list[Probe],
    analyze: bool,
) -> None:
    clock = Clock()
    engine = make_engine(url)
    try:
        say(f"{run.name}: importing")
        report = import_population(engine, extract, IMPORTER, clock)
        run.persons, run.import_s = report.persons, report.seconds
        say(f"{run.name}: imported {report.persons:,} persons in {report.seconds:.1f} s; indexing")
        steps = StepClock()
        started = time.perf_counter()
        run.keys, run.names = index_registry(Built(engine, clock), steps)
        ended = time.perf_counter()
        run.index_s = ended - started
        run.index_steps = steps.durations(started, ended)
        say(f"{run.name}: indexed {run.keys:,} keys, {run.names:,} names in {run.index_s:.1f} s")
        if analyze and engine.dialect.name == "postgresql":
            analyze_postgres(engine, run)
            say(f"{run.name}: ANALYZE in {run.analyze_s:.1f} s (autovacuum had analysed: {run.analyzed_by_autovacuum})")
        say(f"{run.name}: screening")
        for probe in warmup:
            one(engine, clock, matcher, probe)
        run.samples = [one(engine, clock, matcher, probe) for probe in probes]
        screens = [s.screen_s * 1000 for s in run.samples]
        say(f"{run.name}: screen p50 {statistics.median(screens):.1f} ms, max {max(screens):.1f} ms")
    finally:
        engine.dispose()


def one(engine: Engine, clock: Clock, matcher: TimedMatcher, probe: Probe) -> Sample:
    """One registrar request: open the unit of work, screen, log the candidates shown, commit."""
    timing = Timing()
    TimedMatcher.timing = timing
    opened = time.perf_counter()
    with SqlUnitOfWork(engine, REGISTRAR, clock) as uow:
        uow.match_index = TimedIndex(uow.match_index, timing)  # type: ignore[assignment]
        started, cpu = time.perf_counter(), time.process_time()
        screening = screen(uow, matcher, probe.record)
        screened, cpu = time.perf_counter(), time.process_time() - cpu
        if screening.pairs:  # what check_enrollment does after screening
            subjects = [Subject.person(p.id_r) for p in screening.pairs]
            disclose(uow.access_log, uow.context, subjects, ["identity"], "duplicate_check", clock.now())
        uow.commit()
    closed = time.perf_counter()
    return Sample(
        probe, screened - started, cpu, closed - opened, timing.parts, timing.candidates, timing.frequencies, screening
    )


# --- Splink's own per-call path on the same candidates -------------------------------------------


@dataclass
class SplinkSample:
    setup_s: float
    predict_s: float
    max_diff: float
    worst: str
    missing: int
    pairs: int


def splink_reference(matcher: Matcher, samples: list[Sample], model: dict[str, Any]) -> list[SplinkSample]:
    """For each screened record with candidates, Splink's incremental path: register the candidates
    and the new record (normalised features), build a Linker on the saved model, register the term
    frequencies ours used as lookup tables, `predict_between`, fetch.

    The frequencies go in as lookup tables, not as `tf_*` columns: Splink 5.0.0's predict_between
    accepts `tf_*` columns in its check but then joins the lookup tables anyway
    (`_enqueue_concat_with_tf_cte` calls `_join_tf_to_input_table_sql` without the input table),
    failing with "Table __splink__df_tf_first_name does not exist"."""
    TimedMatcher.timing = Timing()  # the samples' own timings stay as measured
    con = duckdb.connect()
    out = []
    try:
        for index, sample in enumerate(samples):
            if not sample.candidates:
                continue
            features = matcher.features([{**sample.probe.record, "record_id": NEW_RECORD_ID}, *sample.candidates])
            used = [_with_tf(f, sample.frequencies) for f in features]  # the tf values our path scores with
            lookups = {
                column: pa.Table.from_pylist(
                    [{column: v, f"tf_{column}": tf} for v, tf in {(r[column], r[f"tf_{column}"]) for r in used} if v]
                )
                for column in TF_COLUMNS
            }
            new = pa.Table.from_pylist([f for f in features if f["unique_id"] == NEW_RECORD_ID])
            candidates = pa.Table.from_pylist([f for f in features if f["unique_id"] != NEW_RECORD_ID])
            started = time.perf_counter()
            db_api = DuckDBAPI(con)
            candidates_df = db_api.register(candidates, table_name=f"bench_candidates_{index}")
            new_df = db_api.register(new, table_name=f"bench_new_{index}")
            linker = Linker(candidates_df, model)
            for column, lookup in lookups.items():
                tf_df = db_api.register(lookup, table_name=f"bench_tf_{column}_{index}")
                linker.table_management.register_term_frequency_lookup(tf_df, column)
            built = time.perf_counter()
            result = linker.inference.predict_between(new_df, candidates_df).as_record_list()
            ended = time.perf_counter()
            theirs = {(r["unique_id_r"] if r["unique_id_l"] == NEW_RECORD_ID else r["unique_id_l"]): r for r in result}
            # What `screen` scores with: the new record's and the candidates' features, picked by id
            # (features_of does not keep the input order).
            ours = matcher.score_features(new.to_pylist()[0], candidates.to_pylist(), sample.frequencies)
            diffs = [
                (abs(p.match_probability - float(theirs[p.id_r]["match_probability"])), p, theirs[p.id_r])
                for p in ours
                if p.id_r in theirs and not any(r.label.startswith("members of one household") for r in p.reasons)
            ]  # household members are capped by our second stage, which Splink does not have
            diff, pair, row = max(diffs, key=lambda d: d[0], default=(0.0, None, {}))
            worst = ""
            if pair is not None:
                splinks = {k: v for k, v in row.items() if k.startswith(("unique_id", "gamma_", "mw_", "tf_"))}
                reasons = [(r.field, r.weight) for r in pair.reasons]
                worst = f"{pair.id_r}: ours {pair.match_probability!r} {reasons}; Splink's {splinks}"
            missing = sum(1 for p in ours if p.id_r not in theirs)
            out.append(SplinkSample(built - started, ended - built, diff, worst, missing, len(result)))
            _drop_splink_tables(con)
    finally:
        con.close()
    return out


def _drop_splink_tables(con: duckdb.DuckDBPyConnection) -> None:
    names = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '\\_\\_splink%' ESCAPE '\\' "
        "OR table_name LIKE 'bench\\_%' ESCAPE '\\'"
    ).fetchall()
    for (name,) in names:
        con.execute(f'DROP TABLE IF EXISTS "{name}"')
    views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    for (name,) in views:
        con.execute(f'DROP VIEW IF EXISTS "{name}"')


# --- figures and the report ----------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def spread(seconds: Sequence[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"{pct(ms, 50):.1f} / {pct(ms, 95):.1f} / {pct(ms, 99):.1f} / {max(ms):.1f}"


def p50_p99(seconds: Sequence[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"{pct(ms, 50):.1f} / {pct(ms, 99):.1f}"


@dataclass
class Quality:
    reenrolled: int
    top1: int
    top1_exact: int
    in_candidates: int
    shown: int
    held: int
    strangers: int
    strangers_shown: int
    strangers_held: int
    misses: list[str]
    unblocked: list[str]
    """The errors of each re-enrollment whose true person shared no blocking key with it."""


def quality(samples: list[Sample], truth: dict[str, str]) -> Quality:
    again = [s for s in samples if s.probe.source is not None]
    new = [s for s in samples if s.probe.source is None]
    top1 = top1_exact = in_candidates = shown = held = 0
    misses, unblocked = [], []
    for s in again:
        source = str(s.probe.source)
        person = truth.get(source)
        pairs = s.screening.pairs
        best = pairs[0].id_r if pairs else None
        top1_exact += best == source
        hit = best is not None and truth.get(best) == person
        top1 += hit
        found = any(c["record_id"] == source for c in s.candidates)
        in_candidates += found
        shown += any(truth.get(p.id_r) == person for p in pairs)
        held += bool(pairs) and pairs[0].match_probability >= REVIEW_BAND and hit
        if not hit:
            on_file = s.probe.record["national_id"] or "no document" in s.probe.errors
            document = "" if on_file else " (no document on file)"
            misses.append(
                f"{', '.join(s.probe.errors)}{document} → best {pairs[0].match_probability if pairs else 0:.2f}, "
                f"{len(s.candidates)} candidates, source {'in' if found else 'NOT in'} them"
            )
            if not found:
                unblocked.append(", ".join(s.probe.errors) + document)
    return Quality(
        len(again),
        top1,
        top1_exact,
        in_candidates,
        shown,
        held,
        len(new),
        sum(1 for s in new if s.screening.pairs),
        sum(1 for s in new if s.screening.pairs and s.screening.best >= REVIEW_BAND),
        misses,
        unblocked,
    )


def part(samples: list[Sample], *names: str) -> list[float]:
    return [sum(s.parts.get(n, 0.0) for n in names) for s in samples]


def latency_table(runs: list[Run], splink_samples: list[SplinkSample], truth: dict[str, str]) -> list[str]:
    done = [r for r in runs if r.samples]
    header = "| measurement (ms: p50 / p95 / p99 / max, or p50 / p99) | " + " | ".join(r.name for r in done) + " |"
    lines = [header, "|---|" + "--:|" * len(done)]

    def row(label: str, cell: Callable[[Run], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in done) + " |")

    row("**`screen`, one record** (p50 / p95 / p99 / max)", lambda r: spread([s.screen_s for s in r.samples]))
    row(
        "`screen` CPU time of this process (p50 / p95 / p99 / max)",
        lambda r: spread([s.screen_cpu_s for s in r.samples]),
    )
    row(
        "— candidate SQL: `candidates` + `frequencies`", lambda r: p50_p99(part(r.samples, "candidates", "frequencies"))
    )
    row("    · `candidates`", lambda r: p50_p99(part(r.samples, "candidates")))
    row("    · `frequencies`", lambda r: p50_p99(part(r.samples, "frequencies")))
    row("— normalising in `screen` (`Matcher.features`)", lambda r: p50_p99(part(r.samples, "features")))
    row("— scoring: `Matcher.score` / `score_features`", lambda r: p50_p99(part(r.samples, "score")))
    if any(s.parts.get("score.features") for r in done for s in r.samples):
        row("    · its `features`", lambda r: p50_p99(part(r.samples, "score.features")))
    row(
        "    · Splink `compare_records` (register + SQL + fetch)",
        lambda r: p50_p99(part(r.samples, "score.compare_records")),
    )
    row("    · dropping Splink's scratch tables", lambda r: p50_p99(part(r.samples, "score.drop_scratch")))
    row(
        "— rest of `screen` (keys, dict building, filtering)",
        lambda r: p50_p99(
            [
                s.screen_s
                - sum(v for k, v in s.parts.items() if k in ("candidates", "frequencies", "features", "score"))
                for s in r.samples
            ]
        ),
    )
    row(
        "whole request: open unit of work + `screen` + log shown + commit (p50 / p95 / p99 / max)",
        lambda r: spread([s.request_s for s in r.samples]),
    )
    row(
        "candidates per record (median / max)",
        lambda r: (
            f"{statistics.median(len(s.candidates) for s in r.samples):.0f} / "
            f"{max(len(s.candidates) for s in r.samples)}"
        ),
    )
    row(
        f"records within target (`screen` ≤ {TARGET_MS:.0f} ms)",
        lambda r: f"{sum(s.screen_s * 1000 <= TARGET_MS for s in r.samples)} / {len(r.samples)}",
    )

    def recall(r: Run) -> str:
        q = quality(r.samples, truth)
        return (
            f"{q.top1}/{q.reenrolled} ({q.top1 / max(q.reenrolled, 1):.1%}); source itself {q.top1_exact}; "
            f"in candidates {q.in_candidates}; held (≥ {REVIEW_BAND}) {q.held}"
        )

    row("re-enrollments: true person ranked first (top-1 recall)", recall)

    def strangers(r: Run) -> str:
        q = quality(r.samples, truth)
        return f"{q.strangers_shown}/{q.strangers} shown a candidate, {q.strangers_held} held"

    row("new people: false alarms", strangers)
    if splink_samples:
        setup = [s.setup_s for s in splink_samples]
        whole = [s.setup_s + s.predict_s for s in splink_samples]
        lines.append("")
        lines.append(
            f"Splink's own per-call path on the same {len(splink_samples)} candidate sets (register candidates and "
            "the new record, `Linker(..., saved_model())`, register the term frequencies, `predict_between`, "
            f"fetch), ms p50 / p99: **{p50_p99(whole)}**, of which set-up {p50_p99(setup)}. Against it, on the "
            "records that had candidates: "
            + "; ".join(versus_splink(r, whole) for r in done)
            + f". Largest probability difference ours vs Splink's: {max(s.max_diff for s in splink_samples):.1e}; "
            f"pairs we scored that Splink did not: {sum(s.missing for s in splink_samples)}."
        )
    return lines


def json_figures(
    runs: list[Run], splink_samples: list[SplinkSample], truth: dict[str, str], households: int, details: str
) -> Figures:
    """Per database: `screen` latency (beside Splink's per-call path on the same candidates), import, index, recall."""
    figures = Figures("enrollment_match", facts={"households": households}, details=details)
    splink_ms = pct([s.setup_s + s.predict_s for s in splink_samples], 50) * 1000 if splink_samples else None
    for run in runs:
        if run.error or not run.samples:
            continue
        figures.facts[f"{run.name} persons"] = run.persons
        figures.add(
            f"{run.name}: `screen`, one record, p99",
            pct([s.screen_s for s in run.samples], 99) * 1000,
            "ms",
            better="lower",
        )
        scored = [s.screen_s for s in run.samples if s.candidates]
        if scored:
            figures.add(
                f"{run.name}: `screen` of a record with candidates, median",
                pct(scored, 50) * 1000,
                "ms",
                "Splink's per-call path on the same candidates" if splink_ms else None,
                splink_ms,
                better="lower",
            )
        figures.add(f"{run.name}: import", run.import_s, "s", better="lower")
        figures.add(f"{run.name}: match index built", run.index_s, "s", better="lower")
        q = quality(run.samples, truth)
        if q.reenrolled:
            figures.add(f"{run.name}: re-enrollments, true person ranked first", q.top1 / q.reenrolled, "share")
    return figures


def versus_splink(run: Run, splink_seconds: list[float]) -> str:
    """Our scoring and whole screen against Splink's per-call path, on the records with candidates."""
    scored = [s for s in run.samples if s.candidates]
    ours, theirs = part(scored, "score"), pct(splink_seconds, 50)
    screens = [s.screen_s for s in scored]
    return (
        f"{run.name} scoring {p50_p99(ours)} ({pct(ours, 50) / theirs:.2f}× Splink's at the median, "
        f"{(theirs - pct(ours, 50)) * 1000:.0f} ms less), whole `screen` {p50_p99(screens)} "
        f"({pct(screens, 50) / theirs:.2f}×)"
    )


def build_table(runs: list[Run]) -> list[str]:
    lines = [
        "| database | persons | import s | index s | of which: read registry (logged) | normalise + keys "
        "| write keys + frequencies | keys | name frequencies | ANALYZE s (bench) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in runs:
        if r.error:
            lines.append(f"| {r.name} | not run: {r.error} |")
            continue
        steps = r.index_steps
        keys_s = steps.get("normalising", 0.0) + steps.get("computing keys", 0.0)
        lines.append(
            f"| {r.name} | {r.persons:,} | {r.import_s:.1f} | {r.index_s:.1f} | {steps.get('registry', 0.0):.1f} "
            f"| {keys_s:.1f} | {steps.get('writing', 0.0):.1f} | {r.keys:,} | {r.names:,} "
            f"| {'—' if r.analyze_s is None else f'{r.analyze_s:.1f}'} |"
        )
    for r in runs:
        if r.analyze_s is not None:
            lines += [
                "",
                f"{r.name}: when indexing finished, autovacuum had {'' if r.analyzed_by_autovacuum else 'not yet '}"
                "analysed `person_match_keys`. Neither the import nor `dedup index` runs ANALYZE; the bench does, "
                f"before screening ({', '.join(STATISTICS_TABLES)}). Without statistics, once psycopg prepares the "
                "candidate query server-side (after 5 executions) PostgreSQL may choose a generic plan that walks "
                "all of `person_match_keys` — seconds per lookup (`--no-analyze` screens that way).",
            ]
    return lines


def model_digest() -> str:
    return hashlib.sha256(saved_model_path().read_bytes()).hexdigest()[:12]


def machine() -> str:
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(meminfo.read_text().split()[1])
        memory = f"{kb / 1024**2:.0f} GiB"
    versions = f"Python {sys.version.split()[0]}, Splink {splink.__version__}, DuckDB {duckdb.__version__}"
    return f"{os.cpu_count()} cores, {memory}; {versions}"


def section(
    args: argparse.Namespace,
    started: datetime,
    loads: tuple[float, float],
    runs: list[Run],
    splink_samples: list[SplinkSample],
    truth: dict[str, str],
    households: int,
) -> str:
    done = [r for r in runs if r.samples]
    mode = "quick" if args.quick else "full"
    persons = max((r.persons for r in runs), default=0)
    again = sum(1 for s in done[0].samples if s.probe.source) if done else 0
    distance = []
    for r in done:
        p99 = pct([s.screen_s * 1000 for s in r.samples], 99)
        verdict = "✔ meets it" if p99 <= TARGET_MS else "✘ misses it"
        distance.append(f"{r.name} p99 {p99:.0f} ms = {p99 / TARGET_MS:.2f}× the target ({verdict})")
    parts = [
        f"{SECTION} — `bench/enrollment_match_bench.py`",
        "",
        f"{started:%Y-%m-%d}, {mode} mode; {machine()}. *Busy*: load average {loads[0]:.1f} at the start, "
        f"{loads[1]:.1f} at the end (other agents were running on the same two cores).",
        "",
        f"Model: `model.json` sha256 {model_digest()}, {len(BLOCKING_KEYS)} blocking keys "
        f"({'; '.join('+'.join(k) for k in BLOCKING_KEYS)}).",
        "",
        f"{households:,} generated households → {persons:,} persons (seed {args.seed}), bulk-imported, then the match "
        "index built with `civicard dedup index`'s `index_registry` (reads every person under a logged "
        "`duplicate_screening` context, normalises in DuckDB, writes keys and frequencies).",
        "",
        *build_table(runs),
        "",
        f"Probes: {again} existing persons re-enrolling with the generator's own errors (given name 40 %: "
        "typo/accents/nickname/initial/middle name dropped; surname 20 %; birth date 25 %: digit, day↔month, "
        "year; no document 40 %; new phone 30 %; moved 20 %; at least one error each) and "
        f"{STRANGERS} people from another generator run; {WARMUP} warm-up screens first. Each is "
        "`screen(uow, matcher, record)` in a registrar's `enrollment` unit of work; the pieces are timed by "
        "wrapping `match_index.candidates`/`frequencies` and `Matcher.features`/`score` in the bench.",
        "",
        *latency_table(runs, splink_samples, truth),
        "",
        *misses_paragraph(done, truth),
        f"Target (issue 5): ≤ {TARGET_MS:.0f} ms for one new person against 1 M people. " + "; ".join(distance) + ".",
    ]
    return "\n".join(parts) + "\n"


def misses_paragraph(done: list[Run], truth: dict[str, str]) -> list[str]:
    if not done:
        return []
    q = quality(done[0].samples, truth)
    if not q.misses:
        return []
    same = all(quality(r.samples, truth).misses == q.misses for r in done[1:])
    text = (
        f"Re-enrollments whose true person was not ranked first: {len(q.misses)}"
        + (" (the same on every database)" if same and len(done) > 1 else f" ({done[0].name})")
        + f"; {len(q.unblocked)} of them because the true person was not among the candidates at all "
        "(no blocking key shared). Their errors: " + "; ".join(sorted(q.unblocked)) + "."
    )
    return [text, ""]


def replace_section(text: str, new: str) -> str:
    start = text.find(SECTION)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + new
    following = text.find("\n## ", start + len(SECTION))
    return text[:start] + new + (text[following + 1 :] if following >= 0 else "")


def profile(url: str, matcher: TimedMatcher, probes: list[Probe], out: Path) -> None:
    engine = make_engine(url)
    clock = Clock()
    profiler = cProfile.Profile()
    try:
        for probe in probes[:10]:
            one(engine, clock, matcher, probe)
        profiler.enable()
        for probe in probes:
            one(engine, clock, matcher, probe)
        profiler.disable()
    finally:
        engine.dispose()
    profiler.dump_stats(str(out))
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_HOUSEHOLDS:,} households, 50 probes")
    parser.add_argument("--households", type=int, help=f"default {FULL_HOUSEHOLDS:,} ({QUICK_HOUSEHOLDS:,} quick)")
    parser.add_argument("--probes", type=int, help="re-enrollments screened (default 200; quick 50)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--no-analyze", action="store_true", help="screen PostgreSQL without running ANALYZE after indexing"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the probes on SQLite afterwards")
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="replace the section in bench/RESULTS.md (default: in full mode only)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here (for bench/run_all.py)")
    args = parser.parse_args(argv)
    households = args.households or (QUICK_HOUSEHOLDS if args.quick else FULL_HOUSEHOLDS)
    count = args.probes or (50 if args.quick else 200)
    write = args.write if args.write is not None else not args.quick
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("splink")] + ["splink"]:
        logging.getLogger(name).setLevel(logging.ERROR)
    started = datetime.now()
    load_start = os.getloadavg()[0]
    model = saved_model()
    matcher = TimedMatcher(model, duckdb.connect())
    runs: list[Run] = []
    splink_samples: list[SplinkSample] = []
    with tempfile.TemporaryDirectory(prefix="civicard-enrollment-bench-") as tmp:
        work = Path(tmp)
        extract = work / "population"
        say(f"generating {households:,} households")
        summary = generate_population(PopulationSpec(households=households, seed=args.seed), extract)
        say(f"generated {summary}")
        warmup, probes, truth = make_probes(extract / "persons.parquet", work / "strangers", count, args.seed)
        targets: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = [
            ("SQLite", lambda: sqlite_database(work, "bench.db"))
        ]
        if not args.no_postgres:
            targets.append(("PostgreSQL", postgres_schema))
        for name, database in targets:
            run = Run(name)
            runs.append(run)
            try:
                with database() as url:
                    measure(run, url, extract, matcher, warmup, probes, not args.no_analyze)
                    if args.profile and name == "SQLite":
                        profile(url, matcher, probes, ROOT / "var" / "enrollment_match.prof")
            except OperationalError as exc:
                run.error = type(exc.orig).__name__
                say(f"{name}: not run: {exc}")
                continue
            if not splink_samples:
                say("Splink per-call reference on the same candidates")
                splink_samples = splink_reference(matcher, run.samples, model)
    loads = (load_start, os.getloadavg()[0])
    text = section(args, started, loads, runs, splink_samples, truth, households)
    print("\n" + text)
    if splink_samples:
        worst = max(splink_samples, key=lambda s: s.max_diff)
        print(f"largest difference from Splink: {worst.max_diff:.2e}: {worst.worst}", file=sys.stderr)
    for r in runs:
        misses = quality(r.samples, truth).misses if r.samples else []
        if misses:
            print(f"{r.name}: re-enrollments whose true person was not ranked first:", file=sys.stderr)
            for miss in misses:
                print(f"  - {miss}", file=sys.stderr)
    if write:
        RESULTS.write_text(replace_section(RESULTS.read_text(), text))
        say(f"wrote the section to {RESULTS}")
    if args.json:
        json_figures(runs, splink_samples, truth, households, text).write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
