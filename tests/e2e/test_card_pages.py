"""A registrar issues a card with a PIN from the household page and prints it; the QR verifies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pypdfium2 as pdfium
import pytest

from civicard.identity.credentials import verify_token
from civicard.identity.terminal_check import read_qr
from tests.e2e.conftest import REGISTRAR, LiveServer
from tests.e2e.test_registrar_page import sign_in

pytestmark = pytest.mark.e2e


def test_a_registrar_issues_and_prints_a_card_whose_qr_verifies(browser_page: Any, live_server: LiveServer) -> None:
    page = browser_page
    page.goto(live_server.base_url + "/signin")
    sign_in(page, REGISTRAR.username, REGISTRAR.password)
    household = live_server.town.household_ids[0]
    page.goto(f"{live_server.base_url}/registrar/households/{household}?purpose=card_service")
    row = page.locator("tr[data-person]").first
    person_id = row.get_attribute("data-person")
    row.locator("input[name=pin]").fill("4821")
    with page.expect_navigation():
        row.locator("[data-action=issue-card]").click()
    assert page.locator(f"tr[data-person='{person_id}'] [data-action=print-card]").count() == 1
    assert page.locator("input[value='4821']").count() == 0  # the PIN is not echoed back into the page

    response = page.request.get(f"{live_server.base_url}/registrar/persons/{person_id}/card.pdf")
    assert response.status == 200 and response.headers["content-type"] == "application/pdf"
    image = pdfium.PdfDocument(response.body())[0].render(scale=300 / 72).to_pil()
    token = read_qr(image)
    assert token is not None and token.startswith("CC1:")
    claims = verify_token(token, live_server.container.card_keys.keyring, datetime.now(UTC))
    assert len(claims.handle) == 11


def test_printing_needs_a_signed_in_registrar(browser_page: Any, live_server: LiveServer) -> None:
    person_id = next(iter(live_server.town.person_ids.values()))
    response = browser_page.request.get(
        f"{live_server.base_url}/registrar/persons/{person_id}/card.pdf", max_redirects=0
    )
    assert response.status == 303 and response.headers["location"] == "/signin"
