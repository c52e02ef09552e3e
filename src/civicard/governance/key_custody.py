"""Key custody: which generation of each derived signing key signs, which still verify, and rotation.

Every key is derived from the root key (shared/keys.py); a rotation changes the derivation label,
never a stored secret: issuer kid n signs cards with `identity:issuer:<n>` (identity/credentials.py),
checkpoint generation g signs the log with `transparency:checkpoint-signing[:<g>]`
(transparency/checkpoints.py). The table key_generations records the generations — never a key —
so every process derives the same keys and agrees which one signs. With no rows the keys are the
ones civicard always used (issuer kid 1, checkpoint generation 0), so older databases keep working.

A rotation is a four-eyes action (kind `key_rotation`, governance/kinds.py): an oversight account
asks, a second one approves, and `rotate` runs in the approver's transaction:

- issuer: kid n + 1 signs new cards; kid n stays in the published keyring until no card it signed
  is in circulation, then `drop_unused_issuer_keys` drops it. Pseudonyms are HMACs under sector
  keys (`pseudonym:<sector>`) that no rotation touches, so they stay stable.
- checkpoint: generation g + 1 signs new checkpoints; the log's verifier keeps every earlier
  generation, so old checkpoints verify by their key ID (and `audit verify` recomputes every root).
- compromised: the old generation is marked `compromised`. An issuer kid leaves the keyring at once
  and every card it signed that is not revoked is revoked (`key_compromised`) with a new status list
  signed by the new kid; the holders get new cards at the desk.

Sector keys are not rotated: a new sector key would change every pseudonym of that sector.
Re-keying the root key itself is the one event that changes them all.

The root key's fingerprint (`RootKey.fingerprint`) is stored once (`civicard keys init`, or the
first time a process loads the keys) so a process started with another root key is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol

from civicard.governance.approvals import ApprovalRequest, ApprovalUnitOfWork, Payload
from civicard.identity.cards import ISSUER_KID, CardKeys, CardUnitOfWork, revoke_cards_signed_by
from civicard.identity.credentials import IssuerKey
from civicard.shared.errors import Conflict, InvalidInput, Unavailable
from civicard.shared.keys import RootKey
from civicard.transparency.access import record_change
from civicard.transparency.checkpoints import DEFAULT_ORIGIN, NoteSigner

KeyPurpose = Literal["issuer", "checkpoint"]
PURPOSES: tuple[KeyPurpose, ...] = ("issuer", "checkpoint")
ROOT = "root"
KeyState = Literal["current", "retired", "dropped", "compromised"]
DEFAULT_GENERATION: dict[str, int] = {"issuer": ISSUER_KID, "checkpoint": 0}
MAX_ISSUER_KID = 255  # the kid is one byte in the card token
YES, NO = "yes", "no"


@dataclass(frozen=True)
class KeyGeneration:
    """One generation of a key (or the `root` row holding the root key's fingerprint)."""

    purpose: str
    generation: int
    state: str
    fingerprint: str
    created_at: datetime
    created_by: str
    retired_at: datetime | None = None
    reason: str | None = None
    approval_id: str | None = None


@dataclass(frozen=True)
class KeySchedule:
    """The recorded generations, read as: which one signs, which verify."""

    generations: tuple[KeyGeneration, ...] = ()

    def of(self, purpose: str) -> list[KeyGeneration]:
        return sorted((g for g in self.generations if g.purpose == purpose), key=lambda g: g.generation)

    def current(self, purpose: KeyPurpose) -> int:
        found = [g.generation for g in self.of(purpose) if g.state == "current"]
        return found[0] if found else DEFAULT_GENERATION[purpose]

    def published_kids(self) -> tuple[int, ...]:
        """Issuer kids a card in circulation may carry: current and retired, never dropped or compromised."""
        kids = [g.generation for g in self.of("issuer") if g.state in ("current", "retired")]
        return tuple(kids) or (ISSUER_KID,)

    def earlier_checkpoint_generations(self) -> tuple[int, ...]:
        """Every earlier checkpoint generation, compromised ones too: the stored log's checkpoints are
        checked against roots recomputed from the entries, so the signature only names the signer."""
        current = self.current("checkpoint")
        return tuple(g.generation for g in self.of("checkpoint") if g.generation != current)

    @property
    def root_fingerprint(self) -> str | None:
        return next((g.fingerprint for g in self.generations if g.purpose == ROOT), None)


@dataclass(frozen=True)
class IssuerUsage:
    """Cards in circulation (not revoked, not expired) signed by one issuer kid."""

    cards: int
    last_expiry: datetime | None


class KeyGenerationStore(Protocol):
    def all(self, for_update: bool = False) -> list[KeyGeneration]: ...
    def add(self, generation: KeyGeneration) -> None: ...
    def save(self, generation: KeyGeneration) -> None:
        """Store a generation's state, retired_at, reason and approval."""
        ...

    def issuer_usage(self, now: datetime) -> dict[int, IssuerUsage]:
        """Per kid, how many cards not revoked and not expired it signed, and when the last expires."""
        ...


class KeyCustodyUnitOfWork(ApprovalUnitOfWork, CardUnitOfWork, Protocol):
    """What a rotation needs: approvals, cards, the generations and the root key, in one transaction."""

    @property
    def key_generations(self) -> KeyGenerationStore: ...
    @property
    def root_key(self) -> RootKey | None: ...


def card_keys(root_key: RootKey, schedule: KeySchedule) -> CardKeys:
    """The issuer keys to sign and verify with: the current kid signs, every published kid verifies."""
    return CardKeys.derive(root_key, schedule.current("issuer"), schedule.published_kids())


def log_signer(root_key: RootKey, schedule: KeySchedule, origin: str = DEFAULT_ORIGIN) -> NoteSigner:
    """The checkpoint signer of the current generation; its verifier accepts the earlier ones."""
    current = schedule.current("checkpoint")
    return NoteSigner.from_root_key(root_key, origin, current, schedule.earlier_checkpoint_generations())


def public_fingerprint(root_key: RootKey, purpose: str, generation: int) -> str:
    """A hash of the generation's public key (stored, so the table says which key each row meant)."""
    if purpose == "issuer":
        public = IssuerKey.derive(root_key, generation).public_bytes
    else:
        public = NoteSigner.from_root_key(root_key, generation=generation).verifier.public_key
    return hashlib.sha256(public).hexdigest()[:32]


def check_root_key(root_key: RootKey, schedule: KeySchedule) -> None:
    """Refuse a root key other than the one whose fingerprint the database holds."""
    expected = schedule.root_fingerprint
    if expected is not None and expected != root_key.fingerprint():
        raise Conflict(
            "root_key_mismatch",
            f"CIVICARD_ROOT_KEY is not this database's root key (its fingerprint is {root_key.fingerprint()}, "
            f"the database expects {expected}); start with the root key from the sealed copies.",
        )


def root_generation(root_key: RootKey, at: datetime, by: str) -> KeyGeneration:
    """The `root` row: the root key's fingerprint, recorded once."""
    return KeyGeneration(ROOT, 0, "current", root_key.fingerprint(), at, by)


def rotation_payload(uow: KeyCustodyUnitOfWork, purpose: str, compromised: bool) -> dict[str, str]:
    """What a `key_rotation` request names: the purpose, the generation to replace, and whether it leaked."""
    schedule = KeySchedule(tuple(uow.key_generations.all()))
    return {"purpose": _purpose(purpose), "generation": str(schedule.current(_purpose(purpose))),
            "compromised": YES if compromised else NO}  # fmt: skip


def check_rotation(uow: KeyCustodyUnitOfWork, payload: Payload, for_update: bool = False) -> KeySchedule:
    """The request still makes sense: the named generation is current, a next one exists, right root key."""
    purpose = _purpose(payload["purpose"])
    if payload["compromised"] not in (YES, NO) or not payload["generation"].isdigit():
        raise InvalidInput("invalid_payload", "A key rotation names a purpose, a generation and yes or no.")
    schedule = KeySchedule(tuple(uow.key_generations.all(for_update)))
    check_root_key(_root_key(uow), schedule)
    current = schedule.current(purpose)
    if int(payload["generation"]) != current:
        raise Conflict(
            "key_generation_changed",
            f"The {purpose} key is now at generation {current}, not {payload['generation']}; ask again if needed.",
        )
    if purpose == "issuer" and current >= MAX_ISSUER_KID:
        raise Conflict("issuer_kids_exhausted", "All 255 issuer kids are used; the root key must be re-keyed.")
    return schedule


def rotate(uow: KeyCustodyUnitOfWork, request: ApprovalRequest) -> str:
    """Inside the approver's transaction (no commit): start the next generation, retire or mark the
    old one compromised, and for a compromised issuer revoke its cards. Returns the log line."""
    payload = request.data
    schedule = check_rotation(uow, payload, for_update=True)
    root_key = _root_key(uow)
    purpose = _purpose(payload["purpose"])
    old, compromised = int(payload["generation"]), payload["compromised"] == YES
    now, by = uow.clock.now(), uow.context.actor.id
    store = uow.key_generations
    if schedule.root_fingerprint is None:
        store.add(root_generation(root_key, now, by))
    recorded = {g.generation: g for g in schedule.of(purpose)}
    implicit = KeyGeneration(purpose, old, "current", public_fingerprint(root_key, purpose, old), now, "initial")
    ended = replace(
        recorded.get(old, implicit),
        state="compromised" if compromised else "retired",
        retired_at=now,
        reason=request.reason,
        approval_id=request.id,
    )
    (store.save if old in recorded else store.add)(ended)
    started = KeyGeneration(
        purpose, old + 1, "current", public_fingerprint(root_key, purpose, old + 1), now, by, None, request.reason,
        request.id,
    )  # fmt: skip
    store.add(started)
    outcome = f"purpose={purpose} generation={old}->{old + 1}" + (" compromised" if compromised else "")
    if purpose == "issuer" and compromised:
        others = [g for g in schedule.generations if (g.purpose, g.generation) != (purpose, old)]
        keys = card_keys(root_key, KeySchedule((*others, ended, started)))
        revoked = revoke_cards_signed_by(uow, keys, old, request.id)
        outcome += f" cards_revoked={len(revoked)}"
    return outcome


def drop_unused_issuer_keys(uow: KeyCustodyUnitOfWork) -> list[int]:
    """Drop from the keyring every retired issuer kid no card in circulation carries; commits.

    Not a four-eyes action: it removes only keys nothing valid depends on any more."""
    now = uow.clock.now()
    usage = uow.key_generations.issuer_usage(now)
    dropped = []
    for found in KeySchedule(tuple(uow.key_generations.all(for_update=True))).of("issuer"):
        if found.state == "retired" and found.generation not in usage:
            uow.key_generations.save(replace(found, state="dropped"))
            dropped.append(found.generation)
    if dropped:
        detail = "keys.dropped purpose=issuer generations=" + ",".join(map(str, dropped))
        record_change(uow.access_log, uow.context, [], [], detail, now)
    uow.commit()
    return dropped


def describe_rotation(payload: Payload) -> str:
    compromised = " (compromised: it stops verifying at once and its cards are revoked)"
    return f"Rotate the {payload['purpose']} key from generation {payload['generation']}" + (
        compromised if payload["compromised"] == YES else ""
    )


def generations_with_defaults(schedule: KeySchedule) -> Iterable[tuple[str, int, str]]:
    """(purpose, generation, state) of each key, the implicit defaults included (for `keys status`)."""
    for purpose in PURPOSES:
        rows = schedule.of(purpose)
        if not rows:
            yield purpose, DEFAULT_GENERATION[purpose], "current"
        for row in rows:
            yield purpose, row.generation, row.state


def _purpose(purpose: str) -> KeyPurpose:
    if purpose == "issuer":
        return "issuer"
    if purpose == "checkpoint":
        return "checkpoint"
    raise InvalidInput("unknown_key_purpose", "The keys that rotate are: issuer, checkpoint.")


def _root_key(uow: KeyCustodyUnitOfWork) -> RootKey:
    if uow.root_key is None:
        raise Unavailable(
            "root_key_unavailable", "Key rotations are carried out where the root key is loaded (civicard, the API)."
        )
    return uow.root_key
