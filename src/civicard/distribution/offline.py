"""Offline redemption: the signed outlet bundle, card keys, signed receipts, and what a terminal may hand over.

A counter terminal fetches a **bundle** for its outlet and the current period (`offline_sync.build_bundle`): a
COSE_Sign1 (Ed25519, the key `bundle_signing_key` derives from the root key, typ
`application/civicard-offline-bundle+cwt`) over a CBOR map

    {"v": 1, "period": "2026-11", "outlet": <outlet id>, "iat": unix s, "exp": unix s,
     "key": <32-byte outlet bundle key>, "cards": {card key: group}, "groups": [{item: remaining}],
     "caps": {item: offline cap}, "status_list": <signed Status List Token>}

`key` is HMAC-derived from the root key for this outlet and period; a card key is
`HMAC-SHA256(key, handle)[:16]`, so the bundle names no handle, person, household or card id and
is useless at another outlet or in another month. `cards` lists the valid cards of the households
that redeemed at the outlet in the last three periods; the cards of one household share a group
(their remaining quantities are the household's). Every other valid card gets `caps`.

Selling offline, the terminal signs a **receipt** with its device key: canonical JSON
`{"v","terminal","seq","period","card","items","device_time"}` prefixed by RECEIPT_SCHEME. The server
applies synced receipts in seq order through the same sale core as online sales (`offline_sync.apply_batch`);
one that cannot be applied is kept as a conflict for review, never dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from civicard.distribution.sales import MAX_LINES, MAX_QUANTITY, BasketLine, Refused, check_basket
from civicard.identity.credentials import (
    UNREADABLE,
    IssuerKey,
    Keyring,
    parse_handle,
    parse_sign1,
    sign1,
    verify_sign1,
)
from civicard.shared.errors import DomainError, InvalidInput, Unauthenticated
from civicard.shared.keys import RootKey

BUNDLE_TYP = "application/civicard-offline-bundle+cwt"
BUNDLE_FORMAT = 1
BUNDLE_KID = 0xB1  # its own kid: a bundle key can never pass for a card issuer key
HDR_TYP = 16
CARD_KEY_BYTES = 16
HISTORY_PERIODS = 3  # the current period and the two before it
RECEIPT_SCHEME = b"civicard-offline-receipt-v1\n"
RECEIPT_FORMAT = 1
MAX_RECEIPT_BYTES = 4096
ReceiptStatus = Literal["applied", "conflict", "refused"]


# --- keys --------------------------------------------------------------------------------------------


def bundle_signing_key(root_key: RootKey) -> IssuerKey:
    """The server's bundle-signing key; derived like the card issuer and checkpoint keys, never stored."""
    seed = root_key.derive(f"distribution:offline-bundle-signing:{BUNDLE_KID}", 32)
    return IssuerKey(BUNDLE_KID, Ed25519PrivateKey.from_private_bytes(seed))


def bundle_keyring(root_key: RootKey) -> Keyring:
    """What terminals fetch (`/v1/keys/offline-bundle`) to verify bundles."""
    return Keyring.of([bundle_signing_key(root_key)])


def outlet_bundle_key(root_key: RootKey, outlet_id: str, period: str) -> bytes:
    return root_key.derive(f"distribution:offline-outlet:{outlet_id}:{period}", 32)


def card_key(bundle_key: bytes, handle: str) -> bytes:
    """How a bundle names a card: the terminal computes the same from the scanned handle."""
    return hmac.new(bundle_key, handle.encode("ascii"), hashlib.sha256).digest()[:CARD_KEY_BYTES]


# --- periods -----------------------------------------------------------------------------------------


def period_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m")


def previous_periods(period: str, count: int = HISTORY_PERIODS) -> list[str]:
    """`period` and the `count - 1` before it, newest first."""
    year, month = int(period[:4]), int(period[5:7])
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out


def period_end(period: str) -> datetime:
    year, month = int(period[:4]), int(period[5:7])
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


# --- the bundle --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    period: str
    outlet_id: str
    issued_at: datetime
    expires_at: datetime
    key: bytes
    cards: dict[bytes, int]  # card key → group
    groups: tuple[dict[str, int], ...]  # per group: item → remaining for the period
    caps: dict[str, int]  # item → offline cap per card per cycle, for cards not in `cards`
    status_list: bytes  # the signed Status List Token

    def group_of(self, handle: str) -> int | None:
        return self.cards.get(card_key(self.key, handle))

    def group_cards(self, group: int) -> frozenset[bytes]:
        return frozenset(k for k, g in self.cards.items() if g == group)

    def is_current(self, now: datetime) -> bool:
        return period_of(now) == self.period and self.issued_at - timedelta(minutes=5) <= now < self.expires_at


def sign_bundle(bundle: Bundle, key: IssuerKey) -> bytes:
    payload = {
        "v": BUNDLE_FORMAT,
        "period": bundle.period,
        "outlet": bundle.outlet_id,
        "iat": int(bundle.issued_at.timestamp()),
        "exp": int(bundle.expires_at.timestamp()),
        "key": bundle.key,
        "cards": dict(sorted(bundle.cards.items())),
        "groups": [dict(sorted(g.items())) for g in bundle.groups],
        "caps": dict(sorted(bundle.caps.items())),
        "status_list": bundle.status_list,
    }
    return sign1(cbor2.dumps(payload), key, {HDR_TYP: BUNDLE_TYP})


