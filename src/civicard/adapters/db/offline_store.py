"""SQL side of offline redemption: what a bundle is built from, and the offline_receipts table.

Runs on the unit of work's connection and transaction (it never commits). Lists of households are
queried in chunks so an outlet with many regular customers stays within bind-parameter limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.exc import IntegrityError

from civicard.adapters.db import tables as t
from civicard.adapters.db.decision_store import period_status
from civicard.adapters.db.register_store import SqlProgramRegister
from civicard.distribution.offline_sync import (
    CardHolder,
    DuplicateReceipt,
    MemberCard,
    NewReceipt,
    OfflineConflict,
    StoredReceipt,
    TerminalSeat,
)
from civicard.programs.rulepack import rulepack_from_dict
from civicard.shared.clock import as_utc
from civicard.shared.ids import new_id

CHUNK = 500


class SqlOffline:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def seat(self, terminal_id: str) -> TerminalSeat | None:
        tm = t.terminals
        row = self.conn.execute(sa.select(tm).where(tm.c.id == terminal_id)).first()
        if row is None:
            return None
        revoked_at = as_utc(row.revoked_at) if row.revoked_at is not None else None
        return TerminalSeat(row.id, row.outlet_id, row.role, bytes(row.public_key), revoked_at)

    def period_status(self, period: str) -> str | None:
        return period_status(self.conn, period)

    def households_served(self, outlet_id: str, periods: Sequence[str]) -> list[str]:
        r = t.redemptions
        query = sa.select(r.c.household_id).where(r.c.outlet_id == outlet_id, r.c.period.in_(list(periods))).distinct()
        return sorted(self.conn.execute(query).scalars())

    def remaining(self, period: str, household_ids: Sequence[str], items: Iterable[str]) -> dict[str, dict[str, int]]:
        """Per household, item → what it has left this period, summed over its programs (0s kept)."""
        e = t.entitlements
        wanted = sorted(set(items))
        out: dict[str, dict[str, int]] = {}
        for chunk in _chunks(household_ids):
            query = (
                sa.select(e.c.household_id, e.c.item_code, sa.func.sum(e.c.remaining).label("left"))
                .where(e.c.period == period, e.c.household_id.in_(chunk), e.c.item_code.in_(wanted), e.c.granted > 0)
                .group_by(e.c.household_id, e.c.item_code)
            )
            for row in self.conn.execute(query):
                out.setdefault(row.household_id, {})[row.item_code] = int(row.left)
        return out

    def valid_cards(self, household_ids: Sequence[str], now: datetime) -> list[MemberCard]:
        """The valid, unexpired cards of the households' current members, with what decides
        whether each holder may redeem (birth date, record status)."""
        c, m, p = t.cards, t.memberships, t.persons
        out: list[MemberCard] = []
        for chunk in _chunks(household_ids):
            query = (
                sa.select(m.c.household_id, c.c.handle, p.c.birth_date, p.c.record_status)
                .join(m, m.c.person_id == c.c.person_id)
                .join(p, p.c.id == c.c.person_id)
                .where(m.c.household_id.in_(chunk), m.c.valid_to.is_(None), c.c.status == "valid")
                .where(c.c.expires_at > now)
                .order_by(c.c.handle)
            )
            rows = self.conn.execute(query)
            out.extend(MemberCard(r.household_id, r.handle, r.birth_date, r.record_status) for r in rows)
        return out

    def offline_caps(self, period_start: date) -> dict[str, int]:
        """Item → the largest offline cap among the program versions in force on the day."""
        caps: dict[str, int] = {}
        for version in SqlProgramRegister(self.conn).in_force(period_start):
            for item, cap in _caps_of(version.sha256, version.source).items():
                caps[item] = max(cap, caps.get(item, 0))
        return caps

    def item_kinds(self) -> dict[str, str]:
        return {r.code: r.kind for r in self.conn.execute(sa.select(t.items.c.code, t.items.c.kind))}

    def latest_status_list(self) -> bytes | None:
        s = t.status_list_versions
        raw = self.conn.execute(sa.select(s.c.signed_list).order_by(s.c.version.desc()).limit(1)).scalar()
        return bytes(raw) if raw is not None else None

    def card_holder(self, handle: str) -> CardHolder | None:
        c, m, p = t.cards, t.memberships, t.persons
        current = sa.and_(m.c.person_id == c.c.person_id, m.c.valid_to.is_(None))
        query = (
            sa.select(c.c.id, c.c.status, c.c.expires_at, m.c.household_id, p.c.birth_date, p.c.record_status)
            .join(p, p.c.id == c.c.person_id)
            .outerjoin(m, current)
        )
        row = self.conn.execute(query.where(c.c.handle == handle)).first()
        if row is None:
            return None
        return CardHolder(
            row.id, row.status, as_utc(row.expires_at), row.household_id, row.birth_date, row.record_status
        )

    def stored_receipt(self, terminal_id: str, seq: int) -> StoredReceipt | None:
        o = t.offline_receipts
        row = self.conn.execute(sa.select(o).where(o.c.terminal_id == terminal_id, o.c.seq == seq)).first()
        if row is None:
            return None
        return StoredReceipt(row.seq, row.payload.encode(), row.status, row.conflict, row.redemption_id)

    def add_receipt(self, receipt: NewReceipt) -> None:
        try:
            self.conn.execute(
                sa.insert(t.offline_receipts).values(
                    id=new_id(),
                    terminal_id=receipt.terminal_id,
                    seq=receipt.receipt.seq,
                    period=receipt.receipt.period,
                    payload=receipt.payload.decode(),
                    signature=receipt.signature,
                    received_at=receipt.received_at,
                    status=receipt.status,
                    redemption_id=receipt.redemption_id,
                    conflict=receipt.reason,
                )
            )
        except IntegrityError:
            raise DuplicateReceipt(receipt.terminal_id, receipt.receipt.seq) from None

    def conflicts(self, limit: int) -> list[tuple[OfflineConflict, str | None]]:
        """Unreviewed conflicts, newest first, each with the household concerned (for the access log only)."""
        o, tm, c, m = t.offline_receipts, t.terminals, t.cards, t.memberships
        query = (
            sa.select(o, tm.c.outlet_id)
            .join(tm, tm.c.id == o.c.terminal_id)
            .where(o.c.status == "conflict", o.c.reviewed_at.is_(None))
            .order_by(o.c.received_at.desc(), o.c.terminal_id, o.c.seq.desc())
            .limit(limit)
        )
        found = []
        for row in self.conn.execute(query):
            body: dict[str, Any] = json.loads(row.payload)
            household = self.conn.execute(
                sa.select(m.c.household_id)
                .join(c, c.c.person_id == m.c.person_id)
                .where(c.c.handle == body["card"], m.c.valid_to.is_(None))
            ).scalar()
            conflict = OfflineConflict(
                id=row.id,
                terminal_id=row.terminal_id,
                outlet_id=row.outlet_id,
                seq=row.seq,
                period=row.period,
                items=dict(body["items"]),
                device_time=datetime.fromisoformat(body["device_time"].replace("Z", "+00:00")),
                received_at=as_utc(row.received_at),
                reason=row.conflict or "",
            )
            found.append((conflict, household))
        return found

    def discard(self) -> None:
        """Roll back what this unit of work did so far and go on in a fresh transaction."""
        self.conn.rollback()
        self.conn.begin()


@lru_cache(maxsize=64)
def _caps_of(sha256: str, source: str) -> dict[str, int]:
    """A registered version's caps; parsed once per process (a registered text never changes)."""
    return dict(rulepack_from_dict(yaml.safe_load(source), sha256).offline_caps)


def _chunks(values: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), CHUNK):
        yield list(values[start : start + CHUNK])
