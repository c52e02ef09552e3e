"""Life events over real HTTP (SQLite): the registrar records them through /v1/life-events and
through the household's life-event page (no browser), and the resident sees them on /me/data."""

from __future__ import annotations

import httpx
import pytest

from civicard.adapters.api.access import SESSION_COOKIE
from tests.e2e.conftest import REGISTRAR, LiveServer

pytestmark = pytest.mark.e2e
LIFE_EVENT = {"X-Civicard-Purpose": "life_event"}


def test_life_events_through_the_api_the_registrar_pages_and_the_resident_portal(live_server: LiveServer) -> None:
    server = live_server
    today = server.container.clock.today().isoformat()
    family, elders = server.town.household_ids[0], server.town.household_ids[1]
    ines, ramon = server.person("Inés Ibáñez Muñoz"), server.person("Ramón Núñez Peña")
    session = server.open_session(REGISTRAR)
    bearer = {"Authorization": f"Bearer {session['token']}"}
    with httpx.Client(base_url=server.base_url, headers=bearer, timeout=30.0) as api:
        death = {"person_id": ines, "died_on": today, "document_ref": "", "reason": "acta de defunción"}
        refused = api.post("/v1/life-events/deaths", json=death, headers=LIFE_EVENT)
        assert (refused.status_code, refused.json()["code"]) == (422, "missing_document_ref")
        wrong_purpose = api.post(
            "/v1/life-events/deaths",
            json=death | {"document_ref": "ACTA-1"},
            headers={"X-Civicard-Purpose": "enrollment"},
        )
        assert (wrong_purpose.status_code, wrong_purpose.json()["code"]) == (403, "purpose_not_allowed")

        address = {"municipality": "CEN-02", "address_line": "Calle Real 4", "postcode": "50020"}
        moved = api.post(
            "/v1/life-events/moves",
            json={"household_id": elders, "address": address, "effective_on": today, "reason": "mudanza"},
            headers=LIFE_EVENT,
        )
        assert moved.status_code == 201, moved.text
        assert moved.json()["details"]["to"] == {"municipality": "CEN-02", "region": "CENTRO", "postcode": "50020"}
        recorded = api.post("/v1/life-events/deaths", json=death | {"document_ref": "ACTA-2026/7"}, headers=LIFE_EVENT)
        assert recorded.status_code == 201, recorded.text
        listed = api.get(f"/v1/households/{elders}/life-events", headers=LIFE_EVENT)
        assert [e["kind"] for e in listed.json()] == ["death", "move"]
        household = api.get(f"/v1/households/{elders}", headers={"X-Civicard-Purpose": "enrollment"}).json()
        assert household["region"] == "CENTRO" and [m["person_id"] for m in household["members"]] == [ramon]

    cookies = {SESSION_COOKIE: session["token"]}
    with httpx.Client(base_url=server.base_url, cookies=cookies, timeout=30.0) as pages:
        page = pages.get(f"/registrar/households/{family}/life-events")
        assert page.status_code == 200 and 'data-form="birth"' in page.text
        birth = {
            "csrf_token": session["csrf_token"],
            "given_names": "Valentina",
            "first_surname": "Martínez",
            "second_surname": "Pérez",
            "birth_date": today,
            "birth_place": "San Rafael",
            "sex": "F",
            "relationship": "child",
            "document_ref": "RC-2026-55",
            "reason": "inscripción del nacimiento",
            "confirmed_new_person": "yes",
        }
        stale = pages.post(f"/registrar/households/{family}/life-events/birth", data=birth | {"csrf_token": "x"})
        assert stale.status_code == 403 and 'data-code="csrf_failed"' in stale.text
        done = pages.post(f"/registrar/households/{family}/life-events/birth", data=birth)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"/registrar/households/{family}/life-events?done=birth"
        shown = pages.get(done.headers["location"])
        assert 'data-notice="birth"' in shown.text and 'data-life-event="birth"' in shown.text
        assert "RC-2026-55" in shown.text

    resident = server.container.auth.open_resident_session(ramon)
    with httpx.Client(base_url=server.base_url, cookies={SESSION_COOKIE: resident.session_token}) as portal:
        mine = portal.get("/me/data")
    assert mine.status_code == 200
    assert 'data-life-event="death"' in mine.text and 'data-life-event="move"' in mine.text
