"""Settlement on both databases: statement totals equal the hand-computed subsidy, every line behind
them is shown without a person id, closing fixes the totals and the period, verify finds tampering."""

from __future__ import annotations

import base64
import csv
import io
import secrets
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pyotp
import pytest
import sqlalchemy as sa
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from civicard.adapters.api import settlement_routes
from civicard.adapters.api.app import create_app
from civicard.adapters.bulk.cycle import run_cycle
from civicard.adapters.bulk.importer import import_population
from civicard.adapters.cli.settlement import settlement_app
from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.settlement_store import SqlSettlementUnitOfWork
from civicard.adapters.db.vendor_store import SqlVendorUnitOfWork
from civicard.bootstrap import bootstrap
from civicard.distribution import settlement as service
from civicard.distribution import vendors
from civicard.distribution.sales import BasketLine, Refused
from civicard.distribution.statement_render import statement_csv, statement_pdf
from civicard.identity.cards import CardKeys, issue_card
from civicard.identity.pseudonyms import pseudonym
from civicard.identity.terminal_auth import encode_signature, sign_request
from civicard.programs import publishing
from civicard.registry.population import PopulationSpec, generate_population
from civicard.settings import Settings
from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, DomainError
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Actor

from ..conftest import Database
from .test_cycle import register_published

RULES = Path(__file__).resolve().parents[2] / "rulepacks"
PERIOD = "2026-12"
ROOT_KEY = secrets.token_bytes(32)
LOADER = AccessContext(Actor("test:loader", "system"), "bulk_import")
SYSTEM = Actor("test:cycle", "system")
ADMIN = AccessContext(Actor("test:admin", "system"), "distribution_admin")
READER = AccessContext(Actor("test:oversight", "oversight"), "settlement")
TILL = Actor("terminal-test", "vendor")
PRICES = yaml.safe_load((RULES / "prices.yaml").read_text(encoding="utf-8"))["prices"]


def subsidy(item: str, quantity: int) -> int:
    return (PRICES[item]["reference"] - PRICES[item]["subsidized"]) * quantity


@dataclass
class Town:
    engine: sa.Engine
    clock: Clock
    shop: vendors.Vendor
    pharmacy: vendors.Vendor
    outlet_a: vendors.OutletRecord
    outlet_b: vendors.OutletRecord
    households: list[str]  # households entitled to food in PERIOD
    holders: dict[str, tuple[str, str]]  # household → (card id, person id) of one adult member's card

    def uow(self, context: AccessContext = ADMIN) -> SqlSettlementUnitOfWork:
        return SqlSettlementUnitOfWork(self.engine, context, self.clock)

    def sell(
        self,
        household: str,
        outlet: vendors.OutletRecord,
        basket: dict[str, int],
        channel: str = "online",
        pre_check: bool = True,
    ) -> str:
        from civicard.adapters.db.sale_store import Outlet

        card_id, _ = self.holders[household]
        with self.uow(AccessContext(TILL, "redemption")) as uow:
            if pre_check:
                service.ensure_period_open(uow.decisions.period_status, PERIOD)
            sale = uow.sales.post(
                PERIOD,
                household,
                card_id,
                "terminal-test",
                Outlet(outlet.id, outlet.vendor_id, outlet.kind, outlet.name, outlet.region),
                [BasketLine(item, q) for item, q in basket.items()],
                channel,
                self.clock.now(),
            )
            uow.commit()
        return sale.redemption_id


