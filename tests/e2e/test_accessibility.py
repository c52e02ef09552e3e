"""Every page in headless Chromium under the server's real Content-Security-Policy: axe-core finds no
serious or critical WCAG 2.1 A/AA violation, and the browser reports no policy violation.

axe-core is the npm package axe-core 4.14.1 (MPL-2.0): `npm pack axe-core`, its `axe.min.js`
unchanged in tests/e2e/vendor/ with its licences. It is a test tool, so it is not under static/.
It enters each page as a browser-context init script (CDP Page.addScriptToEvaluateOnNewDocument):
such scripts are not subject to the page's CSP, so no page needs a relaxed policy and the context
does not need `bypass_csp` — which would also hide the very violations the policy check looks for.

Each page is reached as its user reaches it: signed in with the right role (a session opened
through the real AuthStore, carried in the HttpOnly cookie), over a town with published rules,
this month's cycle, a sale and a wrong PIN at a shop, a card with a PIN, a possible duplicate and a
resident's correction request waiting for a reviewer.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from civicard.adapters.api.access import SESSION_COOKIE
from civicard.adapters.db.resident_store import SqlResidentUnitOfWork
from civicard.identity.cards import CardKeys
from civicard.registry.correction_requests import FILING, request_correction
from civicard.transparency.access import AccessContext, Actor
from tests.e2e.conftest import PROGRAM_ADMIN, REGISTRAR, REVIEWER, LiveServer, StaffLogin, signed_headers
from tests.e2e.duplicate_seed import seed_duplicate
from tests.e2e.test_terminal_page import key_text
from tests.integration.distribution_fixtures import PIN, HeldCard, Till, issue, seed_rice_grant

pytestmark = pytest.mark.e2e
AXE = Path(__file__).resolve().parent / "vendor" / "axe-4.14.1.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("serious", "critical")
OVERSIGHT = StaffLogin(
    "oversight-a11y", "oversight", "Olga Supervisora (a11y)", "supervision-a11y-2026", pyotp.random_base32()
)
# Registered before any page script runs; an init script, like axe, so the CSP does not stop it.
POLICY_LISTENER = """
window.__policyViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__policyViolations.push(
  `${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile || e.documentURI}:${e.lineNumber}`));
"""
RUN_AXE = """async (tags) => {
  const result = await axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(" ")) }));
}"""


@dataclass(frozen=True)
class Town:
    till: Till
    card: HeldCard
    household_id: str
    candidate_id: str
    sessions: dict[str, str]  # role → session token


@dataclass(frozen=True)
class Visit:
    """A page as its user reaches it: signed in as `role` (None: nobody), at `width` px."""

    name: str
    role: str | None
    go: Callable[[Any, str, Town], None]
    width: int = 1280


def _sell(server: LiveServer, till: Till, card: HeldCard, pin: str) -> int:
    body = json.dumps({"card_token": card.token, "pin": pin, "basket": [{"item": "RICE-1KG", "quantity": 1}]})
    headers = signed_headers(till.key, till.terminal_id, "/v1/redemptions", body.encode())
    headers |= {"Content-Type": "application/json", "Idempotency-Key": secrets.token_urlsafe(16)}
    return httpx.post(f"{server.base_url}/v1/redemptions", content=body, headers=headers, timeout=10.0).status_code


@pytest.fixture(scope="module")
def town(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Town:
    """Published rules and this month's cycle, a shop with one sale and one wrong PIN, a resident's
    card, a possible duplicate and the resident's correction request for review, and a session for
    each role."""
    container = live_server.container
    household = live_server.town.household_ids[0]
    till = seed_rice_grant(container.engine, container.clock, household, tmp_path_factory.mktemp("cycle"), 6)
    keys = CardKeys.derive(container.root_key)
    card = issue(container.engine, container.clock, keys, live_server.person("María José Pérez Gómez"), household)
    assert (_sell(live_server, till, card, PIN), _sell(live_server, till, card, "0000")) == (201, 422)
    resident = AccessContext(Actor(card.person_id, "resident"), FILING)
    with SqlResidentUnitOfWork(container.engine, resident, container.clock) as uow:
        request_correction(uow, card.person_id, "income", "Mi salario es 1.500, no 1.800.")
    _, candidate = seed_duplicate(live_server, "Inés Ibáñez Muñoz", "Ines", probability=0.88)
    container.auth.create_staff_account(
        OVERSIGHT.username, OVERSIGHT.display_name, "oversight", OVERSIGHT.password, "e2e:seed",
        totp_secret=OVERSIGHT.totp_secret,
    )  # fmt: skip
    sessions = {
        login.role: container.auth.sign_in(
            login.username,
            login.password,
            pyotp.TOTP(login.totp_secret).now() if login.totp_secret else None,
            "e2e-accessibility",
        ).session_token
        for login in (REGISTRAR, REVIEWER, PROGRAM_ADMIN, OVERSIGHT)
    }
    sessions["resident"] = container.auth.open_resident_session(card.person_id).session_token
    return Town(till, card, household, candidate, sessions)


@contextmanager
def audited_page(chromium: Any, server: LiveServer, town: Town, visit: Visit) -> Iterator[tuple[Any, list[str]]]:
    """A page of a fresh context signed in as the visit's role, with axe and the policy listener in
    every document; yields the page and the CSP or Permissions-Policy messages of its console."""
    cookies = []
    if visit.role is not None:
        host = server.base_url.split("//")[1].split(":")[0]
        cookies.append(
            {"name": SESSION_COOKIE, "value": town.sessions[visit.role], "domain": host, "path": "/",
             "httpOnly": True, "secure": False, "sameSite": "Strict", "expires": -1}
        )  # fmt: skip
    context = chromium.new_context(
        locale="es-ES",
        viewport={"width": visit.width, "height": 900},
        storage_state={"cookies": cookies, "origins": []},
    )
    context.add_init_script(script=POLICY_LISTENER)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    page.set_default_timeout(10_000)
    console: list[str] = []
    policy_words = ("Content Security Policy", "Content-Security-Policy", "Permissions-Policy", "Permissions policy")
    page.on("console", lambda m: console.append(m.text) if any(w in m.text for w in policy_words) else None)
    try:
        yield page, console
    finally:
        context.close()


def _search(page: Any, base: str, _: Town) -> None:
    page.goto(f"{base}/registrar")
    page.fill("#q", "maria perez")
    with page.expect_navigation():
        page.locator("form[action='/registrar/search'] button[type=submit]").click()
    assert page.locator("a[href^='/registrar/households/']").count() >= 1


def _terminal_with_a_card(page: Any, base: str, town: Town) -> None:
    page.goto(f"{base}/terminal")
    page.fill("#terminal-id", town.till.terminal_id)
    page.fill("#device-key", key_text(town.till))
    page.locator("[data-action=save-key]").click()
    page.locator("#setup-status[data-ready=true]").wait_for()
    page.fill("#card-code", town.card.token)
    page.locator("[data-action=check-card]").click()
    page.locator("#basket .line[data-item='RICE-1KG']").wait_for()


def _fact_correction(page: Any, base: str, town: Town) -> None:
    """The correction form of the first income on the household's facts page, through its link."""
    page.goto(f"{base}/registrar/households/{town.household_id}/facts")
    with page.expect_navigation():
        page.locator("tr[data-kind=incomes] [data-action=open-correction]").first.click()
    assert page.locator("form[data-form=correct-fact]").count() == 1


