"""The server's logs during a real flow — enrollment, search, redemption, a resident reading their
log — are JSON lines with a request id, and never carry a name, a card, an id or a query string."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from civicard.adapters.api.app import create_app
from civicard.adapters.api.observability import JsonFormatter, PlainFormatter
from civicard.identity.cards import CardKeys
from civicard.identity.credentials import format_handle
from tests.e2e.conftest import REGISTRAR, LiveServer
from tests.e2e.test_metrics import redeem
from tests.integration.distribution_fixtures import PIN, issue, seed_rice_grant

pytestmark = pytest.mark.e2e
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
CANARY = {
    "given_names": "Zenobia Canaria",
    "first_surname": "Quetzalpapalotl",
    "second_surname": "Xochimilcatzin",
    "birth_date": "1977-07-07",
    "birth_place": "Villa Canaria",
    "sex": "F",
    "address_line": "Callejón del Canario 77",
    "municipality": "NOR-02",
    "postcode": "10020",
    "national_id": "90817263",
}
QUERY_CANARY = "quetzalpapa"


def log_lines(captured: str) -> list[dict[str, Any]]:
    lines = [line for line in captured.splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    parsed = []
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object
        assert isinstance(entry, dict) and "request_id" in entry, line
        assert {"time", "level", "logger", "message"} <= set(entry), line
        parsed.append(entry)
    return parsed


@pytest.fixture(autouse=True)
def quiet_test_client() -> Iterator[None]:
    """This process is also the test's HTTP client: httpx's own lines (full URLs) are not the server's."""
    client_log = logging.getLogger("httpx")
    level = client_log.level
    client_log.setLevel(logging.WARNING)
    yield
    client_log.setLevel(level)


def test_a_whole_flow_logs_json_lines_with_request_ids_and_no_personal_data(
    live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    base, container = live_server.base_url, live_server.container
    session = live_server.open_session(REGISTRAR)
    staff = {"Authorization": f"Bearer {session['token']}", "X-Civicard-Purpose": "enrollment"}
    maria = live_server.person("María José Pérez Gómez")
    first = live_server.town.household_ids[0]
    till = seed_rice_grant(container.engine, container.clock, first, tmp_path_factory.mktemp("cycle"), 4)
    card = issue(container.engine, container.clock, CardKeys.derive(container.root_key), maria, first)
    capsys.readouterr()  # from here on, only this flow's lines

    dwelling = {k: CANARY[k] for k in ("municipality", "address_line", "postcode")}
    household = httpx.post(f"{base}/v1/households", json=dwelling, headers=staff)
    assert household.status_code == 201, household.text
    household_id = household.json()["id"]
    enrolled = httpx.post(
        f"{base}/v1/persons", json={**CANARY, "household_id": household_id}, headers=staff, timeout=30.0
    )
    assert enrolled.status_code == 201, enrolled.text
    person_id = enrolled.json()["id"]
    found = httpx.get(f"{base}/v1/persons", params={"q": QUERY_CANARY}, headers=staff)
    assert found.status_code == 200 and person_id in found.text
    chosen = "0123456789abcdef0123456789abcdef"
    read = httpx.get(f"{base}/v1/persons/{person_id}", headers={**staff, "X-Request-Id": chosen})
    assert read.status_code == 200 and read.headers["x-request-id"] == chosen
    unsafe = httpx.get(f"{base}/v1/persons/{person_id}", headers={**staff, "X-Request-Id": "Zenobia Canaria"})
    assert REQUEST_ID.fullmatch(unsafe.headers["x-request-id"])
    sale = redeem(live_server, till, card, "logs-sale-1")
    assert sale.status_code == 201, sale.text
    refused = redeem(live_server, till, card, "logs-wrong-pin", pin="9137")
    assert refused.status_code == 422
    signed_in = httpx.post(f"{base}/v1/me/sessions", json={"card_handle": format_handle(card.handle), "pin": PIN})
    assert signed_in.status_code == 201, signed_in.text
    own_log = httpx.get(f"{base}/v1/me/access-log", headers={"Authorization": f"Bearer {signed_in.json()['token']}"})
    assert own_log.status_code == 200 and own_log.json()["entries"]

    captured = capsys.readouterr().err
    entries = log_lines(captured)
    answered = [household, enrolled, found, read, unsafe, sale, refused, signed_in, own_log]
    requests = {e["request_id"]: e for e in entries if e["logger"] == "civicard.access"}
    for response in answered:
        line = requests[response.headers["x-request-id"]]  # one access line per request, under its id
        assert line["status"] == response.status_code and isinstance(line["duration_ms"], float)
    assert requests[chosen]["route"] == "/v1/persons/{person_id}" and requests[chosen]["method"] == "GET"
    assert {e["route"] for e in requests.values()} >= {"/v1/persons", "/v1/redemptions", "/v1/me/access-log"}

    never = [
        *(CANARY[k] for k in ("given_names", "first_surname", "second_surname", "address_line", "national_id")),
        QUERY_CANARY,
        person_id,
        household_id,
        card.token,
        card.handle,
        format_handle(card.handle),
        card.card_id,
        till.terminal_id,
        session["token"],
        signed_in.json()["token"],
        "Zenobia",
        maria,
        first,
        "María",
        "Pérez Gómez",
    ]
    for secret in never:
        assert secret not in captured, f"{secret!r} appears in the server log"


def test_a_handler_that_logs_the_raw_path_and_raises_leaves_only_the_template_and_the_error_type(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A safety net: problems.py logs `request.url.path` on an unexpected error; the formatter puts
    the route template in its place, and the exception's message (which quotes a value) is dropped."""
    app = create_app(live_server.container)
    person_id = live_server.person("Inés Ibáñez Muñoz")

    @app.get("/v1/boom/{person_id}")
    def boom(person_id: str) -> None:
        raise RuntimeError(f"value Inés Ibáñez {person_id}")

    capsys.readouterr()
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: the live server's logging stands
    response = client.get(f"/v1/boom/{person_id}?name=Ines")
    assert response.status_code == 500
    captured = capsys.readouterr().err
    entries = log_lines(captured)
    failure = next(e for e in entries if e["logger"] == "civicard.api")
    assert failure["message"] == "unexpected error on GET /v1/boom/{person_id}"
    assert failure["error"].startswith("RuntimeError at ")
    (request,) = [e for e in entries if e["logger"] == "civicard.access"]
    assert (request["route"], request["status"]) == ("/v1/boom/{person_id}", 500)
    assert REQUEST_ID.fullmatch(failure["request_id"]) and failure["request_id"] == request["request_id"]
    for secret in (person_id, "Inés", "Ibáñez", "name=Ines"):
        assert secret not in captured


def test_the_plain_format_is_one_readable_line_with_the_same_fields() -> None:
    record = logging.LogRecord("civicard.access", logging.INFO, __file__, 1, "GET %s %d", ("/healthz", 200), None)
    record.status, record.duration_ms = 200, 1.5
    plain = PlainFormatter().format(record)
    assert " INFO " in plain and "civicard.access [-] GET /healthz 200" in plain and "status=200" in plain
    assert json.loads(JsonFormatter().format(record))["duration_ms"] == 1.5
