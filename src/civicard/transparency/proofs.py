"""Proof bundles and the resident's log: versioned JSON formats and the checks anyone can run offline.

A proof bundle (`civicard audit prove`) lets a resident or their advocate check, with no network
and no database, that one entry is in the log the service signed:

    plain entry (with the subject id and salt) → canonical public leaf → leaf hash
    → inclusion proof → root → the checkpoint's root, size and origin → the Ed25519 signature.

The resident's log (`ResidentLog`, served by the API) lists every entry about a person with an
inclusion proof against the latest checkpoint and a consistency proof from the checkpoint they
saw last. `verify_resident_log` checks it and returns a `ResidentReceipt` to keep for next time.

What the resident can detect, given the receipt of their last visit:
- an entry of theirs edited or reordered: its leaf no longer hashes into the signed root;
- an entry of theirs deleted between two others, even without a receipt: the next entry's leaf
  commits to the previous chain head, which no longer matches;
- any entry they saw before (or their first entry) deleted, even if whoever controls the database
  and the signing key rebuilds the whole tree: the consistency proof from their last checkpoint
  fails (the tree was rewritten) and their receipt's chain head is no longer reproduced.
What they cannot detect alone: an entry deleted before any checkpoint they or anyone they trust
holds covers it (the integration delay, ≤ 1 s), or a newer entry they have never seen deleted
and the tree rebuilt — only monitors that keep every published checkpoint see that rewrite.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from civicard.shared.errors import InvalidInput
from civicard.transparency.checkpoints import CheckpointError, VerifierKey, open_checkpoint
from civicard.transparency.log_entries import (
    LogEntry,
    canonical_leaf,
    entry_from_plain,
    entry_leaf_hash,
    next_chain_head,
    plain_entry,
)
from civicard.transparency.merkle import HASH_SIZE, leaf_hash, verify_consistency, verify_inclusion

BUNDLE_FORMAT = "civicard-log-proof"
BUNDLE_VERSION = 1
RESIDENT_LOG_FORMAT = "civicard-resident-log"
RESIDENT_LOG_VERSION = 1


class ProofError(InvalidInput):
    """A proof document that cannot be read (wrong shape, version or encoding)."""


def hex_hash(raw: bytes) -> str:
    return raw.hex()


def _hash(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * HASH_SIZE:
        raise ProofError("malformed_proof", f"{what} is not a {HASH_SIZE}-byte hex hash.")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ProofError("malformed_proof", f"{what} is not a {HASH_SIZE}-byte hex hash.") from None


def _optional_hash(value: Any, what: str) -> bytes | None:
    return None if value is None else _hash(value, what)


def _hashes(value: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise ProofError("malformed_proof", f"{what} is not a list of hex hashes.")
    return tuple(_hash(v, what) for v in value)


def _int(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError("malformed_proof", f"{name} is not a non-negative integer.")
    return value


def _str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ProofError("malformed_proof", f"{name} is not a string.")
    return value


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProofError("malformed_proof", f"{what} is not a JSON object.")
    return value


def _entry(value: Any) -> LogEntry:
    try:
        return entry_from_plain(_object(value, "entry"))
    except ValueError as exc:
        raise ProofError("malformed_proof", f"entry: {exc}.") from None


def _version(data: Mapping[str, Any], expected_format: str, version: int) -> None:
    if data.get("format") != expected_format:
        raise ProofError("malformed_proof", f"This is not a {expected_format} document.")
    if data.get("version") != version:
        raise ProofError("unsupported_version", f"Only version {version} of {expected_format} is understood.")


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ok, a stable code, and a sentence for people."""

    ok: bool
    code: str
    message: str


# --------------------------------------------------------------------------- one entry


