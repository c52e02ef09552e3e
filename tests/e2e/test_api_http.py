"""The registry API over real HTTP, against a seeded server on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from civicard.adapters.db.migrate import head_revision
from tests.e2e.conftest import DEMO_HEADERS, LiveServer

pytestmark = pytest.mark.e2e
PROBLEM_JSON = "application/problem+json"
NO_SUCH_ID = "0" * 32


def purpose(name: str) -> dict[str, str]:
    return {"X-Civicard-Purpose": name}


def person_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "given_names": "Ángel Eduardo",
        "first_surname": "Quiñónez",
        "second_surname": "Lázaro",
        "birth_date": "1979-05-17",
        "birth_place": "Villa Esperanza",
        "sex": "M",
        "address_line": "Calle 12 # 4-56",
        "municipality": "NOR-02",
        "postcode": "10020",
    }
    return body | overrides


def household_body(**overrides: Any) -> dict[str, Any]:
    return {"municipality": "NOR-02", "address_line": "Calle 12 # 4-56", "postcode": "10020"} | overrides


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"].endswith(f"/{code}")
    return body


def test_a_household_created_over_http_can_be_enrolled_into_recorded_and_read_back(api: httpx.Client) -> None:
    created = api.post("/v1/households", json=household_body(), headers=purpose("enrollment"))
    assert created.status_code == 201, created.text
    household_id = created.json()["id"]

    enrolled = api.post(
        "/v1/persons",
        json=person_body(household_id=household_id, national_id="88123456"),
        headers=purpose("enrollment"),
    )
    assert enrolled.status_code == 201, enrolled.text
    person_id = enrolled.json()["id"]

    fact = api.post(
        f"/v1/persons/{person_id}/facts",
        json={
            "kind": "incomes",
            "key": {"source": "wages"},
            "values": {"monthly_amount_minor": 41000},
            "valid_from": "2025-02-01",
            "reason": "nómina de febrero",
        },
        headers=purpose("fact_correction"),
    )
    assert fact.status_code == 201, fact.text
    assert fact.json()["values"] == {"monthly_amount_minor": 41000}
    assert fact.json()["recorded_by"] == DEMO_HEADERS["X-Civicard-Actor"]

    household = api.get(f"/v1/households/{household_id}", headers=purpose("enrollment"))
    assert household.status_code == 200, household.text
    h = household.json()
    assert (h["region"], h["municipality"], h["postcode"]) == ("NORTE", "NOR-02", "10020")
    assert [(m["person_id"], m["full_name"], m["relationship"]) for m in h["members"]] == [
        (person_id, "Ángel Eduardo Quiñónez Lázaro", "reference")
    ]
    assert [(f["kind"], f["subject_id"], f["key"], f["values"]) for f in h["facts"]] == [
        ("incomes", person_id, {"source": "wages"}, {"monthly_amount_minor": 41000})
    ]

    person = api.get(f"/v1/persons/{person_id}", headers=purpose("enrollment")).json()
    assert person["identity"]["national_id"] == "88123456"
    assert person["identity"]["birth_date"] == "1979-05-17"
    assert person["household"] == {
        "household_id": household_id,
        "relationship": "reference",
        "valid_from": person["household"]["valid_from"],
    }


def test_searching_without_accents_finds_the_accented_name(api: httpx.Client, api_server: LiveServer) -> None:
    found = api.get("/v1/persons", params={"q": "maria perez"}, headers=purpose("enrollment"))
    assert found.status_code == 200, found.text
    assert [(p["id"], p["full_name"], p["national_id"]) for p in found.json()] == [
        (api_server.person("María José Pérez Gómez"), "María José Pérez Gómez", "52123456")
    ]


def _refused_requests(server: LiveServer) -> dict[str, tuple[str, str, dict[str, Any], dict[str, str]]]:
    """Requests the API must refuse, by expected code: (method, path, JSON body, headers)."""
    maria = server.person("María José Pérez Gómez")
    first_household = server.town.household_ids[0]
    future = (date.today() + timedelta(days=400)).isoformat()
    return {
        "unknown_household": ("GET", f"/v1/households/{NO_SUCH_ID}", {}, purpose("enrollment")),
        "birth_date_in_future": ("POST", "/v1/persons", person_body(birth_date=future), purpose("enrollment")),
        "negative_amount": (
            "POST",
            f"/v1/persons/{maria}/facts",
            {
                "kind": "incomes",
                "key": {"source": "wages"},
                "values": {"monthly_amount_minor": -100},
                "valid_from": "2025-01-01",
                "reason": "error de digitación",
            },
            purpose("fact_correction"),
        ),
        "already_in_household": (
            "POST",
            f"/v1/households/{server.town.household_ids[2]}/members",
            {"person_id": maria, "relationship": "other_relative", "reason": "vive aquí también"},
            purpose("enrollment"),
        ),
        "purpose_required": ("GET", f"/v1/households/{first_household}", {}, {}),
        "purpose_not_allowed": ("GET", f"/v1/households/{first_household}", {}, purpose("appeal_review")),
        "actor_required": (
            "GET",
            f"/v1/households/{first_household}",
            {},
            {"X-Civicard-Actor": "", **purpose("enrollment")},
        ),
    }


REFUSALS = [
    ("unknown_household", 404),
    ("birth_date_in_future", 422),
    ("negative_amount", 422),
    ("already_in_household", 409),
    ("purpose_required", 403),
    ("purpose_not_allowed", 403),
    ("actor_required", 401),
]


@pytest.mark.parametrize(("code", "status"), REFUSALS, ids=[c for c, _ in REFUSALS])
def test_a_refused_request_answers_problem_json_with_its_code_and_logs_nothing(
    api: httpx.Client, api_server: LiveServer, code: str, status: int
) -> None:
    method, path, body, headers = _refused_requests(api_server)[code]
    log_head = api_server.access_log_head()

    response = api.request(method, path, json=body or None, headers=headers)

    problem = assert_problem(response, status, code)
    assert "Traceback" not in problem["detail"]
    assert api_server.access_log_since(log_head) == []


def test_a_refused_membership_leaves_the_household_as_it_was(api: httpx.Client, api_server: LiveServer) -> None:
    third = api_server.town.household_ids[2]
    before = api.get(f"/v1/households/{third}", headers=purpose("enrollment")).json()["members"]
    response = api.post(
        f"/v1/households/{third}/members",
        json={"person_id": api_server.person("Ramón Núñez Peña"), "relationship": "grandparent", "reason": "x"},
        headers=purpose("enrollment"),
    )
    assert_problem(response, 409, "already_in_household")
    assert api.get(f"/v1/households/{third}", headers=purpose("enrollment")).json()["members"] == before


def test_walking_the_household_pages_by_cursor_returns_every_household_once(
    api: httpx.Client, api_server: LiveServer
) -> None:
    for n in range(4):
        created = api.post(
            "/v1/households", json=household_body(address_line=f"Pasaje {n}"), headers=purpose("enrollment")
        )
        assert created.status_code == 201, created.text
    everything = api.get("/v1/households", params={"limit": 100}, headers=purpose("enrollment")).json()
    assert everything["next_cursor"] is None
    expected = [h["id"] for h in everything["items"]]
    assert len(expected) >= 7 and set(api_server.town.household_ids) <= set(expected)

    walked: list[str] = []
    pages = 0
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = api.get("/v1/households", params=params, headers=purpose("enrollment"))
        assert page.status_code == 200, page.text
        body = page.json()
        pages += 1
        walked += [h["id"] for h in body["items"]]
        if body["next_cursor"] is None:
            break
        assert body["next_cursor"] == body["items"][-1]["id"]
        params = {"limit": 2, "after": body["next_cursor"]}
        assert pages <= len(expected), "the cursor walk does not end"

    assert len(walked) == len(set(walked))
    assert walked == expected == sorted(expected)


def test_a_malformed_page_cursor_is_refused_with_its_code(api: httpx.Client) -> None:
    response = api.get("/v1/households", params={"after": "not-an-id"}, headers=purpose("enrollment"))
    assert_problem(response, 422, "invalid_cursor")


def test_the_enrollment_purpose_hides_health_facts_that_fact_correction_shows(
    api: httpx.Client, api_server: LiveServer
) -> None:
    ramon = api_server.town.chronic_person_id

    desk = api.get(f"/v1/persons/{ramon}", headers=purpose("enrollment")).json()
    correction = api.get(f"/v1/persons/{ramon}", headers=purpose("fact_correction")).json()

    assert "health" not in desk["categories"]
    assert {f["kind"] for f in desk["facts"]} == {"incomes"}
    assert "health" in correction["categories"]
    assert {f["kind"] for f in correction["facts"]} == {"incomes", "health_needs"}
    health = next(f for f in correction["facts"] if f["kind"] == "health_needs")
    assert (health["key"], health["values"]) == (
        {"kind": "chronic", "code": "E11"},
        {"degree_percent": None, "present": True},
    )

    household_id = api_server.town.household_ids[1]
    desk_household = api.get(f"/v1/households/{household_id}", headers=purpose("enrollment")).json()
    assert "health_needs" not in {f["kind"] for f in desk_household["facts"]}
    assert {f["kind"] for f in desk_household["facts"]} == {"incomes", "properties"}


def test_the_card_service_purpose_sees_identity_but_no_facts(api: httpx.Client, api_server: LiveServer) -> None:
    ramon = api_server.town.chronic_person_id
    card_desk = api.get(f"/v1/persons/{ramon}", headers=purpose("card_service")).json()
    assert card_desk["categories"] == ["household", "identity"]
    assert card_desk["identity"]["full_name"] == "Ramón Núñez Peña"
    assert card_desk["facts"] == []


def test_readiness_reports_the_schema_at_the_migration_head(api: httpx.Client) -> None:
    response = api.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "schema": head_revision()}


def _read_person(api: httpx.Client, server: LiveServer) -> tuple[httpx.Response, list[tuple[str, str | None]]]:
    maria = server.person("María José Pérez Gómez")
    return api.get(f"/v1/persons/{maria}", headers=purpose("enrollment")), [("person", maria)]


def _read_household(api: httpx.Client, server: LiveServer) -> tuple[httpx.Response, list[tuple[str, str | None]]]:
    household_id = server.town.household_ids[2]
    members = [
        server.person(n)
        for n in ("Lucía Fernández Ortíz", "Andrés Julián Gutiérrez Fernández", "Águeda Fernández Ortíz")
    ]
    response = api.get(f"/v1/households/{household_id}", headers=purpose("fact_correction"))
    return response, [("household", household_id), *(("person", m) for m in members)]


def _search(api: httpx.Client, server: LiveServer) -> tuple[httpx.Response, list[tuple[str, str | None]]]:
    found = [server.person(n) for n in ("Águeda Fernández Ortíz", "Lucía Fernández Ortíz")]
    response = api.get("/v1/persons", params={"q": "fernandez ortiz"}, headers=purpose("enrollment"))
    return response, [("person", p) for p in found]


READS = {"person": _read_person, "household": _read_household, "search": _search}


@pytest.mark.parametrize("read", list(READS))
def test_each_successful_personal_read_leaves_exactly_one_access_log_entry_per_subject(
    api: httpx.Client, api_server: LiveServer, read: str
) -> None:
    log_head = api_server.access_log_head()

    response, subjects = READS[read](api, api_server)

    assert response.status_code == 200, response.text
    entries = api_server.access_log_since(log_head)
    logged = [
        ("person", e["subject_person_id"]) if e["subject_person_id"] else ("household", e["subject_household_id"])
        for e in entries
    ]
    assert sorted(logged) == sorted(subjects)
    assert len(logged) == len(set(logged))
    assert {(e["actor"], e["role"], e["action"]) for e in entries} == {
        (DEMO_HEADERS["X-Civicard-Actor"], "registrar", "read")
    }
    assert {e["purpose"] for e in entries} == {response.request.headers["X-Civicard-Purpose"]}


def test_a_search_that_finds_nobody_still_logs_who_searched_and_why(api: httpx.Client, api_server: LiveServer) -> None:
    log_head = api_server.access_log_head()
    response = api.get("/v1/persons", params={"q": "zzyzx"}, headers=purpose("enrollment"))
    assert (response.status_code, response.json()) == (200, [])
    entries = api_server.access_log_since(log_head)
    assert [(e["subject_person_id"], e["subject_household_id"], e["detail"]) for e in entries] == [
        (None, None, "person.search")
    ]


def test_a_wrong_method_is_refused_with_405_naming_the_allowed_methods(api: httpx.Client) -> None:
    response = api.delete("/v1/households", headers=purpose("enrollment"))
    assert_problem(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers.get("allow", "").split(",")} >= {"GET", "POST"}


def test_a_body_that_is_not_utf8_is_refused_with_a_documented_status_and_a_specific_code(api: httpx.Client) -> None:
    response = api.post(
        "/v1/households",
        content=b'{"municipality": "NOR-01", "address_line": "\xff\xfe"}',
        headers={"Content-Type": "application/json", **purpose("enrollment")},
    )
    documented = api.get("/openapi.json").json()["paths"]["/v1/households"]["post"]["responses"]
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert str(response.status_code) in documented
    assert not response.json()["code"].startswith("http_")
