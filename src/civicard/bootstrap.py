"""The composition root: settings → database engine, keys, clock and the unit-of-work factory.

Nothing in civicard connects, reads keys or parses settings at import time; `bootstrap` does it
once and hands the result to the API, the pages and the CLI.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import duckdb
from sqlalchemy import Engine

from civicard.adapters.db.auth_store import AuthStore
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.key_store import KeyCustody, RotatingIntegrator
from civicard.adapters.db.log_store import Integrator
from civicard.adapters.db.resident_sign_in import CardPinSignIn
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.dedup.matching import Matcher
from civicard.dedup.model import saved_model
from civicard.identity.cards import CardKeys
from civicard.settings import Mode, Settings, demo_root_key
from civicard.shared.clock import Clock
from civicard.shared.keys import RootKey, parse_root_key
from civicard.transparency.access import AccessContext
from civicard.transparency.checkpoints import NoteSigner

log = logging.getLogger("civicard")


@dataclass
class Container:
    settings: Settings
    engine: Engine
    clock: Clock
    root_key: RootKey
    demo_key_created: bool = False

    def uow(self, context: AccessContext) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, context, self.clock)

    @cached_property
    def auth(self) -> AuthStore:
        """Staff accounts, sessions and terminals; one per process (it caches a dummy hash)."""
        return AuthStore(self.engine, self.clock, self.root_key)

    @cached_property
    def key_custody(self) -> KeyCustody:
        """Which key generations sign and verify (table key_generations), re-read every few seconds;
        its first use checks the root key against the fingerprint the database holds."""
        return KeyCustody(self.engine, self.root_key, self.clock)

    @property
    def card_keys(self) -> CardKeys:
        """Card issuer keys and PIN pepper, derived from the root key for the recorded generations."""
        return self.key_custody.card_keys()

    @property
    def resident_sign_in(self) -> CardPinSignIn:  # cheap; follows the card keys across a rotation
        return CardPinSignIn(self.engine, self.clock, self.card_keys, self.auth)

    @property
    def log_signer(self) -> NoteSigner:
        """Signs log checkpoints with the current generation (Ed25519 seeded from the root key, never
        stored); its verifier also accepts the checkpoints of earlier generations."""
        return self.key_custody.log_signer()

    @cached_property
    def integrator(self) -> Integrator:
        """Folds access-log entries into the Merkle tree and signs checkpoints (one per process)."""
        return RotatingIntegrator(self.engine, self.key_custody, self.clock)

    @cached_property
    def matcher(self) -> Matcher:
        """The saved duplicate model, scoring enrollments in a private in-memory DuckDB."""
        return Matcher(saved_model(), duckdb.connect())

    def close(self) -> None:
        if "matcher" in self.__dict__:  # built on first use (cached_property)
            self.matcher.close()
        self.engine.dispose()


def bootstrap(settings: Settings | None = None, clock: Clock | None = None) -> Container:
    settings = settings or Settings()
    created = False
    if settings.root_key is not None:
        key_text = settings.root_key.get_secret_value()
    elif settings.mode is Mode.DEMO:
        key_text, created = demo_root_key(settings.data_dir)
        log.warning(
            "DEMO MODE: using the demo root key in %s — never use demo mode for real people.",
            settings.data_dir / "demo-root.key",
        )
    else:  # Settings already refuses this; kept so a bypassed validator still fails closed
        raise RuntimeError("No root key in production.")
    engine = make_engine(settings.effective_database_url)
    return Container(
        settings=settings,
        engine=engine,
        clock=clock or Clock(),
        root_key=RootKey(parse_root_key(key_text)),
        demo_key_created=created,
    )
