"""`civicard dedup run / train / index` on the CSV contract and on the registry (SQLite)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from civicard.adapters.cli.main import app
from civicard.dedup.records import INPUT_COLUMNS
from civicard.registry.population import PopulationSpec, generate_population

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CIVICARD_DATA_DIR": str(tmp_path / "var"), "CIVICARD_MODE": "demo", "CIVICARD_DATABASE_URL": ""}


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("population")
    generate_population(PopulationSpec(households=1500, seed=11, duplicate_share=0.05), out)
    return out


@pytest.fixture(scope="module")
def contract_csv(population: Path) -> Path:
    """The generated persons in the `dedup run` input format, with the truth kept aside."""
    path = population / "input.csv"
    duckdb.sql(
        f"""COPY (SELECT person_id AS record_id, given_names AS first_name,
                 first_surname || ' ' || coalesce(second_surname, '') AS surname, birth_date AS date_of_birth,
                 sex, address_line AS address, postcode, municipality AS city, phone, national_id
                 FROM '{population}/persons.parquet') TO '{path}' (HEADER)"""
    )
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _cluster_f1(population: Path, clusters: Path) -> float:
    truth = {
        r[0]: r[1]
        for r in duckdb.sql(f"SELECT person_id, truth_person_id FROM '{population}/persons.parquet'").fetchall()
    }
    members: dict[str, list[str]] = {}
    for row in _rows(clusters):
        members.setdefault(row["cluster_id"], []).append(row["record_id"])
    found = {frozenset((a, b)) for ids in members.values() for i, a in enumerate(ids) for b in ids[i + 1 :]}
    people: dict[str, list[str]] = {}
    for record, person in truth.items():
        people.setdefault(person, []).append(record)
    true = {frozenset((a, b)) for ids in people.values() for i, a in enumerate(ids) for b in ids[i + 1 :]}
    hits = len(found & true)
    precision, recall = hits / len(found), hits / len(true)
    return 2 * precision * recall / (precision + recall)


def test_run_writes_pairs_and_a_cluster_for_every_record(contract_csv: Path, population: Path, tmp_path: Path) -> None:
    pairs, clusters = tmp_path / "pairs.csv", tmp_path / "clusters.csv"
    result = runner.invoke(
        app, ["dedup", "run", str(contract_csv), "--out-pairs", str(pairs), "--out-clusters", str(clusters)]
    )
    assert result.exit_code == 0, result.output
    records = {r["record_id"] for r in _rows(contract_csv)}
    cluster_rows = _rows(clusters)
    assert list(cluster_rows[0]) == ["record_id", "cluster_id"]
    assert {r["record_id"] for r in cluster_rows} == records and len(cluster_rows) == len(records)
    pair_rows = _rows(pairs)
    assert list(pair_rows[0]) == ["record_id_l", "record_id_r", "match_probability"]
    assert all(0.5 <= float(r["match_probability"]) <= 1 for r in pair_rows)
    assert _cluster_f1(population, clusters) >= 0.95
    assert "duplicate cluster(s) at 0.98" in result.output


def test_a_higher_threshold_never_makes_more_duplicates(contract_csv: Path, tmp_path: Path) -> None:
    sizes = []
    for threshold in ("0.5", "0.9999"):
        clusters = tmp_path / f"clusters-{threshold}.csv"
        args = [
            "dedup",
            "run",
            str(contract_csv),
            "--out-pairs",
            str(tmp_path / "p.csv"),
            "--out-clusters",
            str(clusters),
        ]
        assert runner.invoke(app, [*args, "--threshold", threshold]).exit_code == 0
        sizes.append(len({r["cluster_id"] for r in _rows(clusters)}))
    assert sizes[0] <= sizes[1]


def test_parquet_input_and_empty_fields_are_accepted(tmp_path: Path) -> None:
    source = tmp_path / "few.parquet"
    duckdb.sql(
        f"""COPY (SELECT * FROM (VALUES
            ('a', 'María José', 'Pérez Gómez', '1984-03-09', 'F', 'Calle 5 # 10-20', '10001', 'NOR-01',
             '3005550101', NULL),
            ('b', 'Maria J.', 'Perez Gomez', '1984-09-03', 'F', 'Calle 5 # 10-20', '10001', 'NOR-01',
             '3005550101', NULL),
            ('c', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL))
            AS t({", ".join(INPUT_COLUMNS)})) TO '{source}' (FORMAT parquet)"""
    )
    clusters = tmp_path / "c.csv"
    result = runner.invoke(
        app, ["dedup", "run", str(source), "--out-pairs", str(tmp_path / "p.csv"), "--out-clusters", str(clusters)]
    )
    assert result.exit_code == 0, result.output
    by_record = {r["record_id"]: r["cluster_id"] for r in _rows(clusters)}
    assert by_record["a"] == by_record["b"] != by_record["c"]


def test_bad_input_fails_with_one_line_and_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["dedup", "run", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1 and "no such file" in missing.output
    lacking = tmp_path / "lacking.csv"
    lacking.write_text("record_id,first_name\n1,Ana\n", encoding="utf-8")
    result = runner.invoke(app, ["dedup", "run", str(lacking)])
    assert result.exit_code == 1 and "lacks the column(s) surname" in result.output
    repeated = tmp_path / "repeated.csv"
    repeated.write_text(",".join(INPUT_COLUMNS) + "\n1,Ana,,,,,,,,\n1,Eva,,,,,,,,\n", encoding="utf-8")
    result = runner.invoke(app, ["dedup", "run", str(repeated)])
    assert result.exit_code == 1 and "'1' appears more than once" in result.output
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    assert runner.invoke(app, ["dedup", "run", str(garbage)]).exit_code == 1
    assert runner.invoke(app, ["dedup", "run"]).exit_code == 2
    assert runner.invoke(app, ["dedup", "run", str(lacking), "--registry"]).exit_code == 2
    assert runner.invoke(app, ["dedup", "run", str(lacking), "--threshold", "1.5"]).exit_code == 2


def test_train_writes_a_model_the_run_accepts(contract_csv: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.json"
    result = runner.invoke(app, ["dedup", "train", str(contract_csv), "--out", str(model)])
    assert result.exit_code == 0, result.output
    trained = json.loads(model.read_text(encoding="utf-8"))
    names = [c["output_column_name"] for c in trained["comparisons"]]
    assert names == ["first_name", "surname", "dob", "sex", "national_id", "household"]
    for comparison in trained["comparisons"]:  # every top ("agree") level was estimated from this data
        top = next(level for level in comparison["comparison_levels"] if not level.get("is_null_level"))
        assert top["m_probability"] > top["u_probability"] > 0, comparison["output_column_name"]


def test_registry_run_reads_the_registry_and_logs_each_person(
    env: dict[str, str], population: Path, tmp_path: Path
) -> None:
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    assert runner.invoke(app, ["registry", "import", str(population)], env=env).exit_code == 0
    clusters = tmp_path / "clusters.csv"
    result = runner.invoke(
        app,
        ["dedup", "run", "--registry", "--out-pairs", str(tmp_path / "p.csv"), "--out-clusters", str(clusters)],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert len(_rows(clusters)) == duckdb.sql(f"SELECT count(*) FROM '{population}/persons.parquet'").fetchall()[0][0]
    assert _cluster_f1(population, clusters) >= 0.95
    index = runner.invoke(app, ["dedup", "index"], env=env)
    assert index.exit_code == 0 and "match index rebuilt" in index.output


def test_registry_run_can_queue_possible_pairs_once(env: dict[str, str], population: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    assert runner.invoke(app, ["registry", "import", str(population), "--no-index"], env=env).exit_code == 0
    args = ["dedup", "run", "--registry", "--queue", "--out-pairs", str(tmp_path / "p.csv")]
    args += ["--out-clusters", str(tmp_path / "c.csv")]
    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    pairs = len(_rows(tmp_path / "p.csv"))
    assert pairs > 0 and f"{pairs:,} new pair(s) queued for review" in first.output
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0 and "0 new pair(s) queued for review" in again.output
    assert runner.invoke(app, ["dedup", "run", str(tmp_path / "p.csv"), "--queue"], env=env).exit_code == 2
