"""SQL repositories for the registry and the access log, on one connection (one transaction)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from civicard.adapters.bulk.writers import BulkAccessLog, writer_for
from civicard.adapters.db import tables as t
from civicard.registry.facts import FACT_KINDS
from civicard.registry.model import FactVersion, Household, Membership, Person
from civicard.shared.clock import as_utc
from civicard.shared.errors import Conflict
from civicard.shared.ids import new_id
from civicard.transparency.access import AccessEntry

_PERSON_COLUMNS = [c.name for c in t.persons.columns if c.name != "search_key"]


def _person(row: Row[Any]) -> Person:
    data = {c: getattr(row, c) for c in _PERSON_COLUMNS}
    data["enrolled_at"] = as_utc(data["enrolled_at"])
    return Person(**data)


class SqlPersons:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, person: Person) -> None:
        values = {c: getattr(person, c) for c in _PERSON_COLUMNS} | {"search_key": person.search_key}
        self.conn.execute(insert(t.persons).values(**values))

    def get(self, person_id: str) -> Person | None:
        row = self.conn.execute(select(t.persons).where(t.persons.c.id == person_id)).first()
        return _person(row) if row else None

    def get_many(self, person_ids: Sequence[str]) -> dict[str, Person]:
        if not person_ids:
            return {}
        rows = self.conn.execute(select(t.persons).where(t.persons.c.id.in_(list(person_ids))))
        return {r.id: _person(r) for r in rows}

    def by_national_id(self, national_id: str) -> Person | None:
        row = self.conn.execute(select(t.persons).where(t.persons.c.national_id == national_id).limit(1)).first()
        return _person(row) if row else None

    def search(self, words: Sequence[str], limit: int) -> list[Person]:
        # Each word must appear in the folded names or document number; bound parameters only.
        conditions = [t.persons.c.search_key.contains(w, autoescape=True) for w in words]
        query = (
            select(t.persons)
            .where(and_(*conditions))
            .order_by(t.persons.c.first_surname, t.persons.c.given_names, t.persons.c.id)
            .limit(limit)
        )
        return [_person(r) for r in self.conn.execute(query)]

    def update(self, person: Person, changes: dict[str, tuple[Any, Any]], by: str, reason: str, at: datetime) -> None:
        values = {f: new for f, (_, new) in changes.items()} | {"search_key": person.search_key}
        self.conn.execute(update(t.persons).where(t.persons.c.id == person.id).values(**values))
        self.conn.execute(
            insert(t.person_corrections),
            [
                {
                    "id": new_id(),
                    "person_id": person.id,
                    "field": f,
                    "old_value": _text(old),
                    "new_value": _text(new),
                    "corrected_at": at,
                    "corrected_by": by,
                    "reason": reason,
                }
                for f, (old, new) in changes.items()
            ],
        )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


class SqlHouseholds:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, household: Household) -> None:
        self.conn.execute(insert(t.households).values(**household.__dict__))

    def get(self, household_id: str) -> Household | None:
        row = self.conn.execute(select(t.households).where(t.households.c.id == household_id)).first()
        return self._household(row) if row else None

    def page(self, limit: int, after: str | None, region: str | None) -> list[Household]:
        query = select(t.households).order_by(t.households.c.id).limit(limit)
        if after:
            query = query.where(t.households.c.id > after)
        if region:
            query = query.where(t.households.c.region == region)
        return [self._household(r) for r in self.conn.execute(query)]

    @staticmethod
    def _household(row: Row[Any]) -> Household:
        data = dict(row._mapping)
        data["created_at"] = as_utc(data["created_at"])
        return Household(**data)


class SqlMemberships:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, membership: Membership) -> None:
        # No SAVEPOINT here: with pysqlite a savepoint opened before the first write starts and then
        # *commits* its own transaction, so earlier writes of the unit of work would survive a
        # refusal. A unique-index refusal aborts the whole unit of work instead.
        try:
            self.conn.execute(insert(t.memberships).values(**membership.__dict__))
        except IntegrityError:
            # The partial unique index caught a concurrent enrollment of the same person.
            raise Conflict("already_in_household", "This person already belongs to a household.") from None

    def current_of_person(self, person_id: str) -> Membership | None:
        m = t.memberships.c
        row = self.conn.execute(select(t.memberships).where(m.person_id == person_id, m.valid_to.is_(None))).first()
        return self._membership(row) if row else None

    def current_of_household(self, household_id: str) -> list[Membership]:
        m = t.memberships.c
        rows = self.conn.execute(
            select(t.memberships)
            .where(m.household_id == household_id, m.valid_to.is_(None))
            .order_by(m.valid_from, m.recorded_at, m.id)
        )
        return [self._membership(r) for r in rows]

    def end(self, membership: Membership, on: date, by: str, reason: str) -> None:
        self.conn.execute(
            update(t.memberships)
            .where(t.memberships.c.id == membership.id)
            .values(valid_to=on, ended_by=by, end_reason=reason)
        )

    @staticmethod
    def _membership(row: Row[Any]) -> Membership:
        fields = ("id", "household_id", "person_id", "relationship", "valid_from", "valid_to", "recorded_by", "reason")
        return Membership(**{f: getattr(row, f) for f in fields}, recorded_at=as_utc(row.recorded_at))


class SqlFacts:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, version: FactVersion) -> None:
        kind = FACT_KINDS[version.kind]
        self.conn.execute(
            insert(t.FACT_TABLES[kind.name]).values(
                id=version.id,
                valid_from=version.valid_from,
                recorded_at=version.recorded_at,
                recorded_by=version.recorded_by,
                reason=version.reason,
                supersedes_id=version.supersedes_id,
                **{kind.subject_column: version.subject_id},
                **version.key,
                **version.values,
            )
        )

    def get(self, kind: str, version_id: str) -> FactVersion | None:
        table = t.FACT_TABLES[kind]
        row = self.conn.execute(select(table).where(table.c.id == version_id)).first()
        return self._version(kind, row) if row else None

    def of_subjects(self, kind: str, subject_ids: Sequence[str]) -> list[FactVersion]:
        table = t.FACT_TABLES[kind]
        column = table.c[FACT_KINDS[kind].subject_column]
        rows = self.conn.execute(select(table).where(column.in_(list(subject_ids))))
        return [self._version(kind, r) for r in rows]

    def is_superseded(self, kind: str, version_id: str) -> bool:
        table = t.FACT_TABLES[kind]
        return bool(self.conn.execute(select(exists().where(table.c.supersedes_id == version_id))).scalar())

    @staticmethod
    def _version(kind_name: str, row: Row[Any]) -> FactVersion:
        kind = FACT_KINDS[kind_name]
        return FactVersion(
            kind=kind_name,
            id=row.id,
            subject_id=getattr(row, kind.subject_column),
            key={k: getattr(row, k) for k in kind.keys},
            values={v: getattr(row, v) for v in kind.values},
            valid_from=row.valid_from,
            recorded_at=as_utc(row.recorded_at),
            recorded_by=row.recorded_by,
            reason=row.reason,
            supersedes_id=row.supersedes_id,
        )


_INSERT_ACCESS_ENTRY = insert(t.access_log)


COPY_FROM_ENTRIES = 1_000
"""From this many entries in one append, PostgreSQL gets them by COPY: a cycle or a registry extract
logs 50,000 reads a page, which took 30–40 µs an entry as an executemany."""


class SqlAccessLog:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def append(self, entries: Sequence[AccessEntry]) -> None:
        if len(entries) >= COPY_FROM_ENTRIES and self.conn.dialect.name == "postgresql":
            BulkAccessLog(writer_for(self.conn)).append(entries)
            return
        self.conn.execute(
            _INSERT_ACCESS_ENTRY,
            [
                {
                    "occurred_at": e.occurred_at,
                    "actor": e.actor,
                    "role": e.role,
                    "purpose": e.purpose,
                    "action": e.action,
                    "subject_person_id": e.subject.person_id if e.subject else None,
                    "subject_household_id": e.subject.household_id if e.subject else None,
                    "categories": " ".join(e.categories),
                    "detail": e.detail,
                    "subject_salt": secrets.token_hex(16) if e.subject else "",
                }
                for e in entries
            ],
        )
