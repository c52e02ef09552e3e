"""The program administrator's pages in headless Chromium: one administrator reads the register,
runs a version's tests, proposes the 2027 child allowance and sees its impact preview; a second one
approves it; the first runs a cycle for January 2027 and watches it finish."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from rich.console import Console

from civicard.adapters.bulk.importer import import_population
from civicard.adapters.cli.demo_programs import publish_demo_programs
from civicard.adapters.demo_accounts import DemoAccount, ensure_demo_accounts
from civicard.registry.population import PopulationSpec, generate_population
from civicard.transparency.access import AccessContext, Actor
from tests.e2e.conftest import PROGRAM_ADMIN, LiveServer, page_in_new_context, serve_on
from tests.integration.test_cycle import RULES, register_published

pytestmark = pytest.mark.e2e
DRAFT = "child_allowance/2027.1.yaml"
PERIOD = "2027-01"
HOUSEHOLDS = 600  # enough that the preview's regions show counts, not only "<10"
LOADER = AccessContext(Actor("e2e:population", "system"), "bulk_import")
REGISTER = AccessContext(Actor("e2e:register", "system"), "cycle_run")


@pytest.fixture(scope="module")
def town(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    """The seeded server plus a synthetic population, the demo administrators and the published demo rules."""
    container = live_server.container
    source = tmp_path_factory.mktemp("population")
    generate_population(PopulationSpec(households=HOUSEHOLDS, seed=7, duplicate_share=0.0), source)
    import_population(container.engine, source, LOADER, container.clock)
    shutil.rmtree(source)
    ensure_demo_accounts(container)
    publish_demo_programs(container, Console(quiet=True))
    return live_server


@pytest.fixture(scope="module")
def accounts(town: LiveServer) -> dict[str, DemoAccount]:
    return {a.username: a for a in ensure_demo_accounts(town.container)}


@pytest.fixture
def two_pages(chromium: Any) -> Iterator[tuple[Any, Any]]:
    with page_in_new_context(chromium) as first, page_in_new_context(chromium) as second:
        yield first, second


def sign_in_with_code(page: Any, base_url: str, account: DemoAccount) -> None:
    assert account.totp_secret is not None
    page.goto(f"{base_url}/signin")
    page.fill("#username", account.username)
    page.fill("#password", account.password)
    page.fill("#totp_code", pyotp.TOTP(account.totp_secret).now())
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Entrar")).click()


def test_an_administrator_proposes_a_second_approves_and_a_cycle_runs(
    town: LiveServer, accounts: dict[str, DemoAccount], two_pages: tuple[Any, Any], screenshots: Path
) -> None:
    base, (admin, approver) = town.base_url, two_pages

    sign_in_with_code(admin, base, accounts["administradora"])
    assert admin.url == f"{base}/programs"  # the program administrator's home
    published = admin.locator("section[data-program=child_allowance] tr[data-version='2026.1']")
    assert published.get_attribute("data-status") == "published"
    assert "aprobador" in published.inner_text()
    assert admin.locator(f"tr[data-file='{DRAFT}']").count() == 1
    admin.screenshot(path=str(screenshots / "program-register.png"), full_page=True)

    with admin.expect_navigation():
        published.locator("[data-action=open-version]").click()
    assert admin.locator("tr[data-parameter=income_limit_per_person]").count() == 1
    assert "income_per_person <=" in admin.locator("tr[data-condition=low_income]").inner_text()
    admin.locator("[data-action=run-tests]").click()
    summary = admin.locator("[data-field=tests-summary]")
    summary.wait_for()
    assert summary.get_attribute("data-failed") == "0" and int(summary.get_attribute("data-passed") or 0) > 0
    results = admin.locator("#test-results td[data-result]")
    assert results.count() >= 3 * len(admin.locator("#test-results tr[data-case]").all())
    assert {results.nth(i).get_attribute("data-result") for i in range(results.count())} == {"pass"}
    engines = admin.locator("#test-results tr[data-case]").first.locator("td[data-engine]").all()
    assert {e.get_attribute("data-engine") for e in engines} >= {"python", "duckdb", "sqlite"}
    admin.screenshot(path=str(screenshots / "program-version-tests.png"), full_page=True)
    size = admin.viewport_size
    admin.set_viewport_size({"width": 360, "height": 740})  # a phone: wide tables scroll inside their card
    assert admin.evaluate("document.documentElement.scrollWidth") <= 360
    admin.set_viewport_size(size)

    admin.goto(f"{base}/programs")
    row = admin.locator(f"tr[data-file='{DRAFT}']")
    row.locator("input[name=note]").fill("Estudiantes de 18 a 20 años y montos 2027")
    with admin.expect_navigation(timeout=30_000):
        row.locator("[data-action=propose]").click()
    assert admin.url.startswith(f"{base}/programs/child_allowance/2027.1")
    assert admin.locator("[data-status]").first.get_attribute("data-status") == "proposed"
    assert admin.locator("[role=status]").first.inner_text().startswith("Versión propuesta")
    chart = admin.locator("[data-field=impact-chart] svg")
    assert chart.locator("g[data-region]").count() >= 2 and chart.locator("text[data-suppressed]").count() > 0
    assert chart.locator("rect > title").count() > 0  # at least one region shows a count as a bar
    gains = admin.locator("[data-field=impact-table] tr[data-metric=gain] td[data-region=Total]").inner_text()
    assert gains == "<10" or int(gains.replace(",", "")) > 0
    assert admin.locator("[data-field=same-person]").is_visible()
    assert admin.locator("[data-action=approve]").count() == 0
    refused = admin.request.post(
        f"{base}/programs/child_allowance/2027.1/decision",
        form={"decision": "approve", "note": "", "csrf_token": _csrf(admin)},
    )
    assert refused.status == 403 and 'data-code="same_person"' in refused.text()
    admin.screenshot(path=str(screenshots / "program-proposal-impact.png"), full_page=True)

    sign_in_with_code(approver, base, accounts["aprobador"])
    approver.goto(f"{base}/programs/child_allowance/2027.1")
    approver.fill("#note", "Revisadas las reglas, las pruebas y el impacto.")
    with approver.expect_navigation():
        approver.locator("[data-action=approve]").click()
    assert approver.locator("[data-status]").first.get_attribute("data-status") == "published"
    assert approver.locator("[data-field=decided-by]").inner_text() == "aprobador"
    approver.screenshot(path=str(screenshots / "program-approved.png"), full_page=True)

    log_head = town.access_log_head()
    admin.goto(f"{base}/programs/cycles")
    admin.fill("#period", PERIOD)
    admin.locator("[data-action=run-cycle]").click()
    done = admin.locator("[data-state=done]")
    done.wait_for(timeout=30_000)
    assert int(done.locator("[data-field=households]").inner_text().replace(",", "")) >= HOUSEHOLDS
    run = admin.locator(f"#cycle-runs tr[data-period='{PERIOD}']")
    assert run.get_attribute("data-status") == "done" and "staff:administradora" in run.inner_text()
    admin.screenshot(path=str(screenshots / "program-cycle.png"), full_page=True)
    logged = [e for e in town.access_log_since(log_head) if e["purpose"] == "cycle_run"]
    assert logged and {(e["actor"], e["role"]) for e in logged} == {("staff:administradora", "system")}


def test_on_postgresql_the_tests_also_run_on_postgresql(
    chromium: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with serve_on("postgresql", tmp_path_factory.mktemp("programs-pg")) as server:
        container = server.container
        with container.uow(REGISTER) as uow:
            register_published(uow, RULES / "child_allowance" / "2026.1.yaml", container.clock)
            uow.commit()
        code = pyotp.TOTP(PROGRAM_ADMIN.totp_secret or "").now()
        signed = container.auth.sign_in(PROGRAM_ADMIN.username, PROGRAM_ADMIN.password, code, "e2e-programs")
        host = server.base_url.split("//")[1].split(":")[0]
        cookie = {"name": "civicard_session", "value": signed.session_token, "domain": host, "path": "/",
                  "httpOnly": True, "secure": False, "sameSite": "Strict", "expires": -1}  # fmt: skip
        with page_in_new_context(chromium, {"cookies": [cookie], "origins": []}) as page:
            page.goto(f"{server.base_url}/programs/child_allowance/2026.1")
            page.locator("[data-action=run-tests]").click()
            summary = page.locator("[data-field=tests-summary]")
            summary.wait_for()
            assert summary.get_attribute("data-failed") == "0"
            postgres = page.locator("#test-results td[data-engine=postgres]")
            assert postgres.count() == page.locator("#test-results tr[data-case]").count() > 0
            assert {postgres.nth(i).get_attribute("data-result") for i in range(postgres.count())} == {"pass"}


def _csrf(page: Any) -> str:
    token: str = page.locator("input[name=csrf_token]").first.get_attribute("value")
    return token
