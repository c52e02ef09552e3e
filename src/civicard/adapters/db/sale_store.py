"""Posting a sale: lock the household's entitlements, decrement, write the redemption and its
ledger lines — in the caller's transaction, so a sale is all there or not at all.

Every decrement is also a guarded UPDATE (`remaining >= quantity`), so even where row locks are
not taken (SQLite serialises writers instead) no entitlement can go below zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.decision_store import period_status
from civicard.distribution.sales import Allocation, BasketLine, Price, Refused, Slot, allocate
from civicard.shared.ids import new_id


@dataclass(frozen=True)
class Outlet:
    id: str
    vendor_id: str
    kind: str
    name: str
    region: str


@dataclass(frozen=True)
class PostedSale:
    redemption_id: str
    period: str
    allocations: tuple[Allocation, ...]
    remaining: dict[str, int]  # item → what the household has left of it after the sale
    units: dict[str, str]  # item → its unit, for the receipt

    @property
    def total_minor(self) -> int:
        return sum(a.paid_minor for a in self.allocations)

    @property
    def subsidy_minor(self) -> int:
        return sum(a.subsidy_minor for a in self.allocations)


# Built once: on the redemption path, building a statement costs more than running it.
_I, _P, _S, _E = t.items, t.item_prices, t.serving_rules, t.entitlements
_OFFER = (
    sa.select(
        _I.c.code,
        _I.c.kind,
        _I.c.unit,
        _P.c.reference_price_minor,
        _P.c.subsidized_price_minor,
        _S.c.item_kind.label("served"),
    )
    .select_from(
        _I.outerjoin(_P, (_P.c.item_code == _I.c.code) & (_P.c.period == sa.bindparam("period"))).outerjoin(
            _S, (_S.c.item_kind == _I.c.kind) & (_S.c.outlet_kind == sa.bindparam("outlet_kind"))
        )
    )
    .where(_I.c.code.in_(sa.bindparam("items", expanding=True)))
)
_SLOTS = (
    sa.select(_E.c.id, _E.c.program, _E.c.item_code, _E.c.granted, _E.c.remaining)
    .where(_E.c.period == sa.bindparam("period"), _E.c.household_id == sa.bindparam("household_id"))
    .order_by(_E.c.program, _E.c.id)
)
_SLOTS_LOCKED = _SLOTS.with_for_update()
# Guarded: never below zero, even where no row lock was taken (SQLite serialises writers instead).
_DECREMENT = (
    sa.update(_E)
    .where(
        _E.c.period == sa.bindparam("w_period"),
        _E.c.id == sa.bindparam("w_id"),
        _E.c.remaining >= sa.bindparam("quantity"),
    )
    .values(remaining=_E.c.remaining - sa.bindparam("quantity"))
)
_INSERT_REDEMPTION = sa.insert(t.redemptions)
_INSERT_LEDGER_LINE = sa.insert(t.ledger_lines)


class SqlSales:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        # Periods share-locked in the current transaction (the transaction object is the key: a
        # commit or rollback ends the locks, and with them what is remembered).
        self._locked: tuple[sa.RootTransaction | None, dict[str, str | None]] = (None, {})

    def lock_period(self, period: str) -> str | None:
        """The period's status, share-locked until the transaction ends (once per transaction)."""
        transaction = self.conn.get_transaction()
        held, statuses = self._locked
        if transaction is None or held is not transaction:
            statuses = {}
            self._locked = (transaction, statuses)
        if period not in statuses:
            statuses[period] = period_status(self.conn, period, share_lock=True)
        return statuses[period]

    def outlet(self, outlet_id: str) -> Outlet | None:
        o = t.outlets
        row = self.conn.execute(sa.select(o).where(o.c.id == outlet_id, o.c.closed_at.is_(None))).first()
        return Outlet(row.id, row.vendor_id, row.kind, row.name, row.region) if row else None

    def serves(self, outlet_kind: str) -> frozenset[str]:
        s = t.serving_rules
        return frozenset(self.conn.execute(sa.select(s.c.item_kind).where(s.c.outlet_kind == outlet_kind)).scalars())

    def catalogue(self, period: str, items: Sequence[str]) -> tuple[dict[str, str], dict[str, Price]]:
        """Kinds of the known items, and prices of those priced for the period."""
        i, p = t.items, t.item_prices
        kinds = {r.code: r.kind for r in self.conn.execute(sa.select(i.c.code, i.c.kind).where(i.c.code.in_(items)))}
        prices = {
            r.item_code: Price(r.reference_price_minor, r.subsidized_price_minor)
            for r in self.conn.execute(sa.select(p).where(p.c.period == period, p.c.item_code.in_(items)))
        }
        return kinds, prices

    def offer(
        self, period: str, items: Sequence[str], outlet_kind: str
    ) -> tuple[dict[str, str], dict[str, str], dict[str, Price], frozenset[str]]:
        """For the known items among `items`, in one query: kinds, units, prices for the period (if
        priced), and which of their kinds `outlet_kind` may serve."""
        rows = self.conn.execute(_OFFER, {"period": period, "outlet_kind": outlet_kind, "items": list(items)}).all()
        kinds = {r.code: r.kind for r in rows}
        units = {r.code: r.unit for r in rows}
        prices = {
            r.code: Price(r.reference_price_minor, r.subsidized_price_minor)
            for r in rows
            if r.reference_price_minor is not None
        }
        return kinds, units, prices, frozenset(r.kind for r in rows if r.served is not None)

    def slots(self, period: str, household_id: str, lock: bool = True) -> list[Slot]:
        """The household's entitlements for the period, locked until the transaction ends."""
        rows = self.conn.execute(_SLOTS_LOCKED if lock else _SLOTS, {"period": period, "household_id": household_id})
        return [Slot(r.id, r.program, r.item_code, r.granted, r.remaining) for r in rows]

    def post(
        self,
        period: str,
        household_id: str,
        card_id: str,
        terminal_id: str,
        outlet: Outlet,
        basket: Sequence[BasketLine],
        channel: str,
        now: datetime,
        idempotency_key: str | None = None,
        attested_by: str | None = None,
        device_time: datetime | None = None,
    ) -> PostedSale:
        """Allocate and record the sale, or raise Refused having changed nothing. Every sale —
        online, offline or fallback — share-locks its period first: closing a period waits for
        sales in flight, and no sale lands in a period once it is closed."""
        if self.lock_period(period) != "open":
            raise Refused("period_closed", f"Period {period} is not open for sales.")
        slots = self.slots(period, household_id)
        kinds, units, prices, served = self.offer(period, [line.item for line in basket], outlet.kind)
        allocations = allocate(basket, slots, kinds, prices, served)
        for a in allocations:
            done = self.conn.execute(
                _DECREMENT, {"w_period": period, "w_id": a.entitlement_id, "quantity": a.quantity, "updated_at": now}
            ).rowcount
            if done != 1:  # only reachable if a concurrent sale got there first without a row lock
                raise Refused("insufficient_remaining", f"'{a.item}' was just redeemed elsewhere; try again.")
        redemption_id = new_id()
        sale = PostedSale(redemption_id, period, tuple(allocations), {}, units)
        self.conn.execute(
            _INSERT_REDEMPTION,
            {
                "period": period,
                "id": redemption_id,
                "household_id": household_id,
                "card_id": card_id,
                "terminal_id": terminal_id,
                "outlet_id": outlet.id,
                "vendor_id": outlet.vendor_id,
                "channel": channel,
                "attested_by": attested_by,
                "idempotency_key": idempotency_key,
                "total_minor": sale.total_minor,
                "subsidy_minor": sale.subsidy_minor,
                "created_at": now,
                "device_time": device_time,
            },
        )
        self.conn.execute(
            _INSERT_LEDGER_LINE,
            [_line(period, redemption_id, household_id, outlet, a, now) for a in allocations],
        )
        remaining: dict[str, int] = {}
        taken = {a.entitlement_id: a.quantity for a in allocations}
        sold = {a.item for a in allocations}
        for slot in slots:
            if slot.item in sold:
                remaining[slot.item] = remaining.get(slot.item, 0) + slot.remaining - taken.get(slot.entitlement_id, 0)
        return PostedSale(redemption_id, period, tuple(allocations), remaining, units)


def _line(
    period: str, redemption_id: str, household_id: str, outlet: Outlet, a: Allocation, now: datetime
) -> dict[str, Any]:
    return {
        "period": period,
        "id": new_id(),
        "redemption_id": redemption_id,
        "entitlement_id": a.entitlement_id,
        "household_id": household_id,
        "program": a.program,
        "item_code": a.item,
        "quantity": a.quantity,
        "reference_price_minor": a.price.reference_minor,
        "subsidized_price_minor": a.price.subsidized_minor,
        "subsidy_minor": a.subsidy_minor,
        "vendor_id": outlet.vendor_id,
        "outlet_id": outlet.id,
        "created_at": now,
    }


__all__ = ["Outlet", "PostedSale", "Refused", "SqlSales"]
