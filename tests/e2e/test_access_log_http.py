"""The verifiable access log over real HTTP, with the server's integrator running.

A resident sees exactly their own entries, each verifiable offline against the public signed
checkpoint; a second resident never sees the first one's; public checkpoints only grow.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.identity.cards import issue_card
from civicard.identity.credentials import format_handle
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext, Actor
from civicard.transparency.checkpoints import VerifierKey, open_checkpoint
from civicard.transparency.proofs import ResidentLog, check_proof_json, verify_resident_log
from tests.e2e.conftest import REGISTRAR, LiveServer

INTEGRATION_WAIT = 10.0


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _resident(server: LiveServer, full_name: str) -> dict[str, str]:
    session = server.container.auth.open_resident_session(server.person(full_name))
    return _bearer(session.session_token)


def _key(server: LiveServer) -> VerifierKey:
    return VerifierKey.from_vkey(httpx.get(server.base_url + "/v1/log/public-key").json()["vkey"])


def _log_when_integrated(server: LiveServer, headers: dict[str, str], at_least: int) -> dict[str, Any]:
    """Poll the resident's log until `at_least` entries are in a signed checkpoint."""
    deadline = time.monotonic() + INTEGRATION_WAIT
    while True:
        body: dict[str, Any] = httpx.get(server.base_url + "/v1/me/access-log", headers=headers).json()
        proven = [e for e in body["entries"] if e.get("inclusion_proof") is not None]
        if len(proven) >= at_least or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_a_staff_read_reaches_the_residents_log_with_a_valid_proof_within_seconds(api_server: LiveServer) -> None:
    maria = api_server.person("María José Pérez Gómez")
    staff = api_server.open_session(REGISTRAR)
    read = httpx.get(
        f"{api_server.base_url}/v1/persons/{maria}",
        headers={**_bearer(staff["token"]), "X-Civicard-Purpose": "enrollment"},
    )
    assert read.status_code == 200
    me = _resident(api_server, "María José Pérez Gómez")
    before = time.monotonic()
    body = _log_when_integrated(api_server, me, at_least=2)  # her enrollment write and this read
    waited = time.monotonic() - before

    log = ResidentLog.from_json(body)
    verification = verify_resident_log(log, _key(api_server))
    assert verification.ok, verification.message
    assert waited < INTEGRATION_WAIT
    reads = [e.entry for e in log.entries if e.entry.action == "read"]
    assert (reads[-1].actor, reads[-1].purpose) == (api_server.account_id(REGISTRAR), "enrollment")
    assert {e.entry.subject_person_id for e in log.entries} == {maria}


def test_a_downloaded_proof_verifies_offline_and_fails_when_edited(api_server: LiveServer) -> None:
    me = _resident(api_server, "María José Pérez Gómez")
    body = _log_when_integrated(api_server, me, at_least=1)
    leaf = next(e["leaf_index"] for e in body["entries"] if e.get("inclusion_proof") is not None)
    bundle = httpx.get(f"{api_server.base_url}/v1/me/access-log/{leaf}/proof", headers=me).json()
    assert check_proof_json(bundle, _key(api_server)).ok
    bundle["entry"]["purpose"] = "fact_correction" if bundle["entry"]["purpose"] != "fact_correction" else "enrollment"
    assert not check_proof_json(bundle, _key(api_server)).ok


def test_one_resident_never_sees_another_residents_entries_or_proofs(api_server: LiveServer) -> None:
    maria_id = api_server.person("María José Pérez Gómez")
    maria = _resident(api_server, "María José Pérez Gómez")
    other_name = next(name for name in api_server.town.person_ids if name != "María José Pérez Gómez")
    other = _resident(api_server, other_name)
    maria_log = _log_when_integrated(api_server, maria, at_least=1)
    other_log = _log_when_integrated(api_server, other, at_least=1)
    # Entries not yet folded into a checkpoint have no leaf index; compare the integrated ones.
    maria_leaves = {e["leaf_index"] for e in maria_log["entries"] if e["leaf_index"] is not None}
    assert maria_leaves
    assert maria_leaves.isdisjoint({e["leaf_index"] for e in other_log["entries"] if e["leaf_index"] is not None})
    assert {e["entry"]["subject_person_id"] for e in other_log["entries"]} == {api_server.person(other_name)}
    stolen = httpx.get(f"{api_server.base_url}/v1/me/access-log/{min(maria_leaves)}/proof", headers=other)
    assert stolen.status_code == 404 and stolen.json()["code"] == "unknown_entry"
    assert maria_id not in stolen.text


def test_staff_cannot_use_the_residents_log_endpoint(api_server: LiveServer) -> None:
    staff = api_server.open_session(REGISTRAR)
    response = httpx.get(api_server.base_url + "/v1/me/access-log", headers=_bearer(staff["token"]))
    assert response.status_code == 403 and response.json()["code"] == "residents_only"
    anonymous = httpx.get(api_server.base_url + "/v1/me/access-log")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "sign_in_required"


