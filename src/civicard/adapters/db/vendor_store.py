"""SQL storage for vendors, outlets, terminal placement and item prices; the vendor unit of work."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.distribution.vendors import ItemPrice, OutletRecord, TerminalRecord, Vendor
from civicard.shared.clock import as_utc

_OUTLET_FIELDS = ("id", "vendor_id", "name", "kind", "region", "municipality", "address_line", "created_at")


def _vendor(row: sa.Row[Any]) -> Vendor:
    return Vendor(row.id, row.name, row.tax_id, as_utc(row.created_at), row.created_by)


def _outlet(row: sa.Row[Any]) -> OutletRecord:
    closed = as_utc(row.closed_at) if row.closed_at is not None else None
    return OutletRecord(
        row.id,
        row.vendor_id,
        row.name,
        row.kind,
        row.region,
        row.municipality,
        row.address_line,
        as_utc(row.created_at),
        closed,
    )


def _terminal(row: sa.Row[Any]) -> TerminalRecord:
    revoked = as_utc(row.revoked_at) if row.revoked_at is not None else None
    return TerminalRecord(row.id, row.label, row.outlet_id, row.role, as_utc(row.registered_at), revoked)


class SqlVendors:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def add_vendor(self, vendor: Vendor) -> None:
        self.conn.execute(
            sa.insert(t.vendors).values(
                id=vendor.id,
                name=vendor.name,
                tax_id=vendor.tax_id,
                created_at=vendor.created_at,
                created_by=vendor.created_by,
            )
        )

    def vendor(self, vendor_id: str) -> Vendor | None:
        row = self.conn.execute(sa.select(t.vendors).where(t.vendors.c.id == vendor_id)).first()
        return _vendor(row) if row else None

    def vendor_by_tax_id(self, tax_id: str) -> Vendor | None:
        row = self.conn.execute(sa.select(t.vendors).where(t.vendors.c.tax_id == tax_id)).first()
        return _vendor(row) if row else None

    def vendors(self) -> list[Vendor]:
        rows = self.conn.execute(sa.select(t.vendors).order_by(t.vendors.c.name, t.vendors.c.id))
        return [_vendor(r) for r in rows]

    def add_outlet(self, outlet: OutletRecord) -> None:
        self.conn.execute(sa.insert(t.outlets).values(**{f: getattr(outlet, f) for f in _OUTLET_FIELDS}))

    def outlet(self, outlet_id: str) -> OutletRecord | None:
        row = self.conn.execute(sa.select(t.outlets).where(t.outlets.c.id == outlet_id)).first()
        return _outlet(row) if row else None

    def outlets(self, vendor_id: str | None = None) -> list[OutletRecord]:
        o = t.outlets
        query = sa.select(o).order_by(o.c.vendor_id, o.c.name, o.c.id)
        if vendor_id is not None:
            query = query.where(o.c.vendor_id == vendor_id)
        return [_outlet(r) for r in self.conn.execute(query)]

    def terminal(self, terminal_id: str) -> TerminalRecord | None:
        row = self.conn.execute(sa.select(t.terminals).where(t.terminals.c.id == terminal_id)).first()
        return _terminal(row) if row else None

    def terminals(self) -> list[TerminalRecord]:
        rows = self.conn.execute(sa.select(t.terminals).order_by(t.terminals.c.registered_at, t.terminals.c.id))
        return [_terminal(r) for r in rows]

    def place_terminal(self, terminal_id: str, outlet_id: str, role: str) -> None:
        self.conn.execute(
            sa.update(t.terminals).where(t.terminals.c.id == terminal_id).values(outlet_id=outlet_id, role=role)
        )

    def flag_unapplied_receipts(self, terminal_id: str, conflict: str) -> int:
        """Mark the terminal's offline receipts that were not applied (pending or already in
        conflict) as conflicts with `conflict`; applied ones stay as they are (the sale happened)."""
        r = t.offline_receipts
        done = self.conn.execute(
            sa.update(r)
            .where(r.c.terminal_id == terminal_id, r.c.status != "applied")
            .values(status="conflict", conflict=conflict)
        )
        return int(done.rowcount)

    def item_kinds(self) -> dict[str, str]:
        return {r.code: r.kind for r in self.conn.execute(sa.select(t.items.c.code, t.items.c.kind))}

    def put_prices(self, period: str, prices: list[ItemPrice], by: str, now: datetime) -> None:
        p = t.item_prices
        existing = set(self.conn.execute(sa.select(p.c.item_code).where(p.c.period == period)).scalars())
        for price in prices:
            values = {
                "reference_price_minor": price.reference_minor,
                "subsidized_price_minor": price.subsidized_minor,
                "set_at": now,
                "set_by": by,
            }
            if price.item_code in existing:
                self.conn.execute(
                    sa.update(p).where(p.c.period == period, p.c.item_code == price.item_code).values(**values)
                )
            else:
                self.conn.execute(sa.insert(p).values(item_code=price.item_code, period=period, **values))

    def prices(self, period: str) -> dict[str, ItemPrice]:
        p = t.item_prices
        rows = self.conn.execute(sa.select(p).where(p.c.period == period))
        return {r.item_code: ItemPrice(r.item_code, r.reference_price_minor, r.subsidized_price_minor) for r in rows}


class SqlVendorUnitOfWork(SqlUnitOfWork):
    """The unit of work plus the vendor store, on the same connection and transaction."""

    def __enter__(self) -> SqlVendorUnitOfWork:
        super().__enter__()
        self.vendors = SqlVendors(self.connection)
        return self


def terminal_vendor(conn: sa.Connection, terminal_id: str) -> str | None:
    """The vendor whose outlet the terminal serves at (None for a terminal at no outlet)."""
    tm, o = t.terminals, t.outlets
    query = sa.select(o.c.vendor_id).join(tm, tm.c.outlet_id == o.c.id).where(tm.c.id == terminal_id)
    found: str | None = conn.execute(query).scalar_one_or_none()
    return found


__all__ = ["SqlVendorUnitOfWork", "SqlVendors", "terminal_vendor"]
