"""The national pipeline (bench/national_bench.py) at a few thousand households on a fresh
PostgreSQL schema: every step reports its time and memory, the redemption load on the loaded
registry (5 s, uvicorn + wrk beside pgbench) has no errors and a ledger matching its answers, the
EXPLAIN checks pass, a rerun with --resume skips what is done, and chunked dedup scores exactly the
pairs one join scores. wrk and pgbench are needed (scripts/system-deps.sh): without them the module
is skipped, or fails under CI=true."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from civicard.dedup.batch import run_batch
from civicard.dedup.chunked import run_batch_in_chunks
from civicard.dedup.model import saved_model

from ..conftest import IN_CI, Database, fresh_postgres_schema

BENCH = Path(__file__).resolve().parents[2] / "bench" / "national_bench.py"
HOUSEHOLDS = 2_000


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("national_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["national_bench"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    missing = [tool for tool in ("wrk", "pgbench") if shutil.which(tool) is None]
    if missing and IN_CI:
        pytest.fail(f"CI=true but {', '.join(missing)} missing: run scripts/system-deps.sh")
    if missing:
        pytest.skip(f"the throughput step needs {', '.join(missing)} (scripts/system-deps.sh)")
    yield from fresh_postgres_schema()


@pytest.fixture(scope="module")
def ran(bench: ModuleType, database: Database, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    work = tmp_path_factory.mktemp("national")
    argv = ["--households", str(HOUSEHOLDS), "--database-url", database.url, "--work", str(work)]
    argv += ["--redemptions", "20", "--dedup-chunks", "2", "--json", str(work / "figures.json")]
    assert bench.main([*argv, "--out", str(work / "national.md")]) == 0
    return work, step_results(work)


def step_results(work: Path) -> list[Any]:
    found = sorted(p for p in (work / "results").glob("[0-9][0-9]-*.json") if not p.name.endswith(".details.json"))
    return [json.loads(p.read_text(encoding="utf-8")) for p in found]


def test_the_figures_give_each_step_and_the_linearity_check_beside_its_reference(
    bench: ModuleType, ran: tuple[Path, list[Any]]
) -> None:
    work, results = ran
    payload = json.loads((work / "figures.json").read_text(encoding="utf-8"))
    figures = {f["name"]: f for f in payload["figures"]}
    imported = next(r["details"] for r in results if r["step"] == "import")
    assert payload["bench"] == "national" and payload["facts"]["households"] == imported["households"]
    for r in results:
        assert figures[f"{r['step']}: wall time"]["value"] == r["seconds"]
    pairs = figures["dedup: candidate pairs per record"]
    dedup = next(r["details"] for r in results if r["step"] == "dedup")
    assert (pairs["value"], pairs["reference_value"]) == (
        dedup["candidate_pairs_per_record"],
        dedup["half_candidate_pairs_per_record"],
    )
    assert payload["details"] == (work / "national.md").read_text(encoding="utf-8")
    assert "| **total** |" in payload["details"]


def test_every_step_reports_time_memory_and_its_figures(bench: ModuleType, ran: tuple[Path, list[Any]]) -> None:
    work, results = ran
    assert [r["step"] for r in results] == list(bench.STEPS)
    for r in results:
        assert 0 < r["seconds"] < 120, r["step"]
        assert 20 < r["peak_rss_mib"] < 4096, r["step"]
        assert (work / "results").glob(f"*-{r['step']}.json")
    d = {r["step"]: r["details"] for r in results}
    assert d["generate"]["households"] >= HOUSEHOLDS and d["import"]["persons"] == d["generate"]["persons"]
    assert d["dedup"]["records"] == d["import"]["persons"] and d["dedup"]["chunks"] == 2
    assert d["dedup"]["duplicate_clusters"] > 0
    # Linear blocking: pairs per record stay flat when the registry doubles.
    per_record, half = d["dedup"]["candidate_pairs_per_record"], d["dedup"]["half_candidate_pairs_per_record"]
    assert 0 < per_record < 2 * half + 0.05
    assert d["cycle"]["households"] == d["import"]["households"] and len(d["cycle"]["programs"]) == 5
    assert d["entitlements"]["rows"] == d["cycle"]["entitlements_written"] > 0
    assert d["redemptions"]["redemptions"] == d["redemptions"]["cards_issued"] == 20
    # The throughput step's sales are real redemptions of the period: settled and verified with the 20.
    assert d["settlement"]["redemptions"] == 20 + d["throughput"]["sales_added"] and d["settlement"]["verified"]
    assert d["settlement"]["vendors"] == 2  # the redemptions step's shop and the load's 64-shop chain


def test_the_load_on_the_loaded_registry_has_no_errors_and_a_rate_beside_pgbench(
    database: Database, ran: tuple[Path, list[Any]]
) -> None:
    work, results = ran
    d = next(r["details"] for r in results if r["step"] == "throughput")
    assert d["error_rate"] == 0 and d["ledger_consistent"] is True
    assert d["redemptions_per_second"] > 0 and d["pgbench_tps"] > 0
    assert d["ratio"] == round(d["redemptions_per_second"] / d["pgbench_tps"], 3)
    assert (d["workers"], d["seconds"]) == (2, 5) and 0 < d["cards"] <= 1_000
    assert d["log_entries_folded"] > 0  # the import's entries, folded before the load
    # The ledger gained the timed run's sales (each a 201 or still in flight) plus warm-up and in-process ones.
    assert d["sales_added"] > d["sales_written"] >= d["redemptions_per_second"] * 4
    figure = {f["name"]: f for f in json.loads((work / "figures.json").read_text(encoding="utf-8"))["figures"]}[
        "throughput: redemptions per second"
    ]
    assert (figure["value"], figure["reference_value"]) == (d["redemptions_per_second"], d["pgbench_tps"])
    assert figure["reference"] == "pgbench TPC-B tps in the same run"
    engine = sa.create_engine(database.url)
    try:
        with engine.connect() as conn:
            carded_twice = conn.execute(
                sa.text("SELECT count(*) FROM (SELECT person_id FROM cards GROUP BY person_id HAVING count(*) > 1) x")
            ).scalar_one()
            cards = conn.execute(sa.text("SELECT count(*) FROM cards")).scalar_one()
    finally:
        engine.dispose()
    assert carded_twice == 0 and cards == 20 + d["cards"]  # the load's cards went to adults holding none


def test_hot_queries_use_their_period_partition(ran: tuple[Path, list[Any]]) -> None:
    _, results = ran
    explain = next(r["details"] for r in results if r["step"] == "explain")
    plans = explain["plans"]
    period = next(r["details"]["period"] for r in results if r["step"] == "cycle").replace("-", "_")
    assert plans["entitlements of a household in a period"]["relations"] == [f"entitlements_p{period}"]
    assert plans["redemptions of a household in a period"]["relations"] == [f"redemptions_p{period}"]
    assert all(p["partition_pruned"] is not False for p in plans.values())
    assert plans["entitlements of a household in a period"]["indexed"]
    assert explain["analyze"] and all(p["ms"] is not None for p in plans.values())
    assert explain["access_log_partitioned"] is True


def test_resume_skips_finished_steps_and_a_fresh_run_refuses_old_results(
    bench: ModuleType, database: Database, ran: tuple[Path, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    work, results = ran
    argv = ["--households", str(HOUSEHOLDS), "--database-url", database.url, "--work", str(work)]
    assert bench.main([*argv, "--resume", "--json", str(work / "again.json")]) == 0
    assert capsys.readouterr().err.count("done earlier, skipped") == len(bench.STEPS)
    assert [r["finished_at"] for r in step_results(work)] == [r["finished_at"] for r in results]
    again = json.loads((work / "again.json").read_text(encoding="utf-8"))["figures"]
    assert again == json.loads((work / "figures.json").read_text(encoding="utf-8"))["figures"]
    assert bench.main(argv) == 1
    assert "--resume" in capsys.readouterr().err
    other_size = ["--households", str(HOUSEHOLDS + 1), *argv[2:]]
    assert bench.main([*other_size, "--resume"]) == 1
    assert "--fresh" in capsys.readouterr().err


def test_a_short_disk_is_refused_before_anything_is_written(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--households",
        str(10**12),
        "--work",
        str(tmp_path),
        "--database-url",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ]
    assert bench.main(argv) == 1
    assert "not enough disk" in capsys.readouterr().err
    assert not (tmp_path / "population").exists()


def test_chunked_dedup_scores_the_same_pairs_as_one_join(ran: tuple[Path, list[Any]]) -> None:
    work, _ = ran
    extract = str(work / "dedup" / "registry.parquet")
    found = []
    for chunks in (None, 3):
        con = duckdb.connect()
        con.execute("CREATE TABLE dedup_input AS SELECT * FROM read_parquet(?)", [extract])
        if chunks is None:
            result = run_batch(con, "dedup_input", model=saved_model())
        else:
            result = run_batch_in_chunks(con, "dedup_input", model=saved_model(), chunks=chunks)
        pairs = con.execute(
            "SELECT unique_id_l, unique_id_r, round(match_probability, 9) FROM dedup_pairs ORDER BY 1, 2"
        ).fetchall()
        clusters = con.execute("SELECT record_id, cluster_id FROM dedup_clusters ORDER BY 1").fetchall()
        found.append((result.pairs, result.duplicate_clusters, pairs, clusters))
        con.close()
    assert found[0][2] and found[0] == found[1]
