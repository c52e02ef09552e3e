"""GET /metrics and /readyz on a live server: route templates and outcome codes as labels (never an
id, a path or a name), the database figures read at scrape time, the bearer token, several worker
processes adding up, and readiness failing when the access-log integrator fails or stalls."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from civicard.adapters.db import tables as t
from civicard.adapters.db.guard import OPEN_DUPLICATE_CANDIDATES, UnloggedPersonalDataAccess, count_unlogged
from civicard.dedup.cases import PENDING
from civicard.identity.cards import CardKeys
from tests.e2e.conftest import REGISTRAR, LiveServer, signed_headers
from tests.e2e.duplicate_seed import seed_duplicate
from tests.integration.distribution_fixtures import PIN, HeldCard, Till, issue, seed_rice_grant, system_uow

pytestmark = pytest.mark.e2e
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
HEX_ID = re.compile(r"[0-9a-f]{32}")


def scrape(server: LiveServer, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(f"{server.base_url}/metrics", headers=headers, timeout=10.0)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests_to(samples: Samples, route: str, status_class: str) -> float:
    name = "civicard_http_request_duration_seconds_count"
    return sum(v for (n, labels), v in samples.items() if n == name and ("route", route) in labels and
               ("status_class", status_class) in labels)


def redeem(server: LiveServer, till: Till, card: HeldCard, key: str, pin: str = PIN) -> httpx.Response:
    body = json.dumps({"card_token": card.token, "pin": pin, "basket": [{"item": "RICE-1KG", "quantity": 1}]}).encode()
    headers = signed_headers(till.key, till.terminal_id, "/v1/redemptions", body)
    headers |= {"Content-Type": "application/json", "Idempotency-Key": key}
    return httpx.post(f"{server.base_url}/v1/redemptions", content=body, headers=headers, timeout=30.0)


@pytest.fixture(scope="module")
def shop(api_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Till, HeldCard]:
    """A rice grant for the first household (the cycle runs in this process) and María's card."""
    container = api_server.container
    household = api_server.town.household_ids[0]
    till = seed_rice_grant(container.engine, container.clock, household, tmp_path_factory.mktemp("cycle"), 6)
    card = issue(
        container.engine,
        container.clock,
        CardKeys.derive(container.root_key),
        api_server.person("María José Pérez Gómez"),
        household,
    )
    return till, card


@pytest.fixture
def staff(api_server: LiveServer) -> Iterator[httpx.Client]:
    session = api_server.open_session(REGISTRAR)
    headers = {"Authorization": f"Bearer {session['token']}", "X-Civicard-Purpose": "enrollment"}
    with httpx.Client(base_url=api_server.base_url, headers=headers, timeout=10.0) as client:
        yield client


def test_requests_are_labelled_by_route_template_and_redemptions_by_outcome_code(
    api_server: LiveServer, shop: tuple[Till, HeldCard], staff: httpx.Client
) -> None:
    till, card = shop
    maria = api_server.person("María José Pérez Gómez")
    before = scrape(api_server)
    assert staff.get(f"/v1/persons/{maria}", params={"note": "query-canary"}).status_code == 200
    assert staff.get(f"/v1/persons/{'0' * 32}").status_code == 404
    assert httpx.get(f"{api_server.base_url}/no/such/{maria}").status_code == 404
    approved = redeem(api_server, till, card, "metrics-sale-1")
    assert approved.status_code == 201, approved.text
    assert redeem(api_server, till, card, "metrics-sale-1").status_code == 201  # a replay is not counted again
    wrong = redeem(api_server, till, card, "metrics-wrong-pin", pin="9137")
    assert (wrong.status_code, wrong.json()["code"]) == (422, "pin_wrong")
    after = scrape(api_server)

    person = "/v1/persons/{person_id}"
    assert requests_to(after, person, "2xx") - requests_to(before, person, "2xx") == 1
    assert requests_to(after, person, "4xx") - requests_to(before, person, "4xx") == 1
    assert requests_to(after, "unmatched", "4xx") - requests_to(before, "unmatched", "4xx") == 1
    assert requests_to(after, "/v1/redemptions", "2xx") - requests_to(before, "/v1/redemptions", "2xx") == 2
    counted = "civicard_redemptions_total"
    assert value(after, counted, channel="online", outcome="approved") - value(
        before, counted, channel="online", outcome="approved"
    ) == 1
    assert value(after, counted, channel="online", outcome="pin_wrong") - value(
        before, counted, channel="online", outcome="pin_wrong"
    ) == 1
    assert value(after, "civicard_cycle_duration_seconds_count", outcome="done") >= 1

    secrets_and_ids = {maria, card.token, card.handle, card.card_id, till.terminal_id, "metrics-sale-1", "query-canary"}
    secrets_and_ids |= set(api_server.town.household_ids) | set(api_server.town.person_ids.values())
    label_values = {v for _, labels in after for _, v in labels}
    for text in label_values:
        assert not HEX_ID.search(text) and "?" not in text, text
        assert not any(secret in text for secret in secrets_and_ids), text
    assert not any(name in text for name in api_server.town.person_ids for text in label_values)