def _correction_queue(page: Any, base: str, _: Town) -> None:
    """The reviewer's queue with the resident's request and its answer form."""
    page.goto(f"{base}/reviewer/corrections")
    assert page.locator("article[data-request] form").count() >= 1


def _to(path: str) -> Callable[[Any, str, Town], None]:
    def go(page: Any, base: str, town: Town) -> None:
        response = page.goto(f"{base}{path.format(town=town)}")
        assert response.status == 200, f"{path}: {response.status}"

    return go


CARD = "/registrar/households/{town.household_id}/members/{town.card.person_id}/card"  # the card holder's card page
VISITS = [
    Visit("landing", None, _to("/")),
    Visit("sign-in", None, _to("/signin")),
    Visit("registrar-search", "registrar", _to("/registrar")),
    Visit("registrar-results", "registrar", _search),
    Visit("household", "registrar", _to("/registrar/households/{town.household_id}")),
    Visit("enroll", "registrar", _to("/registrar/households/{town.household_id}/enroll")),
    Visit("registrar-facts", "registrar", _to("/registrar/households/{town.household_id}/facts")),
    Visit("registrar-fact-correction", "registrar", _fact_correction),
    Visit("registrar-card", "registrar", _to(CARD)),
    Visit("life-events", "registrar", _to("/registrar/households/{town.household_id}/life-events")),
    Visit("reviewer-queue", "reviewer", _to("/reviewer")),
    Visit("reviewer-case", "reviewer", _to("/reviewer/cases/{town.candidate_id}")),
    Visit("appeal-queue", "reviewer", _to("/reviewer/appeals")),
    Visit("correction-queue", "reviewer", _correction_queue),
    Visit("programs", "program_admin", _to("/programs")),
    Visit("program-version", "program_admin", _to("/programs/food_basket/2026.1")),
    Visit("cycles", "program_admin", _to("/programs/cycles")),
    Visit("terminal", None, _to("/terminal"), width=360),
    Visit("terminal-basket", None, _terminal_with_a_card, width=360),
    Visit("resident-sign-in", None, _to("/me")),
    Visit("resident-log", "resident", _to("/me/log")),
    Visit("resident-data", "resident", _to("/me/data")),
    Visit("resident-benefits", "resident", _to("/me/benefits")),
    Visit("resident-decisions", "resident", _to("/me/decisions")),
    Visit("resident-corrections", "resident", _to("/me/corrections")),
    Visit("transparency", None, _to("/transparency")),
    Visit("exclusions", "oversight", _to("/oversight/exclusions")),
]


@pytest.mark.parametrize("visit", VISITS, ids=[v.name for v in VISITS])
def test_the_page_meets_wcag_21_aa_and_runs_under_the_server_policy(
    chromium: Any, live_server: LiveServer, town: Town, visit: Visit
) -> None:
    """One visit per page for both checks (a page load is most of a browser test's time)."""
    with audited_page(chromium, live_server, town, visit) as (page, console):
        visit.go(page, live_server.base_url, town)
        assert page.evaluate("typeof axe.run") == "function"  # the init scripts did run in this document
        violations = page.evaluate(RUN_AXE, WCAG_21_AA)
        reported = page.evaluate("window.__policyViolations")

    blocking = [v for v in violations if v["impact"] in BLOCKING]
    report = "\n".join(f"{v['impact']} {v['id']}: {v['help']}\n    at {'; '.join(v['targets'])}" for v in blocking)
    assert not blocking, f"{visit.name}:\n{report}"
    assert reported == [] and console == [], f"{visit.name}: {reported} {console}"