def verify_bundle(raw: bytes, keyring: Keyring) -> Bundle:
    """Signature and typ against the bundle keyring, then the shape of every field."""
    message = parse_sign1(raw, "offline_bundle")
    if message.headers.get(HDR_TYP) != BUNDLE_TYP:
        raise _malformed()
    verify_sign1(message, keyring, "offline_bundle")
    try:
        m = cbor2.loads(message.payload)
        if m["v"] != BUNDLE_FORMAT:
            raise InvalidInput("offline_bundle_unsupported", "This bundle uses a newer format; update the terminal.")
        groups = tuple(_quantities(g) for g in m["groups"])
        cards = {k: g for k, g in m["cards"].items() if type(k) is bytes and type(g) is int and 0 <= g < len(groups)}
        if len(cards) != len(m["cards"]) or type(m["key"]) is not bytes or type(m["status_list"]) is not bytes:
            raise ValueError("bad bundle fields")
        return Bundle(
            period=_text(m["period"]),
            outlet_id=_text(m["outlet"]),
            issued_at=datetime.fromtimestamp(m["iat"], UTC),
            expires_at=datetime.fromtimestamp(m["exp"], UTC),
            key=m["key"],
            cards=cards,
            groups=groups,
            caps=_quantities(m["caps"]),
            status_list=m["status_list"],
        )
    except (*UNREADABLE, OSError) as exc:
        raise _malformed() from exc


def _quantities(raw: Any) -> dict[str, int]:
    if type(raw) is not dict or not all(type(k) is str and type(v) is int and v >= 0 for k, v in raw.items()):
        raise ValueError("not item → quantity")
    return dict(raw)


def _text(raw: Any) -> str:
    if type(raw) is not str:
        raise ValueError("not text")
    return raw


def _malformed() -> InvalidInput:
    return InvalidInput("offline_bundle_malformed", "The offline bundle cannot be read.")


# --- what a terminal may hand over -------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What a card may still get offline at this terminal, before counting what it already sold.

    `source` is "remaining" (the bundle holds the household's quantities; `group` names it) or "caps".
    """

    source: Literal["remaining", "caps"]
    items: dict[str, int]
    group: int | None = None


def limits_for(bundle: Bundle, handle: str, degraded: bool) -> Limits:
    """A card in the bundle gets its household's remaining; any other valid card the caps. With a
    stale status list (`degraded`) even a listed card gets no more than the caps."""
    group = bundle.group_of(handle)
    if group is None:
        return Limits("caps", dict(bundle.caps))
    remaining = bundle.groups[group]
    if degraded:
        remaining = {item: min(qty, bundle.caps.get(item, 0)) for item, qty in remaining.items()}
    return Limits("remaining", dict(remaining), group)


def check_offline_basket(limits: Limits, sold: Mapping[str, int], basket: Sequence[BasketLine]) -> list[BasketLine]:
    """The basket if it fits what is left (limits minus `sold`), else Refused for the first line that does not."""
    lines = check_basket(basket)
    for line in lines:
        limit = limits.items.get(line.item, 0)
        left = max(0, limit - sold.get(line.item, 0))
        if line.quantity <= left:
            continue
        if limits.source == "caps":
            raise Refused(
                "offline_cap_exceeded",
                f"Offline, this card may get {left} more of '{line.item}' this period ({line.quantity} asked).",
            )
        if limit == 0:
            raise Refused("not_entitled", f"This card's household is not entitled to '{line.item}' this period.")
        raise Refused(
            "insufficient_remaining", f"Only {left} of '{line.item}' remain this period ({line.quantity} asked)."
        )
    return lines


# --- receipts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    terminal_id: str
    seq: int
    period: str
    card: str  # the card handle
    items: dict[str, int]
    device_time: datetime

    def payload(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): the bytes signed, stored and re-sent."""
        body = {
            "v": RECEIPT_FORMAT,
            "terminal": self.terminal_id,
            "seq": self.seq,
            "period": self.period,
            "card": self.card,
            "items": dict(sorted(self.items.items())),
            "device_time": self.device_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @property
    def basket(self) -> list[BasketLine]:
        return [BasketLine(item, qty) for item, qty in sorted(self.items.items())]


def sign_receipt(private_key: Ed25519PrivateKey, payload: bytes) -> bytes:
    return private_key.sign(RECEIPT_SCHEME + payload)


def verify_receipt(public_key: bytes, payload: bytes, signature: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, RECEIPT_SCHEME + payload)
    except (InvalidSignature, ValueError):
        raise Unauthenticated("receipt_bad_signature", "The receipt signature does not verify.") from None


def parse_receipt(payload: bytes) -> Receipt:
    """A receipt's payload, checked field by field; anything else is `receipt_malformed`."""
    try:
        if len(payload) > MAX_RECEIPT_BYTES:
            raise ValueError("too large")
        m = json.loads(payload)
        items = m["items"]
        if (
            m["v"] != RECEIPT_FORMAT
            or type(m["seq"]) is not int
            or not 1 <= m["seq"] < 2**62
            or type(items) is not dict
            or not 1 <= len(items) <= MAX_LINES
            or not all(type(q) is int and 1 <= q <= MAX_QUANTITY for q in items.values())
        ):
            raise ValueError("bad fields")
        period = _text(m["period"])
        date.fromisoformat(f"{period}-01")
        receipt = Receipt(
            terminal_id=_text(m["terminal"]),
            seq=m["seq"],
            period=period,
            card=parse_handle(_text(m["card"])),
            items={_text(k): v for k, v in items.items()},
            device_time=datetime.strptime(_text(m["device_time"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
        )
    except (ValueError, KeyError, TypeError, DomainError) as exc:
        raise InvalidInput("receipt_malformed", "The receipt cannot be read.") from exc
    if receipt.payload() != payload:
        raise InvalidInput("receipt_malformed", "The receipt is not in canonical form.")
    return receipt
