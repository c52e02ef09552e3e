"""Security headers over HTTP against a real server: the strict policy on pages, API answers and
static files alike, HSTS only over HTTPS, the API documentation's own policy (its CDN and the hash
of its inline script), no page policy on the printed-card PDF, and the session cookie's flags.

HTTPS is what uvicorn sees when the trusted local proxy says so (X-Forwarded-Proto from 127.0.0.1),
exactly as behind a TLS-terminating proxy in production.
"""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from civicard.adapters.api.access import SESSION_COOKIE
from civicard.adapters.api.security_headers import DOCS_CDN, PAGE_POLICY
from civicard.identity.cards import CardKeys
from tests.e2e.conftest import REGISTRAR, LiveServer
from tests.integration.distribution_fixtures import PIN, HeldCard, issue

pytestmark = pytest.mark.e2e
OVER_HTTPS = {"X-Forwarded-Proto": "https"}
EXPECTED = {
    "content-security-policy": PAGE_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
}


def _directives(policy: str) -> dict[str, list[str]]:
    parsed = (d.split() for d in policy.split(";") if d.strip())
    return {name: values for name, *values in parsed}


@pytest.fixture(scope="module")
def card(live_server: LiveServer) -> HeldCard:
    """A card with PIN `PIN` for the first seeded resident."""
    container = live_server.container
    person = live_server.person("María José Pérez Gómez")
    keys = CardKeys.derive(container.root_key)
    return issue(container.engine, container.clock, keys, person, live_server.town.household_ids[0])


PATHS = ["/", "/signin", "/terminal", "/transparency", "/v1/programs", "/static/civicard.css", "/healthz", "/nowhere"]


@pytest.mark.parametrize("path", PATHS)
def test_every_response_carries_the_security_headers_and_no_hsts_over_http(live_server: LiveServer, path: str) -> None:
    response = httpx.get(f"{live_server.base_url}{path}", timeout=10.0)

    assert response.status_code in (200, 404)
    assert {name: response.headers.get(name) for name in EXPECTED} == EXPECTED
    permissions = dict(p.strip().split("=", 1) for p in response.headers["permissions-policy"].split(","))
    assert permissions["camera"] == "(self)"  # the terminal scans card QR codes
    assert permissions["microphone"] == permissions["geolocation"] == permissions["payment"] == "()"
    assert {v for k, v in permissions.items() if k not in ("camera", "autoplay")} == {"()"}
    assert "strict-transport-security" not in response.headers


def test_the_page_policy_allows_no_inline_script_style_or_framing() -> None:
    directives = _directives(PAGE_POLICY)
    assert directives["script-src"] == directives["style-src"] == ["'self'"]
    assert directives["frame-ancestors"] == directives["base-uri"] == directives["object-src"] == ["'none'"]
    assert "'unsafe-inline'" not in PAGE_POLICY and "'unsafe-eval'" not in PAGE_POLICY


def test_over_https_responses_also_carry_strict_transport_security(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.base_url}/", headers=OVER_HTTPS, timeout=10.0)

    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    assert response.headers["content-security-policy"] == PAGE_POLICY


def test_the_api_documentation_gets_its_cdn_and_the_hash_of_exactly_its_inline_script(
    live_server: LiveServer,
) -> None:
    response = httpx.get(f"{live_server.base_url}/docs", timeout=10.0)

    assert response.status_code == 200
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert len(inline) == 1  # Swagger UI's bootstrap
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    directives = _directives(response.headers["content-security-policy"])
    assert directives["script-src"] == ["'self'", DOCS_CDN, f"'sha256-{digest}'"]
    assert directives["frame-ancestors"] == ["'none'"] and directives["object-src"] == ["'none'"]
    assert response.headers["x-frame-options"] == "DENY"
    redoc = httpx.get(f"{live_server.base_url}/redoc", timeout=10.0)
    assert _directives(redoc.headers["content-security-policy"])["script-src"] == ["'self'", DOCS_CDN]


def test_the_printed_card_pdf_carries_no_page_policy_but_cannot_be_framed(
    live_server: LiveServer, card: HeldCard
) -> None:
    """Browsers' PDF viewers wrap the file in a page with inline styles a page policy would break."""
    with httpx.Client(base_url=live_server.base_url, timeout=10.0) as client:
        signed = client.post("/signin", data={"username": REGISTRAR.username, "password": REGISTRAR.password})
        assert signed.status_code == 303 and SESSION_COOKIE in signed.cookies
        pdf = client.get(f"/registrar/persons/{card.person_id}/card.pdf")

    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert "content-security-policy" not in pdf.headers
    assert pdf.headers["x-frame-options"] == "DENY" and pdf.headers["x-content-type-options"] == "nosniff"


def _cookie_flags(response: httpx.Response) -> set[str]:
    """The attributes of the session cookie in Set-Cookie, lower-cased (`samesite=strict`, `httponly`…)."""
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{SESSION_COOKIE}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return {part.strip().lower() for part in found[0].split(";")[1:]}


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_session_cookies_are_httponly_strict_and_secure_exactly_over_https(
    live_server: LiveServer, card: HeldCard, https: bool
) -> None:
    headers = OVER_HTTPS if https else {}
    staff = httpx.post(
        f"{live_server.base_url}/signin",
        data={"username": REGISTRAR.username, "password": REGISTRAR.password},
        headers=headers,
        timeout=10.0,
    )
    resident = httpx.post(
        f"{live_server.base_url}/me/signin", data={"handle": card.handle, "pin": PIN}, headers=headers, timeout=10.0
    )

    for signed in (staff, resident):
        assert signed.status_code == 303, signed.text
        flags = _cookie_flags(signed)
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert ("secure" in flags) is https
        assert not any(f.startswith(("expires=", "max-age=")) for f in flags)  # ends with the browser session
