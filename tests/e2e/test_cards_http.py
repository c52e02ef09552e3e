"""The public card material over HTTP: keys, the signed status list and its deltas, as a terminal uses them.

Runs the real application (create_app) in process; the card router is included here when the
application does not include it yet.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from civicard.adapters.api import card_routes
from civicard.adapters.api.app import create_app
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.migrate import upgrade
from civicard.bootstrap import Container, bootstrap
from civicard.identity.cards import CardKeys, CardPolicy, IssuedCard, issue_card, revoke_card
from civicard.identity.terminal_check import OfflineVerifier
from civicard.registry.enrollment import EnrollPerson, enroll_person
from civicard.settings import Settings
from civicard.transparency.access import AccessContext, Actor

DESK = AccessContext(Actor("registrar-e2e", "registrar"), "card_service")
POLICY = CardPolicy(status_list_capacity=2**16)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Container, TestClient]]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'c.db'}",
        root_key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )  # type: ignore[arg-type]
    upgrade(settings.effective_database_url)
    container = bootstrap(settings)
    app = create_app(container)
    if not any(getattr(r, "path", "") == "/v1/status-list" for r in app.routes):
        app.include_router(card_routes.router)
    try:
        yield container, TestClient(app)  # no lifespan: the log integrator is not needed here
    finally:
        container.close()


def _issue(container: Container) -> IssuedCard:
    cmd = EnrollPerson(
        given_names="Ana",
        first_surname="Ríos",
        birth_date=date(1990, 5, 17),
        birth_place="Sur",
        sex="F",
        address_line="Calle 1",
        municipality="NOR-01",
        postcode="10001",
    )
    with container.uow(AccessContext(DESK.actor, "enrollment")) as uow:
        person_id = enroll_person(uow, cmd).id
    with SqlCardUnitOfWork(container.engine, DESK, container.clock) as uow:
        return issue_card(uow, CardKeys.derive(container.root_key), person_id, policy=POLICY)


def test_a_terminal_builds_its_verifier_from_the_public_endpoints_and_follows_deltas(
    served: tuple[Container, TestClient],
) -> None:
    container, client = served
    assert client.get("/v1/status-list").status_code == 404
    issued = _issue(container)
    keys = client.get("/v1/keys")
    listed = client.get("/v1/status-list")
    assert keys.headers["content-type"] == "application/cose-key-set"
    assert listed.headers["content-type"] == "application/statuslist+cwt"
    terminal = OfflineVerifier.from_published(keys.content, listed.content)
    now = container.clock.now()
    assert terminal.check(issued.token, now).code == "card_valid"
    with SqlCardUnitOfWork(container.engine, DESK, container.clock) as uow:
        revoke_card(uow, CardKeys.derive(container.root_key), issued.card.handle, "stolen", POLICY)
    version = int(listed.headers["x-status-list-version"])
    delta = client.get(f"/v1/status-list/deltas/{version + 1}")
    assert delta.status_code == 200
    terminal.apply_delta(delta.content)
    assert terminal.check(issued.token, now).code == "card_revoked"
    assert client.get(f"/v1/status-list/deltas/{version + 2}").status_code == 404
    assert client.get("/v1/keys.jwks").json()["keys"][0]["crv"] == "Ed25519"
