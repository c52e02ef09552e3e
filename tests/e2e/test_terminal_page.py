"""The vendor terminal page in headless Chromium at 360×740: the shop imports its device key, the
browser signs with WebCrypto Ed25519; a card check, a wrong PIN (message with tries left), then the
right PIN sells one item and the receipt shows what is left."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from civicard.identity.cards import CardKeys
from tests.e2e.conftest import LiveServer
from tests.integration.distribution_fixtures import (
    PIN,
    HeldCard,
    Till,
    issue,
    seed_rice_grant,
)

pytestmark = pytest.mark.e2e
GRANTED = 6


@pytest.fixture(scope="module")
def shop(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Till, HeldCard]:
    """This month's cycle, prices, a RICE-1KG grant for the first household, a shop terminal and a card."""
    container = live_server.container
    engine, clock = container.engine, container.clock
    household = live_server.town.household_ids[0]
    till = seed_rice_grant(engine, clock, household, tmp_path_factory.mktemp("cycle") / "out", GRANTED)
    card = issue(
        engine, clock, CardKeys.derive(container.root_key), live_server.person("María José Pérez Gómez"), household
    )
    return till, card


@pytest.fixture
def phone(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(locale="es-ES", viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()


def key_text(till: Till) -> str:
    """What the demo writes to var/demo-terminals/*.key: base64 of the raw 32-byte private key."""
    return base64.b64encode(till.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode()


def test_a_shop_sells_one_item_from_a_phone_after_a_wrong_pin(
    live_server: LiveServer, shop: tuple[Till, HeldCard], phone: Any, screenshots: Path
) -> None:
    till, card = shop
    page = phone
    page.goto(f"{live_server.base_url}/terminal")
    page.fill("#terminal-id", till.terminal_id)
    page.fill("#device-key", key_text(till))
    page.locator("[data-action=save-key]").click()
    page.locator("#setup-status[data-ready=true]").wait_for()
    # The key survives a reload as a non-extractable CryptoKey in IndexedDB; its text is kept nowhere.
    page.reload()
    page.locator("#setup-status[data-ready=true]").wait_for()
    assert page.evaluate("Object.keys(localStorage).length") == 0
    assert page.input_value("#device-key") == ""
    page.screenshot(path=str(screenshots / "terminal-setup.png"), full_page=True)

    page.fill("#card-code", card.token)
    page.locator("[data-action=check-card]").click()
    rice = page.locator("#basket .line[data-item='RICE-1KG']")
    rice.wait_for()
    assert f"{GRANTED}" in rice.inner_text()
    rice.locator("[data-action=more]").click()
    assert rice.locator("[data-field=quantity]").inner_text() == "1"

    for digit in "9137":  # a wrong PIN, typed on the pad
        page.locator(f".pad [data-digit='{digit}']").click()
    assert page.locator("#pin").get_attribute("type") == "password"
    assert page.locator("#pin").get_attribute("inputmode") == "numeric"
    page.locator("[data-action=sell]").click()
    message = page.locator("#message[data-code=pin_wrong]")
    message.wait_for()
    assert "quedan 4 intentos" in message.inner_text() and "tries left" not in message.inner_text()
    page.screenshot(path=str(screenshots / "terminal-wrong-pin.png"), full_page=True)

    for digit in PIN:
        page.locator(f".pad [data-digit='{digit}']").click()
    page.screenshot(path=str(screenshots / "terminal-basket.png"), full_page=True)
    page.locator("[data-action=sell]").click()
    receipt = page.locator("#receipt-step [data-field=receipt][data-code=redeemed]")
    receipt.wait_for()
    line = receipt.locator("tr[data-item='RICE-1KG']")
    assert line.locator("[data-field=granted]").inner_text().startswith("1 ")
    assert line.locator("[data-field=remaining]").inner_text() == str(GRANTED - 1)
    assert page.locator("#message").is_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing wider than the phone
    page.screenshot(path=str(screenshots / "terminal-receipt.png"), full_page=True)


def test_a_sale_retried_after_a_network_failure_reuses_its_idempotency_key(
    live_server: LiveServer, shop: tuple[Till, HeldCard], phone: Any
) -> None:
    till, card = shop
    page = phone
    page.goto(f"{live_server.base_url}/terminal")
    page.fill("#terminal-id", till.terminal_id)
    page.fill("#device-key", key_text(till))
    page.locator("[data-action=save-key]").click()
    page.locator("#setup-status[data-ready=true]").wait_for()
    page.fill("#card-code", card.token)
    page.locator("[data-action=check-card]").click()
    rice = page.locator("#basket .line[data-item='RICE-1KG']")
    rice.wait_for()
    left = int(rice.get_attribute("data-remaining") or 0)
    rice.locator("[data-action=more]").click()
    page.fill("#pin", PIN)
    keys: list[str] = []
    dropped: list[bool] = []

    def first_one_fails(route: Any) -> None:
        keys.append(route.request.headers["idempotency-key"])
        if not dropped:
            dropped.append(True)
            route.abort()
        else:
            route.continue_()

    page.route("**/v1/redemptions", first_one_fails)
    page.locator("[data-action=sell]").click()
    page.locator("#message[data-code=network]").wait_for()
    page.locator("[data-action=sell]").click()
    receipt = page.locator("#receipt-step [data-field=receipt][data-code=redeemed]")
    receipt.wait_for()
    assert len(keys) == 2 and keys[0] == keys[1]
    assert receipt.locator("tr[data-item='RICE-1KG'] [data-field=remaining]").inner_text() == str(left - 1)
