"""Signed checkpoints of the access log: C2SP signed notes (Ed25519) with a tlog-checkpoint body.

Formats: https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint. A checkpoint reads

    civicard.example/log
    1234
    <base64 root hash>
    time 2026-11-15T10:00:00.000000Z

    — civicard.example/log <base64(4-byte key ID ‖ 64-byte Ed25519 signature)>

The signature covers the note text (all body lines with their newlines). The signing time is
carried as one extension line so it is signed too (the issue asks for size, root *and* time);
the spec allows extension lines but discourages them because monitors cannot audit them — our
verifier only uses it to order checkpoints. Key ID = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4],
which is what Go's golang.org/x/mod/sumdb/note computes, so its verifier keys
("name+hex key ID+base64(0x01 ‖ key)") work here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from civicard.shared.errors import InvalidInput
from civicard.shared.keys import RootKey
from civicard.transparency.log_entries import format_time, parse_time

DEFAULT_ORIGIN = "civicard.example/log"
SIGNING_KEY_LABEL = "transparency:checkpoint-signing"  # generation 0; generation n ≥ 1 appends ":<n>"
EM_DASH = "\u2014"
ED25519_TYPE = 0x01
ROOT_HASH_BYTES = 32
MAX_SIGNATURES = 32  # the spec requires accepting at least 16
_TIME_PREFIX = "time "
_SIZE = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class CheckpointError(InvalidInput):
    """A note or checkpoint that is malformed, unsigned by the expected key, or for another log."""


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError("malformed_note", f"{what} is not valid base64.") from None
    if base64.b64encode(raw).decode() != text:
        raise CheckpointError("malformed_note", f"{what} is not canonical base64.")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def check_key_name(name: str) -> str:
    if not name or "+" in name or any(c.isspace() for c in name) or _CONTROL.search(name):
        raise CheckpointError("malformed_note", "A key name is non-empty, without spaces or '+'.")
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte Ed25519 public key)[:4] (signed-note, Ed25519)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519_TYPE]) + public_key).digest()[:4]


# --------------------------------------------------------------------------- signed notes


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {_b64(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class SignedNote:
    """The text (ending in a newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def parse_note(note: str) -> SignedNote:
    """Split a signed note into its text and signatures; raises CheckpointError('malformed_note')."""
    if _CONTROL.search(note) or not note.endswith("\n"):
        raise CheckpointError("malformed_note", "A signed note ends with a newline and holds no control characters.")
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("malformed_note", "A signed note needs a blank line before its signatures.")
    text, block = note[: split + 1], note[split + 2 :]
    lines = block[:-1].split("\n") if block else []
    if not lines or len(lines) > MAX_SIGNATURES:
        raise CheckpointError("malformed_note", f"A signed note carries 1 to {MAX_SIGNATURES} signatures.")
    return SignedNote(text, tuple(_signature(line) for line in lines))


def _signature(line: str) -> NoteSignature:
    prefix = EM_DASH + " "
    parts = line[len(prefix) :].split(" ") if line.startswith(prefix) else []
    if len(parts) != 2:
        raise CheckpointError("malformed_note", "A signature line reads '— <key name> <base64 signature>'.")
    name, encoded = parts
    raw = _b64decode(encoded, "A signature")
    if len(raw) < 5:
        raise CheckpointError("malformed_note", "A signature holds a 4-byte key ID and the signature bytes.")
    return NoteSignature(check_key_name(name), raw[:4], raw[4:])


@dataclass(frozen=True)
class VerifierKey:
    """A log's public key under its name; `to_vkey()` is the Go note verifier-key string."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != 32:
            raise CheckpointError("malformed_key", "An Ed25519 public key is 32 bytes.")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def to_vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ED25519_TYPE]) + self.public_key)}"

    def generations(self) -> tuple[VerifierKey, ...]:
        """Every key this verifier accepts, newest first, each a plain `VerifierKey`."""
        return (VerifierKey(self.name, self.public_key),)

    @classmethod
    def from_vkey(cls, text: str) -> VerifierKey:
        """Parse 'name+hexid+base64(0x01 ‖ key)'; the ID must match the name and key."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("malformed_key", "A verifier key reads '<name>+<hex key ID>+<base64 key>'.")
        name, hex_id, encoded = parts
        raw = _b64decode(encoded, "The verifier key")
        if len(raw) != 33 or raw[0] != ED25519_TYPE:
            raise CheckpointError("malformed_key", "Only Ed25519 verifier keys (type 0x01) are supported.")
        key = cls(name, raw[1:])
        if key.key_id.hex() != hex_id.lower():
            raise CheckpointError("malformed_key", "The verifier key's ID does not match its name and key.")
        return key

    def verify(self, note: SignedNote) -> bool:
        """True iff the note has this key's signature and every signature by this key verifies.

        Signatures by other keys (witnesses, a rotated key) are ignored, as the spec requires.
        """
        mine = [s for s in note.signatures if s.name == self.name and s.key_id == self.key_id]
        if not mine:
            return False
        public = Ed25519PublicKey.from_public_bytes(self.public_key)
        try:
            for signature in mine:
                public.verify(signature.signature, note.text.encode())
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class VerifierKeyring(VerifierKey):
    """The log's current verifier key and its earlier generations (after `civicard keys rotate
    checkpoint`): a checkpoint verifies under the generation that signed it, found by key ID.
    Everything else — the key ID, `to_vkey()`, what new checkpoints are signed with — is the current key's."""

    earlier: tuple[VerifierKey, ...] = ()

    def verify(self, note: SignedNote) -> bool:
        return any(VerifierKey.verify(key, note) for key in (self, *self.earlier))

    def generations(self) -> tuple[VerifierKey, ...]:
        return (VerifierKey(self.name, self.public_key), *(k for key in self.earlier for k in key.generations()))


class NoteSigner:
    """Ed25519 signer of notes. The log's key is derived from the root key, never stored."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey, earlier: tuple[VerifierKey, ...] = ()) -> None:
        self.name = check_key_name(name)
        self._private = private_key
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier: VerifierKey = VerifierKeyring(name, public, earlier) if earlier else VerifierKey(name, public)

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> NoteSigner:
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_root_key(
        cls, root_key: RootKey, name: str = DEFAULT_ORIGIN, generation: int = 0, earlier: tuple[int, ...] = ()
    ) -> NoteSigner:
        """The signer of key generation `generation`; its verifier also accepts the `earlier` generations."""
        older = tuple(cls.from_seed(name, root_key.derive(signing_key_label(g))).verifier for g in earlier)
        return cls(name, Ed25519PrivateKey.from_private_bytes(root_key.derive(signing_key_label(generation))), older)

    def sign(self, text: str) -> NoteSignature:
        return NoteSignature(self.name, self.verifier.key_id, self._private.sign(text.encode()))

    def sign_note(self, text: str) -> str:
        if not text.endswith("\n") or "\n\n" in text or _CONTROL.search(text):
            raise CheckpointError("malformed_note", "Note text ends with a newline and has no blank lines.")
        return SignedNote(text, (self.sign(text),)).render()

    def __repr__(self) -> str:  # never print key material
        return f"NoteSigner({self.verifier.to_vkey()})"


def signing_key_label(generation: int) -> str:
    """Generation 0 keeps the original label, so logs signed before key custody still verify."""
    if generation < 0:
        raise InvalidInput("key_generation_invalid", "A key generation is 0 or more.")
    return SIGNING_KEY_LABEL if generation == 0 else f"{SIGNING_KEY_LABEL}:{generation}"


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: origin, size and RFC 9162 root, with the signing time (an extension line)."""

    origin: str
    tree_size: int
    root_hash: bytes
    signed_at: datetime | None = None
    extensions: tuple[str, ...] = field(default=())

    def body(self) -> str:
        lines = [self.origin, str(self.tree_size), _b64(self.root_hash)]
        if self.signed_at is not None:
            lines.append(_TIME_PREFIX + format_time(self.signed_at))
        lines.extend(self.extensions)
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint note text (the body, not the signatures)."""
    if not text.endswith("\n"):
        raise CheckpointError("malformed_checkpoint", "A checkpoint body ends with a newline.")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not all(lines):
        raise CheckpointError("malformed_checkpoint", "A checkpoint has origin, size and root, and no empty lines.")
    origin, size, root = lines[0], lines[1], lines[2]
    if not _SIZE.fullmatch(size):
        raise CheckpointError("malformed_checkpoint", "The tree size is a decimal number without leading zeros.")
    root_hash = _b64decode(root, "The root hash")
    if len(root_hash) != ROOT_HASH_BYTES:
        raise CheckpointError("malformed_checkpoint", f"The root hash is {ROOT_HASH_BYTES} bytes.")
    signed_at, others = None, []
    for line in lines[3:]:
        if line.startswith(_TIME_PREFIX) and signed_at is None:
            try:
                signed_at = parse_time(line[len(_TIME_PREFIX) :])
            except ValueError:
                raise CheckpointError("malformed_checkpoint", "The time line is not a UTC time.") from None
        else:
            others.append(line)
    return Checkpoint(origin, int(size), root_hash, signed_at, tuple(others))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """The signed note text of `checkpoint`."""
    return signer.sign_note(checkpoint.body())


def open_checkpoint(note: str, key: VerifierKey, origin: str | None = None) -> Checkpoint:
    """Verify `note` with `key` and return its checkpoint.

    Codes: malformed_note / malformed_checkpoint, bad_signature (no valid signature by `key`),
    wrong_origin (a checkpoint of another log).
    """
    signed = parse_note(note)
    if not key.verify(signed):
        raise CheckpointError("bad_signature", f"The checkpoint is not signed by {key.to_vkey()}.")
    checkpoint = parse_checkpoint(signed.text)
    expected = key.name if origin is None else origin
    if checkpoint.origin != expected:
        raise CheckpointError("wrong_origin", f"The checkpoint is for '{checkpoint.origin}', not '{expected}'.")
    return checkpoint
