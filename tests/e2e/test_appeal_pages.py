"""Decisions and appeals end to end: a resident reads their decisions and appeals over HTTP and in
headless Chromium; a reviewer is refused an overturn without a change, corrects the facts on the
case page, overturns, and the resident sees the outcome and the note."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from civicard.adapters.bulk.cycle import run_cycle
from civicard.transparency.access import AccessContext, Actor
from tests.e2e.conftest import REVIEWER, LiveServer, page_in_new_context
from tests.e2e.test_registrar_page import sign_in
from tests.integration.test_cycle import RULES, register_published

pytestmark = pytest.mark.e2e
PERIOD = "2026-12"
CYCLE = AccessContext(Actor("e2e:cycle", "system"), "cycle_run")
REASON = "Nuestros ingresos bajaron: ya no trabajamos desde octubre."


@pytest.fixture(scope="module")
def decided(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    """The seeded town with the published rule packs and one cycle for PERIOD."""
    container = live_server.container
    with container.uow(CYCLE) as uow:
        for path in sorted(RULES.glob("*/*.yaml")):
            if yaml.safe_load(path.read_text(encoding="utf-8"))["status"] != "draft":
                register_published(uow, path, container.clock)
        uow.commit()
    with container.uow(CYCLE) as uow:
        run_cycle(uow, PERIOD, tmp_path_factory.mktemp("cycle-out"))
        uow.commit()
    return live_server


def _bearer(token: str, purpose: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    return headers | ({"X-Civicard-Purpose": purpose} if purpose else {})


def _resident_token(server: LiveServer, full_name: str) -> str:
    return server.container.auth.open_resident_session(server.person(full_name)).session_token


def _reviewer_token(server: LiveServer) -> str:
    return server.container.auth.sign_in(REVIEWER.username, REVIEWER.password, None, "e2e-appeals").session_token


def test_a_resident_appeals_over_http_and_the_reviewer_upholds(decided: LiveServer) -> None:
    base, resident = decided.base_url, _resident_token(decided, "Lucía Fernández Ortíz")
    mine = httpx.get(f"{base}/v1/me/decisions?lang=en", headers=_bearer(resident))
    assert mine.status_code == 200, mine.text
    decisions = {d["program"]: d for d in mine.json()["decisions"]}
    assert len(decisions) == 5 and all(d["explanation"] for d in decisions.values())
    food = decisions["food_basket"]
    assert food["status"] == "not_eligible" and food["appealable"]
    assert food["explanation"]["text"].startswith("not eligible: Income per person")

    short = httpx.post(
        f"{base}/v1/me/appeals", headers=_bearer(resident), json={"decision_id": food["id"], "reason": "no"}
    )
    assert (short.status_code, short.json()["code"]) == (422, "reason_too_short")
    filed = httpx.post(
        f"{base}/v1/me/appeals", headers=_bearer(resident), json={"decision_id": food["id"], "reason": REASON}
    )
    assert filed.status_code == 201 and filed.json()["status"] == "open"
    again = httpx.post(
        f"{base}/v1/me/appeals", headers=_bearer(resident), json={"decision_id": food["id"], "reason": REASON}
    )
    assert (again.status_code, again.json()["code"]) == (409, "already_appealed")
    appeal_id = filed.json()["id"]

    reviewer = _reviewer_token(decided)
    refused = httpx.get(f"{base}/v1/appeals", headers=_bearer(reviewer, "duplicate_review"))
    assert (refused.status_code, refused.json()["code"]) == (403, "purpose_not_allowed")
    queue = httpx.get(f"{base}/v1/appeals", headers=_bearer(reviewer, "appeal_review")).json()
    assert appeal_id in [a["id"] for a in queue["items"]] and "reason" not in queue["items"][0]
    case = httpx.get(f"{base}/v1/appeals/{appeal_id}?lang=en", headers=_bearer(reviewer, "appeal_review"))
    assert case.status_code == 200, case.text
    body = case.json()
    assert body["appeal"]["reason"] == REASON and body["decision"]["id"] == food["id"]
    assert any(i["name"] == "household_income" and i["used"] for i in body["facts_used"]["household"])
    assert body["household"]["facts"]
    nothing = httpx.post(
        f"{base}/v1/appeals/{appeal_id}/decision",
        headers=_bearer(reviewer, "appeal_review"),
        json={"outcome": "overturned", "note": "Looks wrong to me somehow."},
    )
    assert (nothing.status_code, nothing.json()["code"]) == (409, "nothing_changed")
    upheld = httpx.post(
        f"{base}/v1/appeals/{appeal_id}/decision",
        headers=_bearer(reviewer, "appeal_review"),
        json={"outcome": "upheld", "note": "The recorded income matches her declaration."},
    )
    assert upheld.status_code == 200 and upheld.json()["appeal"]["status"] == "upheld"
    seen = httpx.get(f"{base}/v1/me/appeals", headers=_bearer(resident)).json()["items"]
    assert [(a["id"], a["status"], a["outcome_note"]) for a in seen] == [
        (appeal_id, "upheld", "The recorded income matches her declaration.")
    ]
    staff = httpx.get(f"{base}/v1/me/decisions", headers=_bearer(reviewer))
    assert staff.status_code == 403


def _resident_page(chromium: Any, server: LiveServer, token: str) -> Any:
    host = server.base_url.split("//")[1].split(":")[0]
    cookie = {"name": "civicard_session", "value": token, "domain": host, "path": "/", "httpOnly": True,
              "secure": False, "sameSite": "Strict", "expires": -1}  # fmt: skip
    return page_in_new_context(chromium, storage_state={"cookies": [cookie], "origins": []})


def test_a_reviewer_corrects_the_facts_on_the_case_page_and_overturns(
    decided: LiveServer, chromium: Any, browser_page: Any, screenshots: Path
) -> None:
    server, token = decided, _resident_token(decided, "María José Pérez Gómez")
    with _resident_page(chromium, server, token) as page:
        page.goto(f"{server.base_url}/me/decisions")
        food = page.locator("section[data-program=food_basket]")
        assert food.get_attribute("data-status") == "not_eligible"
        assert "no elegible" in food.locator("[data-field=explanation]").inner_text()
        food.locator("summary").click()
        food.locator("textarea[name=reason]").fill(REASON)
        with page.expect_navigation():
            food.locator("[data-action=file-appeal]").click()
        assert "Recurso presentado" in page.locator(".notice").first.inner_text()
        page.screenshot(path=str(screenshots / "resident-decisions.png"), full_page=True)

    page = browser_page
    page.goto(f"{server.base_url}/signin")
    sign_in(page, REVIEWER.username, REVIEWER.password)
    page.goto(f"{server.base_url}/reviewer/appeals")
    assert "María" not in page.content()
    with page.expect_navigation():
        page.locator("tr[data-status=open] [data-action=open-appeal]").first.click()
    assert page.locator("[data-field=reason]").inner_text() == REASON
    page.fill("#note", "Ingresos corregidos según carta de despido.")
    with page.expect_navigation():
        page.locator("[data-action=overturn]").click()
    assert page.locator("[role=alert]").get_attribute("data-code") == "nothing_changed"
    unpaid = "tr[data-kind=incomes]:has(input[name=value_monthly_amount_minor][value='0.00'])"
    for _ in range(2):  # both recorded incomes of the household were lost with the jobs
        form = page.locator("tr[data-kind=incomes]:not(:has(input[value='0.00'])) form").first
        form.locator("input[name=value_monthly_amount_minor]").fill("0")
        form.locator("input[name=reason]").fill("carta de despido")
        with page.expect_navigation():
            form.locator("[data-action=correct-fact]").click()
        assert page.locator("[role=alert]").count() == 0, page.locator("[role=alert]").inner_text()
        assert "Dato corregido" in page.locator(".notice").first.inner_text()
    assert page.locator(unpaid).count() == 2
    page.fill("#note", "Ingresos corregidos según carta de despido.")
    with page.expect_navigation():
        page.locator("[data-action=overturn]").click()
    assert page.locator("[data-field=appeal-status]").inner_text().startswith("estimado")
    assert page.locator("[data-current-decision]").count() == 1
    page.screenshot(path=str(screenshots / "appeal-case.png"), full_page=True)

    with _resident_page(chromium, server, token) as mine:
        mine.goto(f"{server.base_url}/me/decisions")
        food = mine.locator("section[data-program=food_basket]")
        assert food.get_attribute("data-status") == "eligible"
        assert food.locator("tr[data-item]").count() > 0
        row = mine.locator("tr[data-status=overturned]")
        assert "carta de despido" in row.locator("[data-field=outcome-note]").inner_text()
