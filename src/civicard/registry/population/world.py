"""The state one generation run shares: the seeded Generator, codes, names, date, issued numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from civicard.registry.population.arrays import DAYS_A_YEAR, Bools, Dates, Ints
from civicard.registry.population.codes import Codes
from civicard.registry.population.names import Pools


class Issued:
    """National document numbers already issued, so every true identity gets its own."""

    def __init__(self) -> None:
        self._sorted: Ints = np.empty(0, dtype=np.int64)

    def taken(self, numbers: Ints) -> Bools:
        if self._sorted.size == 0:
            return np.zeros(numbers.size, dtype=bool)
        at = np.minimum(np.searchsorted(self._sorted, numbers), self._sorted.size - 1)
        return np.asarray(self._sorted[at] == numbers)

    def add(self, numbers: Ints) -> None:
        self._sorted = np.sort(np.concatenate([self._sorted, numbers]))

    def issue(self, rng: np.random.Generator, digits: Ints) -> Ints:
        low, high = 10 ** (digits - 1), 10**digits
        numbers = rng.integers(low, high)
        while True:
            order = np.argsort(numbers, kind="stable")
            repeated = np.zeros(numbers.size, dtype=bool)
            repeated[order[1:]] = numbers[order[1:]] == numbers[order[:-1]]
            clash = repeated | self.taken(numbers)
            if not clash.any():
                break
            numbers[clash] = rng.integers(low[clash], high[clash])
        self.add(numbers)
        return numbers


@dataclass(frozen=True)
class World:
    """Everything random comes from rng, so one seed gives byte-identical files."""

    rng: np.random.Generator
    codes: Codes
    pools: Pools
    today: np.datetime64
    issued: Issued


def start_dates(world: World, birth: Dates, min_age: int, max_days: int) -> Dates:
    """A start date in the last max_days, never before the person was min_age years old."""
    earliest = birth + np.timedelta64(int(min_age * DAYS_A_YEAR), "D")
    start = world.today - world.rng.integers(0, max_days, birth.size).astype("timedelta64[D]")
    return np.minimum(np.maximum(start, earliest), world.today)
