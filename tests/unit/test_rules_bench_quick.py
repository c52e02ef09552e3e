"""The programs benchmark runs in quick mode, and its bulk paths agree with the Python evaluator
on the households it samples (so its figures time correct decisions). OpenFisca is not needed."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import rules_bench  # noqa: E402


def test_the_quick_programs_bench_completes_and_duckdb_and_polars_agree_with_python() -> None:
    report = rules_bench.run(20_000, runs=1, seed=6, period=date(2026, 12, 1), openfisca=False, polars=True)
    assert report.households == 20_000
    assert report.members > 20_000
    assert report.seconds["duckdb_disagreements"] == 0, report.agreement
    assert report.seconds["polars_disagreements"] == 0, report.agreement
    assert report.agreement["Polars vs DuckDB, every household and column"] == "identical"
    assert report.seconds["scan"] > 0 and report.seconds["duckdb"] > 0 and report.seconds["parquet"] > 0
    assert "not run" in report.figures["(d) OpenFisca-core, the same five programs vectorised"]


def test_the_bench_writes_only_its_own_section_of_the_results() -> None:
    text = "# Results\n\n## A\nkeep\n\n## Programs (issue 6) — old\nold figures\n\n## B\nkeep too\n"
    replaced = rules_bench.replace_section(text, "## Programs (issue 6) — new\nnew figures\n\n")
    assert replaced == "# Results\n\n## A\nkeep\n\n## Programs (issue 6) — new\nnew figures\n\n## B\nkeep too\n"