def build_town(engine: sa.Engine, clock: Clock, tmp_path: Path, households: int = 40) -> Town:
    """An imported town with published rules, items, a cycle for PERIOD, prices and two vendors."""
    source = tmp_path / "population"
    generate_population(PopulationSpec(households=households, seed=5, duplicate_share=0.0), source)
    import_population(engine, source, LOADER, clock, None)
    admin = SimpleNamespace(id="test-admin", username="admin", role="program_admin")
    with SqlVendorUnitOfWork(
        engine, AccessContext(Actor("test-admin", "program_admin"), "program_publication"), clock
    ) as uow:
        publishing.load_catalogue(uow, (RULES / "items.yaml").read_text(encoding="utf-8"), admin)
    with SqlSettlementUnitOfWork(engine, AccessContext(SYSTEM, "cycle_run"), clock) as uow:
        for path in sorted(RULES.glob("*/*.yaml")):
            if path.name != "items.yaml" and yaml.safe_load(path.read_text(encoding="utf-8"))["status"] != "draft":
                register_published(uow, path, clock)
        uow.commit()
    with SqlSettlementUnitOfWork(engine, AccessContext(SYSTEM, "cycle_run"), clock) as uow:
        run_cycle(uow, PERIOD, tmp_path / "out")
        uow.commit()
    with SqlVendorUnitOfWork(engine, ADMIN, clock) as uow:
        vendors.set_prices(uow, PERIOD, vendors.parse_price_sheet((RULES / "prices.yaml").read_text()), "test")
    with SqlVendorUnitOfWork(engine, ADMIN, clock) as uow:
        shop = vendors.add_vendor(uow, "Tienda La Esquina", "900123456", "test")
    with SqlVendorUnitOfWork(engine, ADMIN, clock) as uow:
        pharmacy = vendors.add_vendor(uow, "Farmacia San Rafael", "900654321", "test")
    with SqlVendorUnitOfWork(engine, ADMIN, clock) as uow:
        outlet_a = vendors.add_outlet(uow, shop.id, "Esquina Centro", "shop", "CEN-01", "Carrera 7 # 10-02")
    with SqlVendorUnitOfWork(engine, ADMIN, clock) as uow:
        outlet_b = vendors.add_outlet(uow, shop.id, "Esquina Norte", "shop", "CEN-02", "Calle 3 # 4-05")
    with SqlVendorUnitOfWork(engine, ADMIN, clock) as uow:
        e = t.entitlements
        entitled = sorted(
            uow.connection.execute(
                sa.select(e.c.household_id)
                .where(e.c.period == PERIOD, e.c.item_code == "RICE-1KG", e.c.granted >= 2)
                .group_by(e.c.household_id)
            ).scalars()
        )[:3]
        members = {
            h: uow.memberships.current_of_household(h)[0].person_id  # type: ignore[attr-defined]
            for h in entitled
        }
    assert len(entitled) == 3, "the seeded town should have households entitled to food"
    holders = {}
    keys = CardKeys.derive(RootKey(ROOT_KEY))
    for household, person in members.items():
        with SqlCardUnitOfWork(engine, AccessContext(Actor("registrar", "registrar"), "card_service"), clock) as uow:
            holders[household] = (issue_card(uow, keys, person).card.id, person)
    return Town(engine, clock, shop, pharmacy, outlet_a, outlet_b, entitled, holders)


@pytest.fixture
def town(engine: sa.Engine, clock: Clock, tmp_path: Path) -> Town:
    return build_town(engine, clock, tmp_path)


def _sales(town: Town) -> int:
    """Three sales at the shop's two outlets; returns the subsidy owed, computed by hand."""
    h1, h2, _ = town.households
    town.sell(h1, town.outlet_a, {"RICE-1KG": 2, "SALT-1KG": 1})
    town.sell(h2, town.outlet_a, {"RICE-1KG": 1})
    town.sell(h2, town.outlet_b, {"SUGAR-1KG": 1, "RICE-1KG": 1})
    return subsidy("RICE-1KG", 4) + subsidy("SALT-1KG", 1) + subsidy("SUGAR-1KG", 1)


def _statement(town: Town, vendor_id: str) -> service.Statement:
    with town.uow(READER) as uow:
        return service.statement(uow, RootKey(ROOT_KEY), vendor_id, PERIOD)


