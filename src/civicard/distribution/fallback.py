"""Fallback sale: serving a card holder whose PIN is locked or forgotten, on a photo check plus the
outlet supervisor's signed attestation — capped per card and cycle, logged for the resident.

The supervisor's device signs (Ed25519, its registered terminal key) the canonical attestation

    civicard-fallback-attestation-v1
    <card handle>
    <basket>                      ITEM:quantity joined by ",", one entry per item, sorted by item
    <counter terminal id>         the terminal that sends the sale
    <supervisor terminal id>
    <timestamp>                   unix seconds
    <nonce>                       16–64 of [A-Za-z0-9_-], never reused by the supervisor device

so an attestation covers one card, one basket, one counter and one moment. Checks, in order:

    counter terminal at an open outlet          terminal_not_at_outlet (403)
    photo checked, attestation present          photo_not_checked, attestation_missing
    the period (server clock's month) is open   period_closed
    the card, as online                         token_*, unknown_card, card_revoked, card_suspended, card_expired
    the attestation: a supervisor device, not revoked, at the counter's outlet, fresh, signature good,
      nonce unseen                              attestation_not_supervisor, attestation_other_outlet,
                                                attestation_stale, attestation_bad_signature, attestation_replayed
    holder: adult in a household                not_entitled
    fallbacks this cycle for this card          fallback_limit_reached (FALLBACKS_PER_CYCLE)
    every line within the offline caps, counting earlier fallbacks of the card
                                                fallback_cap_exceeded
    the basket (sales.allocate)                 unknown_item, item_not_allowed_here, insufficient_remaining…

The PIN is neither checked nor counted. The supervisor's nonce, the decrement, the redemption
(channel `fallback`, attested_by the supervisor terminal), its ledger lines, the resident's
access-log entry and the stored answer commit together; a refusal is counted for the outlet's
exclusion report (and logged for the holder once the card is known) after the sale rolled back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from civicard.distribution.redemption import (
    Claim,
    Counter,
    Holder,
    PostedSale,
    Receipt,
    RedemptionKeys,
    Refusal,
    build_receipt,
    card_in_force,
)
from civicard.distribution.sales import BasketLine, check_basket
from civicard.identity.cards import Card, CardStore
from civicard.identity.terminal_auth import CLOCK_SKEW, verify_signature
from civicard.programs.cycles import period_of, period_start
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError, Forbidden
from civicard.transparency.access import AccessContext, AccessLog, Subject, disclose, record_change

ATTESTATION_SCHEME = "civicard-fallback-attestation-v1"
FALLBACKS_PER_CYCLE = 2
COUNTER_ROLE = "counter"
SUPERVISOR_ROLE = "supervisor"
CHANNEL = "fallback"


@dataclass(frozen=True)
class Attestation:
    """The supervisor device's signature over one fallback sale (see the module docstring)."""

    terminal_id: str
    timestamp: int
    nonce: str
    signature: bytes


@dataclass(frozen=True)
class Attester:
    """A registered, unrevoked terminal as seen for an attestation."""

    terminal_id: str
    outlet_id: str | None
    role: str
    public_key: bytes


@dataclass(frozen=True)
class FallbackCommand:
    card_token: str
    basket: tuple[BasketLine, ...]
    photo_checked: bool
    attestation: Attestation | None
    claim: Claim | None = None


@dataclass(frozen=True)
class FallbackUse:
    """What a card already got by fallback this cycle: sales and units per item."""

    sales: int
    items: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FallbackReceipt:
    """The vendor-safe receipt, and how many fallback sales the card has left this cycle."""

    receipt: Receipt
    fallbacks_left: int


