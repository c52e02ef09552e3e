"""The registrar's fact and card desk in headless Chromium: record a fact for a member, correct one
(the history stays), see how many decisions were re-evaluated; set and change a PIN, replace a
card and print it, revoke one, issue a new one. Refusals show their code and write nothing.

The town is decided for one open period first, so a fact change has decisions to re-evaluate.
Everything runs on SQLite and on PostgreSQL (`api_server`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
import yaml
from sqlalchemy import func, select

from civicard.adapters.bulk.cycle import run_cycle
from civicard.adapters.db import tables as t
from civicard.adapters.web.registrar_card_pages import REVOKE_REASON_LABELS
from civicard.identity.cards import REVOKE_REASONS
from civicard.identity.credentials import verify_token
from civicard.identity.pins import pin_matches
from civicard.identity.terminal_check import read_qr
from civicard.transparency.access import AccessContext, Actor
from tests.e2e.conftest import REGISTRAR, LiveServer, page_in_new_context
from tests.e2e.test_registrar_page import sign_in
from tests.integration.test_cycle import RULES, register_published

pytestmark = pytest.mark.e2e
PERIOD = "2026-12"
CYCLE = AccessContext(Actor("e2e:cycle", "system"), "cycle_run")
# The test's own checks read the tables through a unit of work too (the guard refuses anything else).
CHECK = AccessContext(Actor("e2e:check", "system"), "bulk_import")
REDECIDED = re.compile(r"^[0-9]+ decisi(ón reevaluada|ones reevaluadas)\.$")
PIN, NEW_PIN, REPLACEMENT_PIN = "4821", "7305", "6142"


@pytest.fixture(scope="module")
def decided(api_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    """The seeded town with the published rule packs and one cycle for PERIOD (an open period)."""
    container = api_server.container
    with container.uow(CYCLE) as uow:
        for path in sorted(RULES.glob("*/*.yaml")):
            if yaml.safe_load(path.read_text(encoding="utf-8"))["status"] != "draft":
                register_published(uow, path, container.clock)
        uow.commit()
    with container.uow(CYCLE) as uow:
        run_cycle(uow, PERIOD, tmp_path_factory.mktemp("cycle-out"))
        uow.commit()
    return api_server


@pytest.fixture(scope="module")
def signed_in(chromium: Any, decided: LiveServer) -> dict[str, Any]:
    """The browser state after REGISTRAR signed in through /signin, once for the module."""
    with page_in_new_context(chromium) as page:
        page.goto(f"{decided.base_url}/signin")
        sign_in(page, REGISTRAR.username, REGISTRAR.password)
        state: dict[str, Any] = page.context.storage_state()
    return state


@pytest.fixture
def page(chromium: Any, signed_in: dict[str, Any]) -> Iterator[Any]:
    with page_in_new_context(chromium, storage_state=signed_in) as fresh:
        yield fresh


def _submit(page: Any, locator: Any) -> Any:
    with page.expect_navigation() as navigation:
        locator.click()
    return navigation.value


def _rows(server: LiveServer, query: Any) -> list[Any]:
    with server.container.uow(CHECK) as uow:
        return list(uow.connection.execute(query).all())


def _count(server: LiveServer, table: Any, *where: Any) -> int:
    return int(_rows(server, select(func.count()).select_from(table).where(*where))[0][0])


def _reevaluations(server: LiveServer, household_id: str) -> int:
    d = t.decisions.c
    return _count(server, t.decisions, d.household_id == household_id, d.origin == "reevaluation")


def _no_inline_code(page: Any) -> None:
    assert page.locator("script, [style], [onclick], [onsubmit], [onchange]").count() == 0


def test_a_registrar_records_a_disability_and_the_household_is_decided_again(
    page: Any, decided: LiveServer, screenshots: Path
) -> None:
    server, household = decided, decided.town.household_ids[0]
    sofia = server.person("Sofía Martínez Pérez")
    page.goto(f"{server.base_url}/registrar/households/{household}?purpose=fact_correction")
    _submit(page, page.locator("[data-action=open-facts]"))
    assert page.url == f"{server.base_url}/registrar/households/{household}/facts"
    assert page.get_by_role("heading", level=1).inner_text() == "Datos de necesidad del hogar"
    _no_inline_code(page)
    seq, before = server.access_log_head(), _reevaluations(server, household)

    form = page.locator("details[data-kind=health_needs]")
    form.locator("summary").click()
    form.get_by_label("Persona").select_option(sofia)
    form.get_by_label("Tipo", exact=True).select_option("disability")
    form.get_by_label("Condición").select_option("DIS-MOB")
    form.get_by_label(re.compile("Grado reconocido")).fill("70")
    form.get_by_label("Válido desde").fill("2024-06-01")
    form.get_by_label(re.compile("^Motivo")).fill("Resolución de discapacidad 2024/118")
    _submit(page, form.locator("[data-action=record-fact]"))

    assert page.locator("[role=alert]").count() == 0
    notice = page.locator("[data-notice=recorded]")
    redecided = int(notice.locator("[data-field=redecided]").get_attribute("data-count"))
    assert redecided >= 1 and REDECIDED.match(notice.locator("[data-field=redecided]").inner_text())
    assert _reevaluations(server, household) - before == redecided
    row = page.locator(f"tr[data-kind=health_needs][data-subject='{sofia}']")
    assert row.locator("[data-field=values]").inner_text() == "Grado reconocido (%): 70; Vigente: sí"
    written = [e for e in server.access_log_since(seq) if e["action"] != "read"]
    assert [(e["purpose"], e["actor"], e["detail"]) for e in written if e["detail"].startswith("fact.")] == [
        ("fact_correction", server.account_id(REGISTRAR), "fact.recorded:health_needs")
    ]
    page.screenshot(path=str(screenshots / "registrar-facts.png"), full_page=True)


def test_a_refused_fact_comes_back_filled_in_with_its_code_and_writes_nothing(page: Any, decided: LiveServer) -> None:
    server, household = decided, decided.town.household_ids[1]
    page.goto(f"{server.base_url}/registrar/households/{household}/facts")
    chronic_before = _count(server, t.health_needs)
    form = page.locator("details[data-kind=health_needs]")
    form.locator("summary").click()
    form.get_by_label("Tipo", exact=True).select_option("chronic")
    form.get_by_label("Condición").select_option("I10")
    form.get_by_label(re.compile("Grado reconocido")).fill("40")
    form.get_by_label(re.compile("^Motivo")).fill("informe médico")
    _submit(page, form.locator("[data-action=record-fact]"))

    assert page.locator("[role=alert]").get_attribute("data-code") == "invalid_field"
    reopened = page.locator("details[data-kind=health_needs][open]")
    assert reopened.get_by_label(re.compile("Grado reconocido")).input_value() == "40"
    assert reopened.get_by_label(re.compile("^Motivo")).input_value() == "informe médico"
    assert _count(server, t.health_needs) == chronic_before

    form = page.locator("details[data-kind=properties]")
    form.locator("summary").click()
    form.get_by_label("Valor estimado").fill("12.345,00")
    form.get_by_label(re.compile("^Motivo")).fill("tasación")
    _submit(page, form.locator("[data-action=record-fact]"))
    assert page.locator("[role=alert]").get_attribute("data-code") == "invalid_amount"
    assert "(invalid_amount)" in page.locator("[role=alert]").inner_text()


def test_a_registrar_corrects_an_income_and_the_old_version_stays(page: Any, decided: LiveServer) -> None:
    server, household = decided, decided.town.household_ids[0]
    maria = server.person("María José Pérez Gómez")
    page.goto(f"{server.base_url}/registrar/households/{household}/facts")
    wages = page.locator(f"tr[data-kind=incomes][data-subject='{maria}']")
    old_id = wages.get_attribute("data-fact")
    _submit(page, wages.locator("[data-action=open-correction]"))
    assert page.url.endswith(f"/facts/incomes/{old_id}")
    assert page.get_by_label("Importe mensual").input_value() == "1800.00"

    page.get_by_label("Motivo de la corrección").fill("sin cambios")
    _submit(page, page.locator("[data-action=correct-fact]"))
    assert page.locator("[role=alert]").get_attribute("data-code") == "no_change"

    before = _reevaluations(server, household)
    page.get_by_label("Importe mensual").fill("0")
    page.get_by_label("Motivo de la corrección").fill("carta de despido de octubre")
    _submit(page, page.locator("[data-action=correct-fact]"))

    notice = page.locator("[data-notice=corrected]")
    redecided = int(notice.locator("[data-field=redecided]").get_attribute("data-count"))
    assert redecided >= 1 and _reevaluations(server, household) - before == redecided
    row = page.locator(f"tr[data-kind=incomes][data-subject='{maria}']")
    assert row.locator("[data-field=values]").inner_text() == "Importe mensual: 0.00"
    new_id = row.get_attribute("data-fact")
    c = t.incomes.c
    versions = {r.id: r for r in _rows(server, select(t.incomes).where(c.person_id == maria))}
    assert set(versions) == {old_id, new_id}  # the history stays
    assert versions[new_id].supersedes_id == old_id and versions[old_id].monthly_amount_minor == 180_000
    assert versions[new_id].reason == "carta de despido de octubre"

    page.goto(f"{server.base_url}/registrar/households/{household}/facts/incomes/{old_id}")
    assert page.locator("[role=alert]").get_attribute("data-code") == "unknown_fact"


def test_a_registrar_issues_changes_the_pin_replaces_prints_and_revokes_a_card(
    page: Any, decided: LiveServer, screenshots: Path
) -> None:
    server, household = decided, decided.town.household_ids[2]
    lucia = server.person("Lucía Fernández Ortíz")
    card_page = f"{server.base_url}/registrar/households/{household}/members/{lucia}/card"
    page.goto(f"{server.base_url}/registrar/households/{household}")
    _submit(page, page.locator(f"tr[data-person='{lucia}'] [data-action=manage-card]"))
    assert page.url == card_page
    _no_inline_code(page)

    issue = page.locator("[data-form=issue-card]")
    issue.get_by_label(re.compile("^PIN")).fill(PIN)
    issue.get_by_label("Repita el PIN").fill("4812")
    _submit(page, issue.locator("[data-action=issue-card]"))
    assert page.locator("[role=alert]").get_attribute("data-code") == "pin_mismatch"
    assert _count(server, t.cards, t.cards.c.person_id == lucia) == 0

    issue = page.locator("[data-form=issue-card]")
    issue.get_by_label(re.compile("^PIN")).fill(PIN)
    issue.get_by_label("Repita el PIN").fill(PIN)
    _submit(page, issue.locator("[data-action=issue-card]"))
    assert page.url == f"{card_page}?done=issued"
    assert page.locator("[data-field=pin-state]").get_attribute("data-pin") == "set"
    first = page.locator("[data-card]").get_attribute("data-card")

    pin_form = page.locator("[data-form=set-pin]")
    pin_form.get_by_label(re.compile("^PIN")).fill("1234")
    pin_form.get_by_label("Repita el PIN").fill("1234")
    _submit(page, pin_form.locator("[data-action=set-pin]"))
    assert page.locator("[role=alert]").get_attribute("data-code") == "pin_too_weak"
    pin_form = page.locator("[data-form=set-pin]")
    pin_form.get_by_label(re.compile("^PIN")).fill(NEW_PIN)
    pin_form.get_by_label("Repita el PIN").fill(NEW_PIN)
    _submit(page, pin_form.locator("[data-action=set-pin]"))
    assert page.locator("[data-notice=pin_changed]").count() == 1
    assert _pin_is(server, first, NEW_PIN)

    replace = page.locator("[data-form=replace-card]")
    replace.get_by_label("Motivo").select_option("stolen")
    replace.get_by_label(re.compile("^PIN")).fill(REPLACEMENT_PIN)
    replace.get_by_label("Repita el PIN").fill(REPLACEMENT_PIN)
    _submit(page, replace.locator("[data-action=replace-card]"))
    assert page.locator("[data-notice=replaced]").count() == 1
    second = page.locator("[data-card]").get_attribute("data-card")
    old, new = _card(server, first), _card(server, second)
    assert (old.status, old.status_reason, new.status, new.replaces_card_id) == ("revoked", "stolen", "valid", first)
    assert _pin_is(server, second, REPLACEMENT_PIN)
    for secret in (PIN, NEW_PIN, REPLACEMENT_PIN):
        assert secret not in page.content() and secret not in page.url
    page.set_viewport_size({"width": 360, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.screenshot(path=str(screenshots / "registrar-card-360.png"), full_page=True)

    printed = page.request.get(server.base_url + page.locator("[data-action=print-new-card]").get_attribute("href"))
    assert printed.status == 200 and printed.headers["content-type"] == "application/pdf"
    token = read_qr(pdfium.PdfDocument(printed.body())[0].render(scale=300 / 72).to_pil())
    claims = verify_token(token or "", server.container.card_keys.keyring, datetime.now(UTC))
    assert claims.handle == new.handle

    revoke = page.locator("[data-form=revoke-card]")
    revoke.get_by_label("Motivo").select_option("lost")
    revoke.get_by_label(re.compile("Confirmo")).check()
    _submit(page, revoke.locator("[data-action=revoke-card]"))
    assert page.locator("[data-notice=revoked]").count() == 1
    assert (_card(server, second).status, _card(server, second).status_reason) == ("revoked", "lost")
    assert page.locator("[data-form=issue-card]").count() == 1
    writes = [e for e in server.access_log_since(0) if e["subject_person_id"] == lucia and e["action"] == "write"]
    assert [(e["purpose"], e["detail"].split()[0]) for e in writes if e["detail"].startswith("card.")] == [
        ("card_service", "card.issued"),
        ("card_service", "card.pin_reset"),
        ("card_service", "card.replaced"),
        ("card_service", "card.revoked"),
    ]


def test_a_stale_card_form_or_a_missing_csrf_token_changes_nothing(page: Any, decided: LiveServer) -> None:
    server, household = decided, decided.town.household_ids[1]
    ramon = server.person("Ramón Núñez Peña")
    base = f"{server.base_url}/registrar/households/{household}/members/{ramon}/card"
    page.goto(base)
    token = page.locator("input[name=csrf_token]").first.input_value()

    forged = page.request.post(f"{base}/issue", form={"pin": PIN, "pin_again": PIN})
    assert forged.status == 403 and 'data-code="csrf_failed"' in forged.text()
    stale = page.request.post(f"{base}/revoke", form={"csrf_token": token, "card_id": "0" * 32, "reason": "lost"})
    assert stale.status == 409 and 'data-code="card_changed"' in stale.text()
    assert _count(server, t.cards, t.cards.c.person_id == ramon) == 0
    elsewhere = page.request.get(
        f"{server.base_url}/registrar/households/{server.town.household_ids[0]}/members/{ramon}/card"
    )
    assert elsewhere.status == 404 and 'data-code="not_a_member"' in elsewhere.text()


def test_the_fact_page_fits_a_360_pixel_screen(page: Any, decided: LiveServer, screenshots: Path) -> None:
    page.set_viewport_size({"width": 360, "height": 800})
    page.goto(f"{decided.base_url}/registrar/households/{decided.town.household_ids[2]}/facts")
    page.locator("details[data-kind=incomes] summary").click()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.evaluate("document.querySelector('table.facts').getBoundingClientRect().right") <= 360
    page.screenshot(path=str(screenshots / "registrar-facts-360.png"), full_page=True)


def test_the_desk_pages_send_a_visitor_without_a_session_to_sign_in(browser_page: Any, decided: LiveServer) -> None:
    household, person = decided.town.household_ids[0], next(iter(decided.town.person_ids.values()))
    for path in (
        f"/registrar/households/{household}/facts",
        f"/registrar/households/{household}/members/{person}/card",
    ):
        response = browser_page.request.get(decided.base_url + path, max_redirects=0)
        assert response.status == 303 and response.headers["location"] == "/signin"


def test_the_desk_pages_speak_english_when_chosen(page: Any, decided: LiveServer) -> None:
    household = decided.town.household_ids[2]
    page.goto(f"{decided.base_url}/registrar/households/{household}/facts?done=recorded&redecided=1")
    _submit(page, page.locator("#language-switch [data-lang=en]"))
    assert page.get_by_role("heading", level=1).inner_text() == "The household's need-related facts"
    assert page.locator("[data-field=redecided]").inner_text() == "1 decision re-evaluated."
    assert page.locator("details[data-kind=incomes] summary").inner_text() == "Income"
    page.goto(
        f"{decided.base_url}/registrar/households/{household}/members/{decided.person('Águeda Fernández Ortíz')}/card"
    )
    assert page.locator("[data-form=issue-card] h2").inner_text() == "No current card"


def test_every_revocation_reason_has_a_label() -> None:
    assert set(REVOKE_REASON_LABELS) == REVOKE_REASONS


def _card(server: LiveServer, card_id: str) -> Any:
    (card,) = _rows(server, select(t.cards).where(t.cards.c.id == card_id))
    return card


def _pin_is(server: LiveServer, card_id: str, pin: str) -> bool:
    ((stored,),) = _rows(server, select(t.card_pins.c.pin_hash).where(t.card_pins.c.card_id == card_id))
    return pin_matches(server.container.card_keys.pepper, _card(server, card_id).handle, pin, stored)
