"""Enrolling a near-copy of an enrolled person, over HTTP and in headless Chromium: the warning
comes with its reasons, the enrollment is refused until the registrar confirms a new person, and
a likely duplicate is then held for a reviewer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import REGISTRAR, LiveServer, page_in_new_context
from tests.e2e.test_registrar_page import sign_in

pytestmark = pytest.mark.e2e

NEAR_COPY = {  # María José Pérez Gómez of the seeded town, as a clerk might type her again
    "given_names": "Maria J.",
    "first_surname": "Perez",
    "second_surname": "Gomez",
    "birth_date": "1984-09-03",
    "birth_place": "San Rafael",
    "sex": "F",
    "address_line": "Calle 5 # 10-20",
    "municipality": "NOR-01",
    "postcode": "10001",
}


def _post(api_server: LiveServer, path: str, token: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "X-Civicard-Purpose": "enrollment"}
    return httpx.post(f"{api_server.base_url}{path}", json=body, headers=headers)


def test_the_duplicate_check_names_the_candidate_with_probability_and_reasons(api_server: LiveServer) -> None:
    token = api_server.open_session(REGISTRAR)["token"]
    response = _post(api_server, "/v1/persons/duplicate-check", token, NEAR_COPY)
    assert response.status_code == 200, response.text
    body = response.json()
    best = body["candidates"][0]
    assert best["person_id"] == api_server.person("María José Pérez Gómez")
    assert best["match_probability"] >= body["review_band"] and best["held_for_review_if_new"]
    reasons = {r["field"]: r for r in best["reasons"]}
    assert reasons["dob"]["outcome"] == "close" and "swapped" in reasons["dob"]["label"]
    assert reasons["national_id"]["outcome"] == "missing"
    assert reasons["first_name"]["outcome"] in ("close", "agree")
    assert best["full_name"].startswith("María José")


def test_enrolling_a_near_copy_is_refused_then_held_once_confirmed(api_server: LiveServer) -> None:
    token = api_server.open_session(REGISTRAR)["token"]
    refused = _post(api_server, "/v1/persons", token, {**NEAR_COPY, "given_names": "María Josefa"})
    assert refused.status_code == 409 and refused.json()["code"] == "possible_duplicates"
    assert refused.json()["candidates"][0]["person_id"] == api_server.person("María José Pérez Gómez")
    assert "Pérez" not in refused.text  # the refusal names ids and probabilities, no personal data

    held = _post(
        api_server, "/v1/persons", token, {**NEAR_COPY, "given_names": "María Josefa", "confirmed_new_person": True}
    )
    assert held.status_code == 201 and held.json()["record_status"] == "held"


def test_someone_new_is_enrolled_at_once(api_server: LiveServer) -> None:
    token = api_server.open_session(REGISTRAR)["token"]
    stranger = {
        **NEAR_COPY,
        "given_names": "Wilmer",
        "first_surname": "Quintero",
        "second_surname": "Lasso",
        "birth_date": "1999-12-31",
        "sex": "M",
        "address_line": "Avenida 3 # 44-1",
        "postcode": "10009",
    }
    created = _post(api_server, "/v1/persons", token, stranger)
    assert created.status_code == 201 and created.json()["record_status"] == "active"


@pytest.fixture
def registrar_page(chromium: Any, live_server: LiveServer) -> Iterator[Any]:
    with page_in_new_context(chromium) as page:
        page.goto(f"{live_server.base_url}/signin")
        sign_in(page, REGISTRAR.username, REGISTRAR.password)
        yield page


def test_the_enrollment_page_warns_live_with_reasons_and_holds_a_confirmed_near_copy(
    registrar_page: Any, live_server: LiveServer, screenshots: Path
) -> None:
    page = registrar_page
    maria = live_server.person("María José Pérez Gómez")
    household_id = live_server.town.household_ids[0]
    page.goto(f"{live_server.base_url}/registrar/households/{household_id}")
    page.get_by_role("link", name=re.compile("Inscribir persona")).click()
    page.wait_for_url(f"{live_server.base_url}/registrar/households/{household_id}/enroll")

    page.fill("input[name=given_names]", "Maria J.")
    page.fill("input[name=first_surname]", "Perez")
    page.fill("input[name=second_surname]", "Gomez")
    page.fill("input[name=birth_place]", "San Rafael")
    page.select_option("select[name=sex]", "F")
    page.fill("input[name=birth_date]", "1984-09-03")

    warning = page.locator("[data-role=duplicate-warning]")
    warning.wait_for()  # htmx swapped in the live check's fragment
    candidate = warning.locator(f'.candidate[data-person="{maria}"]')
    assert "María José Pérez Gómez" in candidate.inner_text()
    assert float(candidate.locator("[data-probability]").get_attribute("data-probability")) >= 0.5
    assert candidate.locator('li[data-field="dob"]').get_attribute("data-outcome") == "close"
    home = candidate.locator('li[data-field="household"]')
    assert home.get_attribute("data-outcome") == "close" and "same address" in home.inner_text()
    page.screenshot(path=str(screenshots / "enroll-duplicate-warning.png"), full_page=True)

    with page.expect_navigation():
        page.locator("[data-action=enroll]").click()
    assert page.locator("p.error").get_attribute("data-code") == "possible_duplicates"
    assert page.locator("input[name=given_names]").input_value() == "Maria J."

    page.check("[data-action=confirm-new-person]")
    with page.expect_navigation():
        page.locator("[data-action=enroll]").click()
    page.wait_for_url(f"{live_server.base_url}/registrar/households/{household_id}")
    held = page.locator("tr", has_text="Maria J. Perez Gomez")
    assert held.locator("[data-record-status=held]").count() == 1
    page.screenshot(path=str(screenshots / "enroll-held.png"), full_page=True)
