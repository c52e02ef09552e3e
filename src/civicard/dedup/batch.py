"""Duplicate detection over a whole file or registry extract, as named DuckDB steps.

features → (train) → predict with Splink → household second stage → clusters. The caller owns
the DuckDB connection (memory limit, temp directory) and the input relation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from splink import DuckDBAPI, Linker
from splink.clustering import cluster_pairwise_predictions_at_threshold

from civicard.dedup.model import OPERATING_THRESHOLD, REVIEW_BAND, TF_COLUMNS, train, untrained_settings
from civicard.dedup.records import features_sql, register_nicknames

HOUSEHOLD_MEMBER_CAP = 0.2
"""Probability a pair is capped to when the second stage sees two members of one household."""

SAME_HOME_LEVELS = (4, 5)
"""Household comparison levels meaning "same address" (with or without the same phone)."""

GIVEN_NAMES_DIFFER = (0, 1)
"""Given-name levels "differ" and "somewhat alike": siblings' names, not a typo or a nickname."""

DOCUMENT_AGREES = 2
"""The document-number level "same document number": two household members never share one."""

Step = Callable[[str], None]


@dataclass(frozen=True)
class BatchResult:
    records: int
    pairs: int
    clusters: int
    records_in_clusters: int
    duplicate_clusters: int
    household_members_separated: int
    threshold: float
    review_band: float
    model: dict[str, Any]
    pairs_table: str = "dedup_pairs"
    clusters_table: str = "dedup_clusters"


def second_stage_sql(predictions: str, enabled: bool = True) -> str:
    """Cap pairs that are two members of one household: the same registry household, or the same
    address (with or without the same phone) — and given names or birth dates that plainly differ,
    unless they share a document. Twins and siblings share everything else a duplicate shares; a
    re-enrollment with a typo, nickname or initial keeps a given-name level above 'differ', so it
    is not capped. `enabled=False` scores without the stage (the benchmark's ablation)."""
    levels = ", ".join(str(g) for g in SAME_HOME_LEVELS)
    differ = ", ".join(str(g) for g in GIVEN_NAMES_DIFFER)
    member = (
        f"coalesce((household_id_l = household_id_r OR gamma_household IN ({levels})) "
        f"AND gamma_national_id <> {DOCUMENT_AGREES} AND (gamma_first_name IN ({differ}) OR gamma_dob = 0), false)"
        if enabled
        else "false"
    )
    return f"""
SELECT unique_id_l, unique_id_r,
  match_probability AS model_probability,
  CASE WHEN {member} THEN least(match_probability, {HOUSEHOLD_MEMBER_CAP}) ELSE match_probability END
    AS match_probability,
  {member} AS household_member,
  gamma_first_name, gamma_surname, gamma_dob, gamma_sex, gamma_national_id, gamma_household
FROM {predictions}
"""


def run_batch(
    con: duckdb.DuckDBPyConnection,
    source: str,
    *,
    model: dict[str, Any] | None,
    threshold: float = OPERATING_THRESHOLD,
    review_band: float = REVIEW_BAND,
    step: Step = lambda _: None,
    second_stage: bool = True,
    term_frequencies: dict[str, dict[str, float]] | None = None,
) -> BatchResult:
    """Score every blocked pair of the records in `source` (a table with INPUT_COLUMNS) and
    cluster them. With `model=None` the model is trained on this data first."""
    records, db_api, features = normalised(con, source, step)
    # Bulk runs keep the comparison levels (gamma_*) and drop Splink's per-pair intermediate
    # columns (Bayes factors, term frequencies): a third less to write for a million records.
    settings = (
        {**model, "retain_intermediate_calculation_columns": False} if model is not None else untrained_settings()
    )
    linker = Linker(features, settings)
    if model is None:
        train(linker, step)
    step("counting how common each name is")
    for column in TF_COLUMNS:
        if term_frequencies is None:
            linker.table_management.compute_tf_table(column)
        else:  # a fixed snapshot (the registry's), as the enrollment path uses
            values = term_frequencies.get(column, {})
            lookup = pa.table({column: list(values), f"tf_{column}": list(values.values())})
            con.register(f"dedup_tf_{column}", lookup)
            con.execute(f"CREATE OR REPLACE TABLE dedup_tf_lookup_{column} AS SELECT * FROM dedup_tf_{column}")
            con.unregister(f"dedup_tf_{column}")
            registered = db_api.register(f"dedup_tf_lookup_{column}")
            linker.table_management.register_term_frequency_lookup(registered, column)
    step("scoring candidate pairs")
    floor = min(review_band, HOUSEHOLD_MEMBER_CAP) if second_stage else review_band
    predictions = linker.inference.predict_within(features, threshold_match_probability=floor, warning_mode="never")
    trained: dict[str, Any] = model if model is not None else linker.misc.save_model_to_json()
    return score_and_cluster(
        con, db_api, predictions, records, trained, threshold, review_band, step, second_stage=second_stage
    )


