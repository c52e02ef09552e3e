"""Duplicate detection on Spark: the saved model, the same normalising and the same second stage
as `dedup.batch.run_batch`, over a Spark DataFrame of records with the dedup input columns.

Gives the pairs at or above the review band and the clusters at the operating threshold, as
Spark DataFrames the caller writes (Parquet on the cluster's storage) or collects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from civicard.adapters.spark.dialect import spark_model, to_spark
from civicard.dedup.batch import HOUSEHOLD_MEMBER_CAP, second_stage_sql
from civicard.dedup.model import OPERATING_THRESHOLD, REVIEW_BAND, TF_COLUMNS
from civicard.dedup.records import features_sql, nicknames

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class SparkDedup:
    features: DataFrame  # FEATURE_COLUMNS, one row a record
    pairs: DataFrame  # unique_id_l, unique_id_r, model_probability, match_probability, household_member, gamma_*
    clusters: DataFrame  # record_id, cluster_id


def dedup_on_spark(
    spark: SparkSession,
    records: DataFrame,
    model: dict[str, Any],
    *,
    threshold: float = OPERATING_THRESHOLD,
    review_band: float = REVIEW_BAND,
) -> SparkDedup:
    """Score every blocked pair of `records` (INPUT_COLUMNS, optionally household_id) with the
    trained `model` (model.json) and cluster them, as run_batch does on DuckDB."""
    from splink import Linker
    from splink.backends.spark import SparkAPI
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    if "household_id" not in records.columns:
        records = records.selectExpr("*", "CAST(NULL AS STRING) AS household_id")
    records.createOrReplaceTempView("dedup_records")
    spark.createDataFrame(list(nicknames().items()), "nickname STRING, canon STRING").createOrReplaceTempView(
        "dedup_nicknames"
    )
    features = spark.sql(to_spark(features_sql("dedup_records"))).localCheckpoint()
    features.createOrReplaceTempView("dedup_features")
    db_api = SparkAPI(spark_session=spark, break_lineage_method="checkpoint")  # type: ignore[no-untyped-call]
    registered = db_api.register(features)
    linker = Linker(registered, {**spark_model(model), "retain_intermediate_calculation_columns": False})
    for column in TF_COLUMNS:
        linker.table_management.compute_tf_table(column)
    floor = min(review_band, HOUSEHOLD_MEMBER_CAP)
    predictions = linker.inference.predict_within(registered, threshold_match_probability=floor, warning_mode="never")
    scored = spark.sql(to_spark(second_stage_sql(predictions.physical_name)))
    pairs = scored.where(scored.match_probability >= review_band).localCheckpoint()
    clusters = cluster_pairwise_predictions_at_threshold(
        features, pairs, db_api, "unique_id", threshold_match_probability=threshold
    )
    found = spark.table(clusters.physical_name).selectExpr("unique_id AS record_id", "cluster_id")
    return SparkDedup(features, pairs, found)
