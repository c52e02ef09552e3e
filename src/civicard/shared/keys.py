"""The root key and the keys derived from it (HKDF-SHA256, one label per use).

The root key lives outside the database (an environment variable, or in demo mode a file under
var/). Every other secret — PIN pepper, sector pseudonym keys, signing-key seeds — is derived
from it with a distinct label, so one root key restores them all and none is stored in clear.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ROOT_KEY_BYTES = 32
FINGERPRINT_LABEL = "root-key:fingerprint"


class RootKeyError(ValueError):
    pass


def parse_root_key(text: str) -> bytes:
    """Decode a base64 root key; it must hold at least 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise RootKeyError("CIVICARD_ROOT_KEY is not valid base64.") from None
    if len(raw) < ROOT_KEY_BYTES:
        raise RootKeyError(f"CIVICARD_ROOT_KEY must hold at least {ROOT_KEY_BYTES} bytes; it has {len(raw)}.")
    if len(set(raw)) < 8:
        raise RootKeyError("CIVICARD_ROOT_KEY is not random (too few distinct bytes).")
    return raw


def new_root_key_text() -> str:
    """A fresh random root key, base64 (what CIVICARD_ROOT_KEY holds)."""
    return base64.b64encode(secrets.token_bytes(ROOT_KEY_BYTES)).decode()


class RootKey:
    def __init__(self, raw: bytes) -> None:
        if len(raw) < ROOT_KEY_BYTES:
            raise RootKeyError("A root key needs at least 32 bytes.")
        self._raw = raw

    def derive(self, label: str, length: int = 32) -> bytes:
        """A subkey for one purpose, e.g. `derive("pseudonym:vendor")`. Stable for a given root."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=b"civicard-v1", info=label.encode())
        return hkdf.derive(self._raw)

    def fingerprint(self) -> str:
        """A short public name of this root key, to store and compare: HMAC-SHA256 of a fixed label
        under a derived subkey, so it reveals nothing about the key or any other subkey."""
        mac = hmac.new(self.derive(FINGERPRINT_LABEL), b"civicard root key fingerprint v1", "sha256").hexdigest()
        return "-".join(mac[i : i + 4] for i in range(0, 20, 4))

    def __repr__(self) -> str:  # never print key material
        return "RootKey(<secret>)"
