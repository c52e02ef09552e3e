"""Deciding households on Spark: the compiled rule SQL of `programs.sql` (its "spark" dialect)
over Spark DataFrames of the rule inputs, as `programs.bulk.decide_bulk` does on DuckDB."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from civicard.programs.rulepack import RulePack
from civicard.programs.sql import Column, decisions_query

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def decide_on_spark(
    spark: SparkSession, packs: Sequence[RulePack], period_start: date, households: DataFrame, members: DataFrame
) -> tuple[DataFrame, list[Column]]:
    """Every household under every pack: one row per household (household_id, then `columns`).
    `households` and `members` have the canonical input types (numbers DOUBLE, yes/no BOOLEAN),
    as `programs.projection.project` writes them; they become the query's two relations."""
    query, columns = decisions_query(packs, period_start, "spark")
    households.createOrReplaceTempView("households")
    members.createOrReplaceTempView("members")
    return spark.sql(query), columns
