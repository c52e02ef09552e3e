"""Duplicate detection over a national registry: the saved model, candidate pairs scored in chunks.

`run_batch` (batch.py) scores every blocked pair in one join; at tens of millions of records that
join's intermediate state is what exhausts memory. Here Splink blocks and scores one slice of the
left-hand records at a time (`predict(num_chunks_left=n)`) — the same pairs and probabilities,
bounded working set — and the household second stage and clustering run as in batch.py.
`candidate_pairs` counts what the blocking rules generate, to check the count grows linearly.
"""

from __future__ import annotations

from typing import Any

import duckdb
from splink import DuckDBAPI, Linker
from splink.blocking_analysis import count_comparisons_from_blocking_rules

from civicard.dedup.batch import HOUSEHOLD_MEMBER_CAP, BatchResult, Step, normalised, score_and_cluster
from civicard.dedup.model import OPERATING_THRESHOLD, REVIEW_BAND, TF_COLUMNS

RECORDS_PER_CHUNK = 1_000_000
"""Left-hand records per prediction chunk when the caller does not say."""


def chunks_for(records: int) -> int:
    return max(1, -(-records // RECORDS_PER_CHUNK))


def run_batch_in_chunks(
    con: duckdb.DuckDBPyConnection,
    source: str,
    *,
    model: dict[str, Any],
    chunks: int | None = None,
    threshold: float = OPERATING_THRESHOLD,
    review_band: float = REVIEW_BAND,
    step: Step = lambda _: None,
) -> BatchResult:
    """What `run_batch(con, source, model=model)` returns, with prediction split into `chunks`
    slices of the records (default: one per RECORDS_PER_CHUNK). The caller sets the connection's
    memory_limit and temp_directory; DuckDB spills there rather than fail."""
    records, db_api, features = normalised(con, source, step)
    linker = Linker(features, {**model, "retain_intermediate_calculation_columns": False})
    step("counting how common each name is")
    for column in TF_COLUMNS:
        linker.table_management.compute_tf_table(column)
    step("scoring candidate pairs")
    predictions = linker.inference.predict(
        threshold_match_probability=min(review_band, HOUSEHOLD_MEMBER_CAP),
        num_chunks_left=chunks or chunks_for(records),
        num_chunks_right=1,
        warning_mode="never",
    )
    return score_and_cluster(con, db_api, predictions, records, model, threshold, review_band, step)


def candidate_pairs(con: duckdb.DuckDBPyConnection, table: str, model: dict[str, Any], sample: float = 1.0) -> int:
    """Pairs the model's blocking rules generate over `table` (FEATURE_COLUMNS), after removing
    pairs an earlier rule already produced; with `sample` < 1 Splink estimates it from a sample of
    records on each side of the join (exact at 1.0)."""
    db_api = DuckDBAPI(con)
    counted = count_comparisons_from_blocking_rules(
        db_api.register(table),
        blocking_rules=model["blocking_rules_to_generate_predictions"],
        link_type="dedupe_only",
        record_sample_proportion=sample,
    )
    return int(counted[-1]["cumulative_comparison_count"]) if counted else 0