def test_the_statement_owes_what_was_computed_by_hand_and_shows_every_line(town: Town) -> None:
    owed = _sales(town)
    found = _statement(town, town.shop.id)
    assert found.total.subsidy_minor == owed == 4 * 256 + 63 + 147
    assert (found.total.redemptions, found.total.lines, len(found.lines)) == (3, 5, 5)
    by_outlet = {s.outlet_name: (s.redemptions, s.quantity, s.subsidy_minor) for s in found.by_outlet}
    assert by_outlet == {
        "Esquina Centro": (2, 4, subsidy("RICE-1KG", 3) + subsidy("SALT-1KG", 1)),
        "Esquina Norte": (1, 2, subsidy("RICE-1KG", 1) + subsidy("SUGAR-1KG", 1)),
    }
    rice_a = next(s for s in found.by_outlet_item if s.outlet_name == "Esquina Centro" and s.item_code == "RICE-1KG")
    assert (rice_a.quantity, rice_a.subsidy_minor) == (3, 3 * 256)
    h1 = town.households[0]
    expected_holder = pseudonym(RootKey(ROOT_KEY), f"vendor:{town.shop.id}", town.holders[h1][1])
    assert {line.holder for line in found.lines if line.outlet_name == "Esquina Centro"} >= {expected_holder}
    assert all(len(line.holder) == 26 for line in found.lines)
    assert _statement(town, town.pharmacy.id).total.subsidy_minor == 0


def test_csv_and_pdf_carry_the_lines_but_no_person_or_household_id(town: Town) -> None:
    _sales(town)
    found = _statement(town, town.shop.id)
    text = statement_csv(found)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 5 and sum(int(r["subsidy_minor"]) for r in rows) == found.total.subsidy_minor
    assert {r["transaction_id"] for r in rows} == {line.transaction_id for line in found.lines}
    pdf = statement_pdf(found)
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    for household, (card_id, person_id) in town.holders.items():
        for secret in (household, card_id, person_id):
            assert secret not in text and secret.encode() not in pdf


def test_reading_a_statement_is_logged_under_settlement(town: Town) -> None:
    _statement(town, town.shop.id)
    with town.engine.connect() as conn:
        row = conn.execute(
            sa.select(t.access_log).where(t.access_log.c.purpose == "settlement").order_by(t.access_log.c.seq.desc())
        ).first()
    assert row is not None and row.actor == "test:oversight" and "decisions" in row.categories


def test_closing_fixes_each_vendors_total_and_the_period_cannot_change(town: Town) -> None:
    owed = _sales(town)
    with town.uow() as uow:
        result = service.settle(uow, PERIOD, "test:closer")
    assert {r.vendor_id: r.subsidy_minor for r in result.totals} == {town.shop.id: owed, town.pharmacy.id: 0}
    with town.uow(READER) as uow:
        conn = uow.connection
        period = conn.execute(sa.select(t.benefit_periods).where(t.benefit_periods.c.period == PERIOD)).one()
        rows = conn.execute(sa.select(t.settlements).where(t.settlements.c.period == PERIOD)).all()
    assert period.status == "closed" and period.closed_at is not None
    shop_row = next(r for r in rows if r.vendor_id == town.shop.id)
    assert (shop_row.redemptions, shop_row.lines, shop_row.subsidy_minor) == (3, 5, owed)
    assert shop_row.ledger_sha256 == _statement(town, town.shop.id).total.ledger_sha256
    assert len(rows) == 2
    with town.uow() as uow, pytest.raises(Conflict) as again:
        service.settle(uow, PERIOD, "test:closer")
    assert again.value.code == "period_closed"
    with pytest.raises(Conflict) as sale:
        town.sell(town.households[2], town.outlet_a, {"RICE-1KG": 1})
    assert sale.value.code == "period_closed"
    with pytest.raises(Refused) as posted:  # the sale core itself refuses, whatever path called it
        town.sell(town.households[2], town.outlet_a, {"RICE-1KG": 1}, pre_check=False)
    assert posted.value.code == "period_closed"
    with SqlVendorUnitOfWork(town.engine, ADMIN, town.clock) as uow, pytest.raises(Conflict) as prices:
        vendors.set_prices(uow, PERIOD, [vendors.ItemPrice("RICE-1KG", 1, 1)], "test")
    assert prices.value.code == "period_closed"
    with town.uow(READER) as uow:
        assert service.verify(uow, PERIOD) == []
    assert _statement(town, town.shop.id).settled is not None


