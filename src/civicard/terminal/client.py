"""The terminal client: redeem offline against the bundle, queue signed receipts, sync with the server.

Offline, a scanned card is checked like any terminal checks it (`OfflineVerifier`: signature,
expiry, status bit from the status list inside the bundle), then held to what the bundle allows —
the household's remaining quantities if the bundle lists the card, else the programs' offline caps
— minus what this terminal already sold it offline. A handle typed by hand cannot be checked
against the status list, so it is accepted only for a card the bundle lists, and then only up to
the caps. The receipt is signed with the device key and committed to the local queue before the
sale is confirmed.

Counting what was already sold: the caps are per card per cycle, so every receipt of the card this
period counts. The remaining quantities of a fresh bundle already include what the server applied
before the bundle was made, so only receipts after the last synced one at download time count.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from civicard.distribution.offline import (
    Bundle,
    Receipt,
    card_key,
    check_offline_basket,
    limits_for,
    period_of,
    sign_receipt,
    verify_bundle,
)
from civicard.distribution.sales import BasketLine, Refused
from civicard.identity.credentials import QR_PREFIX, Keyring, parse_handle
from civicard.identity.terminal_auth import encode_signature, sign_request
from civicard.identity.terminal_check import OfflineVerifier
from civicard.shared.errors import DomainError, InvalidInput, Unauthenticated, Unavailable
from civicard.terminal import queue as q
from civicard.terminal.config import TerminalHome
from civicard.terminal.queue import LocalStore, QueuedReceipt

BATCH = 500
BUNDLE_PATH = "/v1/terminal/bundle"
RECEIPTS_PATH = "/v1/terminal/receipts"
CARD_KEYS_PATH = "/v1/keys"
BUNDLE_KEYS_PATH = "/v1/keys/offline-bundle"
REDEEM_PATH = "/v1/redemptions"


class ServerApi(Protocol):
    """What sync needs from the server (TerminalHttp over HTTP; a fake in unit tests)."""

    def get(self, path: str) -> bytes: ...
    def post_json(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any: ...


class TerminalHttp:
    """Signed requests to the server (identity/terminal_auth.py): id, time, nonce, signature."""

    def __init__(
        self, base_url: str, terminal_id: str, key: Ed25519PrivateKey, http: httpx.Client | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = urlsplit(self.base_url).path
        self.terminal_id = terminal_id
        self.key = key
        self.http = http or httpx.Client(timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str) -> bytes:
        return self._send("GET", path, b"").content

    def post_json(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        raw = json.dumps(body, separators=(",", ":")).encode()
        return self._send("POST", path, raw, {"Content-Type": "application/json", **(headers or {})}).json()

    def _send(self, method: str, path: str, body: bytes, extra: dict[str, str] | None = None) -> httpx.Response:
        when, nonce = int(time.time()), secrets.token_urlsafe(24)
        signature = sign_request(self.key, method, self.prefix + path, body, when, nonce, self.terminal_id)
        headers = {
            "X-Civicard-Terminal": self.terminal_id,
            "X-Civicard-Timestamp": str(when),
            "X-Civicard-Nonce": nonce,
            "X-Civicard-Signature": encode_signature(signature),
            **(extra or {}),
        }
        try:
            response = self.http.request(method, self.base_url + path, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise Unavailable("server_unreachable", f"The server does not answer ({type(exc).__name__}).") from None
        if response.status_code >= 400:
            raise _refusal(response)
        return response


def _refusal(response: httpx.Response) -> DomainError:
    try:
        problem = response.json()
        code, detail = str(problem.get("code", "server_error")), str(problem.get("detail", ""))
    except ValueError:
        code, detail = "server_error", response.text[:200]
    message = detail or f"The server answered {response.status_code}."
    if response.status_code == 401:
        return Unauthenticated(code, message)
    if response.status_code >= 500:
        return Unavailable(code, message)
    return InvalidInput(code, message)


@dataclass(frozen=True)
class OfflineSale:
    seq: int
    period: str
    source: Literal["remaining", "caps"]
    items: dict[str, int]
    left: dict[str, int]  # per item sold: what this card may still get offline this period


@dataclass(frozen=True)
class SyncReport:
    sent: int
    applied: int
    conflicts: int
    refused: int
    bundle_period: str
    bundle_cards: int


@dataclass(frozen=True)
class TerminalStatus:
    terminal_id: str | None
    server_url: str | None
    bundle_period: str | None
    bundle_issued_at: datetime | None
    bundle_age_seconds: int | None
    bundle_current: bool
    queued: int
    conflicts: int
    last_sync: datetime | None


class TerminalClient:
    """One terminal's state on disk; open with `TerminalClient.open(directory)` and close when done."""

    def __init__(self, home: TerminalHome, store: LocalStore) -> None:
        self.home = home
        self.store = store

    @classmethod
    def open(cls, directory: Path) -> TerminalClient:
        home = TerminalHome(directory)
        return cls(home, LocalStore(home.db_path))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> TerminalClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- settings ------------------------------------------------------------------------------

    @property
    def terminal_id(self) -> str | None:
        return self.store.get_text("terminal_id")

    @property
    def server_url(self) -> str | None:
        return self.store.get_text("server_url")

    def configure(self, server_url: str | None = None, terminal_id: str | None = None) -> None:
        values: dict[str, bytes | str] = {}
        if server_url is not None:
            values["server_url"] = server_url.rstrip("/")
        if terminal_id is not None:
            values["terminal_id"] = terminal_id.strip()
        if values:
            self.store.put(values)

    def http(self, client: httpx.Client | None = None) -> TerminalHttp:
        if not self.server_url or not self.terminal_id:
            raise InvalidInput(
                "terminal_not_registered", "Set the server and terminal id: `civicard terminal register`."
            )
        return TerminalHttp(self.server_url, self.terminal_id, self.home.load_key(), client)

    # --- the bundle ----------------------------------------------------------------------------

    def bundle(self) -> Bundle | None:
        """The held bundle, re-verified (the file on disk is not trusted more than the network)."""
        raw, keys = self.store.get("bundle"), self.store.get("bundle_keys")
        if raw is None or keys is None:
            return None
        return verify_bundle(raw, Keyring.from_cose_key_set(keys))

    def _verifier(self, bundle: Bundle) -> OfflineVerifier:
        keys = self.store.get("card_keys")
        if keys is None:
            raise Unavailable("terminal_not_synced", "No card keys yet; run `civicard terminal sync` once online.")
        return OfflineVerifier.from_published(keys, bundle.status_list)

    # --- offline redemption ----------------------------------------------------------------------

    def redeem(self, card: str, basket: Sequence[BasketLine], now: datetime | None = None) -> OfflineSale:
        """Check the card, hold the basket to what is left offline, sign and queue the receipt.

        Returns only once the receipt is committed to disk; refuses (Refused, or the card's code)
        having queued nothing.
        """
        moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        terminal_id = self.terminal_id
        if terminal_id is None:
            raise InvalidInput("terminal_not_registered", "Run `civicard terminal register` first.")
        bundle = self.bundle()
        if bundle is None:
            raise Unavailable("terminal_not_synced", "No offline bundle yet; run `civicard terminal sync` once online.")
        if not bundle.is_current(moment):
            raise Unavailable("bundle_expired", f"The bundle is for {bundle.period}; sync to get this period's.")
        handle, degraded = self._card(card, bundle, moment)
        key = self.home.load_key()
        limits = limits_for(bundle, handle, degraded)
        mine = card_key(bundle.key, handle)
        with self.store.writing() as db:
            if limits.group is not None:
                after = int(self.store.get_text("bundle_synced_through") or 0)
                sold = q.sold(db, bundle.period, bundle.group_cards(limits.group), after)
            else:
                sold = q.sold(db, bundle.period, [mine])
            lines = check_offline_basket(limits, sold, basket)
            seq = q.next_seq(db)
            items = {line.item: line.quantity for line in lines}
            receipt = Receipt(terminal_id, seq, bundle.period, handle, items, moment)
            payload = receipt.payload()
            q.add_receipt(db, seq, bundle.period, mine, payload, sign_receipt(key, payload), moment)
        left = {item: limits.items.get(item, 0) - sold.get(item, 0) - qty for item, qty in items.items()}
        return OfflineSale(seq, bundle.period, limits.source, items, left)

    def _card(self, card: str, bundle: Bundle, now: datetime) -> tuple[str, bool]:
        """The card's handle and whether only the caps may apply (stale list, or a typed handle)."""
        text = card.strip()
        if text.upper().startswith(QR_PREFIX):
            result = self._verifier(bundle).check(text, now)
            if not result.accepted or result.claims is None:
                raise Refused(result.code, "This card cannot be used.")
            return result.claims.handle, result.status == "valid_degraded"
        handle = parse_handle(text)
        if bundle.group_of(handle) is None:
            raise Refused("card_scan_required", "Scan the card: a typed number is accepted only for known cards.")
        return handle, True

    # --- sync ----------------------------------------------------------------------------------

    def sync(self, api: ServerApi, now: datetime | None = None) -> SyncReport:
        """Upload the queue in seq order (batches), record each answer, then fetch keys and a fresh bundle."""
        moment = now or datetime.now(UTC)
        pending = self.store.receipts(unsynced_only=True)
        counts = {"applied": 0, "conflict": 0, "refused": 0}
        for start in range(0, len(pending), BATCH):
            batch = pending[start : start + BATCH]
            answer = api.post_json(RECEIPTS_PATH, {"receipts": [_wire(r) for r in batch]})
            outcomes = []
            for result in answer["results"]:
                sent = batch[int(result["index"])]
                outcomes.append((sent.seq, str(result["status"]), result.get("reason"), result.get("transaction_id")))
                counts[str(result["status"])] = counts.get(str(result["status"]), 0) + 1
            self.store.record_outcomes(outcomes, moment)
        card_keys = api.get(CARD_KEYS_PATH)
        bundle_keys = api.get(BUNDLE_KEYS_PATH)
        raw = api.get(BUNDLE_PATH)
        bundle = verify_bundle(raw, Keyring.from_cose_key_set(bundle_keys))
        OfflineVerifier.from_published(card_keys, bundle.status_list)  # refuse a list the card keys do not sign
        synced = [r.seq for r in self.store.receipts() if r.outcome is not None]
        self.store.put(
            {
                "bundle": raw,
                "bundle_keys": bundle_keys,
                "card_keys": card_keys,
                "bundle_synced_through": str(max(synced, default=0)),
                "last_sync": moment.astimezone(UTC).isoformat(),
            }
        )
        return SyncReport(
            len(pending),
            counts["applied"],
            counts["conflict"],
            counts["refused"],
            bundle.period,
            len(bundle.cards),
        )

    # --- looking at it -------------------------------------------------------------------------

    def sell_online(self, api: ServerApi, card: str, pin: str, basket: Sequence[BasketLine]) -> Any:
        """Redeem online (POST /v1/redemptions). A lost answer is retried with the same
        Idempotency-Key, so the server redeems at most once and answers the retry with the first answer."""
        body = {"card_token": card, "pin": pin, "basket": [{"item": b.item, "quantity": b.quantity} for b in basket]}
        key = secrets.token_urlsafe(24)
        for attempt in range(3):
            try:
                return api.post_json(REDEEM_PATH, body, {"Idempotency-Key": key})
            except Unavailable:
                if attempt == 2:
                    raise
                time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def queue(self) -> list[QueuedReceipt]:
        return self.store.receipts(unsynced_only=True)

    def status(self, now: datetime | None = None) -> TerminalStatus:
        moment = now or datetime.now(UTC)
        bundle = self.bundle()
        last = self.store.get_text("last_sync")
        conflicts = sum(1 for r in self.store.receipts() if r.outcome in ("conflict", "refused"))
        return TerminalStatus(
            terminal_id=self.terminal_id,
            server_url=self.server_url,
            bundle_period=bundle.period if bundle else None,
            bundle_issued_at=bundle.issued_at if bundle else None,
            bundle_age_seconds=int((moment - bundle.issued_at).total_seconds()) if bundle else None,
            bundle_current=bool(bundle and bundle.is_current(moment)),
            queued=self.store.unsynced_count(),
            conflicts=conflicts,
            last_sync=datetime.fromisoformat(last) if last else None,
        )


def _wire(receipt: QueuedReceipt) -> dict[str, str]:
    b64 = base64.urlsafe_b64encode
    return {"payload": b64(receipt.payload).decode(), "signature": b64(receipt.signature).decode()}


def period_now(now: datetime | None = None) -> str:
    return period_of(now or datetime.now(UTC))
