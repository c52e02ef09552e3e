"""What a vendor terminal does offline with a card: decode → signature and kid → expiry → status bit.

Keys and the status list are loaded once (parsed public keys by kid, the list inflated to its
bitmap), so a check costs one Ed25519 verification plus a few microseconds. A list older than the
terminal's max age (default 7 days) or past its exp never yields plain "valid": the answer is
"valid_degraded", and the terminal applies its offline caps.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import zxingcpp
from PIL import Image

from civicard.identity.credentials import CardClaims, Keyring, verify_token
from civicard.identity.status_list import (
    DEFAULT_MAX_AGE,
    INVALID,
    SUSPENDED,
    VALID,
    StatusListToken,
    apply_signed_delta,
    verify_status_list,
)
from civicard.shared.errors import Conflict, DomainError

CheckStatus = Literal["valid", "valid_degraded", "invalid"]
_STATUS_CODES = {INVALID: "card_revoked", SUSPENDED: "card_suspended"}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """`code` is stable: card_valid, status_list_stale, or the reason the card is refused."""

    status: CheckStatus
    code: str
    claims: CardClaims | None = None

    @property
    def accepted(self) -> bool:
        return self.status != "invalid"


class OfflineVerifier:
    """A terminal's verifier: the published keyring and the latest status list it holds."""

    def __init__(self, keyring: Keyring, status_list: StatusListToken, max_age: timedelta = DEFAULT_MAX_AGE) -> None:
        self.keyring = keyring
        self.status_list = status_list
        self.max_age = max_age

    @classmethod
    def from_published(
        cls, cose_key_set: bytes, signed_list: bytes, max_age: timedelta = DEFAULT_MAX_AGE
    ) -> OfflineVerifier:
        """Build from what the server publishes: the COSE key set and a signed status list."""
        keyring = Keyring.from_cose_key_set(cose_key_set)
        return cls(keyring, verify_status_list(signed_list, keyring), max_age)

    def replace_list(self, signed_list: bytes) -> None:
        """Take a newer full list (an older or equal version is refused: no rollback to un-revoke cards)."""
        candidate = verify_status_list(signed_list, self.keyring)
        self._take(candidate)

    def apply_delta(self, signed_delta: bytes) -> None:
        self._take(apply_signed_delta(self.status_list, signed_delta, self.keyring))

    def _take(self, candidate: StatusListToken) -> None:
        if candidate.uri != self.status_list.uri or candidate.version <= self.status_list.version:
            raise Conflict("status_list_rollback", "This status list is not newer than the one held.")
        self.status_list = candidate

    def check(self, text: str, now: datetime) -> CheckResult:
        try:
            claims = verify_token(text, self.keyring, now)
        except DomainError as refused:
            return CheckResult("invalid", refused.code)
        try:
            status = self.status_list.status.get(claims.status_index)
        except IndexError:
            return CheckResult("invalid", "card_status_unknown", claims)
        if status != VALID:
            return CheckResult("invalid", _STATUS_CODES.get(status, "card_status_unknown"), claims)
        if self.status_list.is_stale(now, self.max_age):
            return CheckResult("valid_degraded", "status_list_stale", claims)
        return CheckResult("valid", "card_valid", claims)

    def check_image(self, image: bytes | Image.Image, now: datetime) -> CheckResult:
        """The same check from a camera frame or a PNG/JPEG file of the card."""
        text = read_qr(image)
        if text is None:
            return CheckResult("invalid", "qr_not_found")
        return self.check(text, now)


def read_qr(image: bytes | Image.Image) -> str | None:
    """The text of the first QR code zxing-cpp finds in the image, or None."""
    picture = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
    if picture.mode != "L":
        picture = picture.convert("L")
    found = zxingcpp.read_barcode(picture, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    return found.text if found is not None and found.valid else None
