"""What the registry holds about a resident, by category, as the resident reads it (purpose self_access).

One read, one log entry for the resident: their identity with when each detail was last set,
their household and its members — names and ages only, since a member sees no other member's
facts —, and their own current facts by category (employment and income, the household's
property, their health needs, the benefits they receive), each with when it was recorded and by
whom. The self-scoped purpose lets the log name only the resident as subject, so reading the
members' names is recorded in the resident's own entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from civicard.registry.facts import FACT_KINDS
from civicard.registry.model import FactVersion, Household, Membership, Person, current_versions
from civicard.registry.ports import RegistryUnitOfWork
from civicard.shared.errors import Forbidden, NotFound
from civicard.shared.ids import is_id
from civicard.transparency.access import Subject, disclose

SELF_ACCESS = "self_access"
FACT_CATEGORIES = ("income", "property", "health", "benefits")
CATEGORIES = ("identity", "household", *FACT_CATEGORIES)
# What a resident is shown of their identity (photo_ref is a storage reference, not a detail to check).
SHOWN_IDENTITY = (
    "given_names",
    "first_surname",
    "second_surname",
    "birth_date",
    "birth_place",
    "sex",
    "national_id",
    "address_line",
    "municipality",
    "region",
    "postcode",
    "phone",
)


@dataclass(frozen=True)
class Recorder:
    """Who recorded something, as the resident reads it: a name and the role they acted in."""

    actor: str
    name: str
    role: str


@dataclass(frozen=True)
class IdentityChange:
    field: str
    corrected_at: datetime
    corrected_by: str


@dataclass(frozen=True)
class IdentityDetail:
    name: str  # a persons column
    value: Any
    recorded_at: datetime
    recorded_by: str
    corrected: bool  # set by a correction after enrollment


@dataclass(frozen=True)
class Housemate:
    """A member of the resident's household as another member sees them: a name and an age."""

    person_id: str
    full_name: str
    age: int
    is_me: bool


@dataclass(frozen=True)
class MyRecord:
    person_id: str
    identity: tuple[IdentityDetail, ...]
    household: Household | None
    membership: Membership | None
    housemates: tuple[Housemate, ...]
    facts: dict[str, tuple[FactVersion, ...]]  # category → facts in force today, FACT_CATEGORIES order
    recorders: dict[str, Recorder]  # actor id → who, for every recorded_by on the page
    categories: frozenset[str]


class ResidentRecords(Protocol):
    def identity_changes(self, person_id: str) -> list[IdentityChange]: ...
    def recorders(self, actor_ids: Sequence[str], person_id: str, household_id: str | None) -> dict[str, Recorder]: ...


class SelfServiceUnitOfWork(RegistryUnitOfWork, Protocol):
    @property
    def residents(self) -> ResidentRecords: ...


def my_record(uow: SelfServiceUnitOfWork, person_id: str) -> MyRecord:
    """Everything the registry holds about the resident, by category; logged as one read."""
    if uow.context.purpose != SELF_ACCESS:
        raise Forbidden("purpose_not_allowed", f"This is done under the '{SELF_ACCESS}' purpose.")
    person = uow.persons.get(person_id) if is_id(person_id) else None
    if person is None:
        raise NotFound("unknown_person", "There is no record for this card holder.")
    granted = disclose(
        uow.access_log, uow.context, [Subject.person(person_id)], CATEGORIES, "self.record_read", uow.clock.now()
    )
    today = uow.clock.today()
    membership = uow.memberships.current_of_person(person_id) if "household" in granted else None
    household = uow.households.get(membership.household_id) if membership else None
    housemates = _housemates(uow, person_id, membership, today)
    facts = _facts(uow, person_id, membership, granted, today)
    identity = _identity(person, uow.residents.identity_changes(person_id)) if "identity" in granted else ()
    actors = {d.recorded_by for d in identity} | {f.recorded_by for group in facts.values() for f in group}
    if membership is not None and household is not None:
        actors |= {membership.recorded_by, household.created_by}
    recorders = uow.residents.recorders(sorted(actors), person_id, household.id if household else None)
    uow.commit()
    return MyRecord(person_id, identity, household, membership, housemates, facts, recorders, granted)


def _identity(person: Person, changes: list[IdentityChange]) -> tuple[IdentityDetail, ...]:
    latest: dict[str, IdentityChange] = {}
    for change in changes:
        held = latest.get(change.field)
        if held is None or change.corrected_at > held.corrected_at:
            latest[change.field] = change
    details = []
    for name in SHOWN_IDENTITY:
        last = latest.get(name)
        at, by = (last.corrected_at, last.corrected_by) if last else (person.enrolled_at, person.enrolled_by)
        details.append(IdentityDetail(name, getattr(person, name), at, by, last is not None))
    return tuple(details)


def _housemates(
    uow: SelfServiceUnitOfWork, person_id: str, membership: Membership | None, today: date
) -> tuple[Housemate, ...]:
    if membership is None:
        return ()
    members = uow.memberships.current_of_household(membership.household_id)
    people = uow.persons.get_many([m.person_id for m in members])
    mates = [
        Housemate(m.person_id, p.full_name, p.age_on(today), m.person_id == person_id)
        for m in members
        if (p := people.get(m.person_id)) is not None
    ]
    return tuple(sorted(mates, key=lambda h: (not h.is_me, h.full_name, h.person_id)))  # the resident first


def _facts(
    uow: SelfServiceUnitOfWork, person_id: str, membership: Membership | None, granted: frozenset[str], on: date
) -> dict[str, tuple[FactVersion, ...]]:
    """The resident's own facts, and their household's (property): never another member's."""
    found: dict[str, list[FactVersion]] = {c: [] for c in FACT_CATEGORIES if c in granted}
    for kind in FACT_KINDS.values():
        if kind.category not in found:
            continue
        subject = person_id if kind.subject == "person" else membership.household_id if membership else None
        if subject is not None:
            found[kind.category] += current_versions(uow.facts.of_subjects(kind.name, [subject]), on)
    return {category: tuple(facts) for category, facts in found.items()}
