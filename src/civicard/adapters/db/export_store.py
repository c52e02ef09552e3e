"""The rows of a bulk export (governance/exports.py): who is in a program's eligible households, and
the allow-listed person columns asked for. Column names come from the allow-list, values are bound."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import sqlalchemy as sa

from civicard.adapters.db import tables as t

_IN = 500  # ids per IN (...) list


class SqlExports:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def latest_period(self, program: str) -> str | None:
        d = t.decisions.c
        query = sa.select(sa.func.max(d.period)).where(d.program == program, d.superseded_at.is_(None))
        period: str | None = self.conn.execute(query).scalar_one_or_none()
        return period

    def eligible_members(self, program: str, period: str, region: str | None) -> list[tuple[str, str]]:
        d, m, h = t.decisions.c, t.memberships.c, t.households.c
        query = (
            sa.select(m.person_id, m.household_id)
            .join_from(t.decisions, t.memberships, m.household_id == d.household_id)
            .join(t.households, h.id == m.household_id)
            .where(
                d.period == period,
                d.program == program,
                d.status == "eligible",
                d.superseded_at.is_(None),
                m.valid_to.is_(None),
            )
            .order_by(m.household_id, m.person_id)
        )
        if region is not None:
            query = query.where(h.region == region)
        return [(r.person_id, r.household_id) for r in self.conn.execute(query)]

    def person_values(self, person_ids: Sequence[str], fields: Sequence[str]) -> dict[str, tuple[str, ...]]:
        p = t.persons.c
        columns = [p[f] for f in fields]  # KeyError for a name not in the table: fields are allow-listed
        found: dict[str, tuple[str, ...]] = {}
        for start in range(0, len(person_ids), _IN):
            chunk = list(person_ids[start : start + _IN])
            for row in self.conn.execute(sa.select(p.id, *columns).where(p.id.in_(chunk))):
                found[row[0]] = tuple(_text(v) for v in row[1:])
        return found


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
