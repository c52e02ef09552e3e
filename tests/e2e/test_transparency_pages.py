"""The public transparency page and the oversight exclusion report in headless Chromium, over a
town with published rules, a cycle, a sale and a wrong PIN: the figures on the pages are the ones
in the database (suppressed where under 10 households), the checkpoint shown verifies with the
published key, and only oversight staff open the exclusion report."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from civicard.adapters.db.statistics_store import SqlStatisticsUnitOfWork
from civicard.programs.statistics import PURPOSE
from civicard.transparency.access import AccessContext, Actor
from civicard.transparency.checkpoints import VerifierKey, open_checkpoint
from tests.e2e.conftest import REGISTRAR, LiveServer
from tests.e2e.test_registrar_page import sign_in
from tests.integration.distribution_fixtures import PIN, DistributionTown, build_distribution_town, redeem_once

pytestmark = pytest.mark.e2e
AUDITOR = ("oversight-e2e", "Olga Supervisora (e2e)", "supervision-de-ventas-e2e-2026", pyotp.random_base32())
COUNTER = AccessContext(Actor("e2e:counter", "system"), PURPOSE)


@pytest.fixture(scope="module")
def town(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> DistributionTown:
    """Published rules, this month's cycle over a synthetic town, one sale and one wrong PIN at the shop."""
    built = live_server.container
    town = build_distribution_town(
        built.engine, built.clock, tmp_path_factory.mktemp("town"), households=300, cards=2, root_key=built.root_key
    )
    holder = town.adults[0]
    sold, _ = redeem_once(town, town.shop, holder.token, {"RICE-1KG": 1}, secrets.token_hex(8))
    refused, answer = redeem_once(town, town.shop, holder.token, {"RICE-1KG": 1}, secrets.token_hex(8), pin="0000")
    assert (sold, refused) == (201, 422) and b"pin_wrong" in answer and PIN != "0000"
    username, name, password, secret = AUDITOR
    built.auth.create_staff_account(username, name, "oversight", password, "e2e:seed", totp_secret=secret)
    return town


def _expected(server: LiveServer, program: str) -> dict[str, tuple[str, str]]:
    """Region → (eligible, entitled) as the page must show them, from the raw counts in the database."""
    with SqlStatisticsUnitOfWork(server.container.engine, COUNTER, server.container.clock) as uow:
        period = uow.statistics.latest_period()
        assert period is not None
        counts = uow.statistics.household_counts(period)

    def shown(n: int) -> str:
        return f"{n:,}" if n >= 10 else "<10"

    return {c.region: (shown(c.eligible), shown(c.entitled)) for c in counts if c.program == program}


def _signed_checkpoint(server: LiveServer) -> str:
    deadline = time.monotonic() + 10
    while (found := httpx.get(f"{server.base_url}/v1/log/checkpoint")).status_code != 200:
        assert time.monotonic() < deadline, "no signed checkpoint within 10 s"
        time.sleep(0.2)
    return found.text