def test_verify_finds_an_edited_and_a_deleted_ledger_line(town: Town) -> None:
    _sales(town)
    with town.uow() as uow:
        service.settle(uow, PERIOD, "test:closer")
    with town.uow(READER) as uow:
        line = uow.connection.execute(sa.select(t.ledger_lines).order_by(t.ledger_lines.c.id)).first()
        assert line is not None
        uow.connection.execute(
            sa.update(t.ledger_lines).where(t.ledger_lines.c.id == line.id).values(quantity=line.quantity + 5)
        )
        uow.commit()
        found = {(d.vendor_id, d.field) for d in service.verify(uow, PERIOD)}
    assert found == {
        (town.shop.id, "subsidy_minor"),
        (town.shop.id, "ledger_sha256"),
        (town.shop.id, "line_subsidy"),
    }
    with town.uow(READER) as uow:
        uow.connection.execute(sa.delete(t.ledger_lines).where(t.ledger_lines.c.id == line.id))
        uow.commit()
        fields = {d.field for d in service.verify(uow, PERIOD)}
    assert {"lines", "ledger_sha256"} <= fields


def test_an_unopened_period_and_an_unsettled_verify_are_refused(town: Town) -> None:
    with town.uow() as uow, pytest.raises(DomainError) as unopened:
        service.settle(uow, "2031-01", "test")
    assert unopened.value.code == "period_not_found"
    with town.uow(READER) as uow, pytest.raises(DomainError) as unsettled:
        service.verify(uow, PERIOD)
    assert unsettled.value.code == "period_not_settled"
    with town.uow(READER) as uow, pytest.raises(DomainError) as unknown:
        service.statement(uow, RootKey(ROOT_KEY), "0" * 32, PERIOD)
    assert unknown.value.code == "vendor_not_found"


# --- the command line ----------------------------------------------------------------------------------


def cli_env(db: Database, tmp_path: Path) -> dict[str, str]:
    return {
        "CIVICARD_DATA_DIR": str(tmp_path / "var"),
        "CIVICARD_MODE": "demo",
        "CIVICARD_DATABASE_URL": db.url,
        "CIVICARD_ROOT_KEY": base64.b64encode(ROOT_KEY).decode(),
    }


def test_cli_statement_close_and_verify(town: Town, db: Database, tmp_path: Path) -> None:
    owed = _sales(town)
    env = cli_env(db, tmp_path)
    runner = CliRunner()
    csv_file, pdf_file = tmp_path / "s.csv", tmp_path / "s.pdf"
    args = ["statement", town.shop.id, "--period", PERIOD, "--csv", str(csv_file), "--pdf", str(pdf_file)]
    result = runner.invoke(settlement_app, args, env=env)
    assert result.exit_code == 0, result.output
    assert f"subsidy owed {owed // 100}.{owed % 100:02d}" in result.output
    assert len(csv_file.read_text().splitlines()) == 6 and pdf_file.read_bytes().startswith(b"%PDF")
    result = runner.invoke(settlement_app, ["verify", "--period", PERIOD], env=env)
    assert result.exit_code == 1 and "(period_not_settled)" in result.output
    result = runner.invoke(settlement_app, ["close", "--period", PERIOD], env=env)
    assert result.exit_code == 0 and f"closed {PERIOD}: 2 vendor(s)" in result.output
    result = runner.invoke(settlement_app, ["close", "--period", PERIOD], env=env)
    assert result.exit_code == 1 and "(period_closed)" in result.output
    assert runner.invoke(settlement_app, ["verify", "--period", PERIOD], env=env).exit_code == 0
    with town.engine.begin() as conn:
        conn.info["civicard.access_context"] = READER
        conn.execute(sa.update(t.ledger_lines).values(subsidized_price_minor=0))
    result = runner.invoke(settlement_app, ["verify", "--period", PERIOD], env=env)
    assert result.exit_code == 1 and "subsidy_minor" in result.output
    result = runner.invoke(settlement_app, ["statement", town.shop.id, "--period", "12-2026"], env=env)
    assert result.exit_code == 1 and "(invalid_period)" in result.output


# --- the API -------------------------------------------------------------------------------------------


