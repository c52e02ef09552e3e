"""The soak bench (bench/soak.py) in quick mode: ~15 s of steady mixed load — enrollments, signed
redemptions, resident portal pages — on one production-mode server and PostgreSQL. No request
fails, every kind of request is made, memory is sampled throughout, and the stored access log,
written by all of it, verifies against its signed checkpoints at the end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from bench.soak import KINDS, Memory, SoakPlan, classify, run_soak
from tests.conftest import fresh_postgres_schema

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
SECONDS = 15


def test_a_short_soak_answers_every_request_and_leaves_a_log_that_verifies(tmp_path: Path) -> None:
    for database in fresh_postgres_schema():
        result = run_soak(database.url, tmp_path, replace(SoakPlan.quick(), seconds=SECONDS))

    assert result.tally.error_count == 0, result.tally.error_samples
    made = {kind: len(result.tally.latencies[kind]) for kind in KINDS}
    assert all(count > 0 for count in made.values()), made
    assert made["redemption"] >= SECONDS  # paced at 4/s: a stalled stream would show here
    assert (result.log.ok, result.log.code, result.log.pending) == (True, "verified", 0), result.log.message
    assert result.log.entries > 0 and result.checkpoints_signed > 0
    assert len(result.memory.samples) >= SECONDS // 2 and all(kib > 0 for _, kib in result.memory.samples)


def test_memory_counts_as_flat_only_while_the_end_stays_within_ten_percent_of_after_warm_up() -> None:
    warm = [(float(at), 100_000 + 1_000 * at) for at in range(20)]  # +1 %/s while warming up
    steady = Memory([*warm, *[(float(at), 120_000) for at in range(20, 101)]], 100.0)
    growing = Memory([*warm, *[(float(at), 120_000 + 300 * (at - 20)) for at in range(20, 101)]], 100.0)
    assert (steady.flat, round(steady.growth, 3), steady.slope_mib_per_min) == (True, 0.0, 0.0)
    assert not growing.flat and growing.growth > 0.1 and growing.slope_mib_per_min > 0


@pytest.mark.parametrize(
    ("kind", "status", "code", "verdict"),
    [
        ("redemption", 201, None, "ok"),
        ("redemption", 409, "insufficient_remaining", "refused"),
        ("enrollment", 409, "possible_duplicates", "refused"),
        ("household", 409, "possible_duplicates", "error"),  # not a refusal a household can get
        ("redemption", 401, "signature_invalid", "error"),
        ("me_data", 303, None, "error"),  # sent back to sign in: the session was lost
        ("redemption", 500, "internal_error", "error"),
    ],
)
def test_only_the_expected_refusals_are_not_errors(kind: str, status: int, code: str | None, verdict: str) -> None:
    body = {"status": status, "code": code} if code else None
    response = httpx.Response(status, json=body, headers={"content-type": "application/problem+json"} if code else {})
    assert classify(kind, response)[0] == verdict