@dataclass(frozen=True)
class ProofBundle:
    """Everything needed to check one entry offline (format civicard-log-proof, version 1)."""

    origin: str
    leaf_index: int
    tree_size: int
    entry: LogEntry
    chain_prev: bytes | None
    leaf_hash: bytes
    inclusion_proof: tuple[bytes, ...]
    checkpoint: str
    key: VerifierKey

    def to_json(self) -> dict[str, Any]:
        head = next_chain_head(self.chain_prev, self.leaf_hash) if self.entry.subject_id is not None else None
        return {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "origin": self.origin,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "entry": plain_entry(self.entry) | {"chain_prev": _hex_or_none(self.chain_prev)},
            "public_leaf": canonical_leaf(self.entry, self.chain_prev).decode("utf-8"),
            "leaf_hash": self.leaf_hash.hex(),
            "chain_head": _hex_or_none(head),
            "inclusion_proof": [p.hex() for p in self.inclusion_proof],
            "checkpoint": self.checkpoint,
            "key_name": self.key.name,
            "public_key": base64.b64encode(self.key.public_key).decode(),
        }

    @classmethod
    def from_json(cls, value: Any) -> ProofBundle:
        data = _object(value, "The proof")
        _version(data, BUNDLE_FORMAT, BUNDLE_VERSION)
        entry_data = _object(data.get("entry"), "entry")
        bundle = cls(
            origin=_str(data, "origin"),
            leaf_index=_int(data, "leaf_index"),
            tree_size=_int(data, "tree_size"),
            entry=_entry(entry_data),
            chain_prev=_optional_hash(entry_data.get("chain_prev"), "entry.chain_prev"),
            leaf_hash=_hash(data.get("leaf_hash"), "leaf_hash"),
            inclusion_proof=_hashes(data.get("inclusion_proof"), "inclusion_proof"),
            checkpoint=_str(data, "checkpoint"),
            key=_verifier_key(_str(data, "key_name"), _str(data, "public_key")),
        )
        return bundle


def _hex_or_none(raw: bytes | None) -> str | None:
    return None if raw is None else raw.hex()


def _verifier_key(name: str, public_key: str) -> VerifierKey:
    try:
        raw = base64.b64decode(public_key, validate=True)
        return VerifierKey(name, raw)
    except (binascii.Error, ValueError, CheckpointError):
        raise ProofError("malformed_proof", "key_name / public_key are not an Ed25519 key.") from None


def check_proof_bundle(bundle: ProofBundle, pinned: VerifierKey | None = None) -> Verdict:
    """Check a bundle end to end. Without `pinned` the bundle's own key is trusted (say so!)."""
    if pinned is not None and bundle.key.generations()[0] not in pinned.generations():
        return Verdict(False, "untrusted_key", f"The checkpoint key is not the pinned key {pinned.to_vkey()}.")
    computed = entry_leaf_hash(bundle.entry, bundle.chain_prev)
    if computed != bundle.leaf_hash:
        return Verdict(False, "leaf_mismatch", "The entry does not hash to the stated leaf hash (it was changed).")
    try:
        checkpoint = open_checkpoint(bundle.checkpoint, bundle.key, origin=bundle.origin)
    except CheckpointError as exc:
        return Verdict(False, exc.code, exc.message)
    if checkpoint.tree_size != bundle.tree_size:
        return Verdict(False, "size_mismatch", "The proof is for another tree size than the checkpoint.")
    path = bundle.inclusion_proof
    if not verify_inclusion(computed, bundle.leaf_index, bundle.tree_size, path, checkpoint.root_hash):
        return Verdict(False, "inclusion_failed", f"The entry is not at leaf {bundle.leaf_index} of the signed tree.")
    return Verdict(
        True,
        "proof_valid",
        f"entry {bundle.leaf_index} is in the log of size {bundle.tree_size} signed by {bundle.key.to_vkey()}",
    )


def check_proof_json(value: Any, pinned: VerifierKey | None = None) -> Verdict:
    """`check_proof_bundle` on parsed JSON; a malformed document is a failed check, not a crash."""
    try:
        bundle = ProofBundle.from_json(value)
    except ProofError as exc:
        return Verdict(False, exc.code, exc.message)
    verdict = check_proof_bundle(bundle, pinned)
    if not verdict.ok:
        return verdict
    # The convenience fields (what the public sees, the resident's chain receipt) must agree too.
    stated = bundle.to_json()
    for name, code in (("public_leaf", "leaf_mismatch"), ("chain_head", "chain_mismatch")):
        if value.get(name) is not None and value[name] != stated[name]:
            return Verdict(False, code, f"{name} does not follow from the entry.")
    return verdict


# --------------------------------------------------------------------------- the resident's log


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"old_size": self.old_size, "new_size": self.new_size, "proof": [p.hex() for p in self.proof]}

    @classmethod
    def from_json(cls, value: Any) -> ConsistencyProof:
        data = _object(value, "consistency")
        return cls(_int(data, "old_size"), _int(data, "new_size"), _hashes(data.get("proof"), "consistency.proof"))


