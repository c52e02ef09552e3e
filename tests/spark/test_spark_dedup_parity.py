"""The saved dedup model on Splink's Spark backend finds the same pairs and clusters as on DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from civicard.adapters.spark.dedup import dedup_on_spark
from civicard.dedup.batch import run_batch
from civicard.dedup.model import OPERATING_THRESHOLD, saved_model
from civicard.registry.population import PopulationSpec, generate_population

INPUT_SQL = """
SELECT person_id AS record_id, given_names AS first_name,
  concat_ws(' ', first_surname, nullif(second_surname, '')) AS surname,
  strftime(birth_date, '%Y-%m-%d') AS date_of_birth, sex, address_line AS address, postcode,
  municipality AS city, phone, national_id, m.household_id
FROM '{persons}' JOIN '{memberships}' m USING (person_id)
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 700 records of a seeded population (with its seeded re-enrollments) and their households."""
    work = tmp_path_factory.mktemp("dedup")
    population = work / "population"
    generate_population(PopulationSpec(households=200, seed=23), population)
    target = work / "records.parquet"
    with duckdb.connect() as con:
        query = INPUT_SQL.format(persons=population / "persons.parquet", memberships=population / "memberships.parquet")
        con.execute(f"COPY ({query}) TO '{target}'")
    return target


@pytest.fixture(scope="module")
def on_duckdb(records: Path) -> dict[str, Any]:
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE records AS SELECT * FROM '{records}'")
        run_batch(con, "records", model=saved_model())
        pairs = con.execute(
            "SELECT unique_id_l, unique_id_r, match_probability, model_probability FROM dedup_pairs"
        ).fetchall()
        clusters = con.execute("SELECT record_id, cluster_id FROM dedup_clusters").fetchall()
    return {"pairs": pairs, "clusters": clusters}


@pytest.fixture(scope="module")
def on_spark(spark: Any, records: Path) -> dict[str, Any]:
    found = dedup_on_spark(spark, spark.read.parquet(str(records)), saved_model())
    pairs = [
        (r.unique_id_l, r.unique_id_r, r.match_probability, r.model_probability)
        for r in found.pairs.select("unique_id_l", "unique_id_r", "match_probability", "model_probability").collect()
    ]
    clusters = [(r.record_id, r.cluster_id) for r in found.clusters.collect()]
    return {"pairs": pairs, "clusters": clusters}


def _by_pair(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], tuple[float, float]]:
    return {(min(a, b), max(a, b)): (p, m) for a, b, p, m in rows}


def _partition(rows: list[tuple[str, str]]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for record, cluster in rows:
        groups.setdefault(str(cluster), set()).add(str(record))
    return {frozenset(g) for g in groups.values()}


def test_spark_scores_the_same_pairs_with_the_same_probabilities(
    on_duckdb: dict[str, Any], on_spark: dict[str, Any]
) -> None:
    duck, sparky = _by_pair(on_duckdb["pairs"]), _by_pair(on_spark["pairs"])
    assert len(duck) > 20  # seeded re-enrollments and look-alike household members
    assert set(sparky) == set(duck)
    for pair, (probability, model_probability) in duck.items():
        assert sparky[pair][0] == pytest.approx(probability, abs=1e-9), pair
        assert sparky[pair][1] == pytest.approx(model_probability, abs=1e-9), pair
    above = {p for p, (prob, _) in duck.items() if prob >= OPERATING_THRESHOLD}
    assert above == {p for p, (prob, _) in sparky.items() if prob >= OPERATING_THRESHOLD}


def test_spark_finds_the_same_duplicate_clusters(on_duckdb: dict[str, Any], on_spark: dict[str, Any]) -> None:
    duck, sparky = _partition(on_duckdb["clusters"]), _partition(on_spark["clusters"])
    assert sum(len(c) > 1 for c in duck) > 5
    assert sparky == duck
