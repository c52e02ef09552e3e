"""The duplicate review API over real HTTP on SQLite and PostgreSQL: queue, case, decisions, undo.

Sign-in budget: one reviewer session per server (the registrar's comes from the shared fixture).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork
from civicard.governance import approvals
from civicard.governance.approvals import FOUR_EYES, Approved
from civicard.governance.kinds import KINDS
from civicard.transparency.access import AccessContext, Actor
from tests.e2e.conftest import REVIEWER, LiveServer
from tests.e2e.duplicate_seed import seed_duplicate
from tests.e2e.test_api_http import NO_SUCH_ID, assert_problem, bearer, purpose

pytestmark = pytest.mark.e2e
REVIEW = purpose("duplicate_review")


@pytest.fixture(scope="module")
def reviewer_session(api_server: LiveServer) -> dict[str, str]:
    return api_server.open_session(REVIEWER)


@pytest.fixture
def reviewer(api_server: LiveServer, reviewer_session: dict[str, str]) -> Iterator[httpx.Client]:
    headers = bearer(reviewer_session["token"]) | REVIEW
    with httpx.Client(base_url=api_server.base_url, headers=headers, timeout=30.0) as client:
        yield client


def test_the_queue_lists_pairs_without_names_most_probable_first(
    api_server: LiveServer, reviewer: httpx.Client
) -> None:
    _, weaker = seed_duplicate(api_server, "Inés Ibáñez Muñoz", "Ines", probability=0.81)
    _, stronger = seed_duplicate(api_server, "Lucía Fernández Ortíz", "Lucia", probability=0.99)
    response = reviewer.get("/v1/duplicates", params={"limit": 100})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    ids = [i["id"] for i in items]
    assert ids.index(stronger) < ids.index(weaker)
    assert "Lucía" not in response.text and "person_ids" not in items[0]
    assert items[ids.index(stronger)]["reasons"][1] == {
        "field": "birth_date",
        "outcome": "agree",
        "label": "same date",
        "weight": 9.8,
    }
    page = reviewer.get("/v1/duplicates", params={"limit": 1})
    assert page.json()["next_cursor"] == page.json()["items"][0]["id"]
    assert reviewer.get("/v1/duplicates", params={"status": "closed"}).status_code == 422


def test_only_a_reviewer_naming_duplicate_review_reaches_the_queue(
    api_server: LiveServer, api: httpx.Client, reviewer: httpx.Client
) -> None:
    assert_problem(api.get("/v1/duplicates", headers=REVIEW), 403, "purpose_not_allowed")
    assert_problem(api.get("/v1/duplicates", headers=purpose("enrollment")), 403, "purpose_not_allowed")
    assert_problem(reviewer.get("/v1/duplicates", headers={"X-Civicard-Purpose": ""}), 403, "purpose_required")
    assert_problem(reviewer.get("/v1/duplicates", headers=purpose("appeal_review")), 403, "purpose_not_allowed")
    assert_problem(httpx.get(f"{api_server.base_url}/v1/duplicates", headers=REVIEW), 401, "sign_in_required")


def test_opening_a_case_shows_both_records_and_logs_the_read_for_each(
    api_server: LiveServer, reviewer: httpx.Client
) -> None:
    original = api_server.person("Sofía Martínez Pérez")
    alias, candidate = seed_duplicate(api_server, "Sofía Martínez Pérez", "Sofia")
    before = api_server.access_log_head()
    response = reviewer.get(f"/v1/duplicates/{candidate}")
    assert response.status_code == 200, response.text
    case = response.json()
    sides = {case["left"]["person_id"]: case["left"], case["right"]["person_id"]: case["right"]}
    assert set(sides) == {original, alias}
    assert sides[original]["identity"]["given_names"] == "Sofía" and sides[alias]["identity"]["given_names"] == "Sofia"
    assert sides[original]["household"]["household_id"] == api_server.town.household_ids[0]
    assert case["candidate"]["status"] == "open" and case["categories"] == ["household", "identity"]
    entries = api_server.access_log_since(before)
    assert sorted(e["subject_person_id"] for e in entries) == sorted((original, alias))
    assert {(e["purpose"], e["action"], e["actor"]) for e in entries} == {
        ("duplicate_review", "read", api_server.account_id(REVIEWER))
    }
    assert_problem(reviewer.get(f"/v1/duplicates/{NO_SUCH_ID}"), 404, "unknown_candidate")


def approve_as_second_reviewer(server: LiveServer, request_id: str) -> Approved:
    """A second reviewer approves a merge request (through the service: one sign-in per server)."""
    built = server.container
    context = AccessContext(Actor("e2e:second-reviewer", "reviewer"), FOUR_EYES)
    with SqlApprovalUnitOfWork(built.engine, context, built.clock, card_keys=built.card_keys) as uow:
        return approvals.approve(uow, KINDS, request_id)


def test_same_files_a_merge_that_a_second_approval_carries_out_and_an_undo_restores(
    api_server: LiveServer, api: httpx.Client, reviewer: httpx.Client
) -> None:
    home = api_server.town.household_ids[1]
    original = api_server.person("Ramón Núñez Peña")
    alias, candidate = seed_duplicate(api_server, "Ramón Núñez Peña", "Ramon", household_id=home)
    decided = reviewer.post(
        f"/v1/duplicates/{candidate}/decision", json={"decision": "same", "note": "one cédula", "survivor_id": original}
    )
    assert decided.status_code == 200, decided.text
    request_id = decided.json()["merge_request_id"]
    waiting = api.get(f"/v1/persons/{alias}", headers=purpose("enrollment")).json()
    assert waiting["record_status"] == "active"  # nothing merges before a second account approves
    assert reviewer.get(f"/v1/duplicates/{candidate}").json()["merge_request_id"] == request_id
    outcome = approve_as_second_reviewer(api_server, request_id).outcome
    merge = reviewer.get(f"/v1/duplicates/{candidate}").json()["merges"][0]
    assert (merge["survivor_id"], merge["merged_id"], merge["reason"]) == (original, alias, "one cédula")
    assert f"merge={merge['id']}" in outcome
    looked_up = api.get(f"/v1/persons/{alias}", headers=purpose("enrollment")).json()
    assert (looked_up["record_status"], looked_up["merged_into"], looked_up["household"]) == ("merged", original, None)
    again = reviewer.post(f"/v1/duplicates/{candidate}/decision", json={"decision": "different"})
    assert_problem(again, 409, "already_decided")

    undone = reviewer.post(f"/v1/merges/{merge['id']}/undo", json={"reason": "twin brothers"})
    assert undone.status_code == 200, undone.text
    body = undone.json()
    assert (body["membership_restored"], body["membership_problem"], body["new_card_needed"]) == (True, None, False)
    assert body["merge"]["undo_reason"] == "twin brothers"
    restored = api.get(f"/v1/persons/{alias}", headers=purpose("enrollment")).json()
    assert (restored["record_status"], restored["household"]["household_id"]) == ("active", home)
    assert reviewer.get(f"/v1/duplicates/{candidate}").json()["candidate"]["status"] == "open"
    assert_problem(
        reviewer.post(f"/v1/merges/{merge['id']}/undo", json={"reason": "again"}), 409, "merge_already_undone"
    )


def test_different_is_remembered_and_bad_decisions_are_refused(api_server: LiveServer, reviewer: httpx.Client) -> None:
    _, candidate = seed_duplicate(api_server, "Águeda Fernández Ortíz", "Agueda")
    url = f"/v1/duplicates/{candidate}/decision"
    assert_problem(reviewer.post(url, json={"decision": "maybe"}), 422, "invalid_request")
    assert_problem(
        reviewer.post(url, json={"decision": "different", "survivor_id": NO_SUCH_ID}), 422, "survivor_not_applicable"
    )
    assert_problem(
        reviewer.post(url, json={"decision": "same", "survivor_id": NO_SUCH_ID}), 422, "not_a_candidate_person"
    )
    decided = reviewer.post(url, json={"decision": "different", "note": "mother and daughter"})
    assert decided.status_code == 200 and decided.json()["candidate"]["status"] == "different"
    listed = reviewer.get("/v1/duplicates", params={"status": "different"}).json()["items"]
    assert candidate in [i["id"] for i in listed]
    assert_problem(reviewer.post(f"/v1/merges/{NO_SUCH_ID}/undo", json={"reason": "x"}), 404, "unknown_merge")
