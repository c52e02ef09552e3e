"""Vendors, outlets, terminals and prices on both databases, through the services and `civicard vendors`."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from rich.console import Console
from typer.testing import CliRunner

from civicard.adapters.cli import vendors as vendors_cli
from civicard.adapters.cli.demo_distribution import set_up_demo_distribution
from civicard.adapters.cli.vendors import vendors_app
from civicard.adapters.db import tables as t
from civicard.adapters.db.auth_store import AuthStore
from civicard.adapters.db.vendor_store import SqlVendorUnitOfWork
from civicard.bootstrap import bootstrap
from civicard.distribution import vendors
from civicard.settings import Settings
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.ids import new_id
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Actor

from ..conftest import Database

RULES = Path(__file__).resolve().parents[2] / "rulepacks"
ADMIN = AccessContext(Actor("test:admin", "system"), "distribution_admin")
ROOT_KEY = secrets.token_bytes(32)
runner = CliRunner()


def _uow(engine: sa.Engine, clock: Clock) -> SqlVendorUnitOfWork:
    return SqlVendorUnitOfWork(engine, ADMIN, clock)


def _code(call: object) -> str:
    assert callable(call)
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value.code


def _load_items(engine: sa.Engine, clock: Clock) -> None:
    from types import SimpleNamespace

    from civicard.programs import publishing

    admin = SimpleNamespace(id="test-admin", username="admin", role="program_admin")
    context = AccessContext(Actor("test-admin", "program_admin"), "program_publication")
    with SqlVendorUnitOfWork(engine, context, clock) as uow:
        publishing.load_catalogue(uow, (RULES / "items.yaml").read_text(encoding="utf-8"), admin)


def _public_key() -> bytes:
    return Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_a_vendor_gets_outlets_with_the_region_of_their_municipality(engine: sa.Engine, clock: Clock) -> None:
    with _uow(engine, clock) as uow:
        shop = vendors.add_vendor(uow, "  Tienda   La Esquina ", "900123456-7", "test")
    with _uow(engine, clock) as uow:
        outlet = vendors.add_outlet(uow, shop.id, "Centro", "shop", "CEN-01", "Carrera 7 # 10-02")
    assert shop.name == "Tienda La Esquina" and (outlet.region, outlet.kind) == ("CENTRO", "shop")
    with _uow(engine, clock) as uow:
        assert uow.vendors.outlets(shop.id) == [outlet]
        assert _code(lambda: vendors.add_vendor(uow, "Other", "900123456-7", "t")) == "vendor_exists"
        assert _code(lambda: vendors.add_outlet(uow, shop.id, "X", "bar", "CEN-01", "a")) == "unknown_outlet_kind"
        assert _code(lambda: vendors.add_outlet(uow, shop.id, "X", "shop", "ZZZ-99", "a")) == "unknown_municipality"
        assert _code(lambda: vendors.add_outlet(uow, new_id(), "X", "shop", "CEN-01", "a")) == "vendor_not_found"


def test_terminals_are_placed_at_an_outlet_and_revoking_flags_unapplied_receipts(
    engine: sa.Engine, clock: Clock
) -> None:
    auth = AuthStore(engine, clock, RootKey(ROOT_KEY))
    with _uow(engine, clock) as uow:
        shop = vendors.add_vendor(uow, "Tienda", "1", "test")
    with _uow(engine, clock) as uow:
        outlet = vendors.add_outlet(uow, shop.id, "Centro", "shop", "CEN-01", "Calle 1")
    open_uow = lambda: _uow(engine, clock)  # noqa: E731
    till = vendors.register_terminal(
        open_uow, auth.register_terminal, outlet.id, "Caja 1", _public_key(), "counter", "t"
    )
    boss = vendors.register_terminal(
        open_uow, auth.register_terminal, outlet.id, "Supervisora", _public_key(), "supervisor", "t"
    )
    assert (till.outlet_id, till.role, boss.role) == (outlet.id, "counter", "supervisor")
    assert (
        _code(
            lambda: vendors.register_terminal(
                open_uow, auth.register_terminal, new_id(), "x", _public_key(), "counter", "t"
            )
        )
        == "outlet_not_found"
    )
    assert (
        _code(
            lambda: vendors.register_terminal(
                open_uow, auth.register_terminal, outlet.id, "x", _public_key(), "boss", "t"
            )
        )
        == "unknown_terminal_role"
    )
    with _uow(engine, clock) as uow:
        rows = [
            {"status": status, "seq": seq, "conflict": None}
            for seq, status in enumerate(("applied", "pending", "conflict"), start=1)
        ]
        for row in rows:
            uow.connection.execute(
                sa.insert(t.offline_receipts).values(
                    id=new_id(),
                    terminal_id=till.id,
                    period="2026-12",
                    payload="{}",
                    signature=b"\0" * 64,
                    received_at=clock.now(),
                    redemption_id=None,
                    **row,
                )
            )
        uow.commit()
    assert vendors.revoke_terminal(open_uow, auth.revoke_terminal, till.id, "t") == 2
    with _uow(engine, clock) as uow:
        receipts = uow.connection.execute(
            sa.select(t.offline_receipts.c.seq, t.offline_receipts.c.status, t.offline_receipts.c.conflict).order_by(
                t.offline_receipts.c.seq
            )
        ).all()
        assert uow.vendors.terminal(till.id).revoked_at is not None  # type: ignore[union-attr]
    assert [tuple(r) for r in receipts] == [
        (1, "applied", None),
        (2, "conflict", "terminal_revoked"),
        (3, "conflict", "terminal_revoked"),
    ]
    assert (
        _code(lambda: vendors.revoke_terminal(open_uow, auth.revoke_terminal, till.id, "t"))
        == "terminal_already_revoked"
    )


def test_prices_are_checked_and_the_shipped_sheet_prices_every_item(engine: sa.Engine, clock: Clock) -> None:
    _load_items(engine, clock)
    sheet = vendors.parse_price_sheet((RULES / "prices.yaml").read_text(encoding="utf-8"))
    items = yaml.safe_load((RULES / "items.yaml").read_text(encoding="utf-8"))["items"]
    assert {p.item_code for p in sheet} == set(items)
    for price in sheet:
        if items[price.item_code]["kind"] == "medicine":
            assert price.subsidized_minor == 0 < price.reference_minor
        else:
            assert 0.10 <= price.subsidized_minor / price.reference_minor <= 0.30, price
    with _uow(engine, clock) as uow:
        assert vendors.set_prices(uow, "2026-12", sheet, "test") == len(items)
    with _uow(engine, clock) as uow:
        assert uow.vendors.prices("2026-12")["RICE-1KG"] == vendors.ItemPrice("RICE-1KG", 320, 64)
        vendors.set_prices(uow, "2026-12", [vendors.ItemPrice("RICE-1KG", 330, 66)], "test")
    with _uow(engine, clock) as uow:
        assert uow.vendors.prices("2026-12")["RICE-1KG"].reference_minor == 330
        assert (
            _code(lambda: vendors.set_prices(uow, "2026-12", [vendors.ItemPrice("CAVIAR", 1, 0)], "t"))
            == "unknown_item"
        )
        assert _code(lambda: vendors.set_prices(uow, "12-2026", sheet, "t")) == "invalid_period"
    assert _code(lambda: vendors.parse_price_sheet("prices: {RICE-1KG: {reference: 100, subsidized: 120}}")) == (
        "price_above_reference"
    )
    assert (
        _code(lambda: vendors.parse_price_sheet("prices: {RICE-1KG: {reference: 3.2, subsidized: 1}}"))
        == "invalid_price"
    )
    assert _code(lambda: vendors.parse_price_sheet("- a list")) == "invalid_price_sheet"


def _env(db: Database, tmp_path: Path) -> dict[str, str]:
    return {
        "CIVICARD_DATA_DIR": str(tmp_path / "var"),
        "CIVICARD_MODE": "demo",
        "CIVICARD_DATABASE_URL": db.url,
        "CIVICARD_ROOT_KEY": base64.b64encode(ROOT_KEY).decode(),
    }


def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(vendors_app, list(args), env=env)
    return result.exit_code, result.output


def test_the_vendors_command_line(
    db: Database, engine: sa.Engine, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vendors_cli.out, "width", 240)
    _load_items(engine, clock)
    env = _env(db, tmp_path)
    code, output = _run(env, "add", "Farmacia San Rafael", "--tax-id", "900654321")
    assert code == 0, output
    vendor_id = output.split()[1]
    code, output = _run(
        env,
        "outlet-add",
        vendor_id,
        "San Rafael Centro",
        "--kind",
        "pharmacy",
        "--municipality",
        "CEN-01",
        "--address",
        "Calle 12 # 6-40",
    )
    assert code == 0 and "(pharmacy, CEN-01, CENTRO)" in output, output
    outlet_id = output.split()[1]
    public = base64.b64encode(_public_key()).decode()
    code, output = _run(env, "terminal-register", outlet_id, "--label", "Mostrador", "--public-key", public)
    assert code == 0 and "(counter)" in output, output
    terminal_id = output.split()[1]
    code, output = _run(env, "terminal-register", outlet_id, "--label", "Jefa", "--role", "supervisor", "--generate")
    assert code == 0 and "(supervisor)" in output and "Private device key" in output
    assert len(base64.b64decode(output.strip().splitlines()[-1].strip())) == 32
    assert _run(env, "terminal-register", outlet_id, "--label", "x")[0] == 2
    code, output = _run(env, "terminal-register", new_id(), "--label", "x", "--generate")
    assert code == 1 and "(outlet_not_found)" in output
    code, output = _run(env, "list")
    assert code == 0 and "San Rafael Centro" in output and "Mostrador" in output and "supervisor" in output
    code, output = _run(env, "terminal-revoke", terminal_id)
    assert code == 0 and "0 unapplied offline receipt(s)" in output
    assert "(terminal_already_revoked)" in _run(env, "terminal-revoke", terminal_id)[1]
    code, output = _run(env, "prices", "2026-12", "--file", str(RULES / "prices.yaml"))
    assert code == 0 and "24 item(s)" in output, output
    code, output = _run(env, "prices", "2026-12")
    assert code == 0 and "RICE-1KG" in output and "3.20" in output and "0.64" in output
    bad = tmp_path / "bad.yaml"
    bad.write_text("prices: {UNOBTAINIUM: {reference: 1, subsidized: 0}}")
    code, output = _run(env, "prices", "2026-12", "--file", str(bad))
    assert code == 1 and "(unknown_item)" in output and len(output.strip().splitlines()) == 1


def test_the_demo_distribution_is_idempotent_and_writes_demo_keys(
    db: Database, engine: sa.Engine, tmp_path: Path
) -> None:
    _load_items(engine, Clock())
    settings = Settings(**{k.removeprefix("CIVICARD_").lower(): v for k, v in _env(db, tmp_path).items()})  # type: ignore[arg-type]
    container = bootstrap(settings)
    try:
        console = Console(record=True, width=200)
        first = set_up_demo_distribution(container, console)
        second = set_up_demo_distribution(container, console)
    finally:
        container.close()
    assert first == second
    assert set(first["terminals"]) == {"shop-counter", "shop-supervisor", "pharmacy-counter"}
    key_file = Path(first["terminals"]["shop-counter"]["key_file"])
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(key_file.read_text()))
    with _uow(engine, Clock()) as uow:
        terminals = {x.id: x for x in uow.vendors.terminals()}
        stored = uow.connection.execute(
            sa.select(t.terminals.c.public_key).where(t.terminals.c.id == first["terminals"]["shop-counter"]["id"])
        ).scalar_one()
        assert len(uow.vendors.prices(first["periods"][1])) == 24
        outlets = {o.id: o for o in uow.vendors.outlets()}
    assert private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) == stored
    assert len(terminals) == 3 and {outlets[o].kind for o in first["outlets"].values()} == {"shop", "pharmacy"}
    assert "civicard settlement statement" in console.export_text()
