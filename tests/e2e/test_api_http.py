"""The registry API over real HTTP, against a seeded server on SQLite and on PostgreSQL.

Authentication is real: staff sign in with POST /v1/sessions and send the bearer token (or the
cookie plus X-CSRF-Token), residents hold a session opened for their person id, terminals sign
each request with their Ed25519 device key.

Sign-in budget: each server allows 20 sign-in attempts per 5 minutes from 127.0.0.1, and this
module spends 16 of them per server (the shared registrar session 1, sign-out 1, wrong password
and unknown user 2, TOTP 4, lockout 6, disabled account 1, reviewer 1). Sessions that are only
set-up, not under test, are opened directly through AuthStore from another client address.
The per-address throttle itself is tested on a server of its own.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from civicard.adapters.api.access import SESSION_COOKIE
from civicard.adapters.db.migrate import head_revision
from tests.e2e.conftest import (
    PING,
    PROGRAM_ADMIN,
    REGISTRAR,
    REVIEWER,
    TERMINAL_LABEL,
    LiveServer,
    StaffLogin,
    register_terminal,
    serve_on,
    signed_headers,
)

pytestmark = pytest.mark.e2e
PROBLEM_JSON = "application/problem+json"
NO_SUCH_ID = "0" * 32
SETUP_ADDRESS = "e2e-setup"  # AuthStore calls made as set-up count against this bucket, not 127.0.0.1's


def purpose(name: str) -> dict[str, str]:
    return {"X-Civicard-Purpose": name}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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


def test_a_household_created_over_http_can_be_enrolled_into_recorded_and_read_back(
    api: httpx.Client, api_server: LiveServer
) -> None:
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
    assert fact.json()["recorded_by"] == api_server.account_id(REGISTRAR)

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
    }


REFUSALS = [
    ("unknown_household", 404),
    ("birth_date_in_future", 422),
    ("negative_amount", 422),
    ("already_in_household", 409),
    ("purpose_required", 403),
    ("purpose_not_allowed", 403),
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
        (api_server.account_id(REGISTRAR), "registrar", "read")
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


# --- sessions: who may call at all ---------------------------------------------------------------


def _first_household_read(server: LiveServer) -> tuple[str, str]:
    return "GET", f"{server.base_url}/v1/households/{server.town.household_ids[0]}"


UNAUTHENTICATED = {
    "no_token": ({}, "sign_in_required"),
    "garbage_token": (bearer("not-a-session-token"), "session_invalid"),
    "token_longer_than_any_session": (bearer("x" * 300), "session_invalid"),
    "garbage_cookie": ({"Cookie": f"{SESSION_COOKIE}=not-a-session-token"}, "session_invalid"),
}


@pytest.mark.parametrize("case", list(UNAUTHENTICATED))
def test_a_request_without_a_live_session_is_refused_with_401_and_logs_nothing(
    api_server: LiveServer, case: str
) -> None:
    credentials, code = UNAUTHENTICATED[case]
    method, url = _first_household_read(api_server)
    log_head = api_server.access_log_head()

    response = httpx.request(method, url, headers={**credentials, **purpose("enrollment")}, timeout=10.0)

    assert_problem(response, 401, code)
    assert "Calle" not in response.text
    assert api_server.access_log_since(log_head) == []


def test_a_signed_out_session_opens_nothing_any_more(api: httpx.Client, api_server: LiveServer) -> None:
    session = api_server.open_session(REGISTRAR)
    assert (session["role"], session["display_name"]) == ("registrar", REGISTRAR.display_name)
    method, url = _first_household_read(api_server)
    own = {**bearer(session["token"]), **purpose("enrollment")}
    assert httpx.request(method, url, headers=own, timeout=10.0).status_code == 200

    signed_out = httpx.delete(f"{api_server.base_url}/v1/sessions/current", headers=bearer(session["token"]))

    assert signed_out.status_code == 204, signed_out.text
    assert_problem(httpx.request(method, url, headers=own, timeout=10.0), 401, "session_invalid")
    again = httpx.delete(f"{api_server.base_url}/v1/sessions/current", headers=bearer(session["token"]))
    assert_problem(again, 401, "session_invalid")
    # Signing out ends that session only: the module's shared registrar session still works.
    assert api.get(f"/v1/households/{api_server.town.household_ids[0]}", headers=purpose("enrollment")).is_success


def test_a_cookie_session_must_echo_its_csrf_token_on_a_write(
    api_server: LiveServer, registrar_session: dict[str, str]
) -> None:
    cookie = {"Cookie": f"{SESSION_COOKIE}={registrar_session['token']}"}
    with httpx.Client(base_url=api_server.base_url, headers=cookie, timeout=10.0) as browser_like:
        read = browser_like.get(f"/v1/households/{api_server.town.household_ids[0]}", headers=purpose("enrollment"))
        assert read.status_code == 200, read.text  # a safe method needs no CSRF token
        log_head = api_server.access_log_head()

        missing = browser_like.post("/v1/households", json=household_body(), headers=purpose("enrollment"))
        wrong = browser_like.post(
            "/v1/households",
            json=household_body(),
            headers={"X-CSRF-Token": secrets.token_urlsafe(32), **purpose("enrollment")},
        )

        assert_problem(missing, 403, "csrf_failed")
        assert_problem(wrong, 403, "csrf_failed")
        assert api_server.access_log_since(log_head) == []

        echoed = browser_like.post(
            "/v1/households",
            json=household_body(address_line="Calle CSRF 1"),
            headers={"X-CSRF-Token": registrar_session["csrf_token"], **purpose("enrollment")},
        )
        assert echoed.status_code == 201, echoed.text
        entries = api_server.access_log_since(log_head)
        assert [(e["actor"], e["action"], e["subject_household_id"]) for e in entries] == [
            (api_server.account_id(REGISTRAR), "write", echoed.json()["id"])
        ]


# --- sign-in: passwords, second factor, lockout, disabled accounts -------------------------------


def _sessions_url(server: LiveServer) -> str:
    return f"{server.base_url}/v1/sessions"


def _fresh_account(server: LiveServer, role: str) -> StaffLogin:
    """An account of its own, so a test can lock or disable it without touching the shared ones."""
    login = StaffLogin(f"{role}-{secrets.token_hex(4)}", role, f"Cuenta de prueba {role}", secrets.token_urlsafe(18))
    server.container.auth.create_staff_account(login.username, login.display_name, role, login.password, "e2e:test")
    return login


def test_a_wrong_password_and_an_unknown_user_are_refused_alike(api_server: LiveServer) -> None:
    wrong_password = httpx.post(
        _sessions_url(api_server), json={"username": REGISTRAR.username, "password": "no-es-la-clave-correcta"}
    )
    unknown_user = httpx.post(
        _sessions_url(api_server), json={"username": "nadie-e2e", "password": "cualquier-clave-1"}
    )

    refused = assert_problem(wrong_password, 401, "sign_in_failed")
    # The same body whatever the reason: nobody can probe which usernames exist.
    assert assert_problem(unknown_user, 401, "sign_in_failed") == refused
    assert "token" not in refused and "set-cookie" not in wrong_password.headers


def test_a_program_admin_signs_in_only_with_a_fresh_code_from_their_authenticator(api_server: LiveServer) -> None:
    totp = pyotp.TOTP(PROGRAM_ADMIN.totp_secret or "")
    password_only = {"username": PROGRAM_ADMIN.username, "password": PROGRAM_ADMIN.password}
    valid_now = {totp.at(time.time() + drift) for drift in (-30, 0, 30)}
    not_a_code = next(c for c in ("000000", "111111", "222222") if c not in valid_now)

    assert_problem(httpx.post(_sessions_url(api_server), json=password_only), 401, "totp_required")
    wrong = httpx.post(_sessions_url(api_server), json={**password_only, "totp_code": not_a_code})
    assert_problem(wrong, 401, "totp_invalid")

    code = totp.now()
    signed = api_server.sign_in(PROGRAM_ADMIN, totp_code=code)

    assert signed.status_code == 201, signed.text
    assert (signed.json()["role"], signed.json()["display_name"]) == ("program_admin", PROGRAM_ADMIN.display_name)
    replayed = api_server.sign_in(PROGRAM_ADMIN, totp_code=code)
    assert_problem(replayed, 401, "totp_invalid")  # a code works once
    # The role comes from the account: a program_admin names no purpose that reads personal data.
    maria = api_server.person("María José Pérez Gómez")
    read = httpx.get(
        f"{api_server.base_url}/v1/persons/{maria}",
        headers={**bearer(signed.json()["token"]), **purpose("enrollment")},
    )
    assert_problem(read, 403, "purpose_not_allowed")


def test_five_wrong_passwords_lock_the_account_and_say_when_to_retry(api_server: LiveServer) -> None:
    login = _fresh_account(api_server, "registrar")
    for _ in range(5):
        wrong = httpx.post(_sessions_url(api_server), json={"username": login.username, "password": "adivinando-1234"})
        assert_problem(wrong, 401, "sign_in_failed")

    # Even the right password is refused while the account is locked.
    locked = api_server.sign_in(login)

    assert_problem(locked, 429, "account_locked")
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    assert "token" not in locked.json()


def test_a_disabled_account_cannot_sign_in_and_its_open_session_ends(api_server: LiveServer) -> None:
    login = _fresh_account(api_server, "reviewer")
    opened = api_server.container.auth.sign_in(login.username, login.password, None, SETUP_ADDRESS)
    maria = api_server.person("María José Pérez Gómez")
    url = f"{api_server.base_url}/v1/persons/{maria}"
    own = {**bearer(opened.session_token), **purpose("appeal_review")}
    assert httpx.get(url, headers=own).status_code == 200

    api_server.container.auth.disable_staff_account(login.username, "e2e:test")

    assert_problem(api_server.sign_in(login), 401, "sign_in_failed")
    assert_problem(httpx.get(url, headers=own), 401, "session_invalid")


def test_a_reviewer_reads_only_for_a_reviewer_purpose_and_is_logged_under_their_account(
    api_server: LiveServer,
) -> None:
    session = api_server.open_session(REVIEWER)
    ramon = api_server.town.chronic_person_id
    url = f"{api_server.base_url}/v1/persons/{ramon}"

    assert_problem(
        httpx.get(url, headers={**bearer(session["token"]), **purpose("enrollment")}), 403, "purpose_not_allowed"
    )
    log_head = api_server.access_log_head()
    review = httpx.get(url, headers={**bearer(session["token"]), **purpose("appeal_review")})

    assert review.status_code == 200, review.text
    assert [
        (e["actor"], e["role"], e["purpose"], e["subject_person_id"]) for e in api_server.access_log_since(log_head)
    ] == [(api_server.account_id(REVIEWER), "reviewer", "appeal_review", ramon)]


@pytest.fixture(params=["sqlite", "postgresql"])
def throttle_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """A server of its own: this test spends the whole per-address sign-in budget."""
    with serve_on(request.param, tmp_path) as server:
        yield server


def test_the_twenty_first_sign_in_attempt_from_one_address_is_throttled(throttle_server: LiveServer) -> None:
    for n in range(20):
        attempt = httpx.post(
            _sessions_url(throttle_server), json={"username": f"nadie-{n}", "password": "cualquier-clave-1"}
        )
        assert_problem(attempt, 401, "sign_in_failed")

    # Right credentials too: the address is throttled, whoever it claims to be.
    throttled = throttle_server.sign_in(REGISTRAR)

    assert_problem(throttled, 429, "too_many_attempts")
    assert 1 <= int(throttled.headers["Retry-After"]) <= 300


# --- vendor terminals: signed requests ------------------------------------------------------------


def test_a_registered_terminal_pings_with_a_signed_request_that_cannot_be_replayed(api_server: LiveServer) -> None:
    key, terminal_id = register_terminal(api_server)
    headers = signed_headers(key, terminal_id)

    ping = httpx.post(api_server.base_url + PING, headers=headers)

    assert ping.status_code == 200, ping.text
    assert ping.json() == {"terminal_id": terminal_id, "label": TERMINAL_LABEL}
    assert_problem(httpx.post(api_server.base_url + PING, headers=headers), 401, "terminal_replayed")


def test_a_tampered_terminal_request_does_not_verify(api_server: LiveServer) -> None:
    key, terminal_id = register_terminal(api_server)
    signed_body = b'{"redeem": "arroz", "units": 1}'
    url = api_server.base_url + PING

    other_body = httpx.post(
        url,
        content=b'{"redeem": "arroz", "units": 9}',
        headers={"Content-Type": "application/json", **signed_headers(key, terminal_id, body=signed_body)},
    )
    other_target = httpx.post(url + "?units=9", headers=signed_headers(key, terminal_id))
    other_key = httpx.post(url, headers=signed_headers(Ed25519PrivateKey.generate(), terminal_id))

    for response in (other_body, other_target, other_key):
        assert_problem(response, 401, "terminal_bad_signature")
    untouched = httpx.post(
        url,
        content=signed_body,
        headers={"Content-Type": "application/json", **signed_headers(key, terminal_id, body=signed_body)},
    )
    assert untouched.status_code == 200, untouched.text


def test_a_revoked_stale_or_unknown_terminal_is_refused(api_server: LiveServer) -> None:
    key, terminal_id = register_terminal(api_server)
    url = api_server.base_url + PING

    stale = httpx.post(url, headers=signed_headers(key, terminal_id, timestamp=int(time.time()) - 600))
    unknown = httpx.post(url, headers=signed_headers(key, NO_SUCH_ID))
    api_server.container.auth.revoke_terminal(terminal_id, api_server.account_id(REGISTRAR))
    revoked = httpx.post(url, headers=signed_headers(key, terminal_id))

    assert_problem(stale, 401, "terminal_stale_request")
    assert_problem(unknown, 401, "terminal_unknown")
    assert_problem(revoked, 401, "terminal_revoked")


def test_a_timestamp_made_of_non_ascii_digits_is_a_bad_request_not_a_server_error(api_server: LiveServer) -> None:
    key, terminal_id = register_terminal(api_server)
    headers = {k.encode(): v.encode() for k, v in signed_headers(key, terminal_id).items()}
    headers[b"X-Civicard-Timestamp"] = b"\xb2"  # SUPERSCRIPT TWO in latin-1: isdigit() but not int()

    response = httpx.post(api_server.base_url + PING, headers=headers)

    assert_problem(response, 422, "terminal_bad_request")


# --- residents: a session for one person ---------------------------------------------------------


def test_a_resident_reads_their_own_record_for_self_access_and_only_for_that_purpose(api_server: LiveServer) -> None:
    maria = api_server.person("María José Pérez Gómez")
    session = api_server.container.auth.open_resident_session(maria)
    url = f"{api_server.base_url}/v1/persons/{maria}"
    log_head = api_server.access_log_head()

    own = httpx.get(url, headers={**bearer(session.session_token), **purpose("self_access")})

    assert own.status_code == 200, own.text
    assert own.json()["identity"]["full_name"] == "María José Pérez Gómez"
    assert [
        (e["actor"], e["role"], e["purpose"], e["subject_person_id"]) for e in api_server.access_log_since(log_head)
    ] == [(maria, "resident", "self_access", maria)]
    staff_purpose = httpx.get(url, headers={**bearer(session.session_token), **purpose("enrollment")})
    assert_problem(staff_purpose, 403, "purpose_not_allowed")


def _resident_overreach(server: LiveServer) -> dict[str, tuple[str, str, dict[str, Any] | None]]:
    ramon = server.town.chronic_person_id
    return {
        "read_another_person": ("GET", f"/v1/persons/{ramon}", None),
        "read_another_household": ("GET", f"/v1/households/{server.town.household_ids[1]}", None),
        "search_the_registry": ("GET", "/v1/persons?q=nunez", None),
        "list_households": ("GET", "/v1/households", None),
        "record_a_fact_about_another_person": (
            "POST",
            f"/v1/persons/{ramon}/facts",
            {
                "kind": "incomes",
                "key": {"source": "wages"},
                "values": {"monthly_amount_minor": 1},
                "valid_from": "2025-01-01",
                "reason": "escrito por un residente",
            },
        ),
        "create_a_household": ("POST", "/v1/households", household_body()),
    }


RESIDENT_OVERREACH = [
    "read_another_person",
    "read_another_household",
    "search_the_registry",
    "list_households",
    "record_a_fact_about_another_person",
    "create_a_household",
]


@pytest.mark.parametrize("attempt", RESIDENT_OVERREACH)
def test_a_resident_session_reaches_nobody_elses_data(api_server: LiveServer, attempt: str) -> None:
    maria = api_server.person("María José Pérez Gómez")
    session = api_server.container.auth.open_resident_session(maria)
    method, path, body = _resident_overreach(api_server)[attempt]
    log_head = api_server.access_log_head()

    response = httpx.request(
        method,
        api_server.base_url + path,
        json=body,
        headers={**bearer(session.session_token), **purpose("self_access")},
    )

    assert response.status_code in (403, 404), response.text
    assert "Núñez" not in response.text and "Carrera 8" not in response.text
    assert api_server.access_log_since(log_head) == []
