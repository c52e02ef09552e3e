"""The pages' language in headless Chromium: Spanish by default, English after the switch in the
header (remembered in a `lang` cookie, SameSite=Lax, HttpOnly), and back.

The switch posts to /lang with the page to return to; only a local path is followed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import REGISTRAR, LiveServer

pytestmark = pytest.mark.e2e


def _switch_to(page: Any, language: str) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name=language).click()


def _lang(page: Any) -> str:
    return str(page.locator("html").get_attribute("lang"))


def test_pages_are_spanish_until_the_reader_switches_to_english(
    browser_page: Any, live_server: LiveServer, screenshots: Path
) -> None:
    page, base = browser_page, live_server.base_url
    page.goto(f"{base}/")
    assert _lang(page) == "es"
    assert page.get_by_role("heading", name="Registro", exact=True).count() == 1
    assert "Inicio" in page.locator("header").inner_text()
    assert page.get_by_role("link", name="Iniciar sesión").count() == 1
    page.goto(f"{base}/signin")
    assert _lang(page) == "es"
    assert page.get_by_role("heading", level=1).inner_text() == "Iniciar sesión"
    assert page.get_by_role("button", name="Español").count() == 0  # only the other language is offered

    _switch_to(page, "English")
    assert page.url == f"{base}/signin"  # back where the switch was pressed
    assert _lang(page) == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    assert page.get_by_label("Username").count() == 1 and page.get_by_label("Password").count() == 1
    cookie = next(c for c in page.context.cookies() if c["name"] == "lang")
    assert (cookie["value"], cookie["httpOnly"], cookie["sameSite"]) == ("en", True, "Lax")

    sign_in_english(page)
    assert page.url == f"{base}/registrar"
    assert _lang(page) == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Find a person"
    assert page.get_by_role("button", name="Sign out").count() == 1
    page.fill("#q", "maria perez")
    with page.expect_navigation():
        page.get_by_role("button", name="Search", exact=True).click()
    assert page.get_by_role("heading", name="1 result", exact=True).count() == 1
    assert page.get_by_role("link", name="Open household").count() == 1
    page.screenshot(path=str(screenshots / "registrar-search-english.png"), full_page=True)
    refused = page.request.post(f"{base}/registrar/search", form={"q": "maria", "csrf_token": "forged"})
    assert refused.status == 403 and "The form has expired" in refused.text()  # a message built in Python

    page.goto(f"{base}/registrar")
    _switch_to(page, "Español")
    assert page.url == f"{base}/registrar"
    assert _lang(page) == "es"
    assert page.get_by_role("heading", level=1).inner_text() == "Buscar persona"
    assert page.get_by_role("button", name="Salir").count() == 1


def sign_in_english(page: Any) -> None:
    page.fill("#username", REGISTRAR.username)
    page.fill("#password", REGISTRAR.password)
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("^Sign in$")).click()


def test_an_unknown_language_cookie_reads_as_spanish(browser_page: Any, live_server: LiveServer) -> None:
    host = live_server.base_url.split("//")[1].split(":")[0]
    browser_page.context.add_cookies([{"name": "lang", "value": "fr", "domain": host, "path": "/"}])
    browser_page.goto(f"{live_server.base_url}/me")
    assert _lang(browser_page) == "es"
    assert browser_page.get_by_role("heading", level=1).inner_text() == "Mis datos"


@pytest.mark.parametrize(
    ("target", "landing"),
    [
        ("/reviewer?status=open", "/reviewer?status=open"),
        ("/me", "/me"),
        ("https://evil.example/", "/"),
        ("//evil.example/path", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("registrar", "/"),
    ],
)
def test_the_switch_returns_only_to_a_local_path(live_server: LiveServer, target: str, landing: str) -> None:
    response = httpx.post(f"{live_server.base_url}/lang", data={"lang": "en", "next": target}, timeout=10.0)
    assert response.status_code == 303
    assert response.headers["location"] == landing
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("lang=en;") and "httponly" in cookie and "samesite=lax" in cookie


def test_the_switch_refuses_a_language_it_does_not_offer(live_server: LiveServer) -> None:
    response = httpx.post(f"{live_server.base_url}/lang", data={"lang": "fr", "next": "/"}, timeout=10.0)
    assert response.status_code == 303 and response.headers["set-cookie"].startswith("lang=es;")