@dataclass(frozen=True)
class ResidentEntry:
    """One entry about the resident; `leaf_index` is None while it waits for the integrator."""

    entry: LogEntry
    leaf_index: int | None = None
    chain_prev: bytes | None = None
    chain_head: bytes | None = None
    inclusion_proof: tuple[bytes, ...] | None = None
    chain_ok: bool | None = None

    @property
    def pending(self) -> bool:
        return self.leaf_index is None or self.inclusion_proof is None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "pending" if self.pending else "integrated",
            "entry": plain_entry(self.entry),
            "leaf_index": self.leaf_index,
            "chain_prev": _hex_or_none(self.chain_prev),
            "chain_head": _hex_or_none(self.chain_head),
            "inclusion_proof": None if self.inclusion_proof is None else [p.hex() for p in self.inclusion_proof],
            "chain_ok": self.chain_ok,
        }

    @classmethod
    def from_json(cls, value: Any) -> ResidentEntry:
        data = _object(value, "entries[]")
        index = data.get("leaf_index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
            raise ProofError("malformed_proof", "leaf_index is not a non-negative integer.")
        proof = data.get("inclusion_proof")
        chain_ok = data.get("chain_ok")
        return cls(
            entry=_entry(data.get("entry")),
            leaf_index=index,
            chain_prev=_optional_hash(data.get("chain_prev"), "chain_prev"),
            chain_head=_optional_hash(data.get("chain_head"), "chain_head"),
            inclusion_proof=None if proof is None else _hashes(proof, "inclusion_proof"),
            chain_ok=chain_ok if isinstance(chain_ok, bool) else None,
        )


@dataclass(frozen=True)
class ResidentLog:
    """A person's entries with proofs against `checkpoint` (None before the first checkpoint)."""

    person_id: str
    checkpoint: str | None
    tree_size: int
    entries: tuple[ResidentEntry, ...]
    consistency: ConsistencyProof | None = None

    @property
    def chain_ok(self) -> bool:
        return all(e.chain_ok is not False for e in self.entries)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RESIDENT_LOG_FORMAT,
            "version": RESIDENT_LOG_VERSION,
            "person_id": self.person_id,
            "checkpoint": self.checkpoint,
            "tree_size": self.tree_size,
            "chain_ok": self.chain_ok,
            "entries": [e.to_json() for e in self.entries],
            "consistency": None if self.consistency is None else self.consistency.to_json(),
        }

    @classmethod
    def from_json(cls, value: Any) -> ResidentLog:
        data = _object(value, "The resident log")
        _version(data, RESIDENT_LOG_FORMAT, RESIDENT_LOG_VERSION)
        entries = data.get("entries")
        if not isinstance(entries, list):
            raise ProofError("malformed_proof", "entries is not a list.")
        checkpoint = data.get("checkpoint")
        consistency = data.get("consistency")
        return cls(
            person_id=_str(data, "person_id"),
            checkpoint=checkpoint if isinstance(checkpoint, str) else None,
            tree_size=_int(data, "tree_size"),
            entries=tuple(ResidentEntry.from_json(e) for e in entries),
            consistency=None if consistency is None else ConsistencyProof.from_json(consistency),
        )


def chain_checks(items: Sequence[tuple[LogEntry, bytes | None, bytes | None]]) -> list[bool]:
    """For one subject's integrated entries in leaf order (entry, stored chain_prev, stored head):
    True where the entry continues the chain unbroken from the previous one (GENESIS first)."""
    results: list[bool] = []
    expected_prev: bytes | None = None
    for entry, prev, head in items:
        computed = next_chain_head(prev, entry_leaf_hash(entry, prev))
        results.append(prev == expected_prev and head == computed)
        expected_prev = computed
    return results


@dataclass(frozen=True)
class ResidentReceipt:
    """What a resident's device keeps between visits: the checkpoint seen and their chain so far."""

    tree_size: int
    root_hash: bytes
    entries_seen: int
    chain_head: bytes | None

    def to_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "entries_seen": self.entries_seen,
            "chain_head": _hex_or_none(self.chain_head),
        }

    @classmethod
    def from_json(cls, value: Any) -> ResidentReceipt:
        data = _object(value, "The receipt")
        return cls(
            _int(data, "tree_size"),
            _hash(data.get("root_hash"), "root_hash"),
            _int(data, "entries_seen"),
            _optional_hash(data.get("chain_head"), "chain_head"),
        )


@dataclass(frozen=True)
class EntryVerdict:
    seq: int
    leaf_index: int | None
    verified: bool
    code: str  # verified, pending, inclusion_failed, chain_broken, foreign_entry


@dataclass(frozen=True)
class ResidentVerification:
    """The verdict on a resident's log: `receipt` is what to keep if `ok`."""

    ok: bool
    code: str
    message: str
    entries: tuple[EntryVerdict, ...]
    receipt: ResidentReceipt | None


