"""Matching one new enrollment against registry candidates, with reasons a clerk can read.

The registry is first cut to candidates sharing a blocking key (`match_keys`, looked up by
index in SQL); the few candidates are then scored by Splink's own compiled SQL for the saved
model (`compare_records`, cached after the first call), in an in-process DuckDB — so the
probabilities are Splink's, without its ~60 ms per-call set-up.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
from splink import DuckDBAPI
from splink.internals.realtime import compare_records

from civicard.dedup.batch import DOCUMENT_AGREES, GIVEN_NAMES_DIFFER, HOUSEHOLD_MEMBER_CAP, SAME_HOME_LEVELS
from civicard.dedup.model import BLOCKING_KEYS, TF_COLUMNS
from civicard.dedup.pairs import Outcome, Reason, ScoredPair
from civicard.dedup.records import features_of

SHOW_FLOOR = 0.1
"""Candidates from this probability up are shown to the registrar (below the review band their
"new person" stands; from the review band up the enrollment is held for a reviewer)."""

NEW_RECORD_ID = "__new__"


@dataclass(frozen=True)
class Level:
    field: str
    label: str
    outcome: Outcome
    weight: float


def match_keys(features: dict[str, Any]) -> list[str]:
    """The blocking keys of one normalised record, as strings stored beside each person
    ("2:perez|1980-03-05"); a key with an empty part is left out, as Splink's blocking does."""
    keys = []
    for number, columns in enumerate(BLOCKING_KEYS):
        values = [features.get(c) for c in columns]
        if all(v not in (None, "") for v in values):
            keys.append(f"{number}:" + "|".join(str(v) for v in values))
    return keys


