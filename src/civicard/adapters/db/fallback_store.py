"""SQL side of fallback sales, offline-conflict reviews, and the outlet behind a terminal.

Runs on the unit of work's connection and transaction (it never commits). The online pieces a
fallback shares — the counter, the holder, the period lock, units, stored answers and refusal
counts — come from the redemption store; the offline caps from the offline store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.offline_store import SqlOffline
from civicard.adapters.db.redemption_store import SqlRedemptions
from civicard.adapters.db.sale_store import Outlet, PostedSale
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.distribution.fallback import CHANNEL, Attester, FallbackUse
from civicard.distribution.offline_review import StoredConflict
from civicard.distribution.redemption import Claim, Counter, Holder
from civicard.distribution.sales import BasketLine
from civicard.shared.clock import as_utc
from civicard.shared.ids import is_id

OUTLET_KIND_LABELS = {"shop": "Tienda", "pharmacy": "Farmacia"}


class SqlFallbacks:
    """The FallbackStore on the unit of work's connection."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.redemptions = SqlRedemptions(conn)
        self.offline = SqlOffline(conn)

    def counter(self, terminal_id: str) -> Counter | None:
        return self.redemptions.counter(terminal_id)

    def attester(self, terminal_id: str) -> Attester | None:
        if not is_id(terminal_id):
            return None
        tm = t.terminals
        row = self.conn.execute(
            sa.select(tm.c.id, tm.c.outlet_id, tm.c.role, tm.c.public_key).where(
                tm.c.id == terminal_id, tm.c.revoked_at.is_(None)
            )
        ).first()
        return Attester(row.id, row.outlet_id, row.role, bytes(row.public_key)) if row else None

    def period_status(self, period: str) -> str | None:
        return self.redemptions.period_status(period)

    def holder(self, person_id: str, on: date) -> Holder | None:
        return self.redemptions.holder(person_id, on)

    def use_nonce(self, terminal_id: str, nonce: str, now: datetime, keep: timedelta) -> bool:
        """Record the nonce in this transaction; False if the terminal used it before (the caller
        then refuses, and its rollback clears the failed insert on PostgreSQL)."""
        n = t.terminal_nonces
        try:
            self.conn.execute(sa.insert(n).values(terminal_id=terminal_id, nonce=nonce, seen_at=now))
        except IntegrityError:
            return False
        self.conn.execute(sa.delete(n).where(n.c.terminal_id == terminal_id, n.c.seen_at < now - keep))
        return True

    def fallbacks_used(self, period: str, household_id: str, card_id: str) -> FallbackUse:
        r, ll = t.redemptions, t.ledger_lines
        mine = sa.and_(
            r.c.period == period, r.c.household_id == household_id, r.c.card_id == card_id, r.c.channel == CHANNEL
        )
        sales = int(self.conn.execute(sa.select(sa.func.count()).select_from(r).where(mine)).scalar_one())
        if not sales:
            return FallbackUse(0)
        query = (
            sa.select(ll.c.item_code, sa.func.sum(ll.c.quantity).label("quantity"))
            .join(r, (r.c.period == ll.c.period) & (r.c.id == ll.c.redemption_id))
            .where(mine, ll.c.period == period)
            .group_by(ll.c.item_code)
        )
        return FallbackUse(sales, {row.item_code: int(row.quantity) for row in self.conn.execute(query)})

    def offline_caps(self, period_start: date) -> dict[str, int]:
        return self.offline.offline_caps(period_start)

    def post(
        self,
        period: str,
        household_id: str,
        card_id: str,
        counter: Counter,
        basket: Sequence[BasketLine],
        now: datetime,
        idempotency_key: str | None,
        attested_by: str,
    ) -> PostedSale:
        outlet = Outlet(counter.outlet_id, counter.vendor_id, counter.outlet_kind, counter.outlet_name, counter.region)
        return self.redemptions.sales.post(
            period,
            household_id,
            card_id,
            counter.terminal_id,
            outlet,
            basket,
            CHANNEL,
            now,
            idempotency_key,
            attested_by=attested_by,
        )

    def units(self, items: Sequence[str]) -> dict[str, str]:
        return self.redemptions.units(items)

    def settle(self, claim: Claim, status: int, body: bytes, now: datetime) -> None:
        self.redemptions.settle(claim, status, body, now)

    def count_refusal(self, period: str, outlet_id: str, code: str) -> None:
        self.redemptions.count_refusal(period, outlet_id, code)


class SqlFallbackUnitOfWork(SqlCardUnitOfWork):
    """Cards, the registry and fallback sales on one connection and transaction."""

    def __enter__(self) -> SqlFallbackUnitOfWork:
        super().__enter__()
        self.fallbacks = SqlFallbacks(self.connection)
        return self

    def rollback(self) -> None:
        """Undo everything since the last commit and go on in a fresh transaction."""
        self.connection.rollback()
        self.connection.begin()


# --- offline-conflict reviews ------------------------------------------------------------------------


class SqlConflictReviews:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def stored_conflict(self, receipt_id: str) -> StoredConflict | None:
        """The stored receipt (row locked) and the card holder's current household, if any."""
        if not is_id(receipt_id):
            return None
        o, c, m = t.offline_receipts, t.cards, t.memberships
        row = self.conn.execute(sa.select(o).where(o.c.id == receipt_id).with_for_update()).first()
        if row is None:
            return None
        handle = json.loads(row.payload).get("card")
        household = self.conn.execute(
            sa.select(m.c.household_id)
            .join(c, c.c.person_id == m.c.person_id)
            .where(c.c.handle == handle, m.c.valid_to.is_(None))
        ).scalar()
        reviewed = as_utc(row.reviewed_at) if row.reviewed_at is not None else None
        return StoredConflict(row.id, row.status, row.conflict, reviewed, household)

    def mark_reviewed(self, receipt_id: str, by: str, at: datetime) -> bool:
        o = t.offline_receipts
        done = self.conn.execute(
            sa.update(o)
            .where(o.c.id == receipt_id, o.c.status == "conflict", o.c.reviewed_at.is_(None))
            .values(reviewed_by=by, reviewed_at=at)
        ).rowcount
        return bool(done == 1)


class SqlReviewUnitOfWork(SqlUnitOfWork):
    def __enter__(self) -> SqlReviewUnitOfWork:
        super().__enter__()
        self.reviews = SqlConflictReviews(self.connection)
        return self


# --- who a terminal is, for the resident's access-log page ------------------------------------------


@dataclass(frozen=True)
class TerminalOutlet:
    terminal_id: str
    outlet_name: str
    outlet_kind: str

    @property
    def label(self) -> str:
        """'Tienda La Esquina', 'Farmacia Central': the kind in words unless the name already says it."""
        kind = OUTLET_KIND_LABELS.get(self.outlet_kind, "")
        if not kind or self.outlet_name.lower().startswith(kind.lower()):
            return self.outlet_name
        return f"{kind} {self.outlet_name}"


def terminal_outlets(conn: sa.Connection, terminal_ids: Iterable[str]) -> dict[str, TerminalOutlet]:
    """Terminal id → the outlet it is placed at (revoked terminals included: past entries still name them)."""
    wanted = sorted({i for i in terminal_ids if is_id(i)})
    if not wanted:
        return {}
    tm, o = t.terminals, t.outlets
    rows = conn.execute(
        sa.select(tm.c.id, o.c.name, o.c.kind).join(o, o.c.id == tm.c.outlet_id).where(tm.c.id.in_(wanted))
    )
    return {r.id: TerminalOutlet(r.id, r.name, r.kind) for r in rows}
