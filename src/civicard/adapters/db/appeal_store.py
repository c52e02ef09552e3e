"""Appeals against decisions (table appeals, migration 0006)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.programs.appeals import Appeal

_COLUMNS = (
    "id",
    "period",
    "decision_id",
    "household_id",
    "program",
    "person_id",
    "reason",
    "status",
    "filed_at",
    "decided_by",
    "decided_at",
    "outcome_note",
    "new_decision_id",
)


class SqlAppeals:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def add(self, appeal: Appeal) -> None:
        self.conn.execute(sa.insert(t.appeals), {c: getattr(appeal, c) for c in _COLUMNS})

    def get(self, appeal_id: str) -> Appeal | None:
        row = self.conn.execute(sa.select(t.appeals).where(t.appeals.c.id == appeal_id)).first()
        return _appeal(row) if row else None

    def open_for_decision(self, decision_id: str) -> Appeal | None:
        a = t.appeals.c
        row = self.conn.execute(
            sa.select(t.appeals).where(a.decision_id == decision_id, a.status == "open").limit(1)
        ).first()
        return _appeal(row) if row else None

    def of_person(self, person_id: str) -> list[Appeal]:
        a = t.appeals.c
        rows = self.conn.execute(sa.select(t.appeals).where(a.person_id == person_id).order_by(a.filed_at.desc(), a.id))
        return [_appeal(r) for r in rows]

    def of_household(self, household_id: str) -> list[Appeal]:
        a = t.appeals.c
        query = sa.select(t.appeals).where(a.household_id == household_id).order_by(a.filed_at.desc(), a.id)
        return [_appeal(r) for r in self.conn.execute(query)]

    def queue(self, statuses: Sequence[str], limit: int, after: Appeal | None) -> list[Appeal]:
        """Oldest first; keyset pagination on (filed_at, id)."""
        a = t.appeals.c
        query = sa.select(t.appeals).where(a.status.in_(list(statuses)))
        if after is not None:
            query = query.where(
                sa.or_(a.filed_at > after.filed_at, sa.and_(a.filed_at == after.filed_at, a.id > after.id))
            )
        rows = self.conn.execute(query.order_by(a.filed_at, a.id).limit(limit))
        return [_appeal(r) for r in rows]

    def lock_decision(self, period: str, decision_id: str) -> None:
        """Serialise filings against one decision (a row lock on PostgreSQL; SQLite has one writer)."""
        d = t.decisions.c
        self.conn.execute(sa.select(d.id).where(d.period == period, d.id == decision_id).with_for_update()).first()

    def save_decision(self, appeal: Appeal) -> bool:
        """Store the outcome if the appeal is still open; False if someone decided it meanwhile."""
        a = t.appeals.c
        result = self.conn.execute(
            sa.update(t.appeals)
            .where(a.id == appeal.id, a.status == "open")
            .values(
                status=appeal.status,
                decided_by=appeal.decided_by,
                decided_at=appeal.decided_at,
                outcome_note=appeal.outcome_note,
                new_decision_id=appeal.new_decision_id,
            )
        )
        return result.rowcount == 1


def _appeal(row: sa.Row[Any]) -> Appeal:
    m = row._mapping
    return Appeal(**{c: m[c] for c in _COLUMNS})