class Matcher:
    """Scores records with a trained model. Owns a private in-memory DuckDB connection."""

    def __init__(self, model: dict[str, Any], con: duckdb.DuckDBPyConnection) -> None:
        self.model = model
        self._con = con
        self._db_api = DuckDBAPI(con)
        self._levels = ModelLevels(model).levels
        self._cache_key = f"civicard-enrollment-{id(self)}"
        self._lock = threading.Lock()  # one DuckDB connection, requests arrive on many threads
        self._nicknames_ready = False

    def _drop_scratch_tables(self) -> None:
        """compare_records leaves its input and output tables behind on every call."""
        cur = self._con.cursor()
        try:
            names = cur.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '\\_\\_splink\\_\\_%' ESCAPE '\\'"
            ).fetchall()
            for (name,) in names:
                cur.execute(f'DROP TABLE IF EXISTS "{name}"')
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def warm_up(self) -> None:
        """Score one made-up pair so Splink compiles and caches the model's SQL now."""
        probe = {"record_id": "warm-up", "first_name": "ana", "surname": "diaz", "date_of_birth": "2000-01-01"}
        self.score({**probe, "record_id": NEW_RECORD_ID}, [probe], {})

    def features(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Normalised features of records in the dedup input shape (see records.py)."""
        with self._lock:
            ready, self._nicknames_ready = self._nicknames_ready, True
            return features_of(self._con, list(records), nicknames_ready=ready)

    def score(
        self,
        new: dict[str, Any],
        candidates: Sequence[dict[str, Any]],
        frequencies: dict[str, dict[str, float]],
    ) -> list[ScoredPair]:
        """Score `new` (INPUT_COLUMNS + household_id) against each candidate (same shape, with
        record_id = person id); `frequencies[column][value]` are registry term frequencies.
        Highest probability first."""
        if not candidates:
            return []
        features = self.features([{**new, "record_id": NEW_RECORD_ID}, *candidates])
        mine = next(f for f in features if f["unique_id"] == NEW_RECORD_ID)  # the SQL keeps no row order
        return self.score_features(mine, [f for f in features if f["unique_id"] != NEW_RECORD_ID], frequencies)

    def score_features(
        self,
        new: dict[str, Any],
        candidates: Sequence[dict[str, Any]],
        frequencies: dict[str, dict[str, float]],
    ) -> list[ScoredPair]:
        """`score` for records already normalised by `features` (the new one with unique_id
        NEW_RECORD_ID)."""
        if not candidates:
            return []
        left = [_with_tf(new, frequencies)]
        right = [_with_tf(f, frequencies) for f in candidates]
        with self._lock:
            result = compare_records(left, right, self.model, self._db_api, sql_cache_key=self._cache_key)
            scored = [self._pair(row) for row in result.as_record_list()]
            self._drop_scratch_tables()
        return sorted(scored, key=lambda p: (-p.match_probability, p.id_r))

    def _pair(self, row: dict[str, Any]) -> ScoredPair:
        reasons = []
        for name, levels in self._levels.items():
            gamma = int(row[f"gamma_{name}"])
            level = levels[gamma]
            weight = float(row.get(f"mw_{name}") or 0.0) + float(row.get(f"mw_tf_adj_{name}") or 0.0)
            reasons.append(Reason(name, level.outcome, level.label, weight))
        probability = float(row["match_probability"])
        same_home = row.get("household_id_l") is not None and row.get("household_id_l") == row.get("household_id_r")
        gammas = {name: int(row[f"gamma_{name}"]) for name in self._levels}
        if is_household_member(gammas, same_home):
            probability = min(probability, HOUSEHOLD_MEMBER_CAP)
            reasons.append(
                Reason("household", "disagree", "members of one household with different names or births", 0)
            )
        other = row["unique_id_r"] if row["unique_id_l"] == NEW_RECORD_ID else row["unique_id_l"]
        return ScoredPair(NEW_RECORD_ID, str(other), probability, tuple(reasons))


def is_household_member(gammas: dict[str, int], same_household: bool) -> bool:
    """The second stage (batch.second_stage_sql) for one pair."""
    same_home = same_household or gammas["household"] in SAME_HOME_LEVELS
    if gammas["national_id"] == DOCUMENT_AGREES:
        return False
    return same_home and (gammas["first_name"] in GIVEN_NAMES_DIFFER or gammas["dob"] == 0)


def _with_tf(features: dict[str, Any], frequencies: dict[str, dict[str, float]]) -> dict[str, Any]:
    extra = {}
    for column in TF_COLUMNS:
        value = features.get(column)
        table = frequencies.get(column, {})
        extra[f"tf_{column}"] = None if value is None else table.get(value, _rarest(table))
    return features | extra


def _rarest(table: dict[str, float]) -> float:
    """A name not in the frequency snapshot is at least as rare as the rarest one in it."""
    return min(table.values()) if table else 1e-6


class ModelLevels:
    """Comparison name → gamma value → level (label, outcome, weight in bits), from the model JSON."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.levels: dict[str, dict[int, Level]] = {}
        for comparison in model["comparisons"]:
            name = comparison["output_column_name"]
            ranked = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
            table = {-1: Level(name, "not recorded on one side", "missing", 0.0)}
            for rank, level in enumerate(ranked):
                gamma = len(ranked) - 1 - rank
                outcome: Outcome = "agree" if rank == 0 else "disagree" if gamma == 0 else "close"
                label = str(level.get("label_for_charts") or level["sql_condition"])
                table[gamma] = Level(name, label, outcome, _bits(level))
            self.levels[name] = table

    def reasons(self, gammas: dict[str, int]) -> tuple[Reason, ...]:
        """Reasons for a pair known only by its comparison vector (bulk runs); weights are the
        levels' log2(m/u), without term-frequency adjustment."""
        out = []
        for name, table in self.levels.items():
            level = table[int(gammas[name])]
            out.append(Reason(name, level.outcome, level.label, level.weight))
        return tuple(out)


def _bits(level: dict[str, Any]) -> float:
    m, u = level.get("m_probability"), level.get("u_probability")
    return math.log2(m / u) if m and u else 0.0
