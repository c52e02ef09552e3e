"""Vendors, their outlets and terminals, and item prices by period: distribution's administration.

Vendors, outlets, terminals and prices are system records (no personal data). Flagging a revoked
terminal's unsynced offline receipts touches a personal table, so every use case runs in a unit of
work with an actor and a purpose (`distribution_admin`) and writes its log entry in the same
transaction as the change.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import yaml

from civicard.programs.cycles import period_start
from civicard.registry.vocabulary import vocabulary
from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, InvalidInput, NotFound
from civicard.shared.ids import is_id, new_id
from civicard.transparency.access import AccessContext, AccessLog, record_change

OUTLET_KINDS = ("shop", "pharmacy")
TERMINAL_ROLES = ("counter", "supervisor")
REVOKED_CONFLICT = "terminal_revoked"
MAX_PRICE_MINOR = 100_000_000  # one unit above 1,000,000.00 is a typing error, not a price
_TAX_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-/]{0,39}")


@dataclass(frozen=True)
class Vendor:
    id: str
    name: str
    tax_id: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class OutletRecord:
    id: str
    vendor_id: str
    name: str
    kind: str
    region: str
    municipality: str
    address_line: str
    created_at: datetime
    closed_at: datetime | None = None


@dataclass(frozen=True)
class TerminalRecord:
    id: str
    label: str
    outlet_id: str | None
    role: str
    registered_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class ItemPrice:
    """One unit of an item in a period: what it costs (reference) and what the holder pays."""

    item_code: str
    reference_minor: int
    subsidized_minor: int


class VendorStore(Protocol):
    def add_vendor(self, vendor: Vendor) -> None: ...
    def vendor(self, vendor_id: str) -> Vendor | None: ...
    def vendor_by_tax_id(self, tax_id: str) -> Vendor | None: ...
    def vendors(self) -> list[Vendor]: ...
    def add_outlet(self, outlet: OutletRecord) -> None: ...
    def outlet(self, outlet_id: str) -> OutletRecord | None: ...
    def outlets(self, vendor_id: str | None = None) -> list[OutletRecord]: ...
    def terminal(self, terminal_id: str) -> TerminalRecord | None: ...
    def terminals(self) -> list[TerminalRecord]: ...
    def place_terminal(self, terminal_id: str, outlet_id: str, role: str) -> None: ...
    def flag_unapplied_receipts(self, terminal_id: str, conflict: str) -> int: ...
    def item_kinds(self) -> dict[str, str]: ...
    def put_prices(self, period: str, prices: list[ItemPrice], by: str, now: datetime) -> None: ...
    def prices(self, period: str) -> dict[str, ItemPrice]: ...


class Periods(Protocol):
    def period_status(self, period: str) -> str | None: ...


class VendorUnitOfWork(Protocol):
    @property
    def vendors(self) -> VendorStore: ...
    @property
    def decisions(self) -> Periods: ...
    @property
    def access_log(self) -> AccessLog: ...
    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...

    def commit(self) -> None: ...


def _log(uow: VendorUnitOfWork, detail: str) -> None:
    record_change(uow.access_log, uow.context, [], [], detail, uow.clock.now())


def _text(value: str, what: str, longest: int) -> str:
    shown = " ".join(value.split())
    if not 1 <= len(shown) <= longest:
        raise InvalidInput(f"invalid_{what}", f"A {what.replace('_', ' ')} is 1–{longest} characters.")
    return shown


# --- vendors and outlets ---------------------------------------------------------------------------


def add_vendor(uow: VendorUnitOfWork, name: str, tax_id: str, by: str) -> Vendor:
    """Register a vendor; a tax id names one vendor only (`vendor_exists`)."""
    tax = tax_id.strip().upper()
    if not _TAX_ID.fullmatch(tax):
        raise InvalidInput("invalid_tax_id", "A tax id is 1–40 letters, digits, '.', '-' or '/'.")
    if uow.vendors.vendor_by_tax_id(tax) is not None:
        raise Conflict("vendor_exists", f"A vendor with tax id {tax} is already registered.")
    vendor = Vendor(new_id(), _text(name, "vendor_name", 200), tax, uow.clock.now(), by)
    uow.vendors.add_vendor(vendor)
    _log(uow, f"registered vendor {vendor.id} ({vendor.name})")
    uow.commit()
    return vendor


def require_vendor(uow: VendorUnitOfWork, vendor_id: str) -> Vendor:
    found = uow.vendors.vendor(vendor_id) if is_id(vendor_id) else None
    if found is None:
        raise NotFound("vendor_not_found", "There is no vendor with that id.")
    return found


def require_outlet(uow: VendorUnitOfWork, outlet_id: str) -> OutletRecord:
    """An open outlet (terminals are only placed at outlets that still trade)."""
    found = uow.vendors.outlet(outlet_id) if is_id(outlet_id) else None
    if found is None or found.closed_at is not None:
        raise NotFound("outlet_not_found", "There is no open outlet with that id.")
    return found


def add_outlet(
    uow: VendorUnitOfWork, vendor_id: str, name: str, kind: str, municipality: str, address_line: str
) -> OutletRecord:
    """Add an outlet; its region follows from the municipality, its kind decides what it may serve."""
    vendor = require_vendor(uow, vendor_id)
    if kind not in OUTLET_KINDS:
        raise InvalidInput("unknown_outlet_kind", f"An outlet is one of: {', '.join(OUTLET_KINDS)}.")
    region = vocabulary().region_of(municipality)
    outlet = OutletRecord(
        id=new_id(),
        vendor_id=vendor.id,
        name=_text(name, "outlet_name", 200),
        kind=kind,
        region=region,
        municipality=municipality,
        address_line=_text(address_line, "address", 300),
        created_at=uow.clock.now(),
    )
    uow.vendors.add_outlet(outlet)
    _log(uow, f"added {kind} outlet {outlet.id} to vendor {vendor.id}")
    uow.commit()
    return outlet


# --- terminals ---------------------------------------------------------------------------------------


class RegisteredTerminal(Protocol):
    @property
    def id(self) -> str: ...


def register_terminal(
    open_uow: Callable[[], AbstractContextManager[VendorUnitOfWork]],
    register_key: Callable[[str, bytes, str], RegisteredTerminal],
    outlet_id: str,
    label: str,
    public_key: bytes,
    role: str,
    by: str,
) -> TerminalRecord:
    """Register a device key (`register_key`, the authentication store's own transaction), then place
    the terminal at its outlet with its role. The outlet and role are checked before the key is
    registered, so a refusal leaves nothing behind."""
    if role not in TERMINAL_ROLES:
        raise InvalidInput("unknown_terminal_role", f"A terminal role is one of: {', '.join(TERMINAL_ROLES)}.")
    with open_uow() as uow:
        outlet = require_outlet(uow, outlet_id)
    registered = register_key(label, public_key, by)
    with open_uow() as uow:
        uow.vendors.place_terminal(registered.id, outlet.id, role)
        _log(uow, f"registered {role} terminal {registered.id} at outlet {outlet.id}")
        uow.commit()
        placed = uow.vendors.terminal(registered.id)
    if placed is None:  # pragma: no cover - the row was committed just above
        raise NotFound("terminal_not_found", "The terminal vanished after registration.")
    return placed


def revoke_terminal(
    open_uow: Callable[[], AbstractContextManager[VendorUnitOfWork]],
    revoke_key: Callable[[str, str], object],
    terminal_id: str,
    by: str,
) -> int:
    """Revoke a terminal at once (`revoke_key` commits before anything else), then flag its offline
    receipts not yet applied as conflicts for review; returns how many were flagged."""
    revoke_key(terminal_id, by)
    with open_uow() as uow:
        flagged = uow.vendors.flag_unapplied_receipts(terminal_id, REVOKED_CONFLICT)
        _log(uow, f"revoked terminal {terminal_id}; {flagged} unapplied offline receipt(s) flagged")
        uow.commit()
    return flagged


# --- prices ------------------------------------------------------------------------------------------


def parse_price_sheet(text: str) -> list[ItemPrice]:
    """`prices: {CODE: {reference: 320, subsidized: 64}}` in integer minor units; subsidized ≤ reference."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput("invalid_price_sheet", f"not valid YAML: {str(exc).splitlines()[0]}") from None
    entries = raw.get("prices") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise InvalidInput(
            "invalid_price_sheet", "a price sheet is a mapping `prices:` of item code → reference, subsidized"
        )
    return [_price(str(code), spec) for code, spec in entries.items()]


def _price(code: str, spec: Any) -> ItemPrice:
    values = [spec.get(k) if isinstance(spec, dict) else None for k in ("reference", "subsidized")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_PRICE_MINOR for v in values):
        raise InvalidInput(
            "invalid_price", f"{code}: reference and subsidized are whole numbers of minor units (320 is 3.20)."
        )
    reference, subsidized = int(values[0]), int(values[1])  # type: ignore[arg-type]
    if subsidized > reference:
        raise InvalidInput("price_above_reference", f"{code}: the subsidized price is above the reference price.")
    return ItemPrice(code, reference, subsidized)


def set_prices(uow: VendorUnitOfWork, period: str, prices: list[ItemPrice], by: str) -> int:
    """Set (or replace) the period's prices of the listed items; a closed period's prices never change.

    Sales copy the prices onto their ledger lines, so a price changed mid-period changes later sales only.
    """
    period_start(period)
    if uow.decisions.period_status(period) == "closed":
        raise Conflict("period_closed", f"Period {period} is closed (settled); its prices can no longer change.")
    known = uow.vendors.item_kinds()
    unknown = sorted({p.item_code for p in prices} - set(known))
    if unknown:
        raise InvalidInput("unknown_item", f"Not in the item catalogue: {', '.join(unknown)}.")
    if len({p.item_code for p in prices}) != len(prices):
        raise InvalidInput("invalid_price_sheet", "An item is priced twice.")
    uow.vendors.put_prices(period, prices, by, uow.clock.now())
    _log(uow, f"set {len(prices)} item price(s) for {period}")
    uow.commit()
    return len(prices)
