"""SQL side of online redemption: the terminal's counter, the holder, PIN throttle windows, the
Idempotency-Key claims and the redemption unit of work (cards + sales on one transaction).

Idempotency (table idempotency_keys, primary key terminal + key): a request first *claims* its key
in a short transaction of its own (a `pending` row stamped with the claim time). A concurrent
duplicate meets the pending row (409 `request_in_progress`); a finished one gets the stored first
answer; the same key with another body is refused. The approved answer is stored in the sale's own
transaction, and only by the holder of the current claim (`settle` matches the claim time), so a
claim taken over after `STALE_CLAIM` (its request died) can never lead to a second sale.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.sale_store import Outlet, PostedSale, SqlSales
from civicard.adapters.db.settlement_store import count_refusal
from civicard.distribution.redemption import Claim, Counter, Holder, Refusal, ThrottleWindow
from civicard.distribution.sales import BasketLine, Price, Slot
from civicard.shared.clock import as_utc
from civicard.shared.errors import Conflict

PRESERVE_ROWCOUNT = {"preserve_rowcount": True}  # SQLAlchemy keeps an INSERT's rowcount only on request
STALE_CLAIM = timedelta(seconds=60)  # far beyond any request's lock waits; the claim's request died


# Built once (statements on the redemption path; building one costs more than running it).
_COUNTER = (
    sa.select(
        t.terminals.c.id,
        t.terminals.c.role,
        t.outlets.c.id.label("outlet_id"),
        t.outlets.c.name,
        t.outlets.c.kind,
        t.outlets.c.region,
        t.outlets.c.vendor_id,
    )
    .join(t.outlets, t.outlets.c.id == t.terminals.c.outlet_id)
    .where(
        t.terminals.c.id == sa.bindparam("terminal_id"),
        t.terminals.c.revoked_at.is_(None),
        t.outlets.c.closed_at.is_(None),
    )
)
_HOLDER = (
    sa.select(t.persons.c.id, t.persons.c.birth_date, t.persons.c.record_status, t.memberships.c.household_id)
    .select_from(
        t.persons.outerjoin(
            t.memberships,
            sa.and_(
                t.memberships.c.person_id == t.persons.c.id,
                t.memberships.c.valid_to.is_(None),
                t.memberships.c.valid_from <= sa.bindparam("on", type_=sa.Date),
            ),
        )
    )
    .where(t.persons.c.id == sa.bindparam("person_id"))
)
_THROTTLE = sa.select(t.sign_in_throttle).where(
    t.sign_in_throttle.c.bucket.in_(sa.bindparam("buckets", expanding=True))
)
_NEW_CLAIM = {
    "postgresql": postgresql.insert(t.idempotency_keys).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(t.idempotency_keys).on_conflict_do_nothing(),
}
_SETTLE = (
    sa.update(t.idempotency_keys)
    .where(
        t.idempotency_keys.c.terminal_id == sa.bindparam("w_terminal_id"),
        t.idempotency_keys.c.key == sa.bindparam("w_key"),
        t.idempotency_keys.c.state == "pending",
        t.idempotency_keys.c.created_at == sa.bindparam("w_claimed_at"),
    )
    .values(state="done")
)


class SqlRedemptions:
    """The RedemptionStore on the unit of work's connection."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.sales = SqlSales(conn)

    def counter(self, terminal_id: str) -> Counter | None:
        row = self.conn.execute(_COUNTER, {"terminal_id": terminal_id}).first()
        if row is None:
            return None
        return Counter(row.id, row.role, row.outlet_id, row.name, row.kind, row.region, row.vendor_id)

    def period_status(self, period: str) -> str | None:
        """Share-locked like every sale's own check (SqlSales.post), so a refusal is decided early."""
        return self.sales.lock_period(period)

    def count_refusal(self, period: str, outlet_id: str, code: str) -> None:
        count_refusal(self.conn, period, outlet_id, code)

    def holder(self, person_id: str, on: date) -> Holder | None:
        row = self.conn.execute(_HOLDER, {"person_id": person_id, "on": on}).first()
        return Holder(row.id, row.birth_date, row.record_status, row.household_id) if row else None

    def throttle_windows(self, buckets: Sequence[str]) -> dict[str, ThrottleWindow]:
        rows = self.conn.execute(_THROTTLE, {"buckets": list(buckets)})
        return {r.bucket: ThrottleWindow(int(r.attempts), as_utc(r.window_start)) for r in rows}

    def count_failure(self, bucket: str, now: datetime, window: timedelta) -> ThrottleWindow:
        """One failure in `bucket`'s fixed window (a new window once the old one is over); atomic upsert."""
        c = t.sign_in_throttle.c
        expired = c.window_start <= now - window
        dialect_insert = postgresql.insert if self.conn.dialect.name == "postgresql" else sqlite.insert
        stmt = (
            dialect_insert(t.sign_in_throttle)
            .values(bucket=bucket, window_start=now, attempts=1)
            .on_conflict_do_update(
                index_elements=[c.bucket],
                set_={
                    # SET expressions read the row as it was, so both CASEs see the old window.
                    "attempts": sa.case((expired, 1), else_=c.attempts + 1),
                    "window_start": sa.case((expired, sa.literal(now, c.window_start.type)), else_=c.window_start),
                },
            )
            .returning(c.attempts, c.window_start)
        )
        attempts, start = self.conn.execute(stmt).one()
        return ThrottleWindow(int(attempts), as_utc(start))

    def post(
        self,
        period: str,
        household_id: str,
        card_id: str,
        counter: Counter,
        basket: Sequence[BasketLine],
        now: datetime,
        idempotency_key: str | None,
    ) -> PostedSale:
        outlet = Outlet(counter.outlet_id, counter.vendor_id, counter.outlet_kind, counter.outlet_name, counter.region)
        return self.sales.post(
            period, household_id, card_id, counter.terminal_id, outlet, basket, "online", now, idempotency_key
        )

    def units(self, items: Sequence[str]) -> dict[str, str]:
        i = t.items
        return {r.code: r.unit for r in self.conn.execute(sa.select(i.c.code, i.c.unit).where(i.c.code.in_(items)))}

    def entitlements(self, period: str, household_id: str) -> list[Slot]:
        return self.sales.slots(period, household_id, lock=False)

    def offer(self, period: str, outlet_kind: str) -> tuple[dict[str, str], dict[str, Price]]:
        """Kinds of the items this outlet kind may serve, and their prices for the period."""
        i, p = t.items, t.item_prices
        serves = self.sales.serves(outlet_kind)
        kinds = {r.code: r.kind for r in self.conn.execute(sa.select(i.c.code, i.c.kind).where(i.c.kind.in_(serves)))}
        prices = {
            r.item_code: Price(r.reference_price_minor, r.subsidized_price_minor)
            for r in self.conn.execute(sa.select(p).where(p.c.period == period, p.c.item_code.in_(list(kinds))))
        }
        return kinds, prices

    def settle(self, claim: Claim, status: int, body: bytes, now: datetime) -> None:
        if not _settle(self.conn, claim, status, body, now):
            raise Conflict("request_in_progress", "This Idempotency-Key was taken over by a later request.")


