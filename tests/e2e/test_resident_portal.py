"""The resident portal end to end: a resident signs in with card and PIN and moves through "my
data", "my benefits", "my decisions", "who read my data" and "corrections" with the shared
navigation; sees their household's sale from the ledger; asks for a correction that a reviewer
answers. Each page view adds exactly the access-log entries it should; every page fits 360 px."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from civicard.identity.cards import CardKeys
from civicard.identity.credentials import format_handle
from civicard.registry.recording import record_fact
from civicard.transparency.access import AccessContext, Actor
from tests.e2e.conftest import REGISTRAR, REVIEWER, LiveServer, signed_headers
from tests.e2e.test_registrar_page import sign_in
from tests.integration.distribution_fixtures import PIN, HeldCard, Till, issue, seed_rice_grant

pytestmark = pytest.mark.e2e
MARIA, JOSE = "María José Pérez Gómez", "José Luis Martínez Ruiz"
GRANTED = 6
REQUEST = "Mi situación laboral es desempleada desde octubre, no empleada."
PAGES = ("/me/data", "/me/benefits", "/me/decisions", "/me/log", "/me/corrections")


@dataclass(frozen=True)
class Portal:
    server: LiveServer
    maria: HeldCard
    jose: HeldCard
    sales: dict[str, str]  # whose card → transaction id


def _redeem(server: LiveServer, till: Till, card: HeldCard, quantity: int, key: str) -> str:
    """One online sale of RICE-1KG at the shop, signed by its terminal, as a till sends it."""
    body = json.dumps(
        {"card_token": card.token, "pin": PIN, "basket": [{"item": "RICE-1KG", "quantity": quantity}]}
    ).encode()
    headers = signed_headers(till.key, till.terminal_id, "/v1/redemptions", body)
    headers |= {"Content-Type": "application/json", "Idempotency-Key": key}
    response = httpx.post(f"{server.base_url}/v1/redemptions", content=body, headers=headers, timeout=30.0)
    assert response.status_code == 201, response.text
    transaction: str = response.json()["transaction_id"]
    return transaction


@pytest.fixture(scope="module")
def portal(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Portal:
    """This month's cycle and a rice grant for María's household; her employment and a disability
    recorded by the registrar (a staff account); a chronic illness of José Luis (never on María's
    pages); cards for both, and one sale with each card."""
    container = live_server.container
    engine, clock = container.engine, container.clock
    household = live_server.town.household_ids[0]
    till = seed_rice_grant(engine, clock, household, tmp_path_factory.mktemp("cycle") / "out", GRANTED)
    desk = AccessContext(Actor(live_server.account_id(REGISTRAR), "registrar"), "fact_correction")
    for person, kind, key, values in (
        (MARIA, "employment", {}, {"status": "employed"}),
        (MARIA, "health_needs", {"kind": "disability", "code": "DIS-MOB"}, {"degree_percent": 40, "present": True}),
        (JOSE, "health_needs", {"kind": "chronic", "code": "I10"}, {"present": True}),
    ):
        with container.uow(desk) as uow:
            record_fact(uow, kind, live_server.person(person), key, values, date(2025, 1, 1), "at the desk")
    keys = CardKeys.derive(container.root_key)
    maria = issue(engine, clock, keys, live_server.person(MARIA), household)
    jose = issue(engine, clock, keys, live_server.person(JOSE), household)
    sales = {
        "maria": _redeem(live_server, till, maria, 1, "portal-1"),
        "jose": _redeem(live_server, till, jose, 2, "portal-2"),
    }
    return Portal(live_server, maria, jose, sales)


@pytest.fixture
def resident_http(portal: Portal) -> Iterator[tuple[httpx.Client, str]]:
    """A client with María's session cookie (as the browser holds it) and the session's CSRF token."""
    signed = portal.server.container.auth.open_resident_session(portal.maria.person_id)
    cookies = {"civicard_session": signed.session_token}
    with httpx.Client(base_url=portal.server.base_url, cookies=cookies, timeout=10.0) as client:
        yield client, signed.csrf_token


def test_a_resident_signs_in_and_reads_every_page_through_the_shared_navigation(
    portal: Portal, browser_page: Any, screenshots: Path
) -> None:
    server, page = portal.server, browser_page
    page.goto(f"{server.base_url}/me")
    page.fill("#handle", format_handle(portal.maria.handle))
    page.fill("#pin", PIN)
    with page.expect_navigation():
        page.click("form[action='/me/signin'] button[type=submit]")
    assert page.url.endswith("/me/log")
    nav = page.get_by_role("navigation", name="Mis páginas")
    assert nav.get_by_role("link").all_inner_texts() == [
        "Mis datos", "Mis prestaciones", "Mis decisiones", "Quién consultó mis datos", "Pedir una corrección"
    ]  # fmt: skip

    with page.expect_navigation():
        nav.get_by_role("link", name="Mis datos", exact=True).click()
    assert page.url.endswith("/me/data")
    assert page.locator(".me-nav a[aria-current=page]").inner_text() == "Mis datos"
    identity = page.locator("section[data-category=identity]")
    assert identity.locator("tr[data-field=given_names] [data-value]").inner_text() == "María José"
    assert identity.locator("tr[data-field=municipality] [data-value]").inner_text() != "NOR-01"  # a name
    members = page.locator("section[data-category=household] tbody tr")
    assert members.all_inner_texts()[0].startswith("María José Pérez Gómez")
    assert "José Luis Martínez Ruiz" in members.all_inner_texts()[1]
    health = page.locator("section[data-category=health]")
    assert health.locator("tr[data-kind=health_needs]").count() == 1
    assert "Movilidad" in health.inner_text() and "grado 40 %" in health.inner_text()
    assert "Hipertensión" not in page.content()  # José Luis's illness is his own
    employment = page.locator("section[data-category=income] tr[data-kind=employment]")
    assert "Empleado/a" in employment.inner_text()
    assert f"{REGISTRAR.display_name} (registro)" in employment.locator(".recorded").inner_text()
    page.screenshot(path=str(screenshots / "resident-my-data.png"), full_page=True)

    with page.expect_navigation():
        nav.get_by_role("link", name="Mis prestaciones").click()
    rice = page.locator("tr[data-item=RICE-1KG]").first
    assert (rice.locator("[data-field=granted]").inner_text(), rice.locator("[data-field=remaining]").inner_text()) == (
        str(GRANTED),
        str(GRANTED - 3),
    )
    mine = page.locator(f"tr[data-redemption='{portal.sales['maria']}']")
    assert mine.get_attribute("data-channel") == "online"
    assert "Tienda La Esquina" in mine.locator("[data-field=outlet]").inner_text()
    assert mine.locator("li[data-item=RICE-1KG]").get_attribute("data-quantity") == "1"
    assert "con su tarjeta" in mine.locator("[data-field=channel]").inner_text()
    theirs = page.locator(f"tr[data-redemption='{portal.sales['jose']}']")
    assert theirs.locator("li[data-item=RICE-1KG]").get_attribute("data-quantity") == "2"
    assert "otro miembro" in theirs.locator("[data-field=channel]").inner_text()
    page.screenshot(path=str(screenshots / "resident-my-benefits.png"), full_page=True)

    for name, path in (("Mis decisiones", "/me/decisions"), ("Quién consultó mis datos", "/me/log")):
        with page.expect_navigation():
            nav.get_by_role("link", name=name, exact=True).click()
        assert page.url.endswith(path) and page.locator(".me-nav a[aria-current=page]").inner_text() == name
    with page.expect_navigation():
        nav.get_by_role("link", name="Pedir una corrección").click()
    page.select_option("#category", "income")
    page.fill("#details", REQUEST)
    with page.expect_navigation():
        page.click("[data-action=request-correction]")
    assert "Solicitud enviada" in page.locator(".notice").inner_text()
    row = page.locator("tr[data-status=open]")
    assert row.locator("[data-field=details]").inner_text() == REQUEST
    page.screenshot(path=str(screenshots / "resident-corrections.png"), full_page=True)
    with page.expect_navigation():
        page.click(".me-nav [data-action=sign-out]")
    page.goto(f"{server.base_url}/me/data")
    assert page.url.endswith("/me")  # signed out: back to the sign-in form


def _entries(server: LiveServer, since: int) -> list[tuple[str, str, str, str | None, str]]:
    return [
        (e["actor"], e["purpose"], e["action"], e["subject_person_id"], e["detail"].split(" ")[0])
        for e in server.access_log_since(since)
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/me/data", [("self_access", "read", "self.record_read"), ("self_access", "read", "life_event.read")]),
        ("/me/benefits", [("self_access", "read", "benefits.read")]),
        ("/me/decisions", [("self_access", "read", "decisions.read")]),
        ("/me/corrections", [("self_access", "read", "correction.requests_read")]),
        ("/me/log", []),  # reading one's own log is not itself an entry
    ],
)
def test_each_page_view_adds_its_access_log_entries(
    portal: Portal, resident_http: tuple[httpx.Client, str], path: str, expected: list[tuple[str, str, str]]
) -> None:
    client, _ = resident_http
    maria = portal.maria.person_id
    before = portal.server.access_log_head()
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert _entries(portal.server, before) == [(maria, p, a, maria, d) for p, a, d in expected]


def test_filing_a_correction_logs_the_change_and_the_page_it_returns_to(
    portal: Portal, resident_http: tuple[httpx.Client, str]
) -> None:
    client, csrf = resident_http
    maria = portal.maria.person_id
    before = portal.server.access_log_head()
    forged = client.post("/me/corrections", data={"category": "identity", "details": "x", "csrf_token": "forged"})
    assert forged.status_code == 403 and 'data-code="csrf_failed"' in forged.text
    empty = client.post("/me/corrections", data={"category": "identity", "details": " ", "csrf_token": csrf})
    assert empty.status_code == 422 and 'data-code="details_too_short"' in empty.text
    reads = [(maria, "self_access", "read", maria, "correction.requests_read")] * 2  # each form came back
    assert _entries(portal.server, before) == reads
    before = portal.server.access_log_head()
    filed = client.post(
        "/me/corrections", data={"category": "identity", "details": "Mi teléfono cambió.", "csrf_token": csrf}
    )
    assert filed.status_code == 303 and filed.headers["location"] == "/me/corrections?notice=filed"
    assert _entries(portal.server, before) == [(maria, "correction_request", "write", maria, "correction.requested")]
    assert "Mi teléfono cambió." not in filed.headers["location"]  # nothing personal in the URL


def test_a_reviewer_answers_a_request_and_the_resident_reads_the_answer(
    portal: Portal, browser_page: Any, resident_http: tuple[httpx.Client, str], screenshots: Path
) -> None:
    server, page = portal.server, browser_page
    client, csrf = resident_http
    words = "Mi segundo apellido se escribe Gómez, con tilde."
    assert (
        client.post("/me/corrections", data={"category": "identity", "details": words, "csrf_token": csrf}).status_code
        == 303
    )
    page.goto(f"{server.base_url}/signin")
    sign_in(page, REVIEWER.username, REVIEWER.password)
    before = server.access_log_head()
    page.goto(f"{server.base_url}/reviewer/corrections")
    request = page.locator("article[data-request]", has_text=words)
    assert MARIA in request.inner_text()
    listed = {e[3] for e in _entries(server, before)}
    assert portal.maria.person_id in listed  # showing her words and name is logged for her
    household = request.locator("[data-action=open-household]").get_attribute("href")
    opened = page.request.get(f"{server.base_url}{household}")  # the record, read under correction_review
    assert opened.status == 200 and "Calle 5 # 10-20" in opened.text()
    request.locator("textarea[name=note]").fill("Corregido en el registro, gracias.")
    with page.expect_navigation():
        request.locator("[data-action=corrected]").click()
    assert "Respuesta guardada" in page.locator(".notice").inner_text()
    assert page.locator("article[data-request]", has_text=words).count() == 0  # no longer open
    page.screenshot(path=str(screenshots / "reviewer-corrections.png"), full_page=True)
    html = client.get("/me/corrections").text
    answered = re.search(r'<tr data-request="[0-9a-f]{32}" data-status="corrected">.*?</tr>', html, re.S)
    assert answered is not None and "Corregido en el registro, gracias." in answered.group(0)


def test_only_a_signed_in_resident_reaches_the_portal(portal: Portal) -> None:
    base = portal.server.base_url
    for path in PAGES:
        anonymous = httpx.get(f"{base}{path}", timeout=10.0)
        assert (anonymous.status_code, anonymous.headers.get("location")) == (303, "/me"), path
    staff = portal.server.open_session(REGISTRAR)
    data = httpx.get(f"{base}/me/data", cookies={"civicard_session": staff["token"]}, timeout=10.0)
    assert (data.status_code, data.headers.get("location")) == (303, "/me")
    refused = httpx.get(f"{base}/reviewer/corrections", cookies={"civicard_session": staff["token"]}, timeout=10.0)
    assert refused.status_code == 403 and 'data-code="purpose_not_allowed"' in refused.text


def test_every_portal_page_fits_a_360_px_phone(portal: Portal, chromium: Any, screenshots: Path) -> None:
    signed = portal.server.container.auth.open_resident_session(portal.maria.person_id)
    host = portal.server.base_url.split("//")[1].split(":")[0]
    cookie = {"name": "civicard_session", "value": signed.session_token, "domain": host, "path": "/",
              "httpOnly": True, "secure": False, "sameSite": "Strict", "expires": -1}  # fmt: skip
    context = chromium.new_context(
        locale="es-ES", viewport={"width": 360, "height": 740}, storage_state={"cookies": [cookie], "origins": []}
    )
    try:
        page = context.new_page()
        for path in PAGES:
            page.goto(f"{portal.server.base_url}{path}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"{path} is {width} px wide"
        page.goto(f"{portal.server.base_url}/me/data")
        page.screenshot(path=str(screenshots / "resident-my-data-360.png"), full_page=True)
    finally:
        context.close()