def test_public_checkpoints_only_grow_and_prove_consistent(api_server: LiveServer) -> None:
    key = _key(api_server)
    _log_when_integrated(api_server, _resident(api_server, "María José Pérez Gómez"), at_least=1)
    first = httpx.get(api_server.base_url + "/v1/log/checkpoint")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
    old_size = int(first.text.splitlines()[1])
    staff = api_server.open_session(REGISTRAR)
    httpx.get(
        f"{api_server.base_url}/v1/persons",
        params={"q": "perez"},
        headers={**_bearer(staff["token"]), "X-Civicard-Purpose": "enrollment"},
    )
    deadline = time.monotonic() + INTEGRATION_WAIT
    while int(httpx.get(api_server.base_url + "/v1/log/checkpoint").text.splitlines()[1]) <= old_size:
        assert time.monotonic() < deadline, "the checkpoint did not grow"
        time.sleep(0.2)
    proof = httpx.get(api_server.base_url + "/v1/log/consistency", params={"old": old_size}).json()
    assert proof["old_size"] == old_size and proof["new_size"] > old_size
    assert open_checkpoint(first.text, key).tree_size == old_size  # signed by the published key
    shrink = httpx.get(api_server.base_url + "/v1/log/consistency", params={"old": proof["new_size"], "new": 1})
    assert shrink.status_code == 422 and shrink.json()["code"] == "checkpoint_shrinks"


@pytest.mark.e2e
def test_the_residents_page_marks_each_entry_verified(live_server: LiveServer, chromium: Any, screenshots: Any) -> None:
    from tests.e2e.conftest import page_in_new_context

    person = live_server.person("María José Pérez Gómez")
    token = live_server.container.auth.open_resident_session(person).session_token
    _log_when_integrated(live_server, _bearer(token), at_least=1)
    host = live_server.base_url.split("//")[1].split(":")[0]
    cookies = {
        "cookies": [
            {
                "name": "civicard_session",
                "value": token,
                "domain": host,
                "path": "/",
                "httpOnly": True,
                "secure": False,
                "sameSite": "Strict",
                "expires": -1,
            }
        ],
        "origins": [],
    }
    with page_in_new_context(chromium, storage_state=cookies) as page:
        page.goto(live_server.base_url + "/me/log")
        assert page.locator("[data-verification=verified]").count() == 1
        assert page.locator("[data-verified=true]").count() >= 1
        assert page.locator("[data-verified=false]").count() == 0
        page.screenshot(path=str(screenshots / "resident-access-log.png"), full_page=True)


def _card_with_pin(server: LiveServer, full_name: str, pin: str) -> str:
    """Issue a card with a PIN at the desk (registrar, card_service) and return its handle."""
    registrar = Actor(server.account_id(REGISTRAR), "registrar")
    with SqlCardUnitOfWork(server.container.engine, AccessContext(registrar, "card_service"), Clock()) as uow:
        existing = uow.cards.current_of_person(server.person(full_name))
        if existing is not None:
            return existing.handle
        issued = issue_card(uow, server.container.card_keys, server.person(full_name), pin=pin)
    return issued.card.handle


def test_a_resident_signs_in_with_card_and_pin_and_failed_tries_show_in_their_log(api_server: LiveServer) -> None:
    handle = _card_with_pin(api_server, "María José Pérez Gómez", "4821")
    url = api_server.base_url + "/v1/me/sessions"
    wrong = httpx.post(url, json={"card_handle": handle, "pin": "9999"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "pin_wrong"
    right = httpx.post(url, json={"card_handle": format_handle(handle).lower(), "pin": "4821"})
    assert right.status_code == 201, right.text
    me = _bearer(right.json()["token"])
    body = httpx.get(api_server.base_url + "/v1/me/access-log", headers=me).json()
    tries = [e for e in body["entries"] if e["entry"]["purpose"] == "resident_sign_in"]
    assert len(tries) == 2 and all(e["entry"]["actor"] == f"card:{handle}" for e in tries)
    unknown = httpx.post(url, json={"card_handle": "0000-0000-000", "pin": "4821"})
    assert unknown.status_code in (404, 422)


@pytest.mark.e2e
def test_a_resident_signs_in_on_the_page_and_sees_the_verified_log(
    live_server: LiveServer, browser_page: Any, screenshots: Any
) -> None:
    handle = _card_with_pin(live_server, "María José Pérez Gómez", "4821")
    browser_page.goto(live_server.base_url + "/me")
    browser_page.fill("#handle", format_handle(handle))
    browser_page.fill("#pin", "1357")
    browser_page.click("form[action='/me/signin'] button[type=submit]")  # the header has the language switch
    assert browser_page.locator("[data-code=pin_wrong]").count() == 1
    browser_page.fill("#pin", "4821")
    browser_page.click("form[action='/me/signin'] button[type=submit]")
    browser_page.wait_for_url("**/me/log")
    assert "4821" not in browser_page.url and handle not in browser_page.url
    deadline = time.monotonic() + INTEGRATION_WAIT
    while browser_page.locator("[data-verification=verified]").count() == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        browser_page.reload()
    assert browser_page.locator("[data-verification=verified]").count() == 1
    browser_page.screenshot(path=str(screenshots / "resident-signed-in.png"), full_page=True)


def test_pin_tries_from_one_address_are_rate_limited_across_cards(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.e2e.conftest import serve_on

    with serve_on("sqlite", tmp_path_factory.mktemp("pin-spray")) as server:
        handles = [_card_with_pin(server, name, "4821") for name in list(server.town.person_ids)[:3]]
        codes = [
            httpx.post(server.base_url + "/v1/me/sessions", json={"card_handle": handles[i % 3], "pin": "9999"})
            for i in range(21)
        ]
        assert {r.json()["code"] for r in codes[:20]} <= {"pin_wrong", "pin_locked"}
        assert codes[20].status_code == 429 and codes[20].json()["code"] == "too_many_attempts"
        assert "retry-after" in codes[20].headers
