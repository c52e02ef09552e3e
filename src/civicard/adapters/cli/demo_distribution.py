"""The demo town's distribution: prices, a shop and a pharmacy in CEN-01, and their terminals.

Idempotent: prices are set only for items not yet priced in a period, vendors are found by their
tax id, and a terminal is registered only if no active one with its label serves at the outlet
(or its key file is gone, in which case the old one is revoked and replaced). Device private keys
are written to <data dir>/demo-terminals/<name>.key (base64 of the raw 32-byte Ed25519 key) —
only in demo mode; a real terminal keeps its key on the device.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console

from civicard.adapters.cli.demo_programs import demo_rulepacks
from civicard.adapters.cli.vendors import new_key_pair, register_outlet_terminal, vendor_uow
from civicard.bootstrap import Container
from civicard.distribution import vendors as service
from civicard.programs.cycles import period_of
from civicard.settings import Mode
from civicard.shared.errors import Forbidden

DEMO_BY = "demo:distribution"
MUNICIPALITY = "CEN-01"


@dataclass(frozen=True)
class DemoOutlet:
    key: str
    vendor_name: str
    tax_id: str
    outlet_name: str
    kind: str
    address: str


@dataclass(frozen=True)
class DemoTerminal:
    name: str  # also the key file's name
    outlet: str
    label: str
    role: str


OUTLETS = (
    DemoOutlet("shop", "Tienda La Esquina S.A.S.", "DEMO-900123456", "Tienda La Esquina", "shop", "Carrera 7 # 10-02"),
    DemoOutlet(
        "pharmacy", "Droguería San Rafael Ltda.", "DEMO-900654321", "Farmacia San Rafael", "pharmacy", "Calle 12 # 6-40"
    ),
)
TERMINALS = (
    DemoTerminal("shop-counter", "shop", "Tienda La Esquina, caja 1 (demo)", "counter"),
    DemoTerminal("shop-supervisor", "shop", "Tienda La Esquina, supervisora (demo)", "supervisor"),
    DemoTerminal("pharmacy-counter", "pharmacy", "Farmacia San Rafael, mostrador (demo)", "counter"),
)


def _next_period(day: date) -> str:
    return period_of(date(day.year + day.month // 12, day.month % 12 + 1, 1))


def set_up_demo_distribution(container: Container, console: Console) -> dict[str, Any]:
    """Prices for this month and next, the demo vendors, outlets and terminals; returns their ids.

    Run after the item catalogue is loaded (`publish_demo_programs`). Returns
    {"periods": [...], "vendors": {key: id}, "outlets": {key: id},
     "terminals": {name: {"id", "outlet_id", "role", "key_file"}}}.
    """
    if container.settings.mode is not Mode.DEMO:
        raise Forbidden("demo_only", "The demo distribution writes device keys to disk: demo mode only.")
    periods = _prices(container, console)
    vendors, outlets = _outlets(container)
    terminals = _terminals(container, outlets)
    _print_guide(console, vendors, outlets, terminals, periods)
    return {"periods": periods, "vendors": vendors, "outlets": outlets, "terminals": terminals}


def _prices(container: Container, console: Console) -> list[str]:
    sheet = service.parse_price_sheet((demo_rulepacks() / "prices.yaml").read_text(encoding="utf-8"))
    today = container.clock.today()
    periods = [period_of(today), _next_period(today)]
    for period in periods:
        with vendor_uow(container, DEMO_BY)() as uow:
            priced = set(uow.vendors.prices(period))
            missing = [p for p in sheet if p.item_code not in priced]
            if missing and uow.decisions.period_status(period) != "closed":
                count = service.set_prices(uow, period, missing, DEMO_BY)
                console.print(f"Prices for {period}: {count} items.", highlight=False)
    return periods


def _outlets(container: Container) -> tuple[dict[str, str], dict[str, str]]:
    vendors: dict[str, str] = {}
    outlets: dict[str, str] = {}
    for spec in OUTLETS:
        with vendor_uow(container, DEMO_BY)() as uow:
            vendor = uow.vendors.vendor_by_tax_id(spec.tax_id) or service.add_vendor(
                uow, spec.vendor_name, spec.tax_id, DEMO_BY
            )
        with vendor_uow(container, DEMO_BY)() as uow:
            existing = [o for o in uow.vendors.outlets(vendor.id) if o.name == spec.outlet_name and not o.closed_at]
            outlet = (
                existing[0]
                if existing
                else service.add_outlet(uow, vendor.id, spec.outlet_name, spec.kind, MUNICIPALITY, spec.address)
            )
        vendors[spec.key], outlets[spec.key] = vendor.id, outlet.id
    return vendors, outlets


def _terminals(container: Container, outlets: dict[str, str]) -> dict[str, dict[str, str]]:
    folder = container.settings.data_dir / "demo-terminals"
    folder.mkdir(parents=True, exist_ok=True)
    found: dict[str, dict[str, str]] = {}
    for spec in TERMINALS:
        outlet_id = outlets[spec.outlet]
        key_file = folder / f"{spec.name}.key"
        with vendor_uow(container, DEMO_BY)() as uow:
            active = [
                x
                for x in uow.vendors.terminals()
                if x.outlet_id == outlet_id and x.label == spec.label and x.revoked_at is None
            ]
        if active and key_file.is_file():
            terminal_id = active[0].id
        else:
            for stale in active:  # its key is lost: a terminal nobody can use should not stay valid
                service.revoke_terminal(
                    vendor_uow(container, DEMO_BY), container.auth.revoke_terminal, stale.id, DEMO_BY
                )
            private, public = new_key_pair()
            terminal_id = register_outlet_terminal(container, outlet_id, spec.label, public, spec.role, DEMO_BY).id
            _write_key(key_file, private)
        found[spec.name] = {"id": terminal_id, "outlet_id": outlet_id, "role": spec.role, "key_file": str(key_file)}
    return found


def _write_key(path: Path, private: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.b64encode(private).decode() + "\n")


def _print_guide(
    console: Console,
    vendors: dict[str, str],
    outlets: dict[str, str],
    terminals: dict[str, dict[str, str]],
    periods: list[str],
) -> None:
    console.print("\n[bold]Demo distribution[/bold] (municipality CEN-01)", highlight=False, soft_wrap=True)
    for spec in OUTLETS:
        console.print(
            f"  {spec.kind:<9} {spec.outlet_name}: vendor {vendors[spec.key]}, outlet {outlets[spec.key]}",
            highlight=False,
            soft_wrap=True,
        )
    for name, t in terminals.items():
        console.print(
            f"  terminal  {name} ({t['role']}): id {t['id']}, key {t['key_file']}", highlight=False, soft_wrap=True
        )
    console.print(
        "  A terminal signs each request with its key (headers X-Civicard-Terminal/-Timestamp/-Nonce/-Signature).\n"
        f"  Statement:   civicard settlement statement {vendors['shop']} --period {periods[0]} --pdf statement.pdf\n"
        f"  Exclusions:  civicard settlement exclusions --period {periods[0]}\n"
        f"  Close:       civicard settlement close --period {periods[0]}   (for good: no more sales that month)\n",
        highlight=False,
        soft_wrap=True,
    )
