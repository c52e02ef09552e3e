"""A reviewer settles a possible duplicate in headless Chromium: queue, side by side, a merge a second
reviewer approves, undo."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from civicard.adapters.api.access import SESSION_COOKIE
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.identity.cards import issue_card
from civicard.transparency.access import AccessContext, Actor
from tests.e2e.conftest import REGISTRAR, REVIEWER, LiveServer, StaffLogin
from tests.e2e.duplicate_seed import seed_duplicate
from tests.e2e.test_registrar_page import sign_in

SECOND_REVIEWER = StaffLogin("reviewer-two-e2e", "reviewer", "Rita Revisora (e2e)", "segunda-revision-e2e-2026")

pytestmark = pytest.mark.e2e
DESK = AccessContext(Actor("e2e:desk", "registrar"), "card_service")


def _sign_in_as_reviewer(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.base_url}/signin")
    sign_in(page, REVIEWER.username, REVIEWER.password)
    page.goto(f"{server.base_url}/reviewer")


def test_a_reviewer_merges_a_duplicate_and_undoes_the_merge(
    browser_page: Any, live_server: LiveServer, screenshots: Path
) -> None:
    page = browser_page
    home = live_server.town.household_ids[0]
    original = live_server.person("María José Pérez Gómez")
    alias, candidate = seed_duplicate(live_server, "María José Pérez Gómez", "Maria Jose", household_id=home)
    with SqlCardUnitOfWork(live_server.container.engine, DESK, live_server.container.clock) as uow:
        old_card = issue_card(uow, live_server.container.card_keys, alias)

    _sign_in_as_reviewer(page, live_server)
    row = page.locator(f"tr[data-candidate='{candidate}']")
    assert row.count() == 1 and "94.0 %" in row.inner_text()
    assert "María" not in page.content()  # the queue shows no names
    page.screenshot(path=str(screenshots / "review-queue.png"), full_page=True)
    with page.expect_navigation():
        row.locator("[data-action=open-case]").click()
    assert page.locator("th[data-person]").count() == 2
    table = page.locator("table.side-by-side").inner_text()
    assert "María José" in table and "Maria Jose" in table
    assert page.locator("tr.differs").count() >= 1
    assert page.locator("tr[data-reason=birth_date]").inner_text().count("coincide") == 1
    page.screenshot(path=str(screenshots / "review-case.png"), full_page=True)

    page.select_option("#survivor_id", original)
    page.fill("#note", "misma cédula en ambas fichas")
    with page.expect_navigation():
        page.locator("[data-action=decide-same]").click()
    assert page.locator("[data-field=status]").inner_text() == "same"
    notices = page.locator(".notice").all_inner_texts()
    assert any("segundo revisor" in n for n in notices)
    request_id = page.locator("[data-field=merge-request]").get_attribute("data-request")
    assert request_id and page.locator("tr[data-merge]").count() == 0  # nothing merged yet
    assert page.locator("[data-form=approve-merge]").count() == 0  # the decider is offered no approval
    second = SECOND_REVIEWER
    live_server.container.auth.create_staff_account(
        second.username, second.display_name, second.role, second.password, "e2e"
    )
    session = live_server.open_session(second)
    form = {"request_id": request_id, "note": "", "csrf_token": session["csrf_token"]}
    with httpx.Client(base_url=live_server.base_url, cookies={SESSION_COOKIE: session["token"]}) as client:
        approved = client.post(f"/reviewer/cases/{candidate}/merge-request/approve", data=form)
    assert approved.status_code == 303 and "notice=executed" in approved.headers["location"], approved.text
    page.reload()
    assert page.locator("[data-field=merge-request]").count() == 0
    merge_row = page.locator("tr[data-merge][data-undone=false]")
    assert merge_row.count() == 1 and "misma cédula" in merge_row.inner_text()
    assert second.display_name in merge_row.inner_text()  # who carried the merge out: the approver
    with SqlCardUnitOfWork(live_server.container.engine, DESK, live_server.container.clock) as uow:
        revoked = uow.cards.by_handle(old_card.card.handle)
        successor = uow.cards.current_of_person(original)
    assert revoked is not None and revoked.status == "revoked"
    assert successor is not None and successor.replaces_card_id == old_card.card.id

    undo = page.locator(f"tr[data-merge-undo='{merge_row.get_attribute('data-merge')}']")
    undo.locator("input[name=reason]").fill("son madre e hija con el mismo nombre")
    with page.expect_navigation():
        undo.locator("[data-action=undo-merge]").click()
    notices = page.locator(".notice").all_inner_texts()
    assert any("Unión deshecha" in n for n in notices) and any("emita una nueva" in n for n in notices)
    assert any("Volvió a su hogar" in n for n in notices)
    page.screenshot(path=str(screenshots / "review-merge-undone.png"), full_page=True)
    assert page.locator("[data-field=status]").inner_text() == "open"
    assert page.locator("tr[data-merge][data-undone=true]").count() == 1
    assert page.locator("[data-action=decide-different]").count() == 1


def test_deciding_different_takes_the_pair_out_of_the_queue(browser_page: Any, live_server: LiveServer) -> None:
    page = browser_page
    _, candidate = seed_duplicate(live_server, "Inés Ibáñez Muñoz", "Ines", probability=0.88)
    _sign_in_as_reviewer(page, live_server)
    page.goto(f"{live_server.base_url}/reviewer/cases/{candidate}")
    with page.expect_navigation():
        page.locator("[data-action=decide-different]").click()
    assert page.locator("[data-field=status]").inner_text() == "different"
    assert page.locator("[data-form=decision]").count() == 0
    page.goto(f"{live_server.base_url}/reviewer")
    assert page.locator(f"tr[data-candidate='{candidate}']").count() == 0
    page.select_option("#status", "different")
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Filtrar")).click()
    assert page.locator(f"tr[data-candidate='{candidate}'][data-status=different]").count() == 1


def test_a_registrar_cannot_open_the_review_queue(browser_page: Any, live_server: LiveServer) -> None:
    page = browser_page
    page.goto(f"{live_server.base_url}/signin")
    sign_in(page, REGISTRAR.username, REGISTRAR.password)
    response = page.goto(f"{live_server.base_url}/reviewer")
    assert response.status == 403
    assert page.locator("[data-code=purpose_not_allowed]").count() == 1


def test_the_review_pages_need_a_signed_in_reviewer(browser_page: Any, live_server: LiveServer) -> None:
    for path in ("/reviewer", f"/reviewer/cases/{'0' * 32}"):
        response = browser_page.request.get(f"{live_server.base_url}{path}", max_redirects=0)
        assert response.status == 303 and response.headers["location"] == "/signin"
