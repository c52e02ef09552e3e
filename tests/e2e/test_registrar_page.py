"""The registrar's pages in headless Chromium: search without accents, open a household, see errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.e2e
OPEN_HOUSEHOLD = re.compile("Abrir hogar")


def search(page: Any, query: str, purpose: str) -> Any:
    """Type a query on the registrar page, choose a purpose, submit; returns the page's response."""
    page.fill("#q", query)
    page.select_option("#purpose", purpose)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=re.compile("Buscar")).click()
    return navigation.value


def test_a_registrar_finds_maria_without_accents_and_opens_her_household(
    browser_page: Any, live_server: LiveServer, screenshots: Path
) -> None:
    page = browser_page
    page.goto(f"{live_server.base_url}/")
    page.get_by_role("link", name=re.compile("Buscar en el registro")).click()
    page.wait_for_url(f"{live_server.base_url}/registrar")

    response = search(page, "maria perez", "fact_correction")

    assert response.status == 200
    assert response.request.method == "POST"
    assert page.url == f"{live_server.base_url}/registrar/search"
    assert "maria" not in page.url.lower() and "perez" not in page.url.lower()
    maria = page.locator(f'tr[data-person="{live_server.person("María José Pérez Gómez")}"]')
    assert maria.locator("td").all_inner_texts()[:4] == [
        "María José Pérez Gómez",
        "1984-03-09",
        "San Rafael",
        "52123456",
    ]
    assert page.locator("tbody tr").count() == 1
    assert page.locator("#purpose").input_value() == "fact_correction"
    page.screenshot(path=str(screenshots / "registrar-search.png"), full_page=True)

    maria.get_by_role("link", name=OPEN_HOUSEHOLD).click()
    household_id = live_server.town.household_ids[0]
    page.wait_for_url(f"{live_server.base_url}/registrar/households/{household_id}?purpose=fact_correction")

    assert page.get_by_role("heading", level=1).inner_text() == "Hogar / Household"
    assert "Calle 5 # 10-20" in page.locator(".card").first.inner_text()
    members = page.locator("section", has=page.get_by_role("heading", name=re.compile("Miembros")))
    assert [row.locator("td").first.inner_text() for row in members.locator("tbody tr").all()] == [
        "María José Pérez Gómez",
        "José Luis Martínez Ruiz",
        "Sofía Martínez Pérez",
    ]
    assert "Miembros / Members (3)" in members.inner_text()
    facts = page.locator("section", has=page.get_by_role("heading", name=re.compile("Datos vigentes")))
    fact_rows = sorted(" | ".join(row.locator("td").all_inner_texts()[:4]) for row in facts.locator("tbody tr").all())
    assert fact_rows == [
        "incomes | informal_work | monthly_amount_minor: 900.00 | 2024-01-01",
        "incomes | wages | monthly_amount_minor: 1,800.00 | 2024-01-01",
    ]
    assert "maria" not in page.url.lower()
    page.screenshot(path=str(screenshots / "household.png"), full_page=True)


@pytest.mark.parametrize(("purpose", "shows_health"), [("enrollment", False), ("fact_correction", True)])
def test_the_household_page_shows_health_facts_only_for_a_purpose_that_allows_them(
    browser_page: Any, live_server: LiveServer, purpose: str, shows_health: bool
) -> None:
    page = browser_page
    page.goto(f"{live_server.base_url}/registrar")
    search(page, "ramon nunez", purpose)
    page.locator(f'tr[data-person="{live_server.town.chronic_person_id}"]').get_by_role(
        "link", name=OPEN_HOUSEHOLD
    ).click()
    page.wait_for_url(re.compile(r"/registrar/households/"))

    facts = page.locator("section", has=page.get_by_role("heading", name=re.compile("Datos vigentes"))).inner_text()
    assert ("health_needs" in facts) is shows_health
    assert ("chronic E11" in facts) is shows_health
    assert "pension" in facts and "dwelling" in facts
    assert page.locator(".badge").inner_text() == purpose


def test_a_one_letter_query_is_answered_with_the_query_too_short_message(
    browser_page: Any, live_server: LiveServer, screenshots: Path
) -> None:
    page = browser_page
    page.goto(f"{live_server.base_url}/registrar")

    # "j " passes the browser's minlength=2, so only the server can refuse it.
    response = search(page, "j ", "enrollment")

    assert response.status == 422
    error = page.get_by_role("alert")
    assert error.get_attribute("data-code") == "query_too_short"
    assert "(query_too_short)" in error.inner_text()
    assert page.locator("tbody tr").count() == 0
    page.screenshot(path=str(screenshots / "registrar-query-too-short.png"), full_page=True)


def test_a_single_letter_is_stopped_by_the_browser_and_refused_by_the_server_without_it(
    browser_page: Any, live_server: LiveServer
) -> None:
    page = browser_page
    page.goto(f"{live_server.base_url}/registrar")
    page.fill("#q", "j")
    page.get_by_role("button", name=re.compile("Buscar")).click()
    assert page.url == f"{live_server.base_url}/registrar"
    assert page.locator("#q").evaluate("input => input.validity.tooShort") is True

    page.locator("form[role=search]").evaluate("form => { form.noValidate = true; }")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=re.compile("Buscar")).click()

    assert navigation.value.status == 422
    assert page.get_by_role("alert").get_attribute("data-code") == "query_too_short"
