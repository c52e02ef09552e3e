"""Screening an enrollment for duplicates, and keeping the registry's match index current."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from civicard.dedup.matching import NEW_RECORD_ID, SHOW_FLOOR, Matcher, match_keys
from civicard.dedup.model import BLOCKING_KEYS, TF_COLUMNS
from civicard.dedup.pairs import ScoredPair
from civicard.dedup.records import features_sql, register_nicknames
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext, AccessLog, Subject, disclose

MAX_CANDIDATES = 500
"""Candidates scored per enrollment at most (the blocking keys keep real blocks far smaller)."""


class MatchIndex(Protocol):
    def candidates(self, keys: Sequence[str], limit: int) -> list[dict[str, Any]]: ...
    def frequencies(self, values: dict[str, list[str]]) -> dict[str, dict[str, float]]: ...
    def replace_keys(self, person_id: str, keys: Sequence[str]) -> None: ...
    def replace_all(self, keys: Sequence[tuple[str, str]], frequencies: Sequence[tuple[str, str, float]]) -> None: ...


class ScreeningUnitOfWork(Protocol):
    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def access_log(self) -> AccessLog: ...
    @property
    def match_index(self) -> MatchIndex: ...
    def commit(self) -> None: ...


@dataclass(frozen=True)
class Screening:
    """What the registry holds that looks like the new record: candidates at or above SHOW_FLOOR,
    best first, and the new record's blocking keys (to store once it is saved)."""

    pairs: tuple[ScoredPair, ...]
    records: dict[str, dict[str, Any]]
    keys: tuple[str, ...]

    @property
    def best(self) -> float:
        return self.pairs[0].match_probability if self.pairs else 0.0


def screen(uow: ScreeningUnitOfWork, matcher: Matcher, record: dict[str, Any]) -> Screening:
    """Score `record` (dedup INPUT_COLUMNS + household_id) against the registry. Reads candidates
    but neither logs nor commits: callers that show them use `check_enrollment`."""
    features = matcher.features([{**record, "record_id": NEW_RECORD_ID}])[0]
    keys = match_keys(features)
    candidates = uow.match_index.candidates(keys, MAX_CANDIDATES)
    if not candidates:
        return Screening((), {}, tuple(keys))
    candidate_features = matcher.features(candidates)
    wanted: dict[str, list[str]] = {c: [] for c in TF_COLUMNS}
    for row in [features, *candidate_features]:
        for column in TF_COLUMNS:
            if row.get(column):
                wanted[column].append(row[column])
    frequencies = uow.match_index.frequencies(wanted)
    scored = matcher.score_features(features, candidate_features, frequencies)
    pairs = [p for p in scored if p.match_probability >= SHOW_FLOOR]
    shown = {p.id_r for p in pairs}
    return Screening(tuple(pairs), {c["record_id"]: c for c in candidates if c["record_id"] in shown}, tuple(keys))


def check_enrollment(uow: ScreeningUnitOfWork, matcher: Matcher, record: dict[str, Any]) -> Screening:
    """Screen a record a registrar is about to enroll and show them the candidates: each shown
    person's identity read is logged (purpose of the session, "duplicate_check") and committed."""
    screening = screen(uow, matcher, record)
    if screening.pairs:
        subjects = [Subject.person(p.id_r) for p in screening.pairs]
        disclose(uow.access_log, uow.context, subjects, ["identity"], "duplicate_check", uow.clock.now())
    uow.commit()
    return screening


def rebuild_index(
    uow: ScreeningUnitOfWork,
    con: duckdb.DuckDBPyConnection,
    records: pa.Table,
    step: Callable[[str], None] = lambda _: None,
) -> tuple[int, int]:
    """Recompute every person's match keys and the name-frequency snapshot from `records`
    (registry records as read by the caller, under its logged context); commits once.
    Returns (keys written, names counted)."""
    register_nicknames(con)
    step("normalising")
    con.register("dedup_index_input", records)
    con.execute(f"CREATE OR REPLACE TABLE dedup_index_features AS {features_sql('dedup_index_input')}")
    con.unregister("dedup_index_input")
    step("computing keys")
    keys: list[tuple[str, str]] = []
    for number, columns in enumerate(BLOCKING_KEYS):
        not_null = " AND ".join(f"{c} IS NOT NULL AND {c} <> ''" for c in columns)
        joined = " || '|' || ".join(columns)
        rows = con.execute(
            f"SELECT unique_id, '{number}:' || {joined} FROM dedup_index_features WHERE {not_null}"
        ).fetchall()
        keys.extend((str(a), str(b)) for a, b in rows)
    frequencies: list[tuple[str, str, float]] = []
    for column in TF_COLUMNS:
        rows = con.execute(
            f"SELECT {column}, count(*) / (SELECT count({column}) FROM dedup_index_features) "
            f"FROM dedup_index_features WHERE {column} IS NOT NULL GROUP BY {column}"
        ).fetchall()
        frequencies.extend((column, str(v), float(f)) for v, f in rows)
    step("writing")
    uow.match_index.replace_all(keys, frequencies)
    uow.commit()
    return len(keys), len(frequencies)
