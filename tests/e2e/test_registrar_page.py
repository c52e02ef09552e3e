"""The registrar's pages in headless Chromium: sign in, search without accents, open a household,
see errors, sign out.

Staff sign in on /signin and carry an HttpOnly session cookie; every form echoes the session's
CSRF token. Most tests start from a session signed in once for the module through the page
(sign-in is throttled per address); the tests about signing in and out sign in on their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from civicard.adapters.api.access import SESSION_COOKIE
from civicard.adapters.demo_accounts import demo_credentials, ensure_demo_accounts
from tests.e2e.conftest import REGISTRAR, LiveServer, page_in_new_context

pytestmark = pytest.mark.e2e
OPEN_HOUSEHOLD = re.compile("Abrir hogar")


def sign_in(page: Any, username: str, password: str) -> Any:
    """Fill the sign-in form and submit it; returns the response the browser ends on."""
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=re.compile("Entrar")).click()
    return navigation.value


def search(page: Any, query: str, purpose: str) -> Any:
    """Type a query on the registrar page, choose a purpose, submit; returns the page's response."""
    page.fill("#q", query)
    page.select_option("#purpose", purpose)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=re.compile("Buscar")).click()
    return navigation.value


def session_cookie(page: Any) -> dict[str, Any] | None:
    cookies: list[dict[str, Any]] = page.context.cookies()
    return next((c for c in cookies if c["name"] == SESSION_COOKIE), None)


@pytest.fixture(scope="module")
def registrar_cookies(chromium: Any, live_server: LiveServer) -> dict[str, Any]:
    """The browser state after REGISTRAR signed in through /signin, once for the module."""
    with page_in_new_context(chromium) as page:
        page.goto(f"{live_server.base_url}/signin")
        sign_in(page, REGISTRAR.username, REGISTRAR.password)
        assert page.url == f"{live_server.base_url}/registrar"
        state: dict[str, Any] = page.context.storage_state()
    return state


@pytest.fixture
def registrar_page(chromium: Any, registrar_cookies: dict[str, Any]) -> Iterator[Any]:
    """A fresh context and page per test, already signed in as REGISTRAR."""
    with page_in_new_context(chromium, storage_state=registrar_cookies) as page:
        yield page


def test_the_registrar_page_sends_a_visitor_without_a_session_to_sign_in(
    browser_page: Any, live_server: LiveServer, screenshots: Path
) -> None:
    page = browser_page

    response = page.goto(f"{live_server.base_url}/registrar")

    assert page.url == f"{live_server.base_url}/signin"
    assert response.request.redirected_from.url == f"{live_server.base_url}/registrar"
    assert page.get_by_role("heading", level=1).inner_text() == "Iniciar sesión"
    assert page.locator("#password").get_attribute("type") == "password"
    assert page.locator("form.signout").count() == 0
    assert session_cookie(page) is None
    page.screenshot(path=str(screenshots / "signin.png"), full_page=True)