class FallbackStore(Protocol):
    def counter(self, terminal_id: str) -> Counter | None: ...
    def attester(self, terminal_id: str) -> Attester | None: ...
    def period_status(self, period: str) -> str | None: ...
    def holder(self, person_id: str, on: date) -> Holder | None: ...
    def use_nonce(self, terminal_id: str, nonce: str, now: datetime, keep: timedelta) -> bool: ...
    def fallbacks_used(self, period: str, household_id: str, card_id: str) -> FallbackUse: ...
    def offline_caps(self, period_start: date) -> dict[str, int]: ...
    def post(
        self,
        period: str,
        household_id: str,
        card_id: str,
        counter: Counter,
        basket: Sequence[BasketLine],
        now: datetime,
        idempotency_key: str | None,
        attested_by: str,
    ) -> PostedSale: ...
    def units(self, items: Sequence[str]) -> dict[str, str]: ...
    def settle(self, claim: Claim, status: int, body: bytes, now: datetime) -> None: ...
    def count_refusal(self, period: str, outlet_id: str, code: str) -> None: ...


class FallbackUnitOfWork(Protocol):
    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def cards(self) -> CardStore: ...
    @property
    def access_log(self) -> AccessLog: ...
    @property
    def fallbacks(self) -> FallbackStore: ...

    def commit(self) -> None: ...
    def rollback(self) -> None: ...


def attestation_message(
    handle: str, basket: Sequence[BasketLine], counter_id: str, supervisor_id: str, timestamp: int, nonce: str
) -> bytes:
    """The exact bytes a supervisor device signs and the server verifies."""
    lines = check_basket(basket)
    items = ",".join(f"{line.item}:{line.quantity}" for line in sorted(lines, key=lambda line: line.item))
    parts = [ATTESTATION_SCHEME, handle, items, counter_id, supervisor_id, str(int(timestamp)), nonce]
    return "\n".join(parts).encode()


def sign_attestation(
    private_key: Ed25519PrivateKey,
    handle: str,
    basket: Sequence[BasketLine],
    counter_id: str,
    supervisor_id: str,
    timestamp: int,
    nonce: str,
) -> Attestation:
    """What the supervisor device does (and tests)."""
    message = attestation_message(handle, basket, counter_id, supervisor_id, timestamp, nonce)
    return Attestation(supervisor_id, timestamp, nonce, private_key.sign(message))


@dataclass
class _Attempt:
    """Whose card a refused fallback was for, once known (the refusal is logged for them)."""

    person_id: str | None = None


def sell_without_pin(
    uow: FallbackUnitOfWork,
    keys: RedemptionKeys,
    command: FallbackCommand,
    answer: Callable[[FallbackReceipt], bytes] | None = None,
) -> FallbackReceipt:
    """Sell `command.basket` to the card holder's household without the PIN, or raise one coded refusal.

    With a claim, `answer(receipt)` is stored as the request's first answer in the sale's own
    transaction, as for online sales.
    """
    now = uow.clock.now()
    counter = uow.fallbacks.counter(uow.context.actor.id)
    if counter is None or counter.role != COUNTER_ROLE:
        raise Forbidden("terminal_not_at_outlet", "This terminal is not a counter at an open outlet.")
    attempt = _Attempt()
    try:
        return _sell(uow, keys, command, answer, counter, now, attempt)
    except DomainError as refused:
        # Counted for the exclusion report and shown to the holder, after the sale rolled back.
        uow.rollback()
        uow.fallbacks.count_refusal(period_of(now.date()), counter.outlet_id, refused.code)
        if attempt.person_id is not None:
            detail = (
                f'redemption.fallback_refused code={refused.code} outlet={counter.outlet_id} "{counter.outlet_name}"'
            )
            disclose(uow.access_log, uow.context, [Subject.person(attempt.person_id)], [], detail, now)
        uow.commit()
        raise


