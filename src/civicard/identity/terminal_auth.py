"""Vendor terminals sign every request with their own Ed25519 device key.

The signed message (UTF-8, lines joined by a single LF, no trailing newline):

    civicard-terminal-request-v1
    <METHOD>                      upper case, e.g. POST
    <path?query>                  the request target exactly as sent (raw, still percent-encoded)
    <sha256(body) hex>            lower-case hex; the hash of zero bytes for an empty body
    <timestamp>                   unix seconds, decimal, when the terminal signed
    <nonce>                       16–64 characters of [A-Za-z0-9_-], never reused by this terminal
    <terminal id>                 the id the server gave at registration

Over HTTP the terminal sends `X-Civicard-Terminal`, `X-Civicard-Timestamp`, `X-Civicard-Nonce`
and `X-Civicard-Signature` (the 64-byte signature, base64url with or without padding).
The server refuses a request more than `CLOCK_SKEW` away from its clock, and remembers each
nonce for longer than a request stays fresh, so a captured request cannot be replayed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from civicard.shared.errors import InvalidInput, Unauthenticated

SCHEME = "civicard-terminal-request-v1"
CLOCK_SKEW = timedelta(seconds=120)
# A nonce seen at server time t can only come back inside a fresh request until t + 2 × skew
# (its timestamp is at least t − skew, and stays fresh until timestamp + skew); keep a margin.
NONCE_RETENTION = 2 * CLOCK_SKEW + timedelta(minutes=1)
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_METHOD = re.compile(r"[A-Z]{3,10}")


def canonical_request(method: str, target: str, body: bytes, timestamp: int, nonce: str, terminal_id: str) -> bytes:
    """The exact bytes a terminal signs and the server verifies (see the module docstring)."""
    lines = [
        SCHEME,
        method.upper(),
        target,
        hashlib.sha256(body).hexdigest(),
        str(int(timestamp)),
        nonce,
        terminal_id,
    ]
    return "\n".join(lines).encode()


def sign_request(
    private_key: Ed25519PrivateKey, method: str, target: str, body: bytes, timestamp: int, nonce: str, terminal_id: str
) -> bytes:
    """What a terminal does (and tests): sign the canonical request."""
    return private_key.sign(canonical_request(method, target, body, timestamp, nonce, terminal_id))


def encode_signature(signature: bytes) -> str:
    return base64.urlsafe_b64encode(signature).decode().rstrip("=")


def decode_signature(text: str) -> bytes:
    """A header's base64url signature → 64 bytes; anything else is a bad signature."""
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        raise _bad_signature() from None
    if len(raw) != SIGNATURE_BYTES:
        raise _bad_signature()
    return raw


def load_public_key(public_key: bytes) -> Ed25519PublicKey:
    """A raw 32-byte Ed25519 public key, as registered for a terminal."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise InvalidInput("invalid_public_key", "A terminal key is a raw 32-byte Ed25519 public key.")
    return Ed25519PublicKey.from_public_bytes(public_key)


def check_request_shape(method: str, nonce: str) -> None:
    if not _METHOD.fullmatch(method.upper()):
        raise InvalidInput("terminal_bad_request", "The request method is not valid.")
    if not _NONCE.fullmatch(nonce):
        raise InvalidInput("terminal_bad_nonce", "A nonce is 16–64 characters of letters, digits, '_' or '-'.")


def check_fresh(timestamp: int, now: datetime, skew: timedelta = CLOCK_SKEW) -> None:
    """Refuse a request signed too long ago or too far in the future."""
    if abs(now.timestamp() - timestamp) > skew.total_seconds():
        raise Unauthenticated(
            "terminal_stale_request",
            f"The request time is more than {int(skew.total_seconds())} s from the server's; check the terminal clock.",
        )


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> None:
    try:
        load_public_key(public_key).verify(signature, message)
    except (InvalidSignature, InvalidInput):
        raise _bad_signature() from None


def _bad_signature() -> Unauthenticated:
    return Unauthenticated("terminal_bad_signature", "The request signature does not verify.")
