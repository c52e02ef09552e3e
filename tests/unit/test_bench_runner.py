"""`make bench`'s runner (bench/run_all.py): it runs a bench as its own process, reads the figures the
bench writes with --json and composes the Markdown, each figure beside its same-run reference."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402
from figures import Figures  # noqa: E402


def test_quick_mode_on_the_merkle_bench_writes_machine_facts_figures_references_and_ratios(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    notes = tmp_path / "notes.md"
    notes.write_text("How this file works.\n\n## merkle\nEach append costs about two SHA-256 calls.\n")
    options = ["--out", str(out), "--notes", str(notes), "--logs", str(tmp_path / "logs")]
    done = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--quick", "--only", "merkle", "--runs", "2", *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    assert "| cores | " in text and "| memory | " in text and "| DuckDB | " in text
    assert "1-minute load average" in text
    assert "## Merkle log in memory — `python bench/merkle_bench.py --quick`" in text
    append = next(line for line in text.splitlines() if line.startswith("| append |"))
    assert "raw SHA-256 of the entries: " in append
    assert re.search(r"/s – [\d,]+/s \(2 runs\) \|", append), append
    assert re.search(r"\| \d+\.\d\d× \|$", append), append
    assert "Each append costs about two SHA-256 calls." in text
    assert "2 of 2 run(s) succeeded" in text


def test_figures_are_medians_with_their_range_and_the_median_of_same_run_ratios() -> None:
    runs = []
    for value, reference in ((100.0, 400.0), (300.0, 600.0), (200.0, 1000.0)):
        figures = Figures("demo")
        figures.add("append", value, "/s", "raw hash", reference)
        figures.add("latency", value / 100, "ms", better="lower")
        runs.append(figures)
    append, latency = run_all.summarise(runs)
    row = run_all.figure_row(append)
    assert row == "| append | 200.0/s | 100.0/s – 300.0/s (3 runs) | raw hash: 600.0/s | 0.25× |"
    assert run_all.figure_row(latency).startswith("| latency (lower is better) | 2.00 ms | 1.00 ms – 3.00 ms")


def test_a_failing_bench_is_reported_in_its_section_and_not_hidden(tmp_path: Path) -> None:
    failing = run_all.Bench("broken", "no_such_bench.py", "Broken", ())
    outcome = run_all.run_bench(failing, (), 1, tmp_path, tmp_path)
    text = run_all.section(outcome, {})
    assert "0 of 1 run(s) succeeded" in text
    assert "**Failed**, run 1: exit code 2" in text


def test_sections_no_bench_of_the_run_writes_are_kept_and_marked() -> None:
    earlier = (
        "# Benchmark results\n\nold header\n\n## Merkle log in memory — old\n\nold figures\n\n"
        "## National pipeline (issue 10) — `bench/national_bench.py`\n\n| step | wall s |\n|---|--:|\n\n"
        "## Soak (issue 10) — `bench/soak.py`\n\nNot yet measured.\n"
    )
    kept = run_all.kept_sections(earlier, ["Merkle log in memory"])
    assert "old figures" not in kept and "old header" not in kept  # what this run wrote again
    assert kept.count("*Kept from an earlier run") == 2
    assert "## National pipeline (issue 10)" in kept and "| step | wall s |" in kept
    assert "## Soak (issue 10)" in kept and "Not yet measured." in kept
    assert run_all.kept_sections("", ["Merkle log in memory"]) == ""

