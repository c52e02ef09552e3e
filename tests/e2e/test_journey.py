"""Every role's main path on a fresh demo town, in headless Chromium, saving the screenshots the
README shows (journey-NN-*.png, in the order a visitor would walk them).

The town is built by the functions `civicard demo` calls (synthetic population, the showcase
family, the published rule files, this month's cycle, the shop and its terminals), then served.
A registrar types María José again, sees the duplicate warning with its reasons, and enrolls her
mother instead, who just moved in, with a card and a PIN. With five members the household's
income per person falls under the child-allowance limit: the administrator runs next month's
cycle and the household is eligible there, while this month's decision stays "not eligible".
The shop's terminal (a phone) sells on María José's card; she sees the sale and the shop's reads
of her data, verified, and appeals this month's decision; the reviewer finds the appeal; the
auditor reads the exclusion report; anyone reads the transparency page.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyotp
import pytest
import uvicorn
from playwright.sync_api import expect
from rich.console import Console

from civicard.adapters.api.app import create_app
from civicard.adapters.cli.demo import SHOWCASE_NAME, SHOWCASE_PIN, _showcase_card, load_demo_town
from civicard.adapters.cli.demo_distribution import set_up_demo_distribution
from civicard.adapters.demo_accounts import DemoAccount, ensure_demo_accounts
from civicard.bootstrap import Container, bootstrap
from civicard.programs.cycles import period_of
from civicard.settings import Mode, Settings
from tests.e2e.conftest import _listening_socket, _wait_until_healthy
from tests.e2e.test_registrar_page import sign_in

pytestmark = pytest.mark.e2e
HOUSEHOLDS, SEED = 300, 7  # `civicard demo`'s defaults, what `make run` loads
WAIT = 20_000  # ms: the machine running the suite may be busy
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
MARIA_DOCUMENT = "52123456"
NEAR_COPY = {  # María José (born 1984-03-09) as a clerk might type her again, day and month swapped
    "given_names": "Maria J.",
    "first_surname": "Perez",
    "second_surname": "Gomez",
    "birth_date": "1984-09-03",
    "birth_place": "Ciudad Capital",
}
MOTHER = {  # who is really new: María José's mother, who moved in this month
    "given_names": "Carmen Rosa",
    "first_surname": "Gómez",
    "second_surname": "Herrera",
    "birth_date": "1956-04-17",
    "birth_place": "San Rafael",
    "national_id": "41987654",
}
MOTHER_NAME = "Carmen Rosa Gómez Herrera"
MOTHER_PIN = "7093"
APPEAL = "Mi madre vive con nosotros desde este mes: somos cinco en el hogar, no cuatro."


@dataclass(frozen=True)
class DemoTown:
    base_url: str
    container: Container
    accounts: dict[str, DemoAccount]
    handle: str  # María José's printed card code
    qr_text: str  # what her card's QR code holds: the demo prints it for trying a terminal by hand
    shop_terminal_id: str
    shop_key: str  # the device key the demo wrote to <data dir>/demo-terminals/shop-counter.key
    this_period: str
    next_period: str


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoTown]:
    """`civicard demo --no-serve` into a fresh data directory (SQLite), then served on a free port."""
    data_dir = tmp_path_factory.mktemp("civicard-demo")
    container = bootstrap(Settings(mode=Mode.DEMO, data_dir=data_dir))
    quiet = Console(file=io.StringIO())
    try:
        load_demo_town(container, HOUSEHOLDS, SEED, quiet)
        showcase = _showcase_card(container)
        assert showcase is not None, "the demo issued no card to its showcase resident"
        terminals = set_up_demo_distribution(container, quiet)["terminals"]  # idempotent: the same ids
        shop = terminals["shop-counter"]
        today = container.clock.today()
        with _serving(container) as base_url:
            yield DemoTown(
                base_url=base_url,
                container=container,
                accounts={a.username: a for a in ensure_demo_accounts(container)},
                handle=showcase[0],
                qr_text=showcase[1],
                shop_terminal_id=shop["id"],
                shop_key=Path(shop["key_file"]).read_text(encoding="ascii").strip(),
                this_period=period_of(today),
                next_period=period_of(date(today.year + today.month // 12, today.month % 12 + 1, 1)),
            )
    finally:
        container.close()


@contextmanager
def _serving(container: Container) -> Iterator[str]:
    sock = _listening_socket()
    host, port = sock.getsockname()
    config = uvicorn.Config(create_app(container), host=host, port=port, log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-journey", daemon=True)
    thread.start()
    try:
        base_url = f"http://{host}:{port}"
        _wait_until_healthy(base_url, thread)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def _window(chromium: Any, viewport: dict[str, int] = DESKTOP) -> Iterator[Any]:
    """A page in a context of its own: no cookies carried from one role to the next."""
    context = chromium.new_context(locale="es-ES", viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def _path(screenshots: Path, name: str) -> Path:
    return screenshots / f"journey-{name}.png"


def _shot(page: Any, screenshots: Path, name: str, *, full_page: bool = False) -> None:
    page.screenshot(path=str(_path(screenshots, name)), full_page=full_page)


def _staff_sign_in(page: Any, town: DemoTown, username: str) -> None:
    """Sign in with a demo login as the landing page lists it; a TOTP account types its current code."""
    account = town.accounts[username]
    page.goto(f"{town.base_url}/signin")
    if account.totp_secret:
        page.fill("#totp_code", pyotp.TOTP(account.totp_secret).now())
    response = sign_in(page, account.username, account.password)
    assert response.status == 200, f"{username} could not sign in: HTTP {response.status}"


def _submit(page: Any, locator: Any) -> Any:
    with page.expect_navigation(timeout=WAIT) as navigation:
        locator.click()
    return navigation.value


def test_each_role_walks_its_main_path_on_a_fresh_demo_town(town: DemoTown, chromium: Any, screenshots: Path) -> None:
    _registrar_enrolls_the_mother_and_gives_her_a_card(town, chromium, screenshots)
    _administrator_decides_next_month(town, chromium, screenshots)
    transaction = _shop_sells_on_marias_card(town, chromium, screenshots)
    _maria_sees_the_sale_and_the_reads_and_appeals(town, chromium, screenshots, transaction)
    _reviewer_finds_the_appeal(town, chromium, screenshots)
    _oversight_and_the_public_read_the_figures(town, chromium, screenshots)


def _registrar_enrolls_the_mother_and_gives_her_a_card(town: DemoTown, chromium: Any, screenshots: Path) -> None:
    base = town.base_url
    with _window(chromium) as page:
        page.goto(f"{base}/")
        demo_logins = page.locator(".card", has=page.get_by_role("heading", name=re.compile("Cuentas de demostración")))
        expect(demo_logins.locator("tbody tr")).to_have_count(len(town.accounts), timeout=WAIT)
        _shot(page, screenshots, "01-landing")

        page.get_by_role("link", name=re.compile("Iniciar sesión")).click()
        page.wait_for_url(f"{base}/signin")
        sign_in(page, "registrador", town.accounts["registrador"].password)
        assert page.url == f"{base}/registrar"
        page.fill("#q", "maria perez")
        page.select_option("#purpose", "enrollment")
        _submit(page, page.get_by_role("button", name=re.compile("Buscar")))
        maria_row = page.locator("tbody tr[data-person]", has_text=MARIA_DOCUMENT)
        expect(maria_row).to_have_count(1, timeout=WAIT)
        assert SHOWCASE_NAME in maria_row.inner_text()
        maria = maria_row.get_attribute("data-person")
        _shot(page, screenshots, "02-registrar-search")

        _submit(page, maria_row.get_by_role("link", name=re.compile("Abrir hogar")))
        household = re.search(r"/registrar/households/([0-9a-f]{32})", page.url)
        assert household is not None, page.url
        household_id = household[1]
        members_before = page.locator("tr[data-person]").count()
        _submit(page, page.locator("[data-action=enroll-member]"))
        assert page.url == f"{base}/registrar/households/{household_id}/enroll"

        _type_person(page, NEAR_COPY, sex="F", relationship="reference")
        warning = page.locator("[data-role=duplicate-warning]")
        expect(warning).to_be_visible(timeout=WAIT)  # htmx swapped in the live check's fragment
        candidate = warning.locator(f'.candidate[data-person="{maria}"]')
        expect(candidate).to_be_visible(timeout=WAIT)
        assert float(candidate.locator("[data-probability]").get_attribute("data-probability")) >= 0.5
        expect(candidate.locator('li[data-field="dob"]')).to_have_attribute("data-outcome", "close", timeout=WAIT)
        expect(candidate.locator('li[data-field="dob"]')).to_contain_text("swapped", timeout=WAIT)
        page.locator("#duplicates").scroll_into_view_if_needed()
        _shot(page, screenshots, "03-enroll-duplicate-warning", full_page=True)

        # It is María José herself: the clerk enrolls the person who is really new, her mother.
        _type_person(page, MOTHER, sex="F", relationship="parent")
        expect(candidate).to_have_count(0, timeout=WAIT)
        _submit(page, page.locator("[data-action=enroll]"))
        alert = page.locator("[role=alert]")
        assert alert.count() == 0, f"enrolling {MOTHER_NAME} was refused: {alert.first.inner_text()}"
        assert page.url.startswith(f"{base}/registrar/households/{household_id}")
        mother_row = page.locator("tr[data-person]", has_text=MOTHER_NAME)
        expect(mother_row).to_have_count(1, timeout=WAIT)
        assert mother_row.locator("[data-record-status=held]").count() == 0  # enrolled, not held for review
        assert page.locator("tr[data-person]").count() == members_before + 1
        mother = mother_row.get_attribute("data-person")

        card_page = f"{base}/registrar/households/{household_id}/members/{mother}/card"
        page.goto(card_page)
        issue = page.locator("[data-form=issue-card]")
        issue.get_by_label(re.compile("^PIN")).fill(MOTHER_PIN)
        issue.get_by_label("Repita el PIN").fill(MOTHER_PIN)
        _submit(page, issue.locator("[data-action=issue-card]"))
        refused = page.locator("[role=alert]")
        assert refused.count() == 0, f"the card was not issued: {refused.first.inner_text()}"
        assert page.url == f"{card_page}?done=issued", page.url
        expect(page.locator("[data-field=pin-state]")).to_have_attribute("data-pin", "set", timeout=WAIT)
        expect(page.locator("[data-field=card-status]")).to_have_text("vigente", timeout=WAIT)
        assert MOTHER_PIN not in page.content()
        _shot(page, screenshots, "04-card-issued")

        printed = page.request.get(base + page.locator("[data-action=print-new-card]").get_attribute("href"))
        assert printed.status == 200 and printed.headers["content-type"] == "application/pdf"
        assert printed.body().startswith(b"%PDF")


def _type_person(page: Any, person: dict[str, str], *, sex: str, relationship: str) -> None:
    for field in ("given_names", "first_surname", "second_surname", "birth_place"):
        page.fill(f"input[name={field}]", person[field])
    page.fill("input[name=national_id]", person.get("national_id", ""))
    page.select_option("select[name=sex]", sex)
    page.select_option("select[name=relationship]", relationship)
    page.fill("input[name=birth_date]", person["birth_date"])


def _administrator_decides_next_month(town: DemoTown, chromium: Any, screenshots: Path) -> None:
    base, period = town.base_url, town.next_period
    with _window(chromium) as page:
        _staff_sign_in(page, town, "administradora")
        page.goto(f"{base}/programs/cycles")
        demo_run = page.locator(f"#cycle-runs tr[data-period='{town.this_period}']")
        expect(demo_run).to_have_attribute("data-status", "done", timeout=WAIT)  # the demo decided this month
        page.fill("#period", period)
        page.locator("[data-action=run-cycle]").click()
        expect(page.locator("#cycle-job [data-job]")).to_be_visible(timeout=WAIT)  # progress, then the report
        done = page.locator("#cycle-job [data-state=done]")
        expect(done).to_be_visible(timeout=120_000)
        households = int(done.locator("[data-field=households]").inner_text().replace(",", ""))
        assert households >= HOUSEHOLDS
        run = page.locator(f"#cycle-runs tr[data-period='{period}']")
        expect(run).to_have_attribute("data-status", "done", timeout=WAIT)
        assert "staff:administradora" in run.inner_text()
        _shot(page, screenshots, "05-cycle-done", full_page=True)

        page.goto(f"{base}/programs/child_allowance/2026.1")
        expect(page.locator("[data-field=status]")).to_have_text(re.compile("[Pp]ublicada"), timeout=WAIT)
        assert "income_per_person <=" in page.locator("tr[data-condition=low_income]").inner_text()
        rule = page.locator("section[aria-labelledby=conditions-h]").bounding_box()
        assert page.evaluate("window.scrollY") == 0 and rule is not None
        page.screenshot(  # from the title to the conditions and the amount: the rule as a person reads it
            path=str(_path(screenshots, "06-program-rule")),
            full_page=True,
            clip={"x": 0, "y": 0, "width": DESKTOP["width"], "height": rule["y"] + rule["height"] + 16},
        )

        page.goto(f"{base}/programs/food_basket/2026.1")  # the demo town's largest program: bars, not only "<10"
        impact = page.locator("section[aria-labelledby=impact-h]")
        chart = impact.locator("[data-field=impact-chart] svg")
        expect(chart).to_be_visible(timeout=WAIT)
        assert chart.locator("g[data-region]").count() >= 2, "the version page shows no impact chart"
        assert chart.locator("rect > title").count() >= 1, "no region of the impact chart shows a count"
        impact.screenshot(path=str(_path(screenshots, "07-program-impact")))


def _shop_sells_on_marias_card(town: DemoTown, chromium: Any, screenshots: Path) -> str:
    """The shop's phone imports its device key once, then card (typed QR text), PIN, basket, receipt."""
    with _window(chromium, PHONE) as page:
        page.goto(f"{town.base_url}/terminal")
        page.fill("#terminal-id", town.shop_terminal_id)
        page.fill("#device-key", town.shop_key)
        page.locator("[data-action=save-key]").click()
        expect(page.locator("#setup-status[data-ready=true]")).to_be_visible(timeout=WAIT)

        page.fill("#card-code", town.qr_text)
        page.locator("[data-action=check-card]").click()
        lines = page.locator("#basket .line[data-item]")
        expect(lines.first).to_be_visible(timeout=WAIT)
        line = lines.first
        item = line.get_attribute("data-item")
        left = int(line.get_attribute("data-remaining") or 0)
        assert left >= 1
        line.locator("[data-action=more]").click()
        expect(line.locator("[data-field=quantity]")).to_have_text("1", timeout=WAIT)
        for digit in SHOWCASE_PIN:
            page.locator(f".pad [data-digit='{digit}']").click()
        _shot(page, screenshots, "08-terminal-basket", full_page=True)

        page.locator("[data-action=sell]").click()
        receipt = page.locator("#receipt-step [data-field=receipt][data-code=redeemed]")
        expect(receipt).to_be_visible(timeout=WAIT)
        sold = receipt.locator(f"tr[data-item='{item}']")
        expect(sold.locator("[data-field=remaining]")).to_have_text(str(left - 1), timeout=WAIT)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        _shot(page, screenshots, "09-terminal-receipt", full_page=True)
        found = re.search(r"([0-9a-f]{32})", receipt.locator("[data-field=transaction]").inner_text())
        assert found is not None, "the receipt names no transaction"
        return found[1]


