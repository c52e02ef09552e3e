"""SQL storage for life events, and the unit of work that records them (registry, cards, events)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Connection, Row, insert, or_, select, update

from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.registry.life_events import LifeEvent
from civicard.registry.model import Household
from civicard.shared.clock import as_utc

MAX_EVENTS = 200  # a household's whole life fits; a page is never needed


class SqlLifeEvents:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, event: LifeEvent) -> None:
        values = dict(event.__dict__) | {"details": json.dumps(event.details, sort_keys=True, separators=(",", ":"))}
        self.conn.execute(insert(t.life_events).values(**values))

    def about(self, person_ids: Sequence[str], household_ids: Sequence[str]) -> list[LifeEvent]:
        e = t.life_events.c
        conditions = []
        if person_ids:
            conditions.append(e.person_id.in_(list(person_ids)))
        if household_ids:
            conditions += [e.household_id.in_(list(household_ids)), e.other_household_id.in_(list(household_ids))]
        if not conditions:
            return []
        query = (
            select(t.life_events)
            .where(or_(*conditions))
            .order_by(e.effective_on.desc(), e.recorded_at.desc(), e.id)
            .limit(MAX_EVENTS)
        )
        return [_event(r) for r in self.conn.execute(query)]

    def households_of_person(self, person_id: str) -> list[str]:
        m = t.memberships.c
        rows = self.conn.execute(select(m.household_id).where(m.person_id == person_id).distinct())
        return sorted(r.household_id for r in rows)

    def mark_deceased(self, person_id: str, on: date) -> None:
        self.conn.execute(
            update(t.persons).where(t.persons.c.id == person_id).values(record_status="deceased", deceased_on=on)
        )

    def relocate(self, household: Household) -> None:
        self.conn.execute(
            update(t.households)
            .where(t.households.c.id == household.id)
            .values(
                address_line=household.address_line,
                municipality=household.municipality,
                region=household.region,
                postcode=household.postcode,
            )
        )


def _event(row: Row[Any]) -> LifeEvent:
    data = dict(row._mapping)
    data["recorded_at"] = as_utc(data["recorded_at"])
    data["details"] = json.loads(data["details"])
    return LifeEvent(**data)


class SqlLifeEventUnitOfWork(SqlCardUnitOfWork):
    """The card unit of work (registry, screening, cards) plus the life-event rows, on one transaction."""

    def __enter__(self) -> SqlLifeEventUnitOfWork:
        super().__enter__()
        self.life_events = SqlLifeEvents(self.connection)
        return self
