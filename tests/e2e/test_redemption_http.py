"""Redemption over HTTP against a live server: signed terminal requests get 201 receipts, 422
refusals, a replay of the first answer, 409 for a duplicate still in flight, 401 once revoked."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.redemption_store import IdempotencyKeys
from civicard.distribution.redemption import Claim
from civicard.identity.cards import CardKeys
from tests.e2e.conftest import LiveServer, signed_headers
from tests.integration.distribution_fixtures import (
    PIN,
    HeldCard,
    Till,
    add_till,
    issue,
    seed_rice_grant,
    system_uow,
)

pytestmark = pytest.mark.e2e
REDEEM = "/v1/redemptions"
CHECK = "/v1/terminal/card-check"
RECEIPT_KEYS = {"decision", "code", "period", "transaction_id", "holder", "items", "total_minor"}
LINE_KEYS = {"item", "granted", "remaining", "unit", "unit_price_minor", "amount_minor"}


class Counter:
    def __init__(self, server: LiveServer, till: Till) -> None:
        self.server, self.till = server, till

    def post(self, path: str, payload: dict[str, Any], key: str | None = None) -> httpx.Response:
        body = json.dumps(payload).encode()
        headers = signed_headers(self.till.key, self.till.terminal_id, path, body) | {
            "Content-Type": "application/json"
        }
        if key is not None:
            headers["Idempotency-Key"] = key
        return httpx.post(f"{self.server.base_url}{path}", content=body, headers=headers, timeout=30.0)

    def redeem(self, card: HeldCard, basket: dict[str, int], key: str, pin: str = PIN) -> httpx.Response:
        return self.post(REDEEM, payload(card, basket, pin), key)


def payload(card: HeldCard, basket: dict[str, int], pin: str = PIN) -> dict[str, Any]:
    return {"card_token": card.token, "pin": pin, "basket": [{"item": i, "quantity": q} for i, q in basket.items()]}


@pytest.fixture(scope="module")
def shop(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Counter, list[HeldCard]]]:
    """The seeded town's cycle for this month, a food grant for the first household (its incomes are
    above the food limit), prices, a shop with a counter terminal, and cards for its adults."""
    container = live_server.container
    engine, clock = container.engine, container.clock
    household = live_server.town.household_ids[0]
    till = seed_rice_grant(engine, clock, household, tmp_path_factory.mktemp("cycle") / "out", 6)
    keys = CardKeys.derive(container.root_key)
    cards = [
        issue(engine, clock, keys, live_server.person(name), household)
        for name in ("María José Pérez Gómez", "José Luis Martínez Ruiz", "Sofía Martínez Pérez")
    ]
    yield Counter(live_server, till), cards


def test_an_approved_redemption_is_201_with_a_vendor_safe_receipt_and_a_retry_replays_it(
    shop: tuple[Counter, list[HeldCard]],
) -> None:
    counter, (maria, _, _) = shop
    first = counter.redeem(maria, {"RICE-1KG": 2}, "http-sale-1")
    assert first.status_code == 201, first.text
    receipt = first.json()
    assert set(receipt) == RECEIPT_KEYS and (receipt["decision"], receipt["code"]) == ("approved", "redeemed")
    (line,) = receipt["items"]
    assert set(line) == LINE_KEYS
    assert (line["item"], line["granted"], line["remaining"], line["amount_minor"]) == ("RICE-1KG", 2, 4, 500)
    again = counter.redeem(maria, {"RICE-1KG": 2}, "http-sale-1")
    assert (again.status_code, again.content) == (201, first.content)
    reused = counter.redeem(maria, {"RICE-1KG": 1}, "http-sale-1")
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")


def test_refusals_are_422_problems_with_their_codes(shop: tuple[Counter, list[HeldCard]]) -> None:
    counter, (maria, jose, sofia) = shop
    wrong = counter.redeem(jose, {"RICE-1KG": 1}, "http-wrong-pin", pin="9137")
    assert wrong.status_code == 422 and wrong.headers["content-type"] == "application/problem+json"
    assert (wrong.json()["code"], wrong.json()["tries_left"]) == ("pin_wrong", 4)
    too_much = counter.redeem(maria, {"RICE-1KG": 50}, "http-too-much")
    assert (too_much.status_code, too_much.json()["code"]) == (422, "insufficient_remaining")
    replay = counter.redeem(maria, {"RICE-1KG": 50}, "http-too-much")
    assert (replay.status_code, replay.content) == (422, too_much.content)
    minor = counter.redeem(sofia, {"RICE-1KG": 1}, "http-minor")
    assert (minor.status_code, minor.json()["code"]) == (422, "not_entitled")
    medicine = counter.redeem(maria, {"INSULIN-NPH-10ML": 1}, "http-medicine")
    assert (medicine.status_code, medicine.json()["code"]) == (422, "item_not_allowed_here")
    missing = counter.post(REDEEM, payload(maria, {"RICE-1KG": 1}))
    assert missing.status_code == 422 and missing.json()["code"] == "invalid_request"


def test_a_duplicate_in_flight_gets_409_and_a_burst_of_duplicates_redeems_once(
    shop: tuple[Counter, list[HeldCard]],
) -> None:
    counter, (maria, _, _) = shop
    body = payload(maria, {"RICE-1KG": 1})
    fingerprint = hashlib.sha256(json.dumps(body).encode()).hexdigest()
    ledger = IdempotencyKeys(counter.server.container.engine)
    held = ledger.claim(counter.till.terminal_id, "http-busy", fingerprint, counter.server.container.clock.now())
    assert isinstance(held, Claim)
    busy = counter.redeem(maria, {"RICE-1KG": 1}, "http-busy")
    assert (busy.status_code, busy.json()["code"]) == (409, "request_in_progress")
    ledger.release(held)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        response = counter.redeem(maria, {"RICE-1KG": 1}, "http-burst")
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status_code for r in answers} <= {201, 409} and 201 in {r.status_code for r in answers}
    assert len({r.content for r in answers if r.status_code == 201}) == 1
    with system_uow(counter.server.container.engine, counter.server.container.clock) as uow:
        sales = uow.connection.execute(
            sa.select(sa.func.count()).select_from(t.redemptions).where(t.redemptions.c.idempotency_key == "http-burst")
        ).scalar_one()
    assert sales == 1


def test_the_card_check_answers_before_the_pin(shop: tuple[Counter, list[HeldCard]]) -> None:
    counter, (maria, _, sofia) = shop
    checked = counter.post(CHECK, {"card_token": maria.token})
    assert checked.status_code == 200, checked.text
    assert checked.json()["code"] == "card_valid" and checked.json()["items"][0]["item"] == "RICE-1KG"
    assert counter.post(CHECK, {"card_token": sofia.token}).json()["code"] == "not_entitled"


def test_a_revoked_terminal_gets_401(shop: tuple[Counter, list[HeldCard]], live_server: LiveServer) -> None:
    _, (maria, _, _) = shop
    engine, now = live_server.container.engine, live_server.container.clock.now()
    spare = Counter(live_server, add_till(engine, "shop", "Tienda Robada", now))
    live_server.container.auth.revoke_terminal(spare.till.terminal_id, "e2e")
    refused = spare.redeem(maria, {"RICE-1KG": 1}, "http-stolen")
    assert (refused.status_code, refused.json()["code"]) == (401, "terminal_revoked")


def test_the_resident_sees_the_outlet_in_their_access_log(
    shop: tuple[Counter, list[HeldCard]], live_server: LiveServer
) -> None:
    counter, (maria, _, _) = shop
    assert counter.redeem(maria, {"RICE-1KG": 1}, "http-logged").status_code == 201
    signed = live_server.container.auth.open_resident_session(maria.person_id)
    log = httpx.get(
        f"{live_server.base_url}/v1/me/access-log",
        headers={"Authorization": f"Bearer {signed.session_token}"},
        timeout=10.0,
    ).json()
    details = [e["entry"]["detail"] if "entry" in e else e.get("detail", "") for e in log["entries"]]
    assert any("redemption.approved" in d and "Tienda La Esquina" in d for d in details), details
