"""The published programs' compiled SQL decides every household the same on Spark as on DuckDB."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from civicard.adapters.spark.rules import decide_on_spark
from civicard.programs.bulk import decide_bulk
from civicard.programs.engines import row_outcomes
from civicard.programs.projection import RuleInputs, project
from civicard.programs.rulepack import RulePack, load_rulepack
from civicard.registry.population import PopulationSpec, generate_population

RULEPACKS = Path(__file__).resolve().parents[2] / "rulepacks"
PERIOD = date(2026, 12, 1)

# The generated population's Parquet files as the registry rows `project` reads: every fact is
# its first version (id: its row, recorded when valid, superseding nothing).
RAW_VIEWS = {
    "households": "SELECT household_id AS id, region FROM '{d}/households.parquet'",
    "persons": "SELECT person_id AS id, birth_date, 'active' AS record_status FROM '{d}/persons.parquet'",
    "memberships": "SELECT household_id, person_id FROM '{d}/memberships.parquet'",
    "employment": "SELECT *, {fact} FROM '{d}/employment.parquet'",
    "incomes": "SELECT *, {fact} FROM '{d}/incomes.parquet'",
    "properties": "SELECT *, {fact} FROM '{d}/properties.parquet'",
    "health_needs": "SELECT *, true AS present, {fact} FROM '{d}/health_needs.parquet'",
    "benefits_received": "SELECT *, {fact} FROM '{d}/benefits_received.parquet'",
}
FACT = "row_number() OVER () AS id, CAST(valid_from AS TIMESTAMP) AS recorded_at, CAST(NULL AS BIGINT) AS supersedes_id"


def published_packs() -> list[RulePack]:
    return [p for p in map(load_rulepack, sorted(RULEPACKS.glob("*/*.yaml"))) if p.status == "published"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> RuleInputs:
    population = tmp_path_factory.mktemp("rules") / "population"
    generate_population(PopulationSpec(households=300, seed=31, duplicate_share=0.0), population)
    with duckdb.connect() as con:
        for name, sql in RAW_VIEWS.items():
            con.execute(f"CREATE TABLE {name} AS {sql.format(d=population, fact=FACT)}")
        return project(con, PERIOD)


def _outcomes(packs: list[RulePack], columns: list[Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    programs = [p.program for p in packs]
    return {row["household_id"]: row_outcomes(programs, columns, [row[c.name] for c in columns]) for row in rows}


def test_spark_decides_every_household_and_program_as_duckdb(spark: Any, inputs: RuleInputs) -> None:
    packs = published_packs()
    assert len({p.program for p in packs}) == 5
    table, columns = decide_bulk(packs, PERIOD, inputs)
    on_duckdb = _outcomes(packs, columns, table.to_pylist())
    decided, spark_columns = decide_on_spark(
        spark, packs, PERIOD, spark.createDataFrame(inputs.households), spark.createDataFrame(inputs.members)
    )
    assert spark_columns == columns
    on_spark = _outcomes(packs, columns, [r.asDict() for r in decided.collect()])
    assert len(on_duckdb) == inputs.count == 300
    assert on_spark == on_duckdb
    eligible = {p.program: sum(o[p.program].status == "eligible" for o in on_duckdb.values()) for p in packs}
    assert all(0 < n < 300 for n in eligible.values()), eligible  # every program decides both ways
