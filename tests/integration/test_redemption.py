"""Online redemption on SQLite and PostgreSQL: an approved sale decrements and writes the ledger in
one transaction; every refusal has its code and writes no sale; retries replay the first answer;
PIN guessing is throttled per card, terminal and outlet; and no vendor-facing byte ever carries a
name, an income or an internal id (canaries seeded into the town)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from civicard.adapters.api.app import create_app
from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.redemption_store import IdempotencyKeys, SqlRedemptionUnitOfWork
from civicard.bootstrap import Container
from civicard.distribution.redemption import Claim, PinThrottle, Receipt, RedeemCommand, Refusal, Throttled, redeem
from civicard.distribution.sales import BasketLine
from civicard.identity.cards import CardKeys, revoke_card, suspend_card
from civicard.identity.credentials import CardClaims, issue_token, new_handle
from civicard.identity.terminal_auth import encode_signature, sign_request
from civicard.settings import Mode, Settings
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError, Forbidden
from civicard.shared.ids import new_id
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Actor
from tests.conftest import Database
from tests.integration.distribution_fixtures import (
    CARD_DESK,
    PIN,
    TEST_ROOT_KEY,
    DistributionTown,
    HeldCard,
    Till,
    add_terminal,
    build_distribution_town,
    system_uow,
)

WRONG_PIN = "9137"
CANARY_NAMES = ("Zyxqorblat", "Quondrivelle", "Mxyzptlkova")
CANARY_INCOME = 7_315_926_408  # ten distinctive digits


@pytest.fixture
def town(engine: sa.Engine, clock: Clock, tmp_path: Path) -> DistributionTown:
    return build_distribution_town(engine, clock, tmp_path)


def sell(
    town: DistributionTown,
    card: HeldCard,
    basket: dict[str, int],
    pin: str = PIN,
    till: Till | None = None,
    throttle: PinThrottle | None = None,
) -> Receipt:
    till = till or town.shop
    context = AccessContext(Actor(till.terminal_id, "vendor"), "redemption")
    command = RedeemCommand(card.token, pin, tuple(BasketLine(i, q) for i, q in basket.items()))
    with SqlRedemptionUnitOfWork(town.engine, context, town.clock) as uow:
        if throttle is None:
            return redeem(uow, town.keys, command)
        return redeem(uow, town.keys, command, throttle=throttle)


def refusal(town: DistributionTown, card: HeldCard, basket: dict[str, int], **kw: Any) -> DomainError:
    before = town.counts()
    with pytest.raises(DomainError) as refused:
        sell(town, card, basket, **kw)
    assert town.counts() == before, "a refused sale must write no redemption, ledger line or decrement"
    return refused.value


def food_item(town: DistributionTown, card: HeldCard) -> tuple[str, int]:
    rows = [r for r in town.entitlement_rows(card.household_id) if r[0] == "RICE-1KG"]
    return "RICE-1KG", sum(r[1] for r in rows)


# --- approved ------------------------------------------------------------------------------------


def test_an_approved_sale_decrements_the_entitlement_and_writes_redemption_and_ledger(town: DistributionTown) -> None:
    card = town.adults[0]
    item, before = food_item(town, card)
    receipt = sell(town, card, {item: 2})
    assert receipt.period == town.period == "2026-11"
    (line,) = receipt.lines
    assert (line.item, line.quantity, line.remaining, line.unit) == (item, 2, before - 2, "kg")
    assert (line.unit_price_minor, line.amount_minor, receipt.total_minor) == (250, 500, 500)
    assert town.remaining(card.household_id, item) == before - 2
    assert receipt.holder == town.keys.pseudonym(town.shop.vendor_id, card.person_id)
    with system_uow(town.engine, town.clock) as uow:
        conn = uow.connection
        sale = conn.execute(sa.select(t.redemptions).where(t.redemptions.c.id == receipt.transaction_id)).one()
        lines = conn.execute(
            sa.select(t.ledger_lines).where(t.ledger_lines.c.redemption_id == receipt.transaction_id)
        ).all()
        logged = conn.execute(
            sa.select(t.access_log).where(
                t.access_log.c.subject_person_id == card.person_id, t.access_log.c.purpose == "redemption"
            )
        ).all()
    assert (sale.household_id, sale.card_id, sale.outlet_id, sale.channel) == (
        card.household_id,
        card.card_id,
        town.shop.outlet_id,
        "online",
    )
    assert (sale.total_minor, sale.subsidy_minor) == (500, 1500)
    assert sum(r.quantity for r in lines) == 2 and {r.item_code for r in lines} == {item}
    (entry,) = [e for e in logged if e.action == "write"]
    assert entry.actor == town.shop.terminal_id and entry.categories == "decisions"
    assert "Tienda La Esquina" in entry.detail and receipt.transaction_id in entry.detail


def test_a_right_pin_after_wrong_ones_resets_the_cards_counter(town: DistributionTown) -> None:
    card = town.adults[0]
    for _ in range(3):
        with pytest.raises(Refusal):
            sell(town, card, {"RICE-1KG": 1}, pin=WRONG_PIN)
    sell(town, card, {"RICE-1KG": 1})
    with SqlCardUnitOfWork(town.engine, CARD_DESK, town.clock) as uow:
        stored = uow.cards.pin(card.card_id)
    assert stored is not None and stored.counter.consecutive_failures == 0


def test_a_medicine_is_refused_at_a_shop_and_served_at_a_pharmacy(town: DistributionTown) -> None:
    holder = town.medicine_holder
    assert holder is not None, "the synthetic town has a household with a medicine entitlement"
    medicine = [
        r for r in town.entitlement_rows(holder.household_id) if r[0] not in {"RICE-1KG"} and r[2] > 0 and "-" in r[0]
    ]
    with system_uow(town.engine, town.clock) as uow:
        kinds = dict(uow.connection.execute(sa.select(t.items.c.code, t.items.c.kind)).all())
    item = next(r[0] for r in medicine if kinds[r[0]] == "medicine")
    assert refusal(town, holder, {item: 1}).code == "item_not_allowed_here"
    receipt = sell(town, holder, {item: 1}, till=town.pharmacy)
    assert receipt.lines[0].item == item and receipt.lines[0].quantity == 1


# --- refusals ------------------------------------------------------------------------------------


def test_each_card_problem_is_refused_with_its_code(town: DistributionTown) -> None:
    card = town.adults[0]
    now = town.clock.now()
    garbage = replace(card, token="CC1:NOT-A-CARD")
    assert refusal(town, garbage, {"RICE-1KG": 1}).code == "token_malformed"
    other_issuer = CardKeys.derive(RootKey(b"\x07" * 32)).current
    claims = CardClaims(card.handle, 5, now.replace(microsecond=0), now.replace(microsecond=0) + timedelta(days=9))
    forged = replace(card, token=issue_token(claims, other_issuer))
    assert refusal(town, forged, {"RICE-1KG": 1}).code == "token_bad_signature"
    stranger = CardClaims(new_handle(), 77, claims.issued_at, claims.expires_at)
    unknown = replace(card, token=issue_token(stranger, town.card_keys.current))
    assert refusal(town, unknown, {"RICE-1KG": 1}).code == "unknown_card"
    past = CardClaims(card.handle, 5, datetime(2020, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    expired = replace(card, token=issue_token(past, town.card_keys.current))
    assert refusal(town, expired, {"RICE-1KG": 1}).code == "card_expired"
    with SqlCardUnitOfWork(town.engine, CARD_DESK, town.clock) as uow:
        suspend_card(uow, town.card_keys, card.handle, "reported_missing")
    assert refusal(town, card, {"RICE-1KG": 1}).code == "card_suspended"
    with SqlCardUnitOfWork(town.engine, CARD_DESK, town.clock) as uow:
        revoke_card(uow, town.card_keys, card.handle, "stolen")
    assert refusal(town, card, {"RICE-1KG": 1}).code == "card_revoked"


def test_a_wrong_pin_says_how_many_tries_are_left_and_five_lock_the_card(town: DistributionTown) -> None:
    card = town.adults[1]
    for left in (4, 3, 2, 1):
        refused = refusal(town, card, {"RICE-1KG": 1}, pin=WRONG_PIN)
        assert (refused.code, refused.public["tries_left"]) == ("pin_wrong", left)
    assert refusal(town, card, {"RICE-1KG": 1}, pin=WRONG_PIN).code == "pin_locked"
    assert refusal(town, card, {"RICE-1KG": 1}).code == "pin_locked", "the right PIN no longer helps"


def test_a_minors_card_is_refused(town: DistributionTown) -> None:
    assert town.minors, "the synthetic town has children in food-entitled households"
    assert refusal(town, town.minors[0], {"RICE-1KG": 1}).code == "not_entitled"


def test_basket_refusals_have_their_codes(town: DistributionTown) -> None:
    card = town.adults[2]
    item, left = food_item(town, card)
    assert refusal(town, card, {item: left + 1}).code == "insufficient_remaining"
    assert refusal(town, card, {"NOT-AN-ITEM": 1}).code == "unknown_item"
    assert refusal(town, card, {"INSULIN-NPH-10ML": 1}).code == "item_not_allowed_here"
    assert refusal(town, card, {item: 1, "NOT-AN-ITEM": 1}).code == "unknown_item", "all of the basket or nothing"
    held = {r[0] for r in town.entitlement_rows(card.household_id) if r[2] > 0}
    with system_uow(town.engine, town.clock) as uow:
        food = set(uow.connection.execute(sa.select(t.items.c.code).where(t.items.c.kind == "food")).scalars())
    missing = sorted(food - held)
    if missing:
        assert refusal(town, card, {missing[0]: 1}).code == "not_entitled"


def test_a_closed_period_or_a_month_without_a_cycle_is_refused(town: DistributionTown) -> None:
    card = town.adults[0]
    later = replace(town, clock=Clock.fixed(town.clock.now() + timedelta(days=31)))
    assert refusal(later, card, {"RICE-1KG": 1}).code == "period_closed"
    with town.engine.connect() as conn:
        conn.execute(sa.update(t.benefit_periods).values(status="closed"))
        conn.commit()
    assert refusal(town, card, {"RICE-1KG": 1}).code == "period_closed"


def test_a_terminal_that_is_not_a_counter_at_an_open_outlet_is_refused(town: DistributionTown) -> None:
    card = town.adults[0]
    now = town.clock.now()
    for outlet, role in ((None, "counter"), (town.shop.outlet_id, "supervisor")):
        key, terminal_id = add_terminal(town.engine, outlet, now, role)
        elsewhere = replace(town.shop, terminal_id=terminal_id, key=key)
        refused = refusal(town, card, {"RICE-1KG": 1}, till=elsewhere)
        assert isinstance(refused, Forbidden) and refused.code == "terminal_not_at_outlet"
    with town.engine.connect() as conn:
        conn.execute(sa.update(t.outlets).where(t.outlets.c.id == town.shop.outlet_id).values(closed_at=now))
        conn.commit()
    assert refusal(town, card, {"RICE-1KG": 1}).code == "terminal_not_at_outlet"


def test_one_pin_sprayed_across_many_cards_is_throttled_per_terminal_and_per_outlet(town: DistributionTown) -> None:
    throttle = PinThrottle(per_terminal=3, per_outlet=5, window=timedelta(minutes=10))
    cards = town.adults
    assert len(cards) >= 6
    for card in cards[:3]:
        assert refusal(town, card, {"RICE-1KG": 1}, pin=WRONG_PIN, throttle=throttle).code == "pin_wrong"
    throttled = refusal(town, cards[3], {"RICE-1KG": 1}, pin=WRONG_PIN, throttle=throttle)
    assert isinstance(throttled, Throttled) and throttled.code == "too_many_attempts"
    assert 0 < throttled.details["retry_after_seconds"] <= 600
    # Another terminal at the same outlet: two more failures fill the outlet's window.
    key, terminal_id = add_terminal(town.engine, town.shop.outlet_id, town.clock.now())
    second = replace(town.shop, terminal_id=terminal_id, key=key)
    for card in cards[3:5]:
        assert refusal(town, card, {"RICE-1KG": 1}, pin=WRONG_PIN, till=second, throttle=throttle).code == "pin_wrong"
    assert refusal(town, cards[5], {"RICE-1KG": 1}, till=second, throttle=throttle).code == "too_many_attempts"
    # The pharmacy (another outlet, another terminal) is not affected.
    assert refusal(town, cards[5], {"RICE-1KG": 1}, pin=WRONG_PIN, till=town.pharmacy, throttle=throttle).code == (
        "pin_wrong"
    )


# --- over HTTP: idempotency, card check, canaries --------------------------------------------------


class Terminal:
    """Signed requests from one till to the app (TestClient, the fixed clock's time)."""

    def __init__(self, client: TestClient, town: DistributionTown, till: Till) -> None:
        self.client, self.town, self.till = client, town, till

    def post(self, path: str, payload: dict[str, Any], key: str | None = None) -> Any:
        body = json.dumps(payload).encode()
        when = int(self.town.clock.now().timestamp())
        nonce = new_id()
        signature = sign_request(self.till.key, "POST", path, body, when, nonce, self.till.terminal_id)
        headers = {
            "Content-Type": "application/json",
            "X-Civicard-Terminal": self.till.terminal_id,
            "X-Civicard-Timestamp": str(when),
            "X-Civicard-Nonce": nonce,
            "X-Civicard-Signature": encode_signature(signature),
        }
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.post(path, content=body, headers=headers)

    def get(self, path: str) -> Any:
        when = int(self.town.clock.now().timestamp())
        nonce = new_id()
        signature = sign_request(self.till.key, "GET", path, b"", when, nonce, self.till.terminal_id)
        headers = {
            "X-Civicard-Terminal": self.till.terminal_id,
            "X-Civicard-Timestamp": str(when),
            "X-Civicard-Nonce": nonce,
            "X-Civicard-Signature": encode_signature(signature),
        }
        return self.client.get(path, headers=headers)

    def redeem(self, card: HeldCard, basket: dict[str, int], key: str, pin: str = PIN) -> Any:
        lines = [{"item": i, "quantity": q} for i, q in basket.items()]
        return self.post("/v1/redemptions", {"card_token": card.token, "pin": pin, "basket": lines}, key)

    def check(self, card: HeldCard) -> Any:
        return self.post("/v1/terminal/card-check", {"card_token": card.token})


@pytest.fixture
def shop(town: DistributionTown, db: Database, tmp_path: Path) -> Iterator[Terminal]:
    settings = Settings(mode=Mode.DEMO, data_dir=tmp_path / "data", database_url=db.url)
    container = Container(settings, town.engine, town.clock, TEST_ROOT_KEY)
    yield Terminal(TestClient(create_app(container)), town, town.shop)


def test_a_retry_with_the_same_key_returns_the_first_answer_and_redeems_nothing(
    town: DistributionTown, shop: Terminal
) -> None:
    card = town.adults[0]
    item, before = food_item(town, card)
    first = shop.redeem(card, {item: 1}, "sale-0001")
    assert first.status_code == 201, first.text
    counts = town.counts()
    again = shop.redeem(card, {item: 1}, "sale-0001")
    assert (again.status_code, again.content) == (201, first.content)
    assert town.counts() == counts and town.remaining(card.household_id, item) == before - 1
    reused = shop.redeem(card, {item: 2}, "sale-0001")
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    refused = shop.redeem(card, {item: 999}, "sale-0002")
    assert (refused.status_code, refused.json()["code"]) == (422, "insufficient_remaining")
    assert refused.headers["content-type"] == "application/problem+json"
    replayed = shop.redeem(card, {item: 999}, "sale-0002")
    assert (replayed.status_code, replayed.content) == (422, refused.content)
    assert town.counts() == counts


def test_a_concurrent_duplicate_gets_409_while_the_first_is_pending(town: DistributionTown, shop: Terminal) -> None:
    card = town.adults[0]
    body = {"card_token": card.token, "pin": PIN, "basket": [{"item": "RICE-1KG", "quantity": 1}]}
    fingerprint = hashlib.sha256(json.dumps(body).encode()).hexdigest()
    claim = IdempotencyKeys(town.engine).claim(town.shop.terminal_id, "busy-1", fingerprint, town.clock.now())
    busy = shop.redeem(card, {"RICE-1KG": 1}, "busy-1")
    assert (busy.status_code, busy.json()["code"]) == (409, "request_in_progress")
    assert isinstance(claim, Claim)
    IdempotencyKeys(town.engine).release(claim)
    assert shop.redeem(card, {"RICE-1KG": 1}, "busy-1").status_code == 201


def test_a_sprayed_pin_over_http_gets_429_with_retry_after(town: DistributionTown, shop: Terminal) -> None:
    codes = [shop.redeem(card, {"RICE-1KG": 1}, f"spray-{n}", pin=WRONG_PIN) for n, card in enumerate(town.adults)]
    assert [r.status_code for r in codes[:10]] == [422] * 10 and codes[0].json()["code"] == "pin_wrong"
    last = shop.redeem(town.adults[0], {"RICE-1KG": 1}, "spray-next")
    assert (last.status_code, last.json()["code"]) == (429, "too_many_attempts")
    assert int(last.headers["Retry-After"]) > 0
    retry = shop.redeem(town.adults[0], {"RICE-1KG": 1}, "spray-next")
    assert retry.status_code == 429, "a throttled answer is not stored as the key's final answer"


def test_the_card_check_lists_what_is_left_here_without_medicines(town: DistributionTown, shop: Terminal) -> None:
    card = town.adults[0]
    checked = shop.check(card)
    assert checked.status_code == 200, checked.text
    answer = checked.json()
    assert (answer["card_valid"], answer["code"], answer["pin_locked"], answer["period"]) == (
        True,
        "card_valid",
        False,
        town.period,
    )
    listed = {i["item"]: i["remaining"] for i in answer["items"]}
    assert listed["RICE-1KG"] == town.remaining(card.household_id, "RICE-1KG")
    with system_uow(town.engine, town.clock) as uow:
        medicines = set(uow.connection.execute(sa.select(t.items.c.code).where(t.items.c.kind == "medicine")).scalars())
    assert not medicines & set(listed)
    pharmacy = Terminal(shop.client, town, town.pharmacy)
    assert town.medicine_holder is not None
    at_pharmacy = pharmacy.check(town.medicine_holder).json()
    assert not medicines & {i["item"] for i in at_pharmacy["items"]}, "medicines are never listed, even at a pharmacy"
    minor = shop.check(town.minors[0]).json()
    assert (minor["card_valid"], minor["code"], minor["items"]) == (True, "not_entitled", [])
    with SqlCardUnitOfWork(town.engine, CARD_DESK, town.clock) as uow:
        revoke_card(uow, town.card_keys, card.handle, "lost")
    revoked = shop.check(card).json()
    assert (revoked["card_valid"], revoked["code"], revoked["items"]) == (False, "card_revoked", [])


def test_no_vendor_response_byte_carries_a_name_an_income_or_an_internal_id(
    town: DistributionTown, shop: Terminal
) -> None:
    card = town.adults[0]
    household = card.household_id
    with system_uow(town.engine, town.clock) as uow:
        conn = uow.connection
        members = list(
            conn.execute(
                sa.select(t.memberships.c.person_id).where(
                    t.memberships.c.household_id == household, t.memberships.c.valid_to.is_(None)
                )
            ).scalars()
        )
    with SqlCardUnitOfWork(
        town.engine, AccessContext(Actor("test:canary", "system"), "bulk_import"), town.clock
    ) as uow:
        conn = uow.connection
        for n, person_id in enumerate(members):
            name = CANARY_NAMES[n % len(CANARY_NAMES)]
            conn.execute(
                sa.update(t.persons)
                .where(t.persons.c.id == person_id)
                .values(given_names=name, first_surname=f"{name}ez", second_surname="Canarioso")
            )
            conn.execute(
                sa.insert(t.incomes).values(
                    id=new_id(),
                    valid_from=town.clock.today(),
                    recorded_at=town.clock.now(),
                    recorded_by="test",
                    reason="canary",
                    person_id=person_id,
                    source="wages",
                    monthly_amount_minor=CANARY_INCOME,
                )
            )
        secrets_ = set(members) | {household, card.card_id, card.handle}
        secrets_ |= set(conn.execute(sa.select(t.cards.c.id).where(t.cards.c.person_id.in_(members))).scalars())
        for table in (t.entitlements, t.decisions):
            secrets_ |= set(conn.execute(sa.select(table.c.id).where(table.c.household_id == household)).scalars())
        uow.commit()
    item, left = food_item(town, card)
    responses = [
        shop.check(card),
        shop.redeem(card, {item: 1}, "canary-1"),
        shop.redeem(card, {item: 1}, "canary-1"),
        shop.redeem(card, {item: left + 5}, "canary-2"),
        shop.redeem(card, {"INSULIN-NPH-10ML": 1}, "canary-3"),
        shop.redeem(card, {item: 1}, "canary-4", pin=WRONG_PIN),
        shop.redeem(town.minors[0], {item: 1}, "canary-5"),
    ]
    assert [r.status_code for r in responses] == [200, 201, 201, 422, 422, 422, 422]
    forbidden = [s.lower() for s in (*CANARY_NAMES, "Canarioso", str(CANARY_INCOME), f"{CANARY_INCOME / 100:.2f}")]
    forbidden += sorted(secrets_)
    for response in responses:
        raw = (response.content + str(dict(response.headers)).encode()).lower()
        for secret in forbidden:
            assert secret.encode() not in raw, f"{secret!r} leaked in {response.request.url.path}"
        assert not re.search(rb"\b(income|salary|diagnos|birth)", raw)
