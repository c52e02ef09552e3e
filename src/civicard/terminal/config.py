"""Where a terminal keeps itself: a directory with its device key (PEM, owner-only) and its SQLite file."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from civicard.shared.errors import InvalidInput

KEY_FILE = "device.key"
DB_FILE = "terminal.db"
DEFAULT_DIR = Path("var/terminal")


@dataclass(frozen=True)
class TerminalHome:
    directory: Path

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def db_path(self) -> Path:
        return self.directory / DB_FILE

    def has_key(self) -> bool:
        return self.key_path.exists()

    def load_key(self) -> Ed25519PrivateKey:
        if not self.has_key():
            raise InvalidInput("terminal_not_registered", "No device key here; run `civicard terminal register`.")
        return read_private_key(self.key_path.read_bytes())

    def store_key(self, key: Ed25519PrivateKey) -> None:
        """Write the key readable by the owner only (created with mode 0600, never world-readable)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())


def read_private_key(data: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key: PEM (PKCS#8), or base64 of the raw 32 bytes (`vendors terminal register --generate`)."""
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = load_pem_private_key(text, password=None)
            if isinstance(key, Ed25519PrivateKey):
                return key
            raise ValueError("not Ed25519")
        raw = base64.b64decode(text.replace(b"-", b"+").replace(b"_", b"/") + b"==")
        return Ed25519PrivateKey.from_private_bytes(raw)
    except ValueError:
        raise InvalidInput("device_key_invalid", "The key is not Ed25519 PEM nor 32 raw bytes in base64.") from None


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public half as base64 of its raw 32 bytes (what the vendor administrator registers)."""
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