def test_the_transparency_page_shows_rules_checkpoint_and_suppressed_figures_without_sign_in(
    town: DistributionTown, live_server: LiveServer, browser_page: Any, screenshots: Path
) -> None:
    _signed_checkpoint(live_server)
    before = live_server.access_log_head()
    page = browser_page

    page.goto(f"{live_server.base_url}/transparency")

    assert page.locator("form[action='/signout']").count() == 0
    food = page.locator("tbody[data-program=food_basket][data-version='2026.1']")
    assert food.locator("[data-field=in-force]").count() == 1
    assert "Decreto Ejecutivo 112/2025" in food.inner_text()
    api = httpx.get(f"{live_server.base_url}/v1/programs").json()["versions"]
    hashes = {(v["program"], v["version"]): v["sha256"] for v in api}
    assert food.locator("[data-field=sha256]").inner_text() == hashes[("food_basket", "2026.1")]
    older = page.locator("tbody[data-program=food_basket][data-version='2025.1'] [data-field=valid]").inner_text()
    assert "2025-12-31" in older  # valid until the day before 2026.1 took effect
    assert page.locator("[data-section=rules] tbody").count() == len(api)

    shown_size = int(page.locator("[data-field=tree-size]").inner_text())
    note = page.locator("[data-field=note]").text_content()  # inside a closed <details>
    key = VerifierKey.from_vkey(httpx.get(f"{live_server.base_url}/v1/log/public-key").json()["vkey"])
    checkpoint = open_checkpoint(note, key)
    assert checkpoint.tree_size == shown_size > 0
    assert page.locator("[data-field=root-hash]").inner_text() == note.splitlines()[2]
    assert page.locator("[data-field=signature]").inner_text() in note
    assert page.locator("[data-field=public-key]").get_attribute("href") == "/v1/log/public-key"

    assert page.locator("[data-field=period]").inner_text() == town.period
    expected = _expected(live_server, "food_basket")
    article = page.locator("article[data-program=food_basket]")
    table = article.locator("table[data-table=households]")
    shown = {
        code: (
            table.locator(f"tr[data-region='{code}'] [data-metric=eligible]").inner_text(),
            table.locator(f"tr[data-region='{code}'] [data-metric=entitled]").inner_text(),
        )
        for code in expected
    }
    assert shown == expected
    numbers = [int(e.replace(",", "")) for e, _ in expected.values() if e != "<10"]
    assert numbers, "the town should have a region with 10 or more eligible households"
    small = [code for code, (e, _) in expected.items() if e == "<10"]
    assert small, "the town should have a region with fewer than 10 eligible households"
    hidden = table.locator(f"tr[data-region='{small[0]}'] [data-metric=eligible] [data-suppressed]")
    assert hidden.inner_text() == "<10"
    total = table.locator("tr[data-region=total] [data-metric=eligible] strong").inner_text()
    assert int(total.replace(",", "")) == sum(numbers)  # only the regions shown
    chart = article.locator("figure[data-chart='households-food_basket'] svg")
    assert chart.get_attribute("role") == "img"
    assert sorted(
        int(v) for v in chart.locator("rect[data-value]").evaluate_all("rs => rs.map(r => r.dataset.value)")
    ) == sorted(
        [int(e.replace(",", "")) for e, _ in expected.values() if e != "<10"]
        + [int(n.replace(",", "")) for _, n in expected.values() if n != "<10"]
    )
    legend = chart.locator("text[y='16']").evaluate_all("ts => ts.map(t => t.textContent)")
    assert legend == ["elegibles", "con derecho a artículos"]  # one language, the reader's
    rice = article.locator("table[data-table=items] tr[data-item='RICE-1KG']")
    assert rice.count() == 1 and "Arroz blanco" in rice.inner_text()
    page.screenshot(path=str(screenshots / "transparency.png"), full_page=True)

    served = httpx.get(f"{live_server.base_url}/v1/transparency/statistics").json()
    by_program = {p["program"]: p for p in served["programs"]}
    assert served["period"] == town.period
    assert {
        r: str(v) if v == "<10" else f"{v:,}"
        for r, v in by_program["food_basket"]["eligible_households"]["regions"].items()
    } == {r: e for r, (e, _) in expected.items()}
    logged = [e for e in live_server.access_log_since(before) if e["actor"] == "public:statistics"]
    # One logged read: the API answered from the figures the page computed a moment before.
    assert [(e["purpose"], e["action"], e["subject_household_id"]) for e in logged] == [(PURPOSE, "read", None)]

    english = httpx.get(f"{live_server.base_url}/transparency", cookies={"lang": "en"}).text
    assert ">eligible</text>" in english and ">entitled to items</text>" in english and "elegibles" not in english


def test_oversight_staff_read_the_exclusion_report_per_outlet(
    town: DistributionTown, live_server: LiveServer, browser_page: Any, screenshots: Path
) -> None:
    page = browser_page
    response = page.goto(f"{live_server.base_url}/oversight/exclusions")
    assert page.url == f"{live_server.base_url}/signin" and response.request.redirected_from is not None

    username, _, password, secret = AUDITOR
    page.fill("#totp_code", pyotp.TOTP(secret).now())
    sign_in(page, username, password)
    page.goto(f"{live_server.base_url}/oversight/exclusions")

    assert page.locator("#period").input_value() == town.period
    shop = page.locator(f"tr[data-outlet='{town.shop.outlet_id}']")
    figures = {
        m: shop.locator(f"[data-metric={m}]").inner_text() for m in ("sales", "failed-pin", "fallbacks", "refused")
    }
    assert figures == {"sales": "1", "failed-pin": "1", "fallbacks": "0", "refused": "1"}
    assert shop.locator("[data-code=pin_wrong]").inner_text() == "1"
    assert shop.locator("[data-metric=refusal-rate]").inner_text() == "50.0 %"
    assert page.locator(f"tr[data-outlet='{town.pharmacy.outlet_id}']").count() == 0  # no activity there
    page.screenshot(path=str(screenshots / "oversight-exclusions.png"), full_page=True)

    page.select_option("#period", town.period)
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Ver")).click()
    assert page.url.endswith(f"/oversight/exclusions?period={town.period}")
    page.goto(f"{live_server.base_url}/oversight/exclusions?period=2031-01")
    assert page.locator(".error").get_attribute("data-code") == "period_not_found"

    header = page.locator("th[data-code=pin_wrong]")
    page.goto(f"{live_server.base_url}/oversight/exclusions?period={town.period}")
    assert header.inner_text().splitlines() == ["PIN incorrecto", "pin_wrong"]  # label, then the code
    page.context.add_cookies([{"name": "lang", "value": "en", "url": live_server.base_url}])
    page.reload()
    assert header.inner_text().splitlines() == ["wrong PIN", "pin_wrong"]


def test_staff_other_than_oversight_are_refused_the_exclusion_report(
    town: DistributionTown, live_server: LiveServer, browser_page: Any
) -> None:
    page = browser_page
    page.goto(f"{live_server.base_url}/signin")
    sign_in(page, REGISTRAR.username, REGISTRAR.password)

    response = page.goto(f"{live_server.base_url}/oversight/exclusions?period={town.period}")

    assert response.status == 403
    assert page.locator(".error").get_attribute("data-code") == "oversight_only"
    assert page.locator("table[data-field=outlets]").count() == 0
