"""SQL for settlement (ledger reads, closing a period, settlements rows) and refusal counts.

`count_refusal` is what the redemption path calls for every refused sale; the exclusion report
reads the counts back. Counts carry no card, household or time of day.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from civicard.adapters.db import tables as t
from civicard.adapters.db.decision_store import period_status
from civicard.adapters.db.vendor_store import SqlVendorUnitOfWork
from civicard.distribution.exclusion import OutletActivity
from civicard.distribution.settlement import LedgerEntry, SaleLine, Settled, VendorTotal
from civicard.shared.clock import as_utc
from civicard.shared.errors import InvalidInput
from civicard.shared.ids import is_id, new_id

_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}")


def _entry(row: sa.Row[Any]) -> LedgerEntry:
    m = row._mapping
    return LedgerEntry(**{c.name: m[c.name] for c in t.ledger_lines.columns})


class SqlSettlements:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def period_status(self, period: str) -> str | None:
        return period_status(self.conn, period)

    def close_period(self, period: str, now: datetime) -> bool:
        """Open → closed; False if it was not open (someone else closed it first)."""
        bp = t.benefit_periods
        done = self.conn.execute(
            sa.update(bp).where(bp.c.period == period, bp.c.status == "open").values(status="closed", closed_at=now)
        )
        return int(done.rowcount) == 1

    def ledger(self, period: str, vendor_id: str | None = None) -> list[LedgerEntry]:
        ll = t.ledger_lines
        query = sa.select(ll).where(ll.c.period == period).order_by(ll.c.id)
        if vendor_id is not None:
            query = query.where(ll.c.vendor_id == vendor_id)
        return [_entry(r) for r in self.conn.execute(query)]

    def sale_lines(self, period: str, vendor_id: str) -> list[SaleLine]:
        ll, r, c, o = t.ledger_lines, t.redemptions, t.cards, t.outlets
        query = (
            sa.select(ll, r.c.created_at.label("sold_at"), r.c.channel, o.c.name.label("outlet_name"), c.c.person_id)
            .select_from(
                ll.join(r, (r.c.period == ll.c.period) & (r.c.id == ll.c.redemption_id))
                .outerjoin(c, c.c.id == r.c.card_id)
                .outerjoin(o, o.c.id == ll.c.outlet_id)
            )
            .where(ll.c.period == period, ll.c.vendor_id == vendor_id)
            .order_by(r.c.created_at, ll.c.redemption_id, ll.c.item_code)
        )
        return [
            SaleLine(_entry(row), as_utc(row.sold_at), row.channel, row.outlet_name or "", row.person_id)
            for row in self.conn.execute(query)
        ]

    def settlements(self, period: str, vendor_id: str | None = None) -> list[Settled]:
        s = t.settlements
        query = sa.select(s).where(s.c.period == period).order_by(s.c.vendor_id)
        if vendor_id is not None:
            query = query.where(s.c.vendor_id == vendor_id)
        return [
            Settled(
                VendorTotal(row.vendor_id, row.redemptions, row.lines, row.subsidy_minor, row.ledger_sha256),
                as_utc(row.settled_at),
                row.settled_by,
            )
            for row in self.conn.execute(query)
        ]

    def add_settlements(self, period: str, totals: Sequence[VendorTotal], by: str, now: datetime) -> None:
        if not totals:
            return
        rows = [
            {
                "id": new_id(),
                "vendor_id": total.vendor_id,
                "period": period,
                "redemptions": total.redemptions,
                "lines": total.lines,
                "subsidy_minor": total.subsidy_minor,
                "ledger_sha256": total.ledger_sha256,
                "settled_at": now,
                "settled_by": by,
            }
            for total in totals
        ]
        self.conn.execute(sa.insert(t.settlements), rows)

    def unapplied_offline_receipts(self, period: str) -> int:
        r = t.offline_receipts
        query = sa.select(sa.func.count()).select_from(r).where(r.c.period == period, r.c.status != "applied")
        return int(self.conn.execute(query).scalar_one())

    # --- the exclusion report -------------------------------------------------------------------------

    def outlet_activity(self, period: str) -> list[OutletActivity]:
        """Per outlet: sales, fallback sales and refusal counts by code (outlets with none omitted)."""
        r, rc, o, v = t.redemptions, t.refusal_counts, t.outlets, t.vendors
        sales: dict[str, tuple[int, int]] = {
            row.outlet_id: (int(row.sales), int(row.fallbacks or 0))
            for row in self.conn.execute(
                sa.select(
                    r.c.outlet_id,
                    sa.func.count().label("sales"),
                    sa.func.sum(sa.case((r.c.channel == "fallback", 1), else_=0)).label("fallbacks"),
                )
                .where(r.c.period == period)
                .group_by(r.c.outlet_id)
            )
        }
        refusals: dict[str, dict[str, int]] = {}
        for row in self.conn.execute(sa.select(rc).where(rc.c.period == period)):
            refusals.setdefault(row.outlet_id, {})[row.code] = int(row._mapping["count"])
        names = {
            row.id: (row.name, row.kind, row.vendor_id, row.vendor_name)
            for row in self.conn.execute(
                sa.select(o.c.id, o.c.name, o.c.kind, o.c.vendor_id, v.c.name.label("vendor_name")).join(
                    v, v.c.id == o.c.vendor_id
                )
            )
        }
        activity = []
        for outlet_id in sorted(set(sales) | set(refusals)):
            name, kind, vendor_id, vendor_name = names.get(outlet_id, ("(unknown outlet)", "", "", ""))
            count, fallbacks = sales.get(outlet_id, (0, 0))
            activity.append(
                OutletActivity(
                    outlet_id, name, kind, vendor_id, vendor_name, count, fallbacks, refusals.get(outlet_id, {})
                )
            )
        return activity


def count_refusal(conn: sa.Connection, period: str, outlet_id: str, code: str) -> None:
    """Add one refusal with `code` at the outlet in the period (an atomic upsert on both databases).

    Call it in a transaction that commits even though the sale was refused (e.g. the one that
    records the PIN failure), not in the sale's own transaction, which rolls back.
    """
    if not _PERIOD.fullmatch(period) or not is_id(outlet_id) or not _CODE.fullmatch(code):
        raise InvalidInput("invalid_refusal", "A refusal count needs a period, an outlet id and a reason code.")
    rc = t.refusal_counts
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(rc).values(period=period, outlet_id=outlet_id, code=code, count=1)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[rc.c.period, rc.c.outlet_id, rc.c.code], set_={"count": rc.c.count + 1}
        )
    )


class SqlSettlementUnitOfWork(SqlVendorUnitOfWork):
    """The vendor unit of work plus the settlement store, on the same connection and transaction."""

    def __enter__(self) -> SqlSettlementUnitOfWork:
        super().__enter__()
        self.settlement = SqlSettlements(self.connection)
        return self


__all__ = ["SqlSettlementUnitOfWork", "SqlSettlements", "count_refusal"]