def _sell(
    uow: FallbackUnitOfWork,
    keys: RedemptionKeys,
    command: FallbackCommand,
    answer: Callable[[FallbackReceipt], bytes] | None,
    counter: Counter,
    now: datetime,
    attempt: _Attempt,
) -> FallbackReceipt:
    store = uow.fallbacks
    if not command.photo_checked:
        raise Refusal("photo_not_checked", "Without a PIN, the clerk must first check the photo on the card.")
    attestation = command.attestation
    if attestation is None:
        raise Refusal("attestation_missing", "Without a PIN, the outlet supervisor's device must attest the sale.")
    period = period_of(now.date())
    if store.period_status(period) != "open":
        raise Refusal("period_closed", f"Period {period} is not open for redemptions.")
    card = _card(uow, keys, command.card_token, now)
    attempt.person_id = card.person_id
    _check_attestation(store, counter, card.handle, command.basket, attestation, now)
    holder = store.holder(card.person_id, now.date())
    if holder is None or holder.household_id is None or not holder.can_redeem(now.date()):
        raise Refusal("not_entitled", "Only an adult member of an entitled household can redeem with this card.")
    used = store.fallbacks_used(period, holder.household_id, card.id)
    if used.sales >= FALLBACKS_PER_CYCLE:
        raise Refusal(
            "fallback_limit_reached",
            f"This card has had {FALLBACKS_PER_CYCLE} sales without PIN this period; the holder must see a registrar.",
        )
    _check_caps(command.basket, store.offline_caps(period_start(period)), used.items)
    key = command.claim.key if command.claim else None
    supervisor = attestation.terminal_id
    sale = store.post(period, holder.household_id, card.id, counter, command.basket, now, key, attested_by=supervisor)
    result = FallbackReceipt(_receipt(store, keys, counter, holder, period, sale), FALLBACKS_PER_CYCLE - used.sales - 1)
    detail = (
        f'redemption.fallback redemption={sale.redemption_id} outlet={counter.outlet_id} "{counter.outlet_name}": '
        f"without PIN, photo checked, supervisor attested (terminal {supervisor})"
    )
    record_change(uow.access_log, uow.context, [Subject.person(card.person_id)], ["decisions"], detail, now)
    if command.claim is not None and answer is not None:
        store.settle(command.claim, 201, answer(result), now)
    uow.commit()
    return result


def _card(uow: FallbackUnitOfWork, keys: RedemptionKeys, token: str, now: datetime) -> Card:
    """The scanned token verified, then the card as the database knows it now (row locked)."""
    return card_in_force(uow.cards, keys, token, now, True)


def _check_attestation(
    store: FallbackStore,
    counter: Counter,
    handle: str,
    basket: Sequence[BasketLine],
    attestation: Attestation,
    now: datetime,
) -> None:
    """A supervisor device of this outlet signed this very sale, just now, with a nonce it never used."""
    attester = store.attester(attestation.terminal_id)
    if attester is None or attester.role != SUPERVISOR_ROLE:
        raise Refusal("attestation_not_supervisor", "The attestation is not from a registered supervisor device.")
    if attester.outlet_id != counter.outlet_id:
        raise Refusal("attestation_other_outlet", "The attesting supervisor is not at this outlet.")
    if abs(now.timestamp() - attestation.timestamp) > CLOCK_SKEW.total_seconds():
        raise Refusal("attestation_stale", "The supervisor's attestation is too old (or its clock is wrong).")
    message = attestation_message(
        handle, basket, counter.terminal_id, attester.terminal_id, attestation.timestamp, attestation.nonce
    )
    try:
        verify_signature(attester.public_key, attestation.signature, message)
    except DomainError:
        raise Refusal("attestation_bad_signature", "The supervisor's attestation does not verify.") from None
    # Kept as long as a request nonce: past that the timestamp check refuses the attestation anyway.
    if not store.use_nonce(attester.terminal_id, attestation.nonce, now, 2 * CLOCK_SKEW + timedelta(minutes=1)):
        raise Refusal("attestation_replayed", "This attestation was already used.")


def _check_caps(basket: Sequence[BasketLine], caps: Mapping[str, int], used: Mapping[str, int]) -> None:
    """Each item within its offline cap per card and cycle, counting the card's earlier fallbacks."""
    for line in check_basket(basket):
        left = max(0, caps.get(line.item, 0) - used.get(line.item, 0))
        if line.quantity > left:
            raise Refusal(
                "fallback_cap_exceeded",
                f"Without PIN, this card may get {left} more of '{line.item}' this period ({line.quantity} asked).",
            )


def _receipt(
    store: FallbackStore, keys: RedemptionKeys, counter: Counter, holder: Holder, period: str, sale: PostedSale
) -> Receipt:
    return build_receipt(keys, counter, holder, period, sale)
