"""Shared by the parity properties: hypothesis settings, periods, and comparing outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from civicard.programs.decisions import HouseholdFacts, decide
from civicard.programs.engines import Outcome
from civicard.programs.rulepack import RulePack

PERIODS = st.builds(date, st.integers(2026, 2027), st.integers(1, 12), st.just(1))
"""A month of 2026 or 2027, as its first day."""

# Derandomised: CI runs the same examples every time, and a failure can be reproduced locally.
_COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
LOCAL_ENGINES = settings(max_examples=60, **_COMMON)
ON_POSTGRES = settings(max_examples=15, **_COMMON)


def python_outcomes(
    packs: Sequence[RulePack], period: date, batch: Sequence[HouseholdFacts]
) -> list[dict[str, Outcome]]:
    """What the Python evaluator decides, shaped like run_on_engine's result."""
    return [{p.program: Outcome.of(decide(p, facts, period)) for p in packs} for facts in batch]


def assert_same_outcomes(
    engine: str,
    got: list[dict[str, Outcome]],
    expected: list[dict[str, Outcome]],
    batch: Sequence[HouseholdFacts],
    context: str = "",
) -> None:
    """Equal, or a message naming the first household and program that differ."""
    assert len(got) == len(expected), f"{engine} returned {len(got)} households for {len(expected)}"
    for index, (theirs, ours) in enumerate(zip(got, expected, strict=True)):
        for program in ours:
            assert theirs[program] == ours[program], (
                f"{engine} differs from Python on household {index} under {program}{context}\n"
                f"  {engine}: {theirs[program]}\n  python: {ours[program]}\n"
                f"  household: {dict(batch[index].household)}\n  members: {[dict(m) for m in batch[index].members]}"
            )
