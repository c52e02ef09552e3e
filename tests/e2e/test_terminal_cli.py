"""`civicard terminal` against a live server: register, sync, redeem offline, sync again, and the sale
is in the ledger; a revoked terminal's sync is refused; reviewers list offline conflicts."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from civicard.adapters.cli.main import app
from civicard.adapters.db import tables as t
from tests.e2e.conftest import REVIEWER, LiveServer
from tests.integration.distribution_fixtures import PIN, DistributionTown, build_distribution_town, system_uow

runner = CliRunner()


@pytest.fixture(scope="module")
def town(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionTown]:
    built = live_server.container
    yield build_distribution_town(
        built.engine, built.clock, tmp_path_factory.mktemp("town"), households=20, cards=3, root_key=built.root_key
    )


def terminal(directory: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["terminal", *args, "--dir", str(directory)])
    return result.exit_code, result.output


def register(live_server: LiveServer, town: DistributionTown, directory: Path) -> str:
    """What a shop does: make a key, have the vendor administrator register it at the outlet, store the id."""
    code, shown = terminal(directory, "register", "--server", live_server.base_url)
    assert code == 0, shown
    public = re.search(r"public key (\S+)", shown)
    assert public is not None
    terminal_id = live_server.container.auth.register_terminal("Caja 2 (e2e)", base64.b64decode(public[1]), "e2e").id
    with live_server.container.engine.connect() as conn:  # the vendor admin's outlet assignment
        conn.execute(
            sa.update(t.terminals).where(t.terminals.c.id == terminal_id).values(outlet_id=town.shop.outlet_id)
        )
        conn.commit()
    code, shown = terminal(directory, "register", "--terminal-id", terminal_id)
    assert code == 0 and terminal_id in shown
    return terminal_id


def offline_ledger(town: DistributionTown, terminal_id: str) -> list[tuple[str, str, int]]:
    r, line = t.redemptions, t.ledger_lines
    with system_uow(town.engine, town.clock) as uow:
        rows = uow.connection.execute(
            sa.select(r.c.channel, line.c.item_code, line.c.quantity)
            .join(line, sa.and_(line.c.redemption_id == r.c.id, line.c.period == r.c.period))
            .where(r.c.terminal_id == terminal_id)
        )
        return [(row.channel, row.item_code, int(row.quantity)) for row in rows]


def test_an_offline_sale_reaches_the_ledger_after_sync(
    live_server: LiveServer, town: DistributionTown, tmp_path: Path
) -> None:
    terminal_id = register(live_server, town, tmp_path)
    code, shown = terminal(tmp_path, "sync")
    assert code == 0 and f"bundle {town.period}" in shown, shown
    card = town.adults[0]
    code, shown = terminal(tmp_path, "redeem", "--card", card.token, "--item", "RICE-1KG=1")
    assert code == 0 and "OK receipt 1" in shown, shown
    code, shown = terminal(tmp_path, "redeem", "--card", card.token, "--item", "RICE-1KG=1")
    assert code == 1 and "offline_cap_exceeded" in shown  # a card the shop has not seen: the cap is 1
    code, shown = terminal(tmp_path, "status")
    assert code == 0 and "queued 1" in shown
    assert offline_ledger(town, terminal_id) == []
    code, shown = terminal(tmp_path, "sync")
    assert code == 0 and "sent 1: 1 applied, 0 conflicts" in shown, shown
    assert offline_ledger(town, terminal_id) == [("offline", "RICE-1KG", 1)]
    code, shown = terminal(tmp_path, "sync")  # the household is now the shop's: the bundle lists its cards
    known = re.search(r"with (\d+) known cards", shown)
    assert code == 0 and "sent 0" in shown and known is not None and int(known[1]) >= 1, shown
    code, shown = terminal(tmp_path, "status")
    assert "queued 0, conflicts 0" in shown


def test_a_revoked_terminal_hands_in_its_receipts_for_review_and_gets_no_bundle(
    live_server: LiveServer, town: DistributionTown, tmp_path: Path
) -> None:
    terminal_id = register(live_server, town, tmp_path)
    assert terminal(tmp_path, "sync")[0] == 0
    assert terminal(tmp_path, "redeem", "--card", town.adults[1].token, "--item", "OIL-1L=1")[0] == 0
    live_server.container.auth.revoke_terminal(terminal_id, "e2e")
    code, shown = terminal(tmp_path, "sync")
    assert code == 1 and "terminal_revoked" in shown  # no new bundle for a revoked terminal
    code, shown = terminal(tmp_path, "status")
    assert "queued 0, conflicts 1" in shown, shown  # the device knows the server kept it for review
    o = t.offline_receipts
    with system_uow(town.engine, town.clock) as uow:
        kept = uow.connection.execute(sa.select(o.c.status, o.c.conflict).where(o.c.terminal_id == terminal_id)).all()
    assert [tuple(row) for row in kept] == [("conflict", "terminal_revoked")]  # flagged, not applied


def test_reviewers_list_offline_conflicts_and_others_may_not(live_server: LiveServer, town: DistributionTown) -> None:
    session = live_server.open_session(REVIEWER)
    headers = {"Authorization": f"Bearer {session['token']}", "X-Civicard-Purpose": "correction_review"}
    listed = httpx.get(f"{live_server.base_url}/v1/offline-conflicts", headers=headers, timeout=10.0)
    assert listed.status_code == 200 and isinstance(listed.json()["conflicts"], list)
    anonymous = httpx.get(f"{live_server.base_url}/v1/offline-conflicts", timeout=10.0)
    assert anonymous.status_code == 401
    keys = httpx.get(f"{live_server.base_url}/v1/keys/offline-bundle", timeout=10.0)
    assert keys.status_code == 200 and keys.headers["content-type"] == "application/cose-key-set"


def test_an_online_sale_from_the_terminal_cli_is_approved_once_and_refusals_say_their_code(
    live_server: LiveServer, town: DistributionTown, tmp_path: Path
) -> None:
    terminal_id = register(live_server, town, tmp_path)
    card = town.adults[1]
    before = town.remaining(card.household_id, "RICE-1KG")
    code, shown = terminal(tmp_path, "sell", "--card", card.token, "--pin", PIN, "--item", "RICE-1KG=1")
    assert code == 0 and "APPROVED" in shown and "RICE-1KG × 1" in shown, shown
    assert town.remaining(card.household_id, "RICE-1KG") == before - 1
    assert offline_ledger(town, terminal_id) == [("online", "RICE-1KG", 1)]
    code, shown = terminal(tmp_path, "sell", "--card", card.token, "--pin", PIN, "--item", "RICE-1KG=999")
    assert code == 1 and "insufficient_remaining" in shown, shown