def _signed_get(client: TestClient, key: Ed25519PrivateKey, terminal_id: str, target: str) -> object:
    import time

    stamp, nonce = int(time.time()), secrets.token_urlsafe(16)
    signature = sign_request(key, "GET", target, b"", stamp, nonce, terminal_id)
    headers = {
        "X-Civicard-Terminal": terminal_id,
        "X-Civicard-Timestamp": str(stamp),
        "X-Civicard-Nonce": nonce,
        "X-Civicard-Signature": encode_signature(signature),
    }
    return client.get(target, headers=headers)


def test_api_statement_for_oversight_and_the_vendors_own_terminal_only(
    town: Town, db: Database, tmp_path: Path
) -> None:
    owed = _sales(town)
    settings = Settings(**{k.removeprefix("CIVICARD_").lower(): v for k, v in cli_env(db, tmp_path).items()})  # type: ignore[arg-type]
    container = bootstrap(settings)
    try:
        app = create_app(container)
        if not any(getattr(r, "path", "") == "/v1/oversight/exclusions/{period}" for r in app.routes):
            app.include_router(settlement_routes.router)
        client = TestClient(app)
        secret = pyotp.random_base32()
        container.auth.create_staff_account(
            "olga", "Olga", "oversight", "oversight-password-2026", "t", totp_secret=secret
        )
        container.auth.create_staff_account("rosa", "Rosa", "registrar", "registrar-password-2026", "t")
        olga = container.auth.sign_in("olga", "oversight-password-2026", pyotp.TOTP(secret).now(), "t").session_token
        rosa = container.auth.sign_in("rosa", "registrar-password-2026", None, "t").session_token
        target = f"/v1/vendors/{town.shop.id}/statements/{PERIOD}"
        response = client.get(target, headers={"Authorization": f"Bearer {olga}"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["subsidy_minor"] == owed and len(body["reconciliation"]) == 5
        csv_response = client.get(target + ".csv", headers={"Authorization": f"Bearer {olga}"})
        assert csv_response.status_code == 200 and csv_response.headers["content-type"].startswith("text/csv")
        assert len(csv_response.text.splitlines()) == 6
        for household, (card_id, person_id) in town.holders.items():
            for secret_id in (household, card_id, person_id):
                assert secret_id not in response.text and secret_id not in csv_response.text
        assert client.get(target, headers={"Authorization": f"Bearer {rosa}"}).json()["code"] == "oversight_only"
        assert client.get(target).status_code == 401
        keys = {}
        for name, outlet in (("own", town.outlet_a), ("other", None)):
            key = Ed25519PrivateKey.generate()
            raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            if outlet is None:
                with SqlVendorUnitOfWork(town.engine, ADMIN, town.clock) as uow:
                    outlet = vendors.add_outlet(uow, town.pharmacy.id, "San Rafael", "pharmacy", "CEN-01", "Calle 1")
            registered = vendors.register_terminal(
                lambda: SqlVendorUnitOfWork(town.engine, ADMIN, town.clock),
                container.auth.register_terminal,
                outlet.id,
                f"{name} till",
                raw,
                "counter",
                "test",
            )
            keys[name] = (key, registered.id)
        own = _signed_get(client, *keys["own"], target)
        assert own.status_code == 200 and own.json()["subsidy_minor"] == owed  # type: ignore[attr-defined]
        other = _signed_get(client, *keys["other"], target)
        assert other.status_code == 403 and other.json()["code"] == "not_your_vendor"  # type: ignore[attr-defined]
        exclusions = client.get(f"/v1/oversight/exclusions/{PERIOD}", headers={"Authorization": f"Bearer {olga}"})
        assert exclusions.status_code == 200 and len(exclusions.json()["outlets"]) == 2
        terminal_reads = _signed_get(client, *keys["own"], f"/v1/oversight/exclusions/{PERIOD}")
        assert terminal_reads.status_code == 403  # type: ignore[attr-defined]
        bad = client.get(f"/v1/vendors/{town.shop.id}/statements/2026-1", headers={"Authorization": f"Bearer {olga}"})
        assert bad.status_code == 422
    finally:
        container.close()
