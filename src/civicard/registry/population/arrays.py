"""The array types and numpy/pyarrow helpers every part of the generator builds columns with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Dates = npt.NDArray[np.datetime64]
Facts = dict[str, npt.NDArray[Any]]

DAYS_A_YEAR = 365.2425
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def probabilities(weights: Any) -> Floats:
    p = np.fromiter(weights, dtype=np.float64)
    return np.asarray(p / p.sum(), dtype=np.float64)


def choose(u: Floats, shares: Sequence[float]) -> Ints:
    """Which of len(shares) kinds each uniform draw u falls in."""
    return np.searchsorted(np.cumsum(shares), u * sum(shares), side="right").astype(np.int64)


def money(rng: np.random.Generator, median: float | Floats, sigma: float | Floats, n: int) -> Ints:
    """Skewed amounts in minor units, rounded to whole currency units."""
    return np.round(rng.lognormal(np.log(median), sigma, n) / 100).astype(np.int64) * 100


def mobiles(rng: np.random.Generator, n: int) -> Ints:
    return 3_000_000_000 + rng.integers(0, 1_000_000_000, n)


def hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """Random 128-bit ids as 32 lowercase hex characters, built without a Python loop."""
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16)
    text = np.empty((n, 32), dtype=np.uint8)
    text[:, 0::2] = _HEX[raw >> 4]
    text[:, 1::2] = _HEX[raw & 15]
    offsets = np.arange(0, 32 * n + 1, 32, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def pick(pool: pa.Array | Sequence[str], index: npt.NDArray[Any]) -> pa.Array:
    """pool[index] as a string array; a negative index gives null."""
    pool = pool if isinstance(pool, pa.Array) else pa.array(list(pool), pa.string())
    index = np.asarray(index, dtype=np.int64)
    return pool.take(pa.array(index, mask=index < 0))


def as_text(numbers: npt.NDArray[Any]) -> pa.Array:
    return pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string())


def join_text(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "", null_handling="skip")