def test_the_database_figures_count_the_duplicate_queue_and_the_log_backlog(api_server: LiveServer) -> None:
    before = value(scrape(api_server), "civicard_dedup_queue_candidates")
    seed_duplicate(api_server, "Lucía Fernández Ortíz", "Lucia")
    after = scrape(api_server)
    with system_uow(api_server.container.engine, api_server.container.clock) as uow:
        c = t.duplicate_candidates.c
        pending = uow.connection.execute(sa.select(sa.func.count()).where(c.status.in_(PENDING))).scalar_one()
    assert value(after, "civicard_dedup_queue_candidates") == before + 1 == pending
    assert value(after, "civicard_database_up") == 1
    assert value(after, "civicard_log_integrator_failing") == 0
    for name in ("entries", "oldest_seconds", "stalled_seconds"):
        assert (f"civicard_log_backlog_{name}", ()) in after


def test_the_guard_lets_only_its_fixed_counts_through_without_an_access_context(api_server: LiveServer) -> None:
    assert all(f"'{status}'" in OPEN_DUPLICATE_CANDIDATES for status in PENDING)
    with api_server.container.engine.connect() as conn:
        assert count_unlogged(conn, OPEN_DUPLICATE_CANDIDATES) >= 0
        with pytest.raises(UnloggedPersonalDataAccess):
            count_unlogged(conn, "SELECT count(*) FROM duplicate_candidates")
        with pytest.raises(UnloggedPersonalDataAccess):
            conn.execute(sa.text(OPEN_DUPLICATE_CANDIDATES))  # the same text, outside count_unlogged
        with pytest.raises(UnloggedPersonalDataAccess):
            conn.execute(sa.select(t.duplicate_candidates.c.person_id_l))


def test_a_metrics_token_is_required_once_it_is_set(api_server: LiveServer) -> None:
    settings = api_server.container.settings
    token = "scrape-" + "x" * 24
    settings.metrics_token = SecretStr(token)
    try:
        url = f"{api_server.base_url}/metrics"
        missing = httpx.get(url)
        assert (missing.status_code, missing.json()["code"]) == (401, "metrics_token_required")
        assert missing.headers["www-authenticate"] == "Bearer"
        assert httpx.get(url, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert "civicard_database_up" in {n for n, _ in scrape(api_server, {"Authorization": f"Bearer {token}"})}
    finally:
        settings.metrics_token = None


def test_readiness_fails_while_the_integrator_fails_or_leaves_entries_waiting(
    api_server: LiveServer, staff: httpx.Client
) -> None:
    container = api_server.container
    settings, integrator = container.settings, container.integrator
    ready = f"{api_server.base_url}/readyz"
    assert httpx.get(ready).status_code == 200
    integrator.stop()
    limit = settings.log_stall_seconds
    try:
        integrator.last_error = RuntimeError("simulated")
        failing = httpx.get(ready)
        assert (failing.status_code, failing.json()["code"]) == (503, "log_integrator_failing")
        assert value(scrape(api_server), "civicard_log_integrator_failing") == 1
        integrator.last_error = None
        settings.log_stall_seconds = 0.5
        assert staff.get(f"/v1/persons/{api_server.person('Ramón Núñez Peña')}").status_code == 200  # logged
        time.sleep(0.8)
        lagging = httpx.get(ready)
        assert (lagging.status_code, lagging.json()["code"]) == (503, "log_integrator_lagging")
        figures = scrape(api_server)
        assert value(figures, "civicard_log_backlog_entries") >= 1
        assert value(figures, "civicard_log_backlog_stalled_seconds") > 0.5
    finally:
        integrator.last_error = None
        integrator.start()
    deadline = time.monotonic() + 10
    while httpx.get(ready).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    settings.log_stall_seconds = limit
    assert httpx.get(ready).status_code == 200
    assert value(scrape(api_server), "civicard_log_backlog_entries") == 0


WORKERS = """
import os, sys
from prometheus_client import generate_latest
from civicard.adapters.api.observability import metrics_registry, record_redemption

child = os.fork()  # two worker processes, each counting in its own file
record_redemption("online", "approved")
record_redemption("offline", "card_revoked")
if child == 0:
    os._exit(0)
os.waitpid(child, 0)
from civicard.bootstrap import bootstrap
from civicard.settings import Settings
container = bootstrap(Settings(data_dir=sys.argv[1], database_url="sqlite:///" + sys.argv[1] + "/empty.db"))
sys.stdout.write(generate_latest(metrics_registry(container)).decode())
"""


def test_with_a_multiprocess_directory_the_workers_counts_add_up(tmp_path: Path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    out = subprocess.run(
        [sys.executable, "-c", WORKERS, str(tmp_path)], env=env, check=True, timeout=120, capture_output=True, text=True
    ).stdout
    assert len(list(shared.glob("counter_*.db"))) == 2
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    assert value(samples, "civicard_redemptions_total", channel="online", outcome="approved") == 2
    assert value(samples, "civicard_redemptions_total", channel="offline", outcome="card_revoked") == 2
    assert value(samples, "civicard_database_up") == 0  # an empty database: the scrape still answers