def verify_resident_log(
    log: ResidentLog, key: VerifierKey, previous: ResidentReceipt | None = None, origin: str | None = None
) -> ResidentVerification:
    """Check every integrated entry, the chain, and the log's consistency with `previous`.

    Codes: verified, no_checkpoint, bad_signature / wrong_origin / malformed_*, size_mismatch,
    checkpoint_shrinks, tree_rewritten, foreign_entry, inclusion_failed, chain_broken, entry_missing.
    """
    pending = tuple(EntryVerdict(e.entry.seq, e.leaf_index, False, "pending") for e in log.entries if e.pending)
    if log.checkpoint is None:
        if previous is not None or len(pending) != len(log.entries):
            return ResidentVerification(False, "no_checkpoint", "The log shows no signed checkpoint.", pending, None)
        return ResidentVerification(True, "no_checkpoint", "Nothing is integrated yet.", pending, None)
    try:
        checkpoint = open_checkpoint(log.checkpoint, key, origin)
    except CheckpointError as exc:
        return ResidentVerification(False, exc.code, exc.message, pending, None)
    if checkpoint.tree_size != log.tree_size:
        return ResidentVerification(False, "size_mismatch", "The log's size is not the checkpoint's.", pending, None)
    problem = _against_previous(log, checkpoint.tree_size, checkpoint.root_hash, previous)
    verdicts, heads, first_bad = _entry_verdicts(log, checkpoint.root_hash)
    if problem is None and first_bad is not None:
        problem = first_bad
    if problem is None and previous is not None and previous.entries_seen:
        seen = previous.entries_seen
        if len(heads) < seen or heads[seen - 1] != previous.chain_head:
            problem = ("entry_missing", f"An entry you saw before (one of your first {seen}) is missing or changed.")
    receipt = ResidentReceipt(checkpoint.tree_size, checkpoint.root_hash, len(heads), heads[-1] if heads else None)
    all_verdicts = tuple(verdicts) + pending
    if problem is not None:
        return ResidentVerification(False, problem[0], problem[1], all_verdicts, None)
    message = f"{len(heads)} entries verified against the checkpoint of size {checkpoint.tree_size}"
    return ResidentVerification(True, "verified", message, all_verdicts, receipt)


def _against_previous(
    log: ResidentLog, size: int, root: bytes, previous: ResidentReceipt | None
) -> tuple[str, str] | None:
    if previous is None:
        return None
    if size < previous.tree_size:
        return ("checkpoint_shrinks", f"The log shrank from {previous.tree_size} to {size} entries.")
    proof = log.consistency
    if (
        proof is None
        or (proof.old_size, proof.new_size) != (previous.tree_size, size)
        or not verify_consistency(previous.tree_size, size, previous.root_hash, root, proof.proof)
    ):
        return ("tree_rewritten", f"The log is not an extension of the one you saw at size {previous.tree_size}.")
    return None


def _entry_verdicts(log: ResidentLog, root: bytes) -> tuple[list[EntryVerdict], list[bytes], tuple[str, str] | None]:
    integrated = sorted((e for e in log.entries if not e.pending), key=lambda e: e.leaf_index or 0)
    verdicts: list[EntryVerdict] = []
    heads: list[bytes] = []
    first_bad: tuple[str, str] | None = None
    expected_prev: bytes | None = None
    for item in integrated:
        index = item.leaf_index if item.leaf_index is not None else -1
        leaf = leaf_hash(canonical_leaf(item.entry, item.chain_prev))
        head = next_chain_head(item.chain_prev, leaf)
        code = "verified"
        if item.entry.subject_person_id != log.person_id:
            code = "foreign_entry"
        elif not verify_inclusion(leaf, index, log.tree_size, item.inclusion_proof or (), root):
            code = "inclusion_failed"
        elif item.chain_prev != expected_prev or (item.chain_head is not None and item.chain_head != head):
            code = "chain_broken"
        verdicts.append(EntryVerdict(item.entry.seq, item.leaf_index, code == "verified", code))
        if code != "verified" and first_bad is None:
            first_bad = (code, _ENTRY_PROBLEMS[code].format(index=index))
        heads.append(head)
        expected_prev = head
    return verdicts, heads, first_bad


_ENTRY_PROBLEMS = {
    "foreign_entry": "Leaf {index} is not about you.",
    "inclusion_failed": "Leaf {index} is not in the signed log as shown (it was changed or moved).",
    "chain_broken": "Your chain breaks at leaf {index}: an entry of yours before it is missing.",
}
