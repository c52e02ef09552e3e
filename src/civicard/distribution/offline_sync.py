"""Offline redemption on the server: building an outlet's bundle, applying a terminal's synced receipts,
and the conflicts kept for review.

Each receipt is its own unit of work (`apply_receipt` commits once): a receipt that fails never
takes the others of its batch with it, and a receipt already stored is answered with its stored
outcome, so a terminal may re-send a batch as often as it likes. Anything that cannot be applied —
more than the household has left (the same card sold offline at two outlets), a revoked,
suspended, expired or unknown card, a closed period — is stored with status `conflict` and its
reason, for a reviewer; nothing is dropped. Only a receipt that is not this terminal's (a bad
signature, another terminal's id, a reused sequence number) is refused without being stored. A
revoked terminal may still sync (its device key still signs): its receipts are all kept as
`terminal_revoked` conflicts and none is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from civicard.distribution.offline import (
    Bundle,
    Receipt,
    ReceiptStatus,
    card_key,
    outlet_bundle_key,
    parse_receipt,
    period_end,
    period_of,
    previous_periods,
    verify_receipt,
)
from civicard.distribution.redemption import may_redeem
from civicard.distribution.sales import Refused
from civicard.shared.errors import DomainError, Forbidden, Unavailable
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, AccessLog, Subject, disclose

CHANNEL = "offline"


@dataclass(frozen=True)
class TerminalSeat:
    """Where a terminal serves: its outlet and role, and its registered device key."""

    id: str
    outlet_id: str | None
    role: str
    public_key: bytes
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class CardHolder:
    card_id: str
    status: str
    expires_at: datetime
    household_id: str | None
    birth_date: date
    record_status: str


@dataclass(frozen=True)
class MemberCard:
    """A valid card of a current household member, as the bundle needs it (the handle is only hashed)."""

    household_id: str
    handle: str
    birth_date: date
    record_status: str


@dataclass(frozen=True)
class StoredReceipt:
    seq: int
    payload: bytes
    status: ReceiptStatus
    reason: str | None
    redemption_id: str | None


@dataclass(frozen=True)
class NewReceipt:
    terminal_id: str
    receipt: Receipt
    payload: bytes
    signature: bytes
    status: ReceiptStatus
    reason: str | None
    redemption_id: str | None
    received_at: datetime


@dataclass(frozen=True)
class SignedReceipt:
    """One receipt of a batch as the terminal sent it."""

    index: int
    payload: bytes
    signature: bytes


@dataclass(frozen=True)
class ReceiptOutcome:
    """The answer for one receipt (`index` is its place in the batch as sent)."""

    index: int
    seq: int | None
    status: ReceiptStatus
    reason: str | None = None
    transaction_id: str | None = None


@dataclass(frozen=True)
class OfflineConflict:
    """A receipt kept for review, without the card or the household (a reviewer opens a case for those)."""

    id: str
    terminal_id: str
    outlet_id: str | None
    seq: int
    period: str
    items: dict[str, int]
    device_time: datetime
    received_at: datetime
    reason: str


class DuplicateReceipt(Exception):
    """The same terminal and seq was stored at the same moment by another request."""


class OfflineStore(Protocol):
    def seat(self, terminal_id: str) -> TerminalSeat | None: ...
    def period_status(self, period: str) -> str | None: ...
    def households_served(self, outlet_id: str, periods: Sequence[str]) -> list[str]: ...
    def remaining(
        self, period: str, household_ids: Sequence[str], items: Iterable[str]
    ) -> dict[str, dict[str, int]]: ...
    def valid_cards(self, household_ids: Sequence[str], now: datetime) -> list[MemberCard]: ...
    def offline_caps(self, period_start: date) -> dict[str, int]: ...
    def item_kinds(self) -> dict[str, str]: ...
    def latest_status_list(self) -> bytes | None: ...
    def card_holder(self, handle: str) -> CardHolder | None: ...
    def stored_receipt(self, terminal_id: str, seq: int) -> StoredReceipt | None: ...
    def add_receipt(self, receipt: NewReceipt) -> None: ...
    def conflicts(self, limit: int) -> list[tuple[OfflineConflict, str | None]]: ...
    def discard(self) -> None: ...


class Sales(Protocol):
    """The sale core (adapters/db/sale_store.py) as this module uses it."""

    def outlet(self, outlet_id: str) -> Any: ...
    def serves(self, outlet_kind: str) -> frozenset[str]: ...
    def post(
        self,
        period: str,
        household_id: str,
        card_id: str,
        terminal_id: str,
        outlet: Any,
        basket: Any,
        channel: str,
        now: datetime,
        idempotency_key: str | None = None,
        attested_by: str | None = None,
        device_time: datetime | None = None,
    ) -> Any: ...


class OfflineUnitOfWork(Protocol):
    @property
    def context(self) -> AccessContext: ...
    @property
    def offline(self) -> OfflineStore: ...
    @property
    def sales(self) -> Sales: ...
    @property
    def access_log(self) -> AccessLog: ...
    def commit(self) -> None: ...


def require_counter_seat(store: OfflineStore, terminal_id: str) -> TerminalSeat:
    seat = store.seat(terminal_id)
    if seat is None or seat.outlet_id is None:
        raise Forbidden("terminal_not_at_outlet", "This terminal is not assigned to an outlet.")
    if seat.role != "counter":
        raise Forbidden("terminal_not_counter", "Only a counter terminal redeems offline.")
    return seat


def build_bundle(uow: OfflineUnitOfWork, root_key: RootKey, terminal_id: str, now: datetime) -> Bundle:
    """The bundle for the terminal's outlet and the period `now` falls in (which must be open).

    Reading the households' remaining quantities is logged for each household, like any other read
    of their data; the bundle itself names none of them.
    """
    seat = require_counter_seat(uow.offline, terminal_id)
    outlet = uow.sales.outlet(str(seat.outlet_id))
    if outlet is None:
        raise Forbidden("outlet_closed", "This terminal's outlet is closed.")
    period = period_of(now)
    store = uow.offline
    if store.period_status(period) != "open":
        raise Unavailable("period_not_open", f"Period {period} is not open for redemption.")
    signed_list = store.latest_status_list()
    if signed_list is None:
        raise Unavailable("status_list_missing", "No status list has been published yet.")
    serves = uow.sales.serves(outlet.kind)
    servable = {item for item, kind in store.item_kinds().items() if kind in serves}
    households = store.households_served(outlet.id, previous_periods(period))
    remaining = store.remaining(period, households, servable)
    cards: dict[str, list[str]] = {}
    barred: list[str] = []  # children's cards (and cards of inactive records): nothing to redeem
    for card in store.valid_cards(households, now):
        if may_redeem(card.birth_date, card.record_status, now.date()):
            cards.setdefault(card.household_id, []).append(card.handle)
        else:
            barred.append(card.handle)
    key = outlet_bundle_key(root_key, outlet.id, period)
    groups: list[dict[str, int]] = []
    by_card: dict[bytes, int] = {}
    listed: list[str] = []
    for household in sorted(households):
        if not cards.get(household):
            continue
        listed.append(household)
        for handle in cards[household]:
            by_card[card_key(key, handle)] = len(groups)
        groups.append(remaining.get(household, {}))
    if barred:
        # Listed with an empty group, so the terminal refuses them rather than applying the caps
        # that any unlisted card gets. (A child's card from a household not in the bundle can
        # still get the caps offline; the sync then keeps that receipt as a `not_entitled` conflict.)
        for handle in barred:
            by_card[card_key(key, handle)] = len(groups)
        groups.append({})
    in_force = store.offline_caps(date.fromisoformat(f"{period}-01"))
    caps = {item: cap for item, cap in in_force.items() if item in servable}
    issued = now.replace(microsecond=0)
    bundle = Bundle(period, outlet.id, issued, period_end(period), key, by_card, tuple(groups), caps, signed_list)
    detail = f"offline bundle for outlet {outlet.id}, period {period}"
    disclose(uow.access_log, uow.context, [Subject.household(h) for h in listed], [], detail, now)
    uow.commit()
    return bundle


def apply_receipt(uow: OfflineUnitOfWork, seat: TerminalSeat, signed: SignedReceipt, now: datetime) -> ReceiptOutcome:
    """Store one receipt and apply it through the sale core (channel offline), or keep it as a conflict."""
    try:
        verify_receipt(seat.public_key, signed.payload, signed.signature)
        receipt = parse_receipt(signed.payload)
    except DomainError as refused:
        return ReceiptOutcome(signed.index, None, "refused", refused.code)
    if receipt.terminal_id != seat.id:
        return ReceiptOutcome(signed.index, receipt.seq, "refused", "receipt_wrong_terminal")
    stored = uow.offline.stored_receipt(seat.id, receipt.seq)
    if stored is not None:
        return _answer(signed, stored)
    store = uow.offline
    holder = store.card_holder(receipt.card)
    outlet = uow.sales.outlet(str(seat.outlet_id))
    if seat.revoked_at is not None:
        # A revoked (lost or stolen) terminal's receipts are kept for a reviewer, never applied:
        # the goods may have been handed out before the revocation, or the receipts forged after.
        reason: str | None = "terminal_revoked"
    elif outlet is None:
        reason = "outlet_closed"
    else:
        reason = _conflict(holder, receipt, store.period_status(receipt.period))
    redemption_id: str | None = None
    if reason is None and holder is not None and holder.household_id is not None:
        try:
            sale = uow.sales.post(
                receipt.period,
                holder.household_id,
                holder.card_id,
                seat.id,
                outlet,
                receipt.basket,
                CHANNEL,
                now,
                idempotency_key=f"offline:{receipt.seq}",
                device_time=receipt.device_time,
            )
            redemption_id = str(sale.redemption_id)
        except Refused as refused:
            store.discard()  # whatever the sale core began is undone; the conflict is stored alone
            reason = refused.code
    status: ReceiptStatus = "applied" if reason is None else "conflict"
    new = NewReceipt(seat.id, receipt, signed.payload, signed.signature, status, reason, redemption_id, now)
    try:
        store.add_receipt(new)
    except DuplicateReceipt:  # a concurrent sync stored it first: its outcome is the answer
        store.discard()
        again = store.stored_receipt(seat.id, receipt.seq)
        if again is None:
            raise
        return _answer(signed, again)
    if holder is not None and holder.household_id is not None:
        detail = f"offline receipt {receipt.seq} of terminal {seat.id}: {status}"
        disclose(uow.access_log, uow.context, [Subject.household(holder.household_id)], [], detail, now)
    uow.commit()
    return ReceiptOutcome(signed.index, receipt.seq, status, reason, redemption_id)


def apply_batch(
    open_uow: Any, seat: TerminalSeat, batch: Sequence[SignedReceipt], now: datetime
) -> list[ReceiptOutcome]:
    """Apply a batch in seq order, one unit of work per receipt; answers in the order sent.

    `open_uow()` returns a fresh unit of work (a context manager) for each receipt.
    """
    outcomes: dict[int, ReceiptOutcome] = {}
    for signed in sorted(batch, key=_seq_of):
        with open_uow() as uow:
            outcomes[signed.index] = apply_receipt(uow, seat, signed, now)
    return [outcomes[s.index] for s in batch]


def list_conflicts(uow: OfflineUnitOfWork, now: datetime, limit: int = 200) -> list[OfflineConflict]:
    """Receipts kept as conflicts, newest first; the read is logged for each household concerned."""
    found = uow.offline.conflicts(limit)
    households = sorted({h for _, h in found if h is not None})
    disclose(
        uow.access_log, uow.context, [Subject.household(h) for h in households], ["decisions"], "offline conflicts", now
    )
    uow.commit()
    return [c for c, _ in found]


_CARD_CONFLICTS = {"revoked": "card_revoked", "suspended": "card_suspended"}


def _conflict(holder: CardHolder | None, receipt: Receipt, period_status: str | None) -> str | None:
    """A reason to keep the receipt as a conflict before the sale core sees it, or None."""
    if holder is None:
        return "card_unknown"
    if holder.status in _CARD_CONFLICTS:
        return _CARD_CONFLICTS[holder.status]
    if holder.expires_at <= receipt.device_time:
        return "card_expired"
    if holder.household_id is None or not may_redeem(
        holder.birth_date, holder.record_status, receipt.device_time.date()
    ):
        return "not_entitled"
    if period_status != "open":
        return "period_closed"
    return None


def _answer(signed: SignedReceipt, stored: StoredReceipt) -> ReceiptOutcome:
    if stored.payload != signed.payload:
        return ReceiptOutcome(signed.index, stored.seq, "refused", "receipt_seq_reused")
    return ReceiptOutcome(signed.index, stored.seq, stored.status, stored.reason, stored.redemption_id)


def _seq_of(signed: SignedReceipt) -> tuple[int, int]:
    """Sort key: the receipt's seq when it can be read (unreadable ones last), then batch order."""
    try:
        return parse_receipt(signed.payload).seq, signed.index
    except DomainError:
        return 2**63, signed.index
