"""Run every benchmark in bench/ and write their figures, each beside its same-run reference, as Markdown.

    python bench/run_all.py [--quick] [--runs N] [--only merkle,log,...] [--out PATH] [--logs DIR]

Full mode (`make bench`): every bench at its full size, each run --runs times (default 3) as its
own subprocess, one after another; the figures replace bench/RESULTS.md. Quick mode
(`make bench-quick`): CI-sized runs (seconds each, a few minutes in all), one run each, written to
bench/RESULTS.quick.md (git-ignored) so smoke figures never overwrite the real ones.

Each bench writes its figures with `--json PATH` (bench/figures.py); this runner takes the median
of each figure over the runs with its range (min–max), the reference measured in the same run,
and the median of the per-run ratios figure : reference. The header gives the machine (cores, CPU,
memory, OS, Python, PostgreSQL, DuckDB), the date and the 1-minute load average at the start and
the end; a run is flagged *busy* when the load exceeded the cores. Hand-written explanations per
bench live in bench/results_notes.md (`## <bench key>` sections) and are copied under each section,
so they survive regeneration. Each run's output is kept in --logs (default var/bench-logs).
Exit code 0 when every bench ran, 1 when one failed (its section says which run and why), 2 usage.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from figures import Figure, Figures, read_figures

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
FULL_OUT = BENCH / "RESULTS.md"
QUICK_OUT = BENCH / "RESULTS.quick.md"
NOTES = BENCH / "results_notes.md"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Bench:
    key: str
    script: str
    title: str
    quick: tuple[str, ...]
    full: tuple[str, ...] = ()
    once: bool = False  # run once whatever --runs says (the national run takes hours)


# The benches write their own RESULTS.md sections only when asked (--no-write here); the runner
# repeats whole runs itself, so benches that can repeat internally are run once per call (--runs 1).
BENCHES = (
    Bench("merkle", "merkle_bench.py", "Merkle log in memory", ("--quick",)),
    Bench("log", "log_bench.py", "Stored access log", ("--quick",)),
    Bench("card", "card_bench.py", "Card checks", ("--quick",)),
    Bench("import", "import_bench.py", "Registry import", ("--quick",), ("--households", "100000")),
    Bench(
        "dedup",
        "dedup_bench.py",
        "Duplicate detection (issue 5)",
        ("--quick", "--no-write", "--no-febrl", "--runs", "1"),
        ("--no-write", "--runs", "1"),
    ),
    Bench(
        "enrollment_match",
        "enrollment_match_bench.py",
        "Enrollment duplicate check (issue 5)",
        ("--quick", "--no-write"),
        ("--no-write",),
    ),
    Bench(
        "rules",
        "rules_bench.py",
        "Programs (issue 6)",
        ("--quick", "--households", "20000", "--no-write", "--runs", "1"),
        ("--no-write", "--runs", "1"),
    ),
    Bench("redemption", "redemption_bench.py", "Redemption (issue 7)", ("--quick", "--no-write"), ("--no-write",)),
    # Full size is 10 M households (hours; resumable): a finished run in var/national is reported
    # again rather than redone. Quick mode starts afresh in a database and folder of its own.
    Bench(
        "national",
        "national_bench.py",
        "National pipeline (issue 10)",
        (
            "--quick",
            "--fresh",
            "--work",
            "var/national-quick",
            "--database-url",
            f"{DEFAULT_POSTGRES_URL}_national_quick",
        ),
        ("--resume", "--work", "var/national"),
        once=True,
    ),
)


@dataclass(frozen=True)
class Summary:
    """One figure over the runs: median and range, its reference's median, the median per-run ratio."""

    name: str
    unit: str
    better: str
    values: list[float]
    reference: str | None = None
    reference_values: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


def summarise(runs: list[Figures]) -> list[Summary]:
    """Group the runs' figures by name, in the order the first run gave them."""
    grouped: dict[str, list[Figure]] = {}
    for run in runs:
        for figure in run.figures:
            grouped.setdefault(figure.name, []).append(figure)
    summaries = []
    for name, figures in grouped.items():
        first = figures[0]
        paired = [f for f in figures if f.reference_value is not None]
        summaries.append(
            Summary(
                name,
                first.unit,
                first.better,
                [f.value for f in figures],
                first.reference,
                [f.reference_value for f in paired if f.reference_value is not None],
                [f.value / f.reference_value for f in paired if f.reference_value],
            )
        )
    return summaries


