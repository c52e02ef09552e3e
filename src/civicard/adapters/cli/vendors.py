"""`civicard vendors …`: vendors, outlets, terminals and item prices (exit 0 ok, 1 refused, 2 usage)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from rich.console import Console
from rich.table import Table

from civicard.adapters.cli.users import operator
from civicard.adapters.db.vendor_store import SqlVendorUnitOfWork
from civicard.bootstrap import Container
from civicard.distribution import vendors as service
from civicard.distribution.vendors import TerminalRecord
from civicard.transparency.access import AccessContext, Actor

vendors_app = typer.Typer(help="Vendors, outlets, terminals and item prices.", no_args_is_help=True)
out = Console()
T = TypeVar("T")


class OutletKind(StrEnum):
    shop = "shop"
    pharmacy = "pharmacy"


class TerminalRole(StrEnum):
    counter = "counter"
    supervisor = "supervisor"


def admin_context(by: str) -> AccessContext:
    return AccessContext(Actor(by, "system"), "distribution_admin")


def vendor_uow(built: Container, by: str) -> Callable[[], SqlVendorUnitOfWork]:
    return lambda: SqlVendorUnitOfWork(built.engine, admin_context(by), built.clock)


@contextmanager
def _container() -> Iterator[Container]:
    from civicard.adapters.cli.main import container

    with container() as built:
        yield built


def _run(action: Callable[[], T]) -> T:
    from civicard.adapters.cli.users import _run as run_refusing

    return run_refusing(action)


def _usage(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]usage:[/red] {message}", highlight=False)
    return typer.Exit(2)


def new_key_pair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 device key: (raw 32-byte private key, raw 32-byte public key)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return private, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def register_outlet_terminal(
    built: Container, outlet_id: str, label: str, public_key: bytes, role: str, by: str
) -> TerminalRecord:
    return service.register_terminal(
        vendor_uow(built, by), built.auth.register_terminal, outlet_id, label, public_key, role, by
    )


@vendors_app.command("add")
def vendors_add(
    name: Annotated[str, typer.Argument(help="The vendor's business name.")],
    tax_id: Annotated[str, typer.Option("--tax-id", help="Tax identification number (one vendor each).")],
) -> None:
    """Register a vendor (a shop or pharmacy business); add its outlets with `outlet-add`."""
    by = operator()
    with _container() as built:
        vendor = _run(lambda: _add_vendor(built, name, tax_id, by))
    out.print(f"vendor {vendor.id} {vendor.name} (tax id {vendor.tax_id})", highlight=False)


def _add_vendor(built: Container, name: str, tax_id: str, by: str) -> service.Vendor:
    with vendor_uow(built, by)() as uow:
        return service.add_vendor(uow, name, tax_id, by)


@vendors_app.command("outlet-add")
def vendors_outlet_add(
    vendor_id: Annotated[str, typer.Argument(help="The vendor's id.")],
    name: Annotated[str, typer.Argument(help="The outlet's name, as customers know it.")],
    kind: Annotated[OutletKind, typer.Option(help="shop (food, hygiene) or pharmacy (medicine, hygiene).")],
    municipality: Annotated[str, typer.Option(help="Municipality code, e.g. CEN-01 (the region follows).")],
    address: Annotated[str, typer.Option(help="Street address.")],
) -> None:
    """Add an outlet to a vendor."""
    by = operator()
    with _container() as built:
        outlet = _run(lambda: _add_outlet(built, vendor_id, name, kind.value, municipality, address, by))
    out.print(
        f"outlet {outlet.id} {outlet.name} ({outlet.kind}, {outlet.municipality}, {outlet.region})", highlight=False
    )


def _add_outlet(
    built: Container, vendor_id: str, name: str, kind: str, municipality: str, address: str, by: str
) -> service.OutletRecord:
    with vendor_uow(built, by)() as uow:
        return service.add_outlet(uow, vendor_id, name, kind, municipality, address)


@vendors_app.command("list")
def vendors_list() -> None:
    """Every vendor with its outlets and their terminals."""
    with _container() as built, vendor_uow(built, operator())() as uow:
        vendors = uow.vendors.vendors()
        outlets = uow.vendors.outlets()
        terminals = uow.vendors.terminals()
    names = {v.id: v.name for v in vendors}
    table = Table("vendor", "outlet", "kind", "municipality", "terminal", "role", "state")
    for vendor in vendors:
        table.add_row(f"{vendor.name}\n{vendor.id}", "", "", "", "", "", f"tax id {vendor.tax_id}")
        for outlet in (o for o in outlets if o.vendor_id == vendor.id):
            state = "closed" if outlet.closed_at else "open"
            table.add_row("", f"{outlet.name}\n{outlet.id}", outlet.kind, outlet.municipality, "", "", state)
            for terminal in (x for x in terminals if x.outlet_id == outlet.id):
                revoked = f"revoked {terminal.revoked_at:%Y-%m-%d}" if terminal.revoked_at else "active"
                table.add_row("", "", "", "", f"{terminal.label}\n{terminal.id}", terminal.role, revoked)
    out.print(table)
    loose = [x for x in terminals if x.outlet_id is None]
    out.print(f"{len(names)} vendor(s), {len(outlets)} outlet(s), {len(terminals) - len(loose)} terminal(s) at outlets")
    if loose:
        out.print(f"{len(loose)} terminal(s) at no outlet (registered before outlets existed)")


@vendors_app.command("terminal-register")
def vendors_terminal_register(
    outlet_id: Annotated[str, typer.Argument(help="The outlet the terminal serves at.")],
    label: Annotated[str, typer.Option(help="Which device, e.g. 'Tienda La Esquina, caja 1'.")],
    public_key: Annotated[
        str | None, typer.Option("--public-key", help="The device's raw Ed25519 public key, base64.")
    ] = None,
    role: Annotated[TerminalRole, typer.Option(help="counter (redeems) or supervisor (attests fallbacks).")] = (
        TerminalRole.counter
    ),
    generate: Annotated[
        bool, typer.Option("--generate", help="Demo: make a new key pair and print its private key once.")
    ] = False,
) -> None:
    """Register a terminal's device key at an outlet; its id goes into every request it signs."""
    if (public_key is None) == (not generate):
        raise _usage("give exactly one of --public-key or --generate")
    private: bytes | None = None
    if generate:
        private, raw = new_key_pair()
    else:
        try:
            text = (public_key or "").strip().rstrip("=").replace("-", "+").replace("_", "/")
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise _usage("--public-key is not base64") from None
    by = operator()
    with _container() as built:
        terminal = _run(lambda: register_outlet_terminal(built, outlet_id, label, raw, role.value, by))
    out.print(
        f"terminal {terminal.id} {terminal.label} ({terminal.role}) at outlet {terminal.outlet_id}", highlight=False
    )
    if private is not None:
        out.print("Private device key (base64, raw 32 bytes) — shown only now; keep it on the device:")
        out.print(f"  {base64.b64encode(private).decode()}", highlight=False)