def _maria_sees_the_sale_and_the_reads_and_appeals(
    town: DemoTown, chromium: Any, screenshots: Path, transaction: str
) -> None:
    base = town.base_url
    with _window(chromium) as page:
        page.goto(f"{base}/me")
        page.fill("#handle", town.handle)
        page.fill("#pin", SHOWCASE_PIN)
        _submit(page, page.locator("form[action='/me/signin'] button[type=submit]"))
        assert page.url == f"{base}/me/log", page.url

        page.goto(f"{base}/me/benefits?period={town.this_period}")
        sale = page.locator(f"tr[data-redemption='{transaction}']")
        expect(sale).to_be_visible(timeout=WAIT)
        assert "Tienda La Esquina" in sale.locator("[data-field=outlet]").inner_text()
        assert sale.locator("li[data-item]").first.get_attribute("data-quantity") == "1"
        assert "con su tarjeta" in sale.locator("[data-field=channel]").inner_text()
        _shot(page, screenshots, "10-resident-benefits")

        shop_rows = _verified_shop_reads(page, f"{base}/me/log")
        assert shop_rows >= 2, "the card check and the sale should both be in her log"
        _shot(page, screenshots, "11-resident-log")

        page.goto(f"{base}/me/decisions")
        child = page.locator("section[data-program=child_allowance]")
        now = child.filter(has_text=f"— {town.this_period}")
        upcoming = child.filter(has_text=f"— {town.next_period}")
        expect(upcoming).to_have_count(1, timeout=WAIT)
        # Five members now: income per person is under the limit from next month's cycle on.
        expect(upcoming).to_have_attribute("data-status", "eligible", timeout=WAIT)
        expect(now).to_have_attribute("data-status", "not_eligible", timeout=WAIT)
        now.locator("summary", has_text="Recurrir").click()
        now.locator("textarea[name=reason]").fill(APPEAL)
        _submit(page, now.locator("[data-action=file-appeal]"))
        expect(page.locator(".notice").first).to_contain_text("Recurso presentado", timeout=WAIT)
        filed = page.locator("tr[data-appeal][data-status=open]", has_text=APPEAL)
        expect(filed).to_have_count(1, timeout=WAIT)
        _shot(page, screenshots, "12-resident-decisions-appeal")