class SqlRedemptionUnitOfWork(SqlCardUnitOfWork):
    """Cards, the registry and redemptions on one connection and transaction."""

    def __enter__(self) -> SqlRedemptionUnitOfWork:
        super().__enter__()
        self.redemptions = SqlRedemptions(self.connection)
        return self

    def rollback(self) -> None:
        """Undo everything since the last commit and go on in a fresh transaction."""
        self.connection.rollback()
        self.connection.begin()


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: bytes


class IdempotencyKeys:
    """Claims and answers of Idempotency-Keys, each call its own short transaction (no personal data)."""

    def __init__(self, engine: sa.Engine, stale_after: timedelta = STALE_CLAIM) -> None:
        self.engine = engine
        self.stale_after = stale_after

    def claim(
        self, terminal_id: str, key: str, request_sha256: str, now: datetime, conn: sa.Connection | None = None
    ) -> Claim | StoredAnswer:
        """This request's claim on the key, or the first answer to replay; refuses a busy or reused key.

        On its own transaction, or written on the caller's `conn` for the caller to commit (the
        claim must be committed before the sale starts, so that duplicates see it).
        """
        if conn is None:
            with self.engine.connect() as own:
                found = self.claim(terminal_id, key, request_sha256, now, own)
                own.commit()
            return found
        k = t.idempotency_keys
        insert = _NEW_CLAIM[conn.dialect.name]
        pending = {
            "terminal_id": terminal_id,
            "key": key,
            "request_sha256": request_sha256,
            "state": "pending",
            "created_at": now,
        }
        if conn.execute(insert, pending, execution_options=PRESERVE_ROWCOUNT).rowcount == 1:
            return Claim(terminal_id, key, now)
        row = conn.execute(sa.select(k).where(k.c.terminal_id == terminal_id, k.c.key == key)).first()
        if row is None:  # claimed and released (a transient failure) in between: try once more
            if conn.execute(insert, pending, execution_options=PRESERVE_ROWCOUNT).rowcount == 1:
                return Claim(terminal_id, key, now)
            raise _in_progress()
        if row.request_sha256 != request_sha256:
            raise Refusal("idempotency_key_reused", "This Idempotency-Key was used for another request.")
        if row.state == "done":
            return StoredAnswer(int(row.response_status), str(row.response_body).encode())
        if now - as_utc(row.created_at) < self.stale_after:
            raise _in_progress()
        taken = conn.execute(
            sa.update(k)
            .where(k.c.terminal_id == terminal_id, k.c.key == key, k.c.state == "pending")
            .where(k.c.created_at == row.created_at)
            .values(created_at=now)
        ).rowcount
        if taken != 1:
            raise _in_progress()
        return Claim(terminal_id, key, now)

    def settle(self, claim: Claim, status: int, body: bytes, now: datetime, conn: sa.Connection | None = None) -> bool:
        """Store a refusal as the key's answer; False if the claim was taken over meanwhile."""
        with _transaction(self.engine, conn) as tx:
            return _settle(tx, claim, status, body, now)

    def release(self, claim: Claim, conn: sa.Connection | None = None) -> None:
        """Forget a claim whose request ended without a final answer (auth, throttle, server error)."""
        k = t.idempotency_keys
        with _transaction(self.engine, conn) as tx:
            tx.execute(
                sa.delete(k).where(
                    k.c.terminal_id == claim.terminal_id,
                    k.c.key == claim.key,
                    k.c.state == "pending",
                    k.c.created_at == claim.claimed_at,
                )
            )


@contextmanager
def _transaction(engine: sa.Engine, conn: sa.Connection | None) -> Iterator[sa.Connection]:
    """A short transaction, committed: on the caller's connection (between its transactions) or a new one."""
    if conn is not None:
        yield conn
        conn.commit()
        return
    with engine.connect() as own:
        yield own
        own.commit()


def _settle(conn: sa.Connection, claim: Claim, status: int, body: bytes, now: datetime) -> bool:
    values: dict[str, Any] = {
        "w_terminal_id": claim.terminal_id,
        "w_key": claim.key,
        "w_claimed_at": claim.claimed_at,
        "response_status": status,
        "response_body": body.decode(),
        "finished_at": now,
    }
    return bool(conn.execute(_SETTLE, values).rowcount == 1)


def _in_progress() -> Conflict:
    return Conflict("request_in_progress", "A request with this Idempotency-Key is still being processed; retry soon.")
