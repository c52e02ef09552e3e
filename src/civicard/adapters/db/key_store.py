"""Key generations in the database (table key_generations, migration 0012_key_custody) and the
per-process view of them that signs and verifies (governance/key_custody.py)."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from civicard.adapters.db import tables as t
from civicard.adapters.db.log_store import Integrator
from civicard.governance.key_custody import (
    IssuerUsage,
    KeyGeneration,
    KeySchedule,
    card_keys,
    check_root_key,
    log_signer,
    root_generation,
)
from civicard.identity.cards import CardKeys
from civicard.shared.clock import Clock, as_utc
from civicard.shared.errors import Conflict
from civicard.shared.keys import RootKey
from civicard.transparency.checkpoints import NoteSigner

_K = t.key_generations
_COLUMNS = tuple(c.name for c in _K.columns)
_CHANGES = ("state", "retired_at", "reason", "approval_id")
RELOAD_SECONDS = 5.0  # how long a process signs with generations it read, at most, after a rotation elsewhere


class SqlKeyGenerations:
    """key_generations holds no personal data; `issuer_usage` counts cards, so it runs in a unit of work."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def all(self, for_update: bool = False) -> list[KeyGeneration]:
        query = sa.select(_K).order_by(_K.c.purpose, _K.c.generation)
        return [_generation(r) for r in self.conn.execute(query.with_for_update() if for_update else query)]

    def add(self, generation: KeyGeneration) -> None:
        try:
            self.conn.execute(sa.insert(_K), {c: getattr(generation, c) for c in _COLUMNS})
        except IntegrityError:
            raise Conflict("key_generation_exists", "This key generation was recorded at the same moment.") from None

    def save(self, generation: KeyGeneration) -> None:
        c = _K.c
        self.conn.execute(
            sa.update(_K)
            .where(c.purpose == generation.purpose, c.generation == generation.generation)
            .values({f: getattr(generation, f) for f in _CHANGES})
        )

    def issuer_usage(self, now: datetime) -> dict[int, IssuerUsage]:
        c = t.cards.c
        query = (
            sa.select(c.kid, sa.func.count(), sa.func.max(c.expires_at))
            .where(c.status != "revoked", c.expires_at > now)
            .group_by(c.kid)
        )
        return {int(kid): IssuerUsage(int(n), as_utc(last)) for kid, n, last in self.conn.execute(query)}


def _generation(row: sa.Row[Any]) -> KeyGeneration:
    data = {c: getattr(row, c) for c in _COLUMNS}
    data |= {c: as_utc(data[c]) for c in ("created_at", "retired_at") if data[c] is not None}
    return KeyGeneration(**data)


def record_root_fingerprint(engine: sa.Engine, root_key: RootKey, clock: Clock, by: str) -> KeySchedule:
    """Check `root_key` against the stored fingerprint, storing it if there is none yet (at
    `civicard db upgrade`, the first start with a key, and `civicard keys status`)."""
    with engine.connect() as conn:
        schedule = KeySchedule(tuple(SqlKeyGenerations(conn).all()))
    check_root_key(root_key, schedule)
    if schedule.root_fingerprint is not None:
        return schedule
    try:
        with engine.begin() as conn:
            SqlKeyGenerations(conn).add(root_generation(root_key, clock.now(), by))
    except Conflict:  # another process stored it first: compare with theirs
        pass
    with engine.connect() as conn:
        schedule = KeySchedule(tuple(SqlKeyGenerations(conn).all()))
    check_root_key(root_key, schedule)
    return schedule


class KeyCustody:
    """This process's keys as the database's generations say, re-read at most every few seconds.

    The redemption path asks for the card keys on every request; a rotation approved in another
    process reaches this one within `reload_seconds` without a restart (and at once in the process
    that approved it, through `reload`). Every load checks the root key against the stored
    fingerprint (`root_key_mismatch`); reading never writes, so a restore's empty target stays empty.
    """

    def __init__(
        self, engine: sa.Engine, root_key: RootKey, clock: Clock, reload_seconds: float = RELOAD_SECONDS
    ) -> None:
        self.engine, self.root_key, self.clock, self.reload_seconds = engine, root_key, clock, reload_seconds
        self._lock = threading.Lock()
        self._loaded_at = -float("inf")
        self._keys: tuple[KeySchedule, CardKeys, NoteSigner] | None = None

    def _current(self) -> tuple[KeySchedule, CardKeys, NoteSigner]:
        with self._lock:
            if self._keys is not None and time.monotonic() - self._loaded_at < self.reload_seconds:
                return self._keys
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table(_K.name):  # not migrated yet (a restore's target): today's keys
                    return _derived(self.root_key, KeySchedule())
                schedule = KeySchedule(tuple(SqlKeyGenerations(conn).all()))
            self._loaded_at = time.monotonic()
            if self._keys is None or schedule != self._keys[0]:  # else keep the derived keys and parsed keyring
                self._keys = _derived(self.root_key, schedule)
            return self._keys

    def schedule(self) -> KeySchedule:
        return self._current()[0]

    def card_keys(self) -> CardKeys:
        return self._current()[1]

    def log_signer(self) -> NoteSigner:
        return self._current()[2]

    def reload(self) -> None:
        """Read the generations at the next use (after a rotation this process approved)."""
        with self._lock:
            self._loaded_at = -float("inf")


def _derived(root_key: RootKey, schedule: KeySchedule) -> tuple[KeySchedule, CardKeys, NoteSigner]:
    check_root_key(root_key, schedule)
    return schedule, card_keys(root_key, schedule), log_signer(root_key, schedule)


class RotatingIntegrator(Integrator):
    """The log integrator, signing each poll's checkpoint with the current checkpoint generation."""

    def __init__(self, engine: sa.Engine, custody: KeyCustody, clock: Clock) -> None:
        super().__init__(engine, custody.log_signer(), clock)
        self.custody = custody

    def run_once(self, full: bool = False) -> int:
        self.signer = self.custody.log_signer()
        return super().run_once(full)