def _verified_shop_reads(page: Any, log_url: str) -> int:
    """Reload "who read my data" until the shop's entries are folded into a signed checkpoint."""
    deadline = time.monotonic() + WAIT / 1000
    while True:
        page.goto(log_url)
        rows = page.locator("tbody tr", has_text="Tienda La Esquina")
        verified = int(rows.locator("[data-verified=true]").count())
        if rows.count() and verified == rows.count():
            assert page.locator("[data-verification]").get_attribute("data-verification") == "verified"
            assert page.locator("[data-verified=false]").count() == 0
            return verified
        assert time.monotonic() < deadline, f"{verified} of {rows.count()} shop entries verified after {WAIT} ms"
        time.sleep(0.5)


def _reviewer_finds_the_appeal(town: DemoTown, chromium: Any, screenshots: Path) -> None:
    base = town.base_url
    with _window(chromium) as page:
        _staff_sign_in(page, town, "revisora")
        page.goto(f"{base}/reviewer/appeals")
        row = page.locator("tr[data-appeal][data-status=open]", has_text="child_allowance")
        expect(row).to_have_count(1, timeout=WAIT)
        assert town.this_period in row.inner_text()
        assert "María" not in page.content()  # the queue shows no names
        _shot(page, screenshots, "13-reviewer-appeals")
        _submit(page, row.locator("[data-action=open-appeal]"))
        expect(page.locator("[data-field=reason]")).to_have_text(APPEAL, timeout=WAIT)
        _shot(page, screenshots, "14-reviewer-appeal-case")


def _oversight_and_the_public_read_the_figures(town: DemoTown, chromium: Any, screenshots: Path) -> None:
    base = town.base_url
    with _window(chromium) as page:
        _staff_sign_in(page, town, "auditor")
        page.goto(f"{base}/oversight/exclusions?period={town.this_period}")
        shop = page.locator("tr[data-outlet]", has_text="Tienda La Esquina")
        expect(shop).to_have_count(1, timeout=WAIT)
        assert shop.locator("[data-metric=sales]").inner_text() == "1"  # a fresh town: the journey's one sale
        assert shop.locator("[data-metric=failed-pin]").inner_text() == "0"
        _shot(page, screenshots, "15-oversight-exclusions")

    with _window(chromium) as page:  # nobody signed in
        page.goto(f"{base}/transparency")
        assert page.locator("form[action='/signout']").count() == 0
        in_force = page.locator("tbody[data-program=child_allowance][data-version='2026.1']")
        expect(in_force).to_have_count(1, timeout=WAIT)
        assert int(page.locator("[data-field=tree-size]").inner_text()) > 0
        _shot(page, screenshots, "16-transparency")
