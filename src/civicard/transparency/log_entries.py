"""Access-log entries as Merkle leaves: the canonical public bytes, the salted subject and the chain.

A leaf is the canonical JSON of an entry (sorted keys, no spaces, UTF-8; for these value types it
equals RFC 8785 JCS) with every personal detail replaced by a salted hash:

    {"v": 1, "seq", "at", "actor", "role", "purpose", "action", "categories", "detail",
     "subject": hex SHA-256(salt ‖ subject id) or null,
     "chain":   hex SHA-256("civicard/log-chain\\n" ‖ salt ‖ previous chain head) or null}

`salt` is the entry's own 16 random bytes (stored as hex in access_log.subject_salt) and the
subject id is the person id if present, else the household id. The per-subject chain head after
an entry is `merkle.chain_hash(previous head or GENESIS, leaf hash)`.

Why the chain is committed through a salted hash and not in clear: a clear `chain_prev` lets
anyone holding the public leaves recompute every head and so link all entries of one subject
into their full access history, which the per-entry salt is there to prevent. Salted, only
someone holding the entry's salt (the resident, given their plain entries) can check it; the leaf
still commits to the previous head, so a deleted entry of a subject breaks the next leaf.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring
from typing import Any

from civicard.transparency.merkle import GENESIS, HASH_SIZE, chain_hash, leaf_hash

LEAF_VERSION = 1
SALT_BYTES = 16
_CHAIN_TAG = b"civicard/log-chain\n"
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_NO_OFFSET = timedelta(0)
_BAD_SALT = "a salt is an even number of lowercase hex digits"
# The string escaper json.dumps(ensure_ascii=False) itself uses, so `canonical_leaf` writes the same bytes.
_json_string = encode_basestring


@dataclass(frozen=True)
class LogEntry:
    """One access_log row, in the resident's plain terms."""

    seq: int
    occurred_at: datetime
    actor: str
    role: str
    purpose: str
    action: str
    categories: tuple[str, ...]
    detail: str
    subject_person_id: str | None = None
    subject_household_id: str | None = None
    subject_salt: str = ""

    @property
    def subject_id(self) -> str | None:
        """The chain key: the person if there is one, else the household."""
        return self.subject_person_id if self.subject_person_id is not None else self.subject_household_id