@vendors_app.command("terminal-revoke")
def vendors_terminal_revoke(terminal_id: Annotated[str, typer.Argument(help="The terminal's id.")]) -> None:
    """Revoke a terminal at once (a lost or stolen device); its unapplied offline receipts are flagged."""
    by = operator()
    with _container() as built:
        flagged = _run(
            lambda: service.revoke_terminal(vendor_uow(built, by), built.auth.revoke_terminal, terminal_id, by)
        )
    out.print(
        f"revoked terminal {terminal_id}; {flagged} unapplied offline receipt(s) flagged for review", highlight=False
    )


@vendors_app.command("prices")
def vendors_prices(
    period: Annotated[str, typer.Argument(help="The month, YYYY-MM.")],
    file: Annotated[
        Path | None, typer.Option("--file", help="A price sheet (rulepacks/prices.yaml); without it, show the prices.")
    ] = None,
) -> None:
    """Set the reference and subsidized price of items for a period (integer minor units), or show them."""
    from civicard.adapters.cli.main import fail

    by = operator()
    text = None
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read {file}: {exc.__class__.__name__}") from None
    with _container() as built:
        if text is not None:
            count = _run(lambda: _set_prices(built, period, text, by))
            out.print(f"prices set for {period}: {count} item(s)", highlight=False)
            return
        with vendor_uow(built, by)() as uow:
            prices = uow.vendors.prices(period)
    from civicard.distribution.statement_render import money

    table = Table("item", "reference", "subsidized", "subsidy per unit")
    for code in sorted(prices):
        p = prices[code]
        table.add_row(
            code, money(p.reference_minor), money(p.subsidized_minor), money(p.reference_minor - p.subsidized_minor)
        )
    out.print(table)
    out.print(f"{len(prices)} item(s) priced for {period}", highlight=False)


def _set_prices(built: Container, period: str, text: str, by: str) -> int:
    prices = service.parse_price_sheet(text)
    with vendor_uow(built, by)() as uow:
        return service.set_prices(uow, period, prices, by)
