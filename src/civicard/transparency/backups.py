"""A backup's manifest, sealed under the root key, and how a restored log stands against the
latest published checkpoint.

The manifest names what a backup holds (backend, schema revision, the signed checkpoint of its
access log, row counts, the SHA-256 of every part) and carries an HMAC-SHA256 seal keyed by a
subkey of the root key: recomputing a part's hash after changing it is not enough to pass, and a
backup made under another root key is named as such. The root key itself is never in a backup.

A restore must not quietly roll the access log back: residents and monitors hold the checkpoints
the log has published, and a log older than one of them looks exactly like tampering. So the
backup's checkpoint is compared with the largest published checkpoint known outside the backup.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from civicard.shared.errors import Conflict, InvalidInput
from civicard.transparency.checkpoints import Checkpoint, CheckpointError, VerifierKey, open_checkpoint
from civicard.transparency.log_entries import canonical_json, format_time, parse_time
from civicard.transparency.merkle import EMPTY_ROOT

FORMAT = "civicard-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SEAL_LABEL = "backup:manifest-seal"  # HKDF label of the seal key (shared/keys.py)
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Part:
    """One file of the archive besides the manifest."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    created_at: datetime
    backend: str
    alembic_revision: str
    tree_size: int
    root_hash: bytes
    checkpoint_note: str | None
    log_key: str  # the log's verifier key: public, and tells which root key the backup belongs to
    row_counts: Mapping[str, int]
    parts: tuple[Part, ...]
    schema: str | None = None  # PostgreSQL: the schema that was dumped
    format_version: int = field(default=FORMAT_VERSION)

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "created_at": format_time(self.created_at),
            "backend": self.backend,
            "schema": self.schema,
            "alembic_revision": self.alembic_revision,
            "access_log": {
                "tree_size": self.tree_size,
                "root_hash": self.root_hash.hex(),
                "checkpoint": self.checkpoint_note,
                "log_key": self.log_key,
            },
            "row_counts": dict(sorted(self.row_counts.items())),
            "parts": [{"name": p.name, "sha256": p.sha256, "size": p.size} for p in self.parts],
        }

    def sealed(self, seal_key: bytes) -> bytes:
        """The manifest file: its body plus the seal over the body's canonical JSON."""
        document = {**self.body(), "seal": _seal(self.body(), seal_key)}
        return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)


def _seal(body: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical_json(body), hashlib.sha256).hexdigest()


def _tampered(message: str) -> InvalidInput:
    return InvalidInput("backup_tampered", message)


