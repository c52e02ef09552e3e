"""Staff accounts: roles, password policy, Argon2id hashing, TOTP second factor and lockout back-off.

Pure domain: no database. The store (adapters/db/auth_store.py) keeps the hashes, the sealed
TOTP secrets and the failure counters; this module decides what they mean.
"""

from __future__ import annotations

import hmac
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from civicard.shared.errors import InvalidInput
from civicard.shared.keys import RootKey

STAFF_ROLES = frozenset({"registrar", "reviewer", "program_admin", "oversight"})
# Roles that can change what everyone gets (program rules) or see across cases need a second factor.
TOTP_ROLES = frozenset({"program_admin", "oversight"})

_USERNAME = re.compile(r"[a-z][a-z0-9._-]{2,59}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing cost grows with length; refuse megabyte "passwords"


@dataclass(frozen=True)
class StaffAccount:
    """A staff account as the domain sees it: never the hash or the TOTP secret."""

    id: str
    username: str
    display_name: str
    role: str
    created_at: datetime
    created_by: str
    disabled_at: datetime | None = None

    @property
    def needs_totp(self) -> bool:
        return role_needs_totp(self.role)

    @property
    def active(self) -> bool:
        return self.disabled_at is None


def role_needs_totp(role: str) -> bool:
    return role in TOTP_ROLES


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive: stored and looked up in lower case."""
    return username.strip().lower()


def check_username(username: str) -> str:
    name = normalise_username(username)
    if not _USERNAME.fullmatch(name):
        raise InvalidInput(
            "invalid_username",
            "A username is 3–60 characters: a letter, then letters, digits, '.', '_' or '-'.",
        )
    return name


def check_staff_role(role: str) -> str:
    if role not in STAFF_ROLES:
        allowed = ", ".join(sorted(STAFF_ROLES))
        raise InvalidInput("invalid_role", f"'{role}' is not a staff role (one of: {allowed}).")
    return role


def check_display_name(display_name: str) -> str:
    name = " ".join(display_name.split())
    if not 1 <= len(name) <= 120 or _CONTROL.search(name):
        raise InvalidInput("invalid_display_name", "A display name is 1–120 printable characters.")
    return name


def check_password_policy(password: str, username: str) -> None:
    """Length over composition rules (NIST SP 800-63B): long, not one repeated character, not the username."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput("weak_password", f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput("weak_password", f"A password may have at most {MAX_PASSWORD_LENGTH} characters.")
    if len(set(password)) == 1:
        raise InvalidInput("weak_password", "A password may not be one character repeated.")
    if password.strip().lower() == normalise_username(username):
        raise InvalidInput("weak_password", "A password may not be the username.")


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost. Defaults follow OWASP (19 MiB, 2 passes, 1 lane, ~30 ms here); tests pass cheaper ones."""

    time_cost: int = 2
    memory_cost: int = 19_456  # KiB
    parallelism: int = 1
    hash_len: int = 32
    salt_len: int = 16


class PasswordHashing:
    """Argon2id hashes in PHC string form; the parameters travel inside each hash."""

    def __init__(self, params: Argon2Params | None = None) -> None:
        p = params or Argon2Params()
        self._hasher = PasswordHasher(
            time_cost=p.time_cost,
            memory_cost=p.memory_cost,
            parallelism=p.parallelism,
            hash_len=p.hash_len,
            salt_len=p.salt_len,
            type=Type.ID,
        )
        self._dummy_hash: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(_normalise_password(password))

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, _normalise_password(password))
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def verify_nothing(self, password: str) -> None:
        """Spend the time of one verification, so an unknown username answers as slowly as a known one."""
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(os.urandom(16).hex())
        self.verify(self._dummy_hash, password)


def _normalise_password(password: str) -> str:
    # The same password typed on two keyboards may arrive composed differently (NIST 800-63B §5.1.1.2).
    return unicodedata.normalize("NFKC", password)


# --- TOTP (RFC 6238): 30-second steps, 6 digits, one step of drift either way --------------------

TOTP_PERIOD_SECONDS = 30
TOTP_DIGITS = 6
TOTP_VALID_WINDOW = 1
TOTP_ISSUER = "civicard"
TOTP_KEY_LABEL = "identity:totp-secret-encryption"
_CODE = re.compile(r"[0-9]{6}")  # not \d, which also matches other scripts' digits


def new_totp_secret() -> str:
    """160 random bits in base32, as authenticator apps expect."""
    return pyotp.random_base32(32)


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS)


def check_totp_secret(secret: str) -> str:
    """A caller-supplied secret (an import, the demo) must be base32 with at least 128 bits."""
    cleaned = secret.replace(" ", "").upper()
    try:
        if len(cleaned) < 26:
            raise ValueError("too short")
        _totp(cleaned).byte_secret()
    except (ValueError, TypeError):
        raise InvalidInput("invalid_totp_secret", "A TOTP secret is base32 with at least 128 bits.") from None
    return cleaned


def totp_provisioning_uri(secret: str, username: str, issuer: str = TOTP_ISSUER) -> str:
    """The otpauth:// URI an authenticator app scans (it contains the secret: show it once)."""
    return _totp(secret).provisioning_uri(name=username, issuer_name=issuer)


def match_totp(secret: str, code: str, at: datetime, after_step: int | None = None) -> int | None:
    """The time step `code` is valid for at `at` (± one step), or None.

    Steps at or before `after_step` (the last one accepted) do not count, so a code cannot be used
    twice (RFC 6238 §5.2).
    """
    code = code.replace(" ", "").strip()
    if not _CODE.fullmatch(code):
        return None
    totp = _totp(secret)
    current = totp.timecode(at)
    for step in (current, current - TOTP_VALID_WINDOW, current + TOTP_VALID_WINDOW):
        if after_step is not None and step <= after_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


class TotpSecretUnreadable(RuntimeError):
    """A sealed TOTP secret does not open: the root key changed or the row was tampered with."""


class TotpSecretBox:
    """AES-256-GCM for TOTP secrets at rest, bound to the account id (a sealed secret moved to another row fails)."""

    _VERSION = b"\x01"

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_root_key(cls, root_key: RootKey) -> TotpSecretBox:
        return cls(root_key.derive(TOTP_KEY_LABEL))

    def seal(self, secret: str, account_id: str) -> bytes:
        nonce = os.urandom(12)
        return self._VERSION + nonce + self._aead.encrypt(nonce, secret.encode(), _aad(account_id))

    def open(self, sealed: bytes, account_id: str) -> str:
        if sealed[:1] != self._VERSION or len(sealed) < 1 + 12 + 16:
            raise TotpSecretUnreadable("Unknown format of a sealed TOTP secret.")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], _aad(account_id)).decode()
        except InvalidTag:
            raise TotpSecretUnreadable("A TOTP secret does not open with the current root key.") from None

    def __repr__(self) -> str:  # never print key material
        return "TotpSecretBox(<secret>)"


def _aad(account_id: str) -> bytes:
    return b"civicard-totp-v1:" + account_id.encode()


# --- Lockout with back-off -----------------------------------------------------------------------


@dataclass(frozen=True)
class LockoutPolicy:
    """After `threshold` consecutive failures lock for `first_lock`, doubling per further failure up to `max_lock`."""

    threshold: int = 5
    first_lock: timedelta = timedelta(minutes=1)
    max_lock: timedelta = timedelta(hours=1)

    def lock_duration(self, failed_logins: int) -> timedelta:
        if failed_logins < self.threshold:
            return timedelta(0)
        doublings = failed_logins - self.threshold
        if doublings >= 32:  # far past the cap; avoid huge multipliers
            return self.max_lock
        return min(self.first_lock * (1 << doublings), self.max_lock)


DEFAULT_LOCKOUT = LockoutPolicy()


def lockout_duration(failed_logins: int, policy: LockoutPolicy = DEFAULT_LOCKOUT) -> timedelta:
    """How long an account stays locked after its `failed_logins`-th consecutive failure (0 = not locked)."""
    return policy.lock_duration(failed_logins)
