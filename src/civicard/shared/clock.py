"""Time as a dependency: services take a Clock so tests can fix the date."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Clock:
    """Wall clock by default; `Clock.fixed(...)` for tests and reproducible demos."""

    now_fn: Callable[[], datetime] = field(default=_utc_now)

    def now(self) -> datetime:
        return self.now_fn()

    def today(self) -> date:
        return self.now().date()

    @classmethod
    def fixed(cls, at: datetime) -> Clock:
        return cls(lambda: at)


def as_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything civicard stores is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