def format_time(at: datetime) -> str:
    """ISO-8601 in UTC with microseconds ("2026-11-15T10:00:00.000000Z"); naive (SQLite) means UTC."""
    # Stored times are already UTC (naive from SQLite; UTC or Etc/UTC from PostgreSQL): their wall
    # time is written as it is, without the conversion that would cost about as much again.
    zone = at.tzinfo
    if zone is None:
        return at.isoformat("T", "microseconds") + "Z"
    if zone is UTC or at.utcoffset() == _NO_OFFSET:
        return at.isoformat("T", "microseconds")[:-6] + "Z"  # without "+00:00"
    aware = at if zone else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """The inverse of `format_time`; anything else is a ValueError."""
    if not _TIME.fullmatch(text):
        raise ValueError(f"not a UTC time like 2026-11-15T10:00:00.000000Z: {text!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def salt_bytes(salt: str) -> bytes:
    """The salt as bytes: access_log stores it as lowercase hex (empty for entries about nobody).

    Strict on purpose: `bytes.fromhex` alone would also accept upper case and spaces, so a stored
    salt could be rewritten without changing the leaf; checking that `.hex()` gives the salt back
    refuses them (a few times faster than a regular expression, and every leaf needs it).
    """
    try:
        value = bytes.fromhex(salt)
    except ValueError:
        raise ValueError(_BAD_SALT) from None
    if value.hex() != salt:
        raise ValueError(_BAD_SALT)
    return value


def subject_hash(salt: str, subject_id: str) -> str:
    """hex SHA-256(salt ‖ subject id): hides who the entry is about from the public."""
    return _subject_hash(salt_bytes(salt), subject_id)


def _subject_hash(salt: bytes, subject_id: str) -> str:
    return hashlib.sha256(salt + subject_id.encode("utf-8")).hexdigest()


def chain_commitment(salt: str, chain_prev: bytes | None) -> str:
    """hex SHA-256(tag ‖ salt ‖ previous head or GENESIS): binds the leaf to the subject's chain."""
    previous = _chain_head(chain_prev)
    return _chain_commitment(salt_bytes(salt), previous)


def _chain_head(chain_prev: bytes | None) -> bytes:
    previous = GENESIS if chain_prev is None else chain_prev
    if len(previous) != HASH_SIZE:
        raise ValueError(f"a chain head is {HASH_SIZE} bytes, got {len(previous)}")
    return previous


def _chain_commitment(salt: bytes, previous: bytes) -> str:
    return hashlib.sha256(_CHAIN_TAG + salt + previous).hexdigest()


def public_leaf(entry: LogEntry, chain_prev: bytes | None) -> dict[str, Any]:
    """The leaf as a JSON object: what the public may see of the entry."""
    subject = entry.subject_id
    return {
        "v": LEAF_VERSION,
        "seq": entry.seq,
        "at": format_time(entry.occurred_at),
        "actor": entry.actor,
        "role": entry.role,
        "purpose": entry.purpose,
        "action": entry.action,
        "categories": list(entry.categories),
        "detail": entry.detail,
        "subject": None if subject is None else subject_hash(entry.subject_salt, subject),
        "chain": None if subject is None else chain_commitment(entry.subject_salt, chain_prev),
    }


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (not \\u-escaped): one byte string per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def canonical_leaf(entry: LogEntry, chain_prev: bytes | None) -> bytes:
    """The exact bytes hashed into the tree for `entry` after the subject's head `chain_prev`.

    Always `canonical_json(public_leaf(entry, chain_prev))`, which stays the specification, but
    written directly (about twice as fast): folding and verifying hash every entry of the log.
    """
    if type(entry.seq) is int:  # json.dumps writes an int subclass such as True its own way
        try:
            at = format_time(entry.occurred_at)
            subject = entry.subject_id
            if subject is None:
                return _leaf_text(entry, at, "null", "null").encode("utf-8")
            salt = salt_bytes(entry.subject_salt)
            subject_json = f'"{_subject_hash(salt, subject)}"'
            chain_json = f'"{_chain_commitment(salt, _chain_head(chain_prev))}"'
            return _leaf_text(entry, at, subject_json, chain_json).encode("utf-8")
        except TypeError:
            pass  # a field only json.dumps can write (None for a string): the specification below decides
    return canonical_json(public_leaf(entry, chain_prev))


def erased_leaf(entry: LogEntry, subject: str | None, chain: str | None) -> bytes:
    """The leaf of an entry whose subject was erased: the subject and chain commitments kept at
    erasure stand in for the shredded id and salt. Always
    `canonical_json(public_leaf(entry, None) | {"subject": subject, "chain": chain})`, written directly.
    """
    if type(entry.seq) is int and entry.subject_id is None:
        try:
            at = format_time(entry.occurred_at)
            return _leaf_text(entry, at, _optional_json_string(subject), _optional_json_string(chain)).encode("utf-8")
        except TypeError:
            pass  # as in canonical_leaf
    return canonical_json(public_leaf(entry, None) | {"subject": subject, "chain": chain})


def _leaf_text(entry: LogEntry, at: str, subject_json: str, chain_json: str) -> str:
    """`public_leaf` as canonical JSON, its keys in sorted order; raises TypeError for a non-string."""
    return (
        f'{{"action":{_json_string(entry.action)},"actor":{_json_string(entry.actor)},"at":{_json_string(at)},'
        f'"categories":[{",".join(map(_json_string, entry.categories))}],"chain":{chain_json},'
        f'"detail":{_json_string(entry.detail)},"purpose":{_json_string(entry.purpose)},'
        f'"role":{_json_string(entry.role)},"seq":{entry.seq},"subject":{subject_json},"v":{LEAF_VERSION}}}'
    )


def _optional_json_string(value: str | None) -> str:
    return "null" if value is None else _json_string(value)


def entry_leaf_hash(entry: LogEntry, chain_prev: bytes | None) -> bytes:
    return leaf_hash(canonical_leaf(entry, chain_prev))


def next_chain_head(chain_prev: bytes | None, leaf: bytes) -> bytes:
    """The subject's head after an entry whose leaf hash is `leaf`."""
    return chain_hash(GENESIS if chain_prev is None else chain_prev, leaf)


def plain_entry(entry: LogEntry) -> dict[str, Any]:
    """The entry as the resident sees it (JSON): plain subject ids and the salt that hides them."""
    return {
        "seq": entry.seq,
        "at": format_time(entry.occurred_at),
        "actor": entry.actor,
        "role": entry.role,
        "purpose": entry.purpose,
        "action": entry.action,
        "categories": list(entry.categories),
        "detail": entry.detail,
        "subject_person_id": entry.subject_person_id,
        "subject_household_id": entry.subject_household_id,
        "subject_salt": entry.subject_salt,
    }


def entry_from_plain(data: Mapping[str, Any]) -> LogEntry:
    """Parse `plain_entry` output; raises ValueError naming the first bad field."""
    categories = data.get("categories")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ValueError("categories must be a list of strings")
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ValueError("seq must be an integer")
    salt = _text(data, "subject_salt")
    salt_bytes(salt)  # must be hex
    try:
        at = parse_time(_text(data, "at"))
    except ValueError:
        raise ValueError("at must be a UTC time like 2026-11-15T10:00:00.000000Z") from None
    return LogEntry(
        seq=seq,
        occurred_at=at,
        actor=_text(data, "actor"),
        role=_text(data, "role"),
        purpose=_text(data, "purpose"),
        action=_text(data, "action"),
        categories=tuple(categories),
        detail=_text(data, "detail"),
        subject_person_id=_optional_text(data, "subject_person_id"),
        subject_household_id=_optional_text(data, "subject_household_id"),
        subject_salt=salt,
    )


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _optional_text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string or null")
    return value


def categories_from_column(value: str) -> tuple[str, ...]:
    """access_log.categories is space-joined; split exactly (no collapsing) so every byte counts."""
    return () if value == "" else tuple(value.split(" "))
