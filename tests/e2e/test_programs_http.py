"""The program register over real HTTP on SQLite and PostgreSQL: public reading, two administrators
proposing and approving, refusals as problem+json with their codes.

Sign-in budget: the seeded administrator signs in over HTTP once per server; the second one is
signed in through AuthStore from another address.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest

from civicard.adapters.cli.programs import publication_uow
from civicard.programs import publishing
from tests.e2e.conftest import PROGRAM_ADMIN, SEEDED_BY, LiveServer
from tests.e2e.test_api_http import NO_SUCH_ID, assert_problem, bearer

pytestmark = pytest.mark.e2e
RULEPACKS = Path(__file__).resolve().parents[2] / "rulepacks"
FOOD = (RULEPACKS / "food_basket" / "2026.1.yaml").read_text(encoding="utf-8")
CHILD = (RULEPACKS / "child_allowance" / "2026.1.yaml").read_text(encoding="utf-8")
SECOND_ADMIN = ("segunda-e2e", "Sara Segunda (e2e)", "otra-administradora-e2e-2026", "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU")


@pytest.fixture(scope="module")
def admins(api_server: LiveServer) -> dict[str, str]:
    """Tokens of two program administrators; the item catalogue loaded by the first."""
    username, name, password, secret = SECOND_ADMIN
    api_server.container.auth.create_staff_account(
        username, name, "program_admin", password, SEEDED_BY, totp_secret=secret
    )
    second = api_server.container.auth.sign_in(username, password, pyotp.TOTP(secret).now(), "e2e-programs")
    first = api_server.open_session(PROGRAM_ADMIN)
    account = next(a for a in api_server.container.auth.list_staff_accounts() if a.username == PROGRAM_ADMIN.username)
    with publication_uow(api_server.container, account) as uow:
        publishing.load_catalogue(uow, (RULEPACKS / "items.yaml").read_text(encoding="utf-8"), account)
    return {"first": first["token"], "second": second.session_token}


@pytest.fixture
def client(api_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, timeout=120.0) as c:
        yield c


def test_two_administrators_publish_a_version_and_the_public_reads_it(
    client: httpx.Client, admins: dict[str, str], api: httpx.Client
) -> None:
    assert_problem(client.post("/v1/program-versions", json={"source": FOOD}), 401, "sign_in_required")
    assert_problem(api.post("/v1/program-versions", json={"source": FOOD}), 403, "not_program_admin")
    first, second = bearer(admins["first"]), bearer(admins["second"])
    proposed = client.post("/v1/program-versions", json={"source": FOOD, "note": "new year"}, headers=first)
    assert proposed.status_code == 201, proposed.text
    body = proposed.json()
    assert body["version"]["status"] == "proposed" and body["version"]["proposed_by"] == PROGRAM_ADMIN.username
    assert body["tests"]["passed"] == 8 * len(body["tests"]["engines"])
    assert body["impact"]["against"] is None
    assert body["impact"]["total"]["households"] == "<10"  # three households in the seeded town
    assert "food_basket" not in client.get("/v1/programs").text  # proposed is not published
    version_id = body["version"]["id"]
    approval = f"/v1/program-versions/{version_id}/approval"
    assert_problem(client.post(approval, json={}, headers=first), 403, "same_person")
    approved = client.post(approval, json={"note": "checked"}, headers=second)
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["decided_by"]) == ("published", SECOND_ADMIN[0])
    assert_problem(client.post(approval, json={}, headers=second), 409, "not_proposed")
    listed = client.get("/v1/programs").json()["versions"]
    assert [(v["program"], v["version"], v["status"], v["approved_by"]) for v in listed] == [
        ("food_basket", "2026.1", "published", SECOND_ADMIN[0])
    ]
    one = client.get("/v1/programs/food_basket/2026.1")
    assert one.status_code == 200 and one.json()["source"] == FOOD
    assert one.json()["sha256"] == listed[0]["sha256"] == body["version"]["sha256"]


def test_a_rejected_version_stays_private_and_refusals_carry_their_codes(
    client: httpx.Client, admins: dict[str, str]
) -> None:
    first, second = bearer(admins["first"]), bearer(admins["second"])
    proposed = client.post("/v1/program-versions", json={"source": CHILD}, headers=second)
    assert proposed.status_code == 201, proposed.text
    version_id = proposed.json()["version"]["id"]
    rejected = client.post(f"/v1/program-versions/{version_id}/rejection", json={"note": "no"}, headers=first)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert_problem(client.get("/v1/programs/child_allowance/2026.1"), 404, "version_not_found")
    assert_problem(client.post("/v1/program-versions", json={"source": CHILD}, headers=first), 409, "version_exists")
    assert_problem(client.post("/v1/program-versions", json={"source": "a: ["}, headers=first), 422, "invalid_yaml")
    assert_problem(
        client.post(f"/v1/program-versions/{NO_SUCH_ID}/approval", json={}, headers=second), 404, "version_not_found"
    )
    assert_problem(client.post("/v1/program-versions", json={"source": 1}, headers=first), 422, "invalid_request")


def test_a_cookie_session_must_echo_its_csrf_token(client: httpx.Client, admins: dict[str, str]) -> None:
    client.cookies.set("civicard_session", admins["second"])
    refused = client.post(f"/v1/program-versions/{NO_SUCH_ID}/rejection", json={})
    assert_problem(refused, 403, "csrf_failed")