def number(value: float) -> str:
    if abs(value) >= 1_000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def quantity(value: float, unit: str) -> str:
    if unit == "/s":
        return f"{number(value)}/s"
    return f"{number(value)} {unit}".rstrip()


def times(ratio: float) -> str:
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.2f}×"


def spread(values: list[float], unit: str) -> str:
    if len(values) < 2:
        return "one run"
    return f"{quantity(min(values), unit)} – {quantity(max(values), unit)} ({len(values)} runs)"


def figure_row(summary: Summary) -> str:
    name = summary.name + (" (lower is better)" if summary.better == "lower" else "")
    median = quantity(statistics.median(summary.values), summary.unit)
    reference = ratio = ""
    if summary.reference and summary.reference_values:
        reference = f"{summary.reference}: {quantity(statistics.median(summary.reference_values), summary.unit)}"
        ratio = times(statistics.median(summary.ratios)) if summary.ratios else ""
    elif summary.reference:
        reference = f"{summary.reference}: not measured"
    return f"| {name} | {median} | {spread(summary.values, summary.unit)} | {reference} | {ratio} |"


def read_notes(path: Path) -> dict[str, str]:
    """`## key` sections of the notes file; text before the first heading explains the file and is skipped."""
    if not path.exists():
        return {}
    notes: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = notes.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return {key: "\n".join(lines).strip() for key, lines in notes.items() if "\n".join(lines).strip()}


def demoted(details: str) -> str:
    """A bench's own report under our section: its `## ` title dropped, its other headings kept below ours."""
    lines = details.strip().splitlines()
    if lines and lines[0].startswith("## "):
        lines = lines[1:]
    return "\n".join("#" + line if line.startswith("### ") else line for line in lines).strip()


@dataclass
class Outcome:
    bench: Bench
    arguments: tuple[str, ...]
    runs: list[Figures] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def run_bench(bench: Bench, arguments: tuple[str, ...], runs: int, work: Path, logs: Path) -> Outcome:
    outcome = Outcome(bench, arguments)
    for index in range(1, runs + 1):
        output = work / f"{bench.key}-{index}.json"
        log = logs / f"{bench.key}-{index}.log"
        say(f"{bench.key}: run {index} of {runs} (log {log})")
        started = time.perf_counter()
        with log.open("w", encoding="utf-8") as sink:
            completed = subprocess.run(
                [sys.executable, str(BENCH / bench.script), *arguments, "--json", str(output)],
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
                check=False,
            )
        outcome.seconds.append(time.perf_counter() - started)
        if completed.returncode != 0 or not output.exists():
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
            outcome.failures.append(f"run {index}: exit code {completed.returncode}: {tail[0][:200]}")
            continue
        outcome.runs.append(read_figures(output))
    return outcome


def kept_sections(earlier: str, written: list[str]) -> str:
    """The `## ` sections of the file being replaced that no bench of this run writes (the national
    run, the soak, a bench left out with --only), carried over unchanged and marked as earlier."""
    kept = []
    for part in re.split(r"(?m)^(?=## )", earlier):
        title = part.splitlines()[0][3:] if part.startswith("## ") else ""
        if title and not any(title.startswith(name) for name in written):
            body = part.rstrip("\n").split("\n", 1)
            note = "*Kept from an earlier run: no benchmark of this run measured it.*"
            kept.append(f"{body[0]}\n\n{note}\n" + (f"{body[1].lstrip(chr(10))}\n" if len(body) > 1 else ""))
    return "".join(f"\n{k}" for k in kept)


def section(outcome: Outcome, notes: dict[str, str]) -> str:
    bench = outcome.bench
    command = " ".join(["python", f"bench/{bench.script}", *outcome.arguments])
    lines = [f"## {bench.title} — `{command}`", ""]
    wall = statistics.median(outcome.seconds) if outcome.seconds else 0.0
    lines.append(f"{len(outcome.runs)} of {len(outcome.seconds)} run(s) succeeded; wall time {wall:.1f} s (median).")
    facts = outcome.runs[-1].facts if outcome.runs else {}
    if facts:
        lines.append("Parameters: " + ", ".join(f"{key} {fact_text(value)}" for key, value in facts.items()) + ".")
    lines.append("")
    for failure in outcome.failures:
        lines += [f"**Failed**, {failure}", ""]
    summaries = summarise(outcome.runs)
    if summaries:
        lines += [
            "| figure | median | range | reference in the same run (median) | figure : reference (median) |",
            "|---|--:|---|---|--:|",
            *(figure_row(summary) for summary in summaries),
            "",
        ]
    if bench.key in notes:
        lines += ["### Notes", "", notes[bench.key], ""]
    if outcome.runs and outcome.runs[-1].details.strip():
        lines += ["### The last run's own report", "", demoted(outcome.runs[-1].details), ""]
    return "\n".join(lines)