def open_manifest(raw: bytes, seal_key: bytes, log_key: VerifierKey) -> Manifest:
    """Parse and authenticate a manifest file.

    Codes: backup_unreadable (not a manifest), unsupported_backup (another format version),
    other_root_key (made under another root key), backup_tampered (the seal does not match).
    """
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("backup_unreadable", "The backup's manifest is not JSON.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidInput("backup_unreadable", "The archive holds no civicard backup manifest.")
    if document.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(
            "unsupported_backup", f"Backup format version {document.get('format_version')!r} is not {FORMAT_VERSION}."
        )
    seal = document.pop("seal", None)
    claimed_key = (document.get("access_log") or {}).get("log_key")
    if claimed_key != log_key.to_vkey():
        raise Conflict(
            "other_root_key",
            f"The backup was made under another root key (log key {claimed_key}, configured {log_key.to_vkey()}); "
            "configure the root key it was made with.",
        )
    if not isinstance(seal, str) or not hmac.compare_digest(seal, _seal(document, seal_key)):
        raise _tampered("The backup's manifest does not match its seal: it was altered.")
    try:
        return _manifest(document, log_key)
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("backup_unreadable", "The backup's manifest is incomplete.") from None


def _manifest(document: Mapping[str, Any], log_key: VerifierKey) -> Manifest:
    log = document["access_log"]
    manifest = Manifest(
        created_at=parse_time(document["created_at"]),
        backend=str(document["backend"]),
        alembic_revision=str(document["alembic_revision"]),
        tree_size=int(log["tree_size"]),
        root_hash=bytes.fromhex(log["root_hash"]),
        checkpoint_note=log["checkpoint"],
        log_key=str(log["log_key"]),
        row_counts={str(k): int(v) for k, v in document["row_counts"].items()},
        parts=tuple(Part(str(p["name"]), str(p["sha256"]), int(p["size"])) for p in document["parts"]),
        schema=document["schema"],
    )
    if manifest.backend not in BACKENDS:
        raise ValueError("unknown backend")
    if manifest.checkpoint_note is not None:
        signed = open_checkpoint(manifest.checkpoint_note, log_key, origin=None)
        if (signed.tree_size, signed.root_hash) != (manifest.tree_size, manifest.root_hash):
            raise _tampered("The backup's checkpoint does not match the tree size and root it names.")
    elif (manifest.tree_size, manifest.root_hash) != (0, EMPTY_ROOT):
        raise _tampered("The backup names a log tree without its signed checkpoint.")
    return manifest


def check_parts(manifest: Manifest, found: Mapping[str, Part]) -> None:
    """Every part the manifest lists is present with its size and SHA-256, and nothing else is."""
    listed = {p.name for p in manifest.parts}
    for name in sorted(found.keys() - listed):
        raise _tampered(f"The archive holds '{name}', which its manifest does not list.")
    for part in manifest.parts:
        seen = found.get(part.name)
        if seen is None:
            raise _tampered(f"The archive lacks '{part.name}'.")
        if (seen.size, seen.sha256) != (part.size, part.sha256):
            raise _tampered(f"'{part.name}' does not match the SHA-256 in the manifest: it was altered.")


# --------------------------------------------------------------------------- against the published log


class Standing(StrEnum):
    """Where a backup's log stands against the largest published checkpoint."""

    NONE_PUBLISHED = "none_published"
    CURRENT = "current"  # as large or larger; that it extends the published tree is checked after restoring
    STALE = "stale"  # smaller: entries residents may hold proofs for would disappear
    DIVERGED = "diverged"  # as large, another root: not the log that was published


@dataclass(frozen=True)
class Published:
    checkpoint: Checkpoint
    note: str
    source: str  # where it was found, for messages


def latest_published(notes: Iterable[tuple[str, str]], key: VerifierKey) -> Published | None:
    """The largest of (source, note) checkpoints, each verified with the log's key.

    Codes: published_checkpoint_invalid (not a checkpoint signed by this log's key),
    published_checkpoints_disagree (two of the same size with different roots: the log forked).
    """
    best: Published | None = None
    for source, note in notes:
        try:
            checkpoint = open_checkpoint(note, key, origin=None)
        except CheckpointError as exc:
            raise InvalidInput(
                "published_checkpoint_invalid", f"The published checkpoint from {source}: {exc.message}"
            ) from None
        if best is not None and best.checkpoint.tree_size == checkpoint.tree_size:
            if best.checkpoint.root_hash != checkpoint.root_hash:
                raise Conflict(
                    "published_checkpoints_disagree",
                    f"{best.source} and {source} publish different roots for size {checkpoint.tree_size}.",
                )
        elif best is None or checkpoint.tree_size > best.checkpoint.tree_size:
            best = Published(checkpoint, note, source)
    return best


def standing(manifest: Manifest, published: Published | None) -> Standing:
    if published is None:
        return Standing.NONE_PUBLISHED
    size = published.checkpoint.tree_size
    if manifest.tree_size < size:
        return Standing.STALE
    if manifest.tree_size == size and manifest.root_hash != published.checkpoint.root_hash:
        return Standing.DIVERGED
    return Standing.CURRENT


def behind_published(manifest: Manifest, published: Published, prefix: bool | None) -> str:
    """One line: how a stale or diverged backup's log differs from the published one."""
    cp = published.checkpoint
    how = "is older than" if manifest.tree_size < cp.tree_size else "has the size, but not the root, of"
    if prefix is None:
        relation = "whether it is a prefix of the published log was not checked"
    else:
        relation = "it is a prefix of the published log" if prefix else "it is NOT a prefix of the published log"
    return (
        f"the backup's access log (size {manifest.tree_size}, root {manifest.root_hash.hex()}) {how} the checkpoint "
        f"published in {published.source} (size {cp.tree_size}, root {cp.root_hash.hex()}); {relation}"
    )
