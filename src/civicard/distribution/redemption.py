"""Online redemption at a counter: scanned card token + PIN + basket → a sale, or one coded refusal.

The order of checks is the order a refusal is decided in, and nothing about the card holder is
read before the terminal, the period and the PIN throttles have passed:

    terminal at an open outlet, role counter   terminal_not_at_outlet (403)
    the period (server clock's month) is open   period_closed
    PIN failures at this terminal and outlet    too_many_attempts (429, Retry-After)
    token: format, kid, signature, expiry       token_malformed, token_unknown_kid, token_bad_signature, card_expired…
    the card in the database                    unknown_card, card_revoked, card_suspended, card_expired
    holder: adult (18 on the day) in a household  not_entitled
    PIN against the card's counters             pin_not_set, pin_wrong (with tries left), pin_locked
    the basket (sales.allocate)                 unknown_item, item_not_allowed_here, insufficient_remaining…

A wrong PIN commits its counter (card, terminal and outlet windows) and the access-log entry, then
raises. An accepted PIN, the decrement, the redemption, its ledger lines, the access-log entry and
(for an idempotent request) the stored answer commit together in one transaction: a retry can never
find a sale without its answer. Refusals are 422 except where noted above.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NoReturn, Protocol

from civicard.distribution.sales import Allocation, BasketLine, Price, Refused, Slot
from civicard.identity.cards import Card, CardKeys, CardStore
from civicard.identity.credentials import Keyring, verify_token
from civicard.identity.pins import LOCK_AFTER_FAILURES, PinCounter, PinOutcome, check_pin
from civicard.identity.pseudonyms import SectorKey
from civicard.programs.cycles import period_of
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError, ErrorKind, Forbidden
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, AccessLog, Subject, disclose, record_change

ADULT_AGE = 18
COUNTER_ROLE = "counter"
# A card check never lists these: a medicine entitlement is a health fact about someone in the
# household; the pharmacy learns it only when the holder asks for that item.
UNLISTED_KINDS = frozenset({"medicine"})


class Refusal(DomainError):
    """A redemption the rules refuse; always 422 with its code, stored and replayed to retries."""

    kind = ErrorKind.INVALID


class Throttled(DomainError):
    """Too many wrong PINs at this terminal or outlet: 429 with Retry-After (never stored)."""

    kind = ErrorKind.FORBIDDEN


@dataclass(frozen=True)
class PinThrottle:
    """Wrong PINs allowed per fixed window at one terminal and at one outlet (over all cards).

    The card's own limit (five in a row lock it) stops guessing one card; these stop one PIN being
    tried across many cards, which the per-card limit cannot see.
    """

    per_terminal: int = 10
    per_outlet: int = 30
    window: timedelta = timedelta(minutes=10)


DEFAULT_PIN_THROTTLE = PinThrottle()


@dataclass(frozen=True)
class Counter:
    """A terminal where it serves: its outlet and vendor."""

    terminal_id: str
    role: str
    outlet_id: str
    outlet_name: str
    outlet_kind: str
    region: str
    vendor_id: str


@dataclass(frozen=True)
class Holder:
    person_id: str
    birth_date: date
    record_status: str
    household_id: str | None  # current household, if any

    def can_redeem(self, day: date) -> bool:
        return self.household_id is not None and may_redeem(self.birth_date, self.record_status, day)


def may_redeem(birth_date: date, record_status: str, day: date) -> bool:
    """Whether a person may redeem on `day`: an active record, and 18 or older that day."""
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    age = day.year - birth_date.year - int(before_birthday)
    return record_status == "active" and age >= ADULT_AGE


@dataclass(frozen=True)
class ThrottleWindow:
    attempts: int
    window_start: datetime


@dataclass(frozen=True)
class Claim:
    """An Idempotency-Key this request holds: only the holder of the current claim may settle it."""

    terminal_id: str
    key: str
    claimed_at: datetime


@dataclass(frozen=True)
class RedeemCommand:
    card_token: str
    pin: str
    basket: tuple[BasketLine, ...]
    claim: Claim | None = None


@dataclass(frozen=True)
class ReceiptLine:
    item: str
    quantity: int
    remaining: int
    unit: str
    unit_price_minor: int
    amount_minor: int


@dataclass(frozen=True)
class Receipt:
    """What the vendor may know of a sale: no name, income, health fact or internal id."""

    transaction_id: str
    period: str
    holder: str  # the vendor's own pseudonym for the card holder
    lines: tuple[ReceiptLine, ...]

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)


@dataclass(frozen=True)
class CheckedItem:
    item: str
    unit: str
    remaining: int
    unit_price_minor: int | None


@dataclass(frozen=True)
class CardCheck:
    """Before the PIN: is the card usable here, and what is left (vendor-safe)."""

    code: str  # card_valid, or the refusal a redemption would meet now
    period: str
    pin_locked: bool = False
    items: tuple[CheckedItem, ...] = ()

    @property
    def card_valid(self) -> bool:
        return self.code in {"card_valid", "not_entitled", "period_closed"}


class PostedSale(Protocol):
    @property
    def redemption_id(self) -> str: ...
    @property
    def allocations(self) -> Sequence[Allocation]: ...
    @property
    def remaining(self) -> Mapping[str, int]: ...
    @property
    def units(self) -> Mapping[str, str]: ...


class RedemptionStore(Protocol):
    def counter(self, terminal_id: str) -> Counter | None: ...
    def period_status(self, period: str) -> str | None: ...
    def holder(self, person_id: str, on: date) -> Holder | None: ...
    def throttle_windows(self, buckets: Sequence[str]) -> dict[str, ThrottleWindow]: ...
    def count_failure(self, bucket: str, now: datetime, window: timedelta) -> ThrottleWindow: ...
    def post(
        self,
        period: str,
        household_id: str,
        card_id: str,
        counter: Counter,
        basket: Sequence[BasketLine],
        now: datetime,
        idempotency_key: str | None,
    ) -> PostedSale: ...
    def units(self, items: Sequence[str]) -> dict[str, str]: ...
    def entitlements(self, period: str, household_id: str) -> list[Slot]: ...
    def offer(self, period: str, outlet_kind: str) -> tuple[dict[str, str], dict[str, Price]]: ...
    def settle(self, claim: Claim, status: int, body: bytes, now: datetime) -> None: ...
    def count_refusal(self, period: str, outlet_id: str, code: str) -> None: ...


class RedemptionUnitOfWork(Protocol):
    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def cards(self) -> CardStore: ...
    @property
    def access_log(self) -> AccessLog: ...
    @property
    def redemptions(self) -> RedemptionStore: ...

    def commit(self) -> None: ...
    def rollback(self) -> None: ...


class RedemptionKeys:
    """Card verification keys, the PIN pepper and vendor pseudonym keys; build once per key generation."""

    def __init__(self, cards: CardKeys, root_key: RootKey) -> None:
        self.cards = cards  # what they were built from: a rotation hands out new card keys
        self.keyring: Keyring = cards.keyring
        self.pepper = cards.pepper
        self._root_key = root_key
        self._sectors: dict[str, SectorKey] = {}

    def pseudonym(self, vendor_id: str, person_id: str) -> str:
        sector = self._sectors.get(vendor_id)
        if sector is None:
            sector = self._sectors[vendor_id] = SectorKey.derive(self._root_key, f"vendor:{vendor_id}")
        return sector.pseudonym(person_id)


def redeem(
    uow: RedemptionUnitOfWork,
    keys: RedemptionKeys,
    command: RedeemCommand,
    answer: Callable[[Receipt], bytes] | None = None,
    throttle: PinThrottle = DEFAULT_PIN_THROTTLE,
) -> Receipt:
    """Redeem `command.basket` for the card holder's household, or raise one coded refusal.

    With a claim, `answer(receipt)` is stored as the request's first answer in the sale's own
    transaction (so a crash can never leave a sale whose retry would redeem again).
    """
    now = uow.clock.now()
    counter = _counter(uow, uow.context.actor.id)
    try:
        return _redeem(uow, keys, command, answer, throttle, counter, now)
    except DomainError as refused:
        # Counted for the outlet's exclusion report (no person in it), after the refusal's own
        # commits; the sale itself is already rolled back.
        uow.rollback()
        uow.redemptions.count_refusal(period_of(now.date()), counter.outlet_id, refused.code)
        uow.commit()
        raise


def _redeem(
    uow: RedemptionUnitOfWork,
    keys: RedemptionKeys,
    command: RedeemCommand,
    answer: Callable[[Receipt], bytes] | None,
    throttle: PinThrottle,
    counter: Counter,
    now: datetime,
) -> Receipt:
    period = _open_period(uow, now)
    _check_throttle(uow, counter, now, throttle)
    card = _card(uow, keys, command.card_token, now, for_update=True)
    holder, household_id = _holder(uow, card, now)
    stored = uow.cards.pin(card.id, for_update=True)
    if stored is None:
        raise Refusal("pin_not_set", "No PIN has been set for this card; the holder sets one at a registrar's desk.")
    outcome = check_pin(keys.pepper, card.handle, command.pin, stored.pin_hash, stored.counter, 0)
    if not outcome.accepted:
        _refuse_pin(uow, counter, card, outcome, now, throttle)
    if outcome.counter != stored.counter:
        uow.cards.save_pin_counter(card.id, outcome.counter)
    key = command.claim.key if command.claim else None
    try:
        sale = uow.redemptions.post(period, household_id, card.id, counter, command.basket, now, key)
    except Refused as refused:
        _refuse_sale(uow, counter, card, stored.counter, refused, now)
    receipt = _receipt(uow, keys, counter, holder, period, sale)
    detail = f'redemption.approved redemption={sale.redemption_id} outlet={counter.outlet_id} "{counter.outlet_name}"'
    record_change(uow.access_log, uow.context, [Subject.person(card.person_id)], ["decisions"], detail, now)
    if command.claim is not None and answer is not None:
        uow.redemptions.settle(command.claim, 201, answer(receipt), now)
    uow.commit()
    return receipt


def check_card(uow: RedemptionUnitOfWork, keys: RedemptionKeys, card_token: str) -> CardCheck:
    """What a sale needs before the PIN. Logged (one read entry) only when quantities are shown."""
    now = uow.clock.now()
    counter = _counter(uow, uow.context.actor.id)
    period = period_of(now.date())
    try:
        card = _card(uow, keys, card_token, now, for_update=False)
    except Refusal as refused:
        return CardCheck(refused.code, period)
    stored = uow.cards.pin(card.id)
    locked = stored is not None and stored.counter.locked
    holder = uow.redemptions.holder(card.person_id, now.date())
    if holder is None or holder.household_id is None or not holder.can_redeem(now.date()):
        return CardCheck("not_entitled", period, locked)
    if uow.redemptions.period_status(period) != "open":
        return CardCheck("period_closed", period, locked)
    kinds, prices = uow.redemptions.offer(period, counter.outlet_kind)
    slots = [s for s in uow.redemptions.entitlements(period, holder.household_id) if s.granted > 0]
    left: dict[str, int] = {}
    for slot in slots:
        if slot.item in kinds and kinds[slot.item] not in UNLISTED_KINDS:
            left[slot.item] = left.get(slot.item, 0) + slot.remaining
    if not left:
        return CardCheck("not_entitled", period, locked)
    units = uow.redemptions.units(sorted(left))
    items = tuple(
        CheckedItem(
            item, units.get(item, "unit"), left[item], prices[item].subsidized_minor if item in prices else None
        )
        for item in sorted(left)
    )
    detail = f'redemption.card_checked outlet={counter.outlet_id} "{counter.outlet_name}"'
    disclose(uow.access_log, uow.context, [Subject.person(card.person_id)], ["decisions"], detail, now)
    uow.commit()
    return CardCheck("card_valid", period, locked, items)


def _counter(uow: RedemptionUnitOfWork, terminal_id: str) -> Counter:
    counter = uow.redemptions.counter(terminal_id)
    if counter is None or counter.role != COUNTER_ROLE:
        raise Forbidden("terminal_not_at_outlet", "This terminal is not a counter at an open outlet.")
    return counter


def _open_period(uow: RedemptionUnitOfWork, now: datetime) -> str:
    period = period_of(now.date())
    if uow.redemptions.period_status(period) != "open":
        raise Refusal("period_closed", f"Period {period} is not open for redemptions.")
    return period


def _buckets(counter: Counter, throttle: PinThrottle) -> dict[str, int]:
    return {
        f"pin:terminal:{counter.terminal_id}": throttle.per_terminal,
        f"pin:outlet:{counter.outlet_id}": throttle.per_outlet,
    }


def _check_throttle(uow: RedemptionUnitOfWork, counter: Counter, now: datetime, throttle: PinThrottle) -> None:
    limits = _buckets(counter, throttle)
    for bucket, window in uow.redemptions.throttle_windows(list(limits)).items():
        ends = window.window_start + throttle.window
        if ends > now and window.attempts >= limits[bucket]:
            retry = max(1, math.ceil((ends - now).total_seconds()))
            raise Throttled(
                "too_many_attempts",
                f"Too many wrong PINs here; try again in {retry} s.",
                retry_after_seconds=retry,
            )


def _card(uow: RedemptionUnitOfWork, keys: RedemptionKeys, token: str, now: datetime, for_update: bool) -> Card:
    return card_in_force(uow.cards, keys, token, now, for_update)


def card_in_force(cards: CardStore, keys: RedemptionKeys, token: str, now: datetime, for_update: bool) -> Card:
    """The scanned token verified offline-style, then the card as the database knows it now."""
    try:
        claims = verify_token(token, keys.keyring, now)
    except DomainError as refused:
        raise Refusal(refused.code, refused.message) from None
    card = cards.by_handle(claims.handle, for_update)
    if card is None or card.status_index != claims.status_index or card.issued_at != claims.issued_at:
        raise Refusal("unknown_card", "This card is not known; ask the holder to see a registrar.")
    if card.status != "valid":
        raise Refusal(f"card_{card.status}", f"This card is {card.status}.")
    if card.expires_at <= now:
        raise Refusal("card_expired", "This card has expired.")
    return card


def _holder(uow: RedemptionUnitOfWork, card: Card, now: datetime) -> tuple[Holder, str]:
    """The card holder and their household, if they may redeem for it."""
    holder = uow.redemptions.holder(card.person_id, now.date())
    if holder is None or holder.household_id is None or not holder.can_redeem(now.date()):
        raise Refusal("not_entitled", "Only an adult member of an entitled household can redeem with this card.")
    return holder, holder.household_id


def _refuse_pin(
    uow: RedemptionUnitOfWork,
    counter: Counter,
    card: Card,
    outcome: PinOutcome,
    now: datetime,
    throttle: PinThrottle,
) -> NoReturn:
    """Commit the wrong PIN (card counter, terminal and outlet windows, log entry), then refuse."""
    uow.cards.save_pin_counter(card.id, outcome.counter)
    for bucket in _buckets(counter, throttle):
        uow.redemptions.count_failure(bucket, now, throttle.window)
    detail = f'redemption.pin_refused outcome={outcome.code} outlet={counter.outlet_id} "{counter.outlet_name}"'
    disclose(uow.access_log, uow.context, [Subject.person(card.person_id)], [], detail, now)
    uow.commit()
    if outcome.code == "pin_wrong":
        refusal = Refusal("pin_wrong", "Wrong PIN.")
        refusal.public["tries_left"] = max(0, LOCK_AFTER_FAILURES - outcome.counter.consecutive_failures)
        raise refusal
    raise Refusal(outcome.code, "PIN use is locked for this card; the holder must see a registrar in person.")


def _refuse_sale(
    uow: RedemptionUnitOfWork, counter: Counter, card: Card, seen: PinCounter, refused: Refused, now: datetime
) -> NoReturn:
    """Undo the whole sale; keep only the right PIN's counter reset and a log entry; refuse."""
    uow.rollback()
    if seen != PinCounter():
        stored = uow.cards.pin(card.id, for_update=True)
        if stored is not None and stored.counter == seen:
            uow.cards.save_pin_counter(card.id, PinCounter())
    detail = f'redemption.refused code={refused.code} outlet={counter.outlet_id} "{counter.outlet_name}"'
    disclose(uow.access_log, uow.context, [Subject.person(card.person_id)], [], detail, now)
    uow.commit()
    raise Refusal(refused.code, refused.message) from None


def _receipt(
    uow: RedemptionUnitOfWork, keys: RedemptionKeys, counter: Counter, holder: Holder, period: str, sale: PostedSale
) -> Receipt:
    return build_receipt(keys, counter, holder, period, sale)


def build_receipt(
    keys: RedemptionKeys,
    counter: Counter,
    holder: Holder,
    period: str,
    sale: PostedSale,
) -> Receipt:
    """What the vendor is told of a sale: per item granted, left, unit, price, amount; their pseudonym."""
    quantities: dict[str, int] = {}
    amounts: dict[str, int] = {}
    prices: dict[str, int] = {}
    for a in sale.allocations:
        quantities[a.item] = quantities.get(a.item, 0) + a.quantity
        amounts[a.item] = amounts.get(a.item, 0) + a.paid_minor
        prices[a.item] = a.price.subsidized_minor
    lines = tuple(
        ReceiptLine(
            item,
            quantities[item],
            sale.remaining.get(item, 0),
            sale.units.get(item, "unit"),
            prices[item],
            amounts[item],
        )
        for item in sorted(quantities)
    )
    return Receipt(sale.redemption_id, period, keys.pseudonym(counter.vendor_id, holder.person_id), lines)