def fact_text(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def postgres_version() -> str:
    url = os.environ.get("CIVICARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                return str(conn.execute(text("SHOW server_version")).scalar_one())
        finally:
            engine.dispose()
    except Exception as exc:  # any failure only means the header says so
        return f"not reachable ({type(exc).__name__})"


def machine_facts() -> dict[str, str]:
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total = re.search(r"MemTotal:\s+(\d+)", meminfo)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    import duckdb

    return {
        "cores": str(os.cpu_count()),
        "CPU": cpu.group(1).strip() if cpu else platform.processor() or "?",
        "memory": f"{int(total.group(1)) / 2**20:.1f} GiB" if total else "?",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "PostgreSQL": postgres_version(),
        "DuckDB": duckdb.__version__,
    }


def header(args: argparse.Namespace, facts: dict[str, str], started: datetime, loads: tuple[float, float]) -> str:
    cores = os.cpu_count() or 1
    busy = max(loads) > cores
    mode = "quick" if args.quick else "full"
    lines = [
        "# Benchmark results" + (" (quick mode: smoke figures, not the real ones)" if args.quick else ""),
        "",
        f"Written by `python bench/run_all.py {' '.join(args.argv)}`".rstrip() + f" ({mode} mode) on "
        f"{started:%Y-%m-%d %H:%M %Z}. Each bench ran {args.runs} time(s) as its own process, one after another; "
        "each figure is the median over the runs with its range, beside its reference measured in the same "
        "run, and the ratio is the median of the per-run ratios.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in facts.items()),
        f"| 1-minute load average | {loads[0]:.2f} at the start, {loads[1]:.2f} at the end |",
        "",
    ]
    if busy:
        lines += [
            f"**Busy run**: the load average exceeded the {cores} cores, so other work shared the machine; "
            "the figures are lower bounds.",
            "",
        ]
    return "\n".join(lines)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized runs, one each, into bench/RESULTS.quick.md")
    parser.add_argument("--runs", type=int, help="runs of each bench (default 3; quick 1)")
    parser.add_argument("--only", help="comma-separated bench keys: " + ",".join(b.key for b in BENCHES))
    parser.add_argument("--out", type=Path, help="default bench/RESULTS.md (quick RESULTS.quick.md)")
    parser.add_argument("--notes", type=Path, default=NOTES, help="per-bench notes (default bench/results_notes.md)")
    parser.add_argument("--logs", type=Path, default=ROOT / "var" / "bench-logs", help="each run's output")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.out = args.out or (QUICK_OUT if args.quick else FULL_OUT)
    known = {bench.key: bench for bench in BENCHES}
    chosen = args.only.split(",") if args.only else list(known)
    unknown = [key for key in chosen if key not in known]
    if unknown or args.runs < 1:
        parser.error(f"unknown bench {', '.join(unknown)}" if unknown else "--runs must be at least 1")
    args.benches = [known[key] for key in chosen]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now().astimezone()
    load_start = os.getloadavg()[0]
    facts = machine_facts()
    args.logs.mkdir(parents=True, exist_ok=True)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="civicard-bench-") as tmp:
        for bench in args.benches:
            arguments = bench.quick if args.quick else bench.full
            outcomes.append(run_bench(bench, arguments, 1 if bench.once else args.runs, Path(tmp), args.logs))
    loads = (load_start, os.getloadavg()[0])
    notes = read_notes(args.notes)
    text = "\n".join([header(args, facts, started, loads), *(section(outcome, notes) for outcome in outcomes)])
    earlier = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    text = text.rstrip("\n") + "\n" + kept_sections(earlier, [outcome.bench.title for outcome in outcomes])
    args.out.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    failed = [outcome.bench.key for outcome in outcomes if outcome.failures]
    say(f"wrote {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
