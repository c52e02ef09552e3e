"""Card status lists (IETF Token Status List, draft-ietf-oauth-status-list), signed deltas, freshness.

Status values are the draft's: 0 VALID, 1 INVALID (revoked), 2 SUSPENDED, so a list uses
`bits = 2`. Measured at 30 M cards: 436 kB zlib'd at 1 % revoked (1 bit: 417 kB), 492 kB with
a further 0.1 % suspended — under the 500 kB target without a second list or non-standard values.
Bits are numbered from the least significant bit of each byte, as the draft specifies.

Status List Token (CWT): protected {1: EdDSA, 4: kid, 16: "application/statuslist+cwt"};
claims 2 sub (the list URI), 6 iat, 4 exp, 65534 ttl, 65533 status_list {"bits", "lst"} and the
civicard private claim -65539 (list version). A delta is a CWT of the same shape with
typ "application/civicard-statusdelta+cwt", claims 2, 6, 4, 65534, -65539 (new version),
-65540 (base version) and -65541 {"bits", "size", "chg": zlib(CBOR [index gaps, values])}.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
import numpy as np

from civicard.identity.credentials import (
    CLAIM_EXP,
    CLAIM_IAT,
    CLAIM_SUB,
    UNREADABLE,
    IssuerKey,
    Keyring,
    parse_sign1,
    sign1,
)
from civicard.identity.credentials import verify_sign1 as _verify_sign1
from civicard.shared.errors import InvalidInput

VALID, INVALID, SUSPENDED = 0, 1, 2
LIST_TYP, DELTA_TYP = "application/statuslist+cwt", "application/civicard-statusdelta+cwt"
HDR_TYP, CLAIM_TTL, CLAIM_STATUS_LIST = 16, 65534, 65533
CLAIM_VERSION, CLAIM_BASE_VERSION, CLAIM_CHANGES = -65539, -65540, -65541
MAX_LIST_BYTES = 64 * 2**20  # 256 M cards at 2 bits; refuse zlib bombs beyond that
DEFAULT_TTL = timedelta(hours=12)
DEFAULT_LIFETIME = timedelta(days=7)
DEFAULT_MAX_AGE = timedelta(days=7)
_UNREADABLE = (*UNREADABLE, OSError, zlib.error)


@dataclass
class StatusList:
    """The bitmap: `bits` per card, `size` cards (a multiple of 8 / bits), all VALID at first."""

    bits: int
    data: bytearray

    @classmethod
    def empty(cls, capacity: int, bits: int = 2) -> StatusList:
        if bits not in (1, 2, 4, 8) or capacity < 1:
            raise InvalidInput("status_list_invalid", "bits is 1, 2, 4 or 8 and the capacity is positive.")
        per_byte = 8 // bits
        return cls(bits, bytearray(-(-capacity // per_byte)))

    @property
    def size(self) -> int:
        return len(self.data) * 8 // self.bits

    def get(self, index: int) -> int:
        """The status of card `index` (IndexError beyond the list, as the draft requires)."""
        bits = self.bits
        per_byte = 8 // bits
        return (self.data[index // per_byte] >> (index % per_byte * bits)) & ((1 << bits) - 1)

    def set(self, index: int, value: int) -> None:
        bits, mask = self.bits, (1 << self.bits) - 1
        if not 0 <= value <= mask or not 0 <= index < self.size:
            raise InvalidInput("status_list_invalid", f"Status {value} at {index} does not fit this list.")
        per_byte = 8 // bits
        shift = index % per_byte * bits
        byte = index // per_byte
        self.data[byte] = (self.data[byte] & ~(mask << shift) & 0xFF) | (value << shift)

    def copy(self) -> StatusList:
        return StatusList(self.bits, bytearray(self.data))

    def to_claim(self) -> dict[str, Any]:
        """The CBOR StatusList structure; zlib at the highest level, as the draft recommends."""
        return {"bits": self.bits, "lst": zlib.compress(bytes(self.data), 9)}

    @classmethod
    def from_claim(cls, claim: Any) -> StatusList:
        bits, lst = claim["bits"], claim["lst"]
        if type(bits) is not int or bits not in (1, 2, 4, 8) or type(lst) is not bytes:
            raise ValueError("bad StatusList structure")
        return cls(bits, bytearray(_inflate(lst)))


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_LIST_BYTES)
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise ValueError("truncated, oversized or trailing zlib data")
    return out


@dataclass(frozen=True)
class StatusListToken:
    """A verified (or about to be signed) list with its metadata; what a terminal holds."""

    uri: str
    version: int
    issued_at: datetime
    expires_at: datetime
    ttl: timedelta
    status: StatusList = field(repr=False)

    def is_stale(self, now: datetime, max_age: timedelta = DEFAULT_MAX_AGE) -> bool:
        """Older than the terminal's max age, or past the issuer's exp: never answer plain "valid"."""
        return now - self.issued_at > max_age or now >= self.expires_at

    def needs_refresh(self, now: datetime) -> bool:
        return now - self.issued_at >= self.ttl


def new_token(
    status: StatusList,
    uri: str,
    version: int,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
    lifetime: timedelta = DEFAULT_LIFETIME,
) -> StatusListToken:
    return StatusListToken(uri, version, _whole(now), _whole(now + lifetime), ttl, status)


def sign_status_list(token: StatusListToken, key: IssuerKey) -> bytes:
    claims = _common_claims(token) | {CLAIM_STATUS_LIST: token.status.to_claim()}
    return sign1(cbor2.dumps(claims), key, {HDR_TYP: LIST_TYP})


def verify_status_list(raw: bytes, keyring: Keyring) -> StatusListToken:
    """Signature, typ and claims; freshness is judged at each check (`is_stale`)."""
    claims = _open(raw, keyring, "status_list", LIST_TYP)
    try:
        return _token_from(claims, StatusList.from_claim(claims[CLAIM_STATUS_LIST]))
    except _UNREADABLE as exc:
        raise _malformed("status_list") from exc


@dataclass(frozen=True)
class StatusDelta:
    """The cards whose status changed between two versions of one list, with their new values."""

    uri: str
    bits: int
    size: int
    base_version: int
    version: int
    indices: tuple[int, ...]
    values: tuple[int, ...]


def diff(old: StatusListToken, new: StatusListToken) -> StatusDelta:
    """What a terminal holding `old` needs to hold exactly `new` (same list, bits and size)."""
    if (old.uri, old.status.bits, old.status.size) != (new.uri, new.status.bits, new.status.size):
        raise InvalidInput("status_delta_invalid", "A delta joins two versions of the same list and size.")
    if new.version <= old.version:
        raise InvalidInput("status_delta_invalid", "A delta goes from an older version to a newer one.")
    before = np.frombuffer(bytes(old.status.data), dtype=np.uint8)
    after = np.frombuffer(bytes(new.status.data), dtype=np.uint8)
    indices, values = [], []
    per_byte = 8 // new.status.bits
    for byte in np.flatnonzero(before != after).tolist():
        for index in range(byte * per_byte, byte * per_byte + per_byte):
            if old.status.get(index) != (value := new.status.get(index)):
                indices.append(index)
                values.append(value)
    return StatusDelta(
        new.uri, new.status.bits, new.status.size, old.version, new.version, tuple(indices), tuple(values)
    )


def sign_delta(
    delta: StatusDelta,
    key: IssuerKey,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
    lifetime: timedelta = DEFAULT_LIFETIME,
) -> bytes:
    """A signed delta also renews freshness: its iat is the newest word on the listed cards."""
    pairs = sorted(zip(delta.indices, delta.values, strict=True))
    indices = [index for index, _ in pairs]
    gaps = [b - a for a, b in zip([0, *indices], indices, strict=False)]
    changes = {
        "bits": delta.bits,
        "size": delta.size,
        "chg": zlib.compress(cbor2.dumps([gaps, bytes(value for _, value in pairs)]), 9),
    }
    stamp = new_token(StatusList(delta.bits, bytearray()), delta.uri, delta.version, now, ttl, lifetime)
    claims = _common_claims(stamp) | {CLAIM_BASE_VERSION: delta.base_version, CLAIM_CHANGES: changes}
    return sign1(cbor2.dumps(claims), key, {HDR_TYP: DELTA_TYP})


def apply_signed_delta(held: StatusListToken, raw: bytes, keyring: Keyring) -> StatusListToken:
    """Verify a delta and apply it to a copy of the held list; refuses a delta for another base."""
    claims = _open(raw, keyring, "status_delta", DELTA_TYP)
    try:
        base, change = claims[CLAIM_BASE_VERSION], claims[CLAIM_CHANGES]
        target = (change["bits"], change["size"])
        gaps, values = cbor2.loads(_inflate(change["chg"]))
        stamp = _token_from(claims, held.status)
        if len(gaps) != len(values) or type(base) is not int or not all(type(g) is int and g >= 0 for g in gaps):
            raise ValueError("bad delta")
    except _UNREADABLE as exc:
        raise _malformed("status_delta") from exc
    if (stamp.uri, base, *target) != (held.uri, held.version, held.status.bits, held.status.size):
        raise InvalidInput("status_delta_mismatch", "This delta is for another list or version; fetch the full list.")
    status, index = held.status.copy(), 0
    for gap, value in zip(gaps, values, strict=True):
        index += gap
        status.set(index, value)
    return replace(stamp, status=status)


def _common_claims(token: StatusListToken) -> dict[int, Any]:
    return {
        CLAIM_SUB: token.uri,
        CLAIM_IAT: int(token.issued_at.timestamp()),
        CLAIM_EXP: int(token.expires_at.timestamp()),
        CLAIM_TTL: int(token.ttl.total_seconds()),
        CLAIM_VERSION: token.version,
    }


def _token_from(claims: dict[int, Any], status: StatusList) -> StatusListToken:
    uri, version, ttl = claims[CLAIM_SUB], claims[CLAIM_VERSION], claims[CLAIM_TTL]
    if type(uri) is not str or type(version) is not int or type(ttl) is not int or ttl <= 0:
        raise ValueError("bad status list claims")
    issued_at = datetime.fromtimestamp(claims[CLAIM_IAT], UTC)
    return StatusListToken(
        uri, version, issued_at, datetime.fromtimestamp(claims[CLAIM_EXP], UTC), timedelta(seconds=ttl), status
    )


def _open(raw: bytes, keyring: Keyring, subject: str, typ: str) -> dict[int, Any]:
    message = parse_sign1(raw, subject)
    if message.headers.get(HDR_TYP) != typ:
        raise _malformed(subject)
    _verify_sign1(message, keyring, subject)
    try:
        claims = cbor2.loads(message.payload)
    except UNREADABLE as exc:
        raise _malformed(subject) from exc
    if type(claims) is not dict:
        raise _malformed(subject)
    return claims


def _malformed(subject: str) -> InvalidInput:
    return InvalidInput(f"{subject}_malformed", f"The {subject.replace('_', ' ')} cannot be read.")


def _whole(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)