def normalised(con: duckdb.DuckDBPyConnection, source: str, step: Step) -> tuple[int, DuckDBAPI, Any]:
    """The records of `source` as FEATURE_COLUMNS in table `dedup_features`: how many, and that
    table registered with Splink's DuckDB API (batch and chunked runs start the same way)."""
    register_nicknames(con)
    step("normalising records")
    con.execute(f"CREATE OR REPLACE TABLE dedup_features AS {features_sql(source)}")
    records = int(con.execute("SELECT count(*) FROM dedup_features").fetchall()[0][0])
    db_api = DuckDBAPI(con)
    return records, db_api, db_api.register("dedup_features")


def score_and_cluster(
    con: duckdb.DuckDBPyConnection,
    db_api: DuckDBAPI,
    predictions: Any,
    records: int,
    model: dict[str, Any],
    threshold: float,
    review_band: float,
    step: Step,
    *,
    second_stage: bool = True,
) -> BatchResult:
    """After Splink's predictions (a SplinkDataFrame over dedup_features, dropped here): the
    household second stage, the pairs in the review band (dedup_pairs), the clusters at
    `threshold` (dedup_clusters) and their counts. Shared by `run_batch` and the chunked run."""
    step("separating household members")
    scored = second_stage_sql(predictions.physical_name, enabled=second_stage)
    con.execute(f"CREATE OR REPLACE TABLE dedup_scored AS {scored}")
    predictions.drop_table_from_database_and_remove_from_cache()
    con.execute(
        "CREATE OR REPLACE TABLE dedup_pairs AS SELECT * FROM dedup_scored WHERE match_probability >= ?",
        [review_band],
    )
    separated = int(con.execute("SELECT count(*) FROM dedup_scored WHERE household_member").fetchall()[0][0])
    step("clustering")
    clusters = cluster_pairwise_predictions_at_threshold(
        "dedup_features", "dedup_pairs", db_api, "unique_id", threshold_match_probability=threshold
    )
    con.execute(
        "CREATE OR REPLACE TABLE dedup_clusters AS "
        f"SELECT unique_id AS record_id, cluster_id FROM {clusters.physical_name}"
    )
    clusters.drop_table_from_database_and_remove_from_cache()
    counts = con.execute(
        "SELECT count(DISTINCT cluster_id), count(*) FILTER (WHERE n > 1),"
        " count(DISTINCT cluster_id) FILTER (WHERE n > 1) FROM "
        "(SELECT cluster_id, count(*) OVER (PARTITION BY cluster_id) AS n FROM dedup_clusters)"
    ).fetchall()[0]
    pairs = int(con.execute("SELECT count(*) FROM dedup_pairs").fetchall()[0][0])
    return BatchResult(
        records=records,
        pairs=pairs,
        clusters=int(counts[0]),
        records_in_clusters=int(counts[1]),
        duplicate_clusters=int(counts[2]),
        household_members_separated=separated,
        threshold=threshold,
        review_band=review_band,
        model=model,
    )