def test_a_registrar_signs_in_finds_maria_without_accents_and_opens_her_household(
    browser_page: Any, live_server: LiveServer, screenshots: Path
) -> None:
    page = browser_page
    page.goto(f"{live_server.base_url}/")
    page.get_by_role("link", name=re.compile("Buscar en el registro")).click()
    page.wait_for_url(f"{live_server.base_url}/signin")

    signed_in = sign_in(page, REGISTRAR.username, REGISTRAR.password)

    assert signed_in.status == 200
    assert page.url == f"{live_server.base_url}/registrar"
    assert f"{REGISTRAR.display_name} (registrar)" in page.locator("header").inner_text()
    cookie = session_cookie(page)
    assert cookie is not None and (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    csrf = page.locator("input[name=csrf_token]").evaluate_all("inputs => inputs.map(i => i.value)")
    assert len(csrf) == 2 and len(set(csrf)) == 1 and csrf[0]  # the search form and the sign-out form
    assert REGISTRAR.password not in page.content()

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

    assert page.get_by_role("heading", level=1).inner_text() == "Hogar"
    assert "Calle 5 # 10-20" in page.locator(".card").first.inner_text()
    members = page.locator("section", has=page.get_by_role("heading", name=re.compile("Miembros")))
    assert [row.locator("td").first.inner_text() for row in members.locator("tbody tr").all()] == [
        "María José Pérez Gómez",
        "José Luis Martínez Ruiz",
        "Sofía Martínez Pérez",
    ]
    assert "Miembros (3)" in members.inner_text()
    facts = page.locator("section", has=page.get_by_role("heading", name=re.compile("Datos vigentes")))
    fact_rows = sorted(" | ".join(row.locator("td").all_inner_texts()[:4]) for row in facts.locator("tbody tr").all())
    assert fact_rows == [
        "incomes | informal_work | monthly_amount_minor: 900.00 | 2024-01-01",
        "incomes | wages | monthly_amount_minor: 1,800.00 | 2024-01-01",
    ]
    assert "maria" not in page.url.lower()
    page.screenshot(path=str(screenshots / "household.png"), full_page=True)


def test_a_wrong_password_on_the_sign_in_page_shows_the_refusal_and_sets_no_cookie(
    browser_page: Any, live_server: LiveServer
) -> None:
    page = browser_page
    page.goto(f"{live_server.base_url}/signin")

    response = sign_in(page, REGISTRAR.username, "no-es-la-clave-correcta")

    assert response.status == 401
    assert page.url == f"{live_server.base_url}/signin"
    assert page.get_by_role("alert").get_attribute("data-code") == "sign_in_failed"
    assert page.locator("#username").input_value() == REGISTRAR.username
    assert page.locator("#password").input_value() == ""
    assert session_cookie(page) is None


def test_signing_out_ends_the_session_for_the_pages_and_the_api(browser_page: Any, live_server: LiveServer) -> None:
    page = browser_page
    page.goto(f"{live_server.base_url}/signin")
    sign_in(page, REGISTRAR.username, REGISTRAR.password)
    cookie = session_cookie(page)
    assert cookie is not None
    api_read = {
        "Authorization": f"Bearer {cookie['value']}",
        "X-Civicard-Purpose": "enrollment",
    }
    household_url = f"{live_server.base_url}/v1/households/{live_server.town.household_ids[0]}"
    assert httpx.get(household_url, headers=api_read).status_code == 200

    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Salir")).click()

    assert page.url == f"{live_server.base_url}/"
    assert session_cookie(page) is None
    assert page.get_by_role("link", name=re.compile("Iniciar sesión")).count() == 1
    page.goto(f"{live_server.base_url}/registrar")
    assert page.url == f"{live_server.base_url}/signin"
    # Ended on the server, not only forgotten by the browser: the old token opens nothing.
    refused = httpx.get(household_url, headers=api_read)
    assert (refused.status_code, refused.json()["code"]) == (401, "session_invalid")
    page.context.add_cookies([{**cookie, "sameSite": "Strict"}])
    page.goto(f"{live_server.base_url}/registrar")
    assert page.url == f"{live_server.base_url}/signin"


def test_the_landing_page_shows_the_demo_logins_and_they_sign_in(browser_page: Any, live_server: LiveServer) -> None:
    page = browser_page
    page.goto(f"{live_server.base_url}/")

    demo = page.locator(".card", has=page.get_by_role("heading", name=re.compile("Cuentas de demostración")))
    shown = [row.locator("td").all_inner_texts() for row in demo.locator("tbody tr").all()]

    expected = [[a.username, a.role, a.password, a.totp_secret or "—"] for a in demo_credentials(live_server.container)]
    assert shown == expected
    assert [row[1] for row in shown] == ["registrar", "reviewer", "program_admin", "program_admin", "oversight"]
    # What the page shows must be a real login once the demo has created its accounts.
    ensure_demo_accounts(live_server.container, live_server.container.auth)
    username, _, password, _ = shown[0]
    page.get_by_role("link", name=re.compile("Iniciar sesión")).click()
    sign_in(page, username, password)
    assert page.url == f"{live_server.base_url}/registrar"
    assert "Rafael Registrador (demo) (registrar)" in page.locator("header").inner_text()


@pytest.mark.parametrize(("purpose", "shows_health"), [("enrollment", False), ("fact_correction", True)])
def test_the_household_page_shows_health_facts_only_for_a_purpose_that_allows_them(
    registrar_page: Any, live_server: LiveServer, purpose: str, shows_health: bool
) -> None:
    page = registrar_page
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


def test_a_search_with_a_forged_csrf_token_is_refused_and_reads_nothing(
    registrar_page: Any, live_server: LiveServer
) -> None:
    page = registrar_page
    page.goto(f"{live_server.base_url}/registrar")
    page.locator("form[role=search] input[name=csrf_token]").evaluate("input => { input.value = 'forged'; }")
    log_head = live_server.access_log_head()

    response = search(page, "maria perez", "enrollment")

    assert response.status == 403
    assert page.get_by_role("alert").get_attribute("data-code") == "csrf_failed"
    assert page.locator("tbody tr").count() == 0
    assert live_server.access_log_since(log_head) == []


def test_a_one_letter_query_is_answered_with_the_query_too_short_message(
    registrar_page: Any, live_server: LiveServer, screenshots: Path
) -> None:
    page = registrar_page
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
    registrar_page: Any, live_server: LiveServer
) -> None:
    page = registrar_page
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
