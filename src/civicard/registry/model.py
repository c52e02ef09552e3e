"""Registry domain objects: persons, households, memberships and dated, versioned facts."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

IDENTITY_FIELDS: tuple[str, ...] = (
    "given_names",
    "first_surname",
    "second_surname",
    "birth_date",
    "birth_place",
    "sex",
    "address_line",
    "municipality",
    "region",
    "postcode",
    "phone",
    "national_id",
    "photo_ref",
)


# active: a registered person; held: an enrollment waiting for a duplicate reviewer (dedup/review.py);
# merged: an alias of another record after a reviewer decided both are one person (dedup/merging.py);
# deceased: a registrar recorded the death (registry/life_events.py); the record is kept, never deleted.
RecordStatus = Literal["active", "held", "merged", "deceased"]
RECORD_STATUSES: tuple[RecordStatus, ...] = ("active", "held", "merged", "deceased")


def fold(text: str) -> str:
    """Lowercase without accents, for search that finds 'María' when a clerk types 'maria'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass
class Person:
    id: str
    given_names: str
    first_surname: str
    second_surname: str
    birth_date: date
    birth_place: str
    sex: str
    address_line: str
    municipality: str
    region: str
    postcode: str
    phone: str | None
    national_id: str | None
    photo_ref: str | None
    enrolled_at: datetime
    enrolled_by: str
    record_status: RecordStatus = "active"  # not an identity field: no correction changes it
    merged_into: str | None = None  # while merged: the record this one is an alias of
    deceased_on: date | None = None  # while deceased: the date of death

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.given_names, self.first_surname, self.second_surname) if p)

    @property
    def search_key(self) -> str:
        return fold(f"{self.full_name} {self.national_id or ''}".strip())

    def age_on(self, day: date) -> int:
        before_birthday = (day.month, day.day) < (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - int(before_birthday)


@dataclass
class Household:
    id: str
    region: str
    municipality: str
    address_line: str
    postcode: str
    created_at: datetime
    created_by: str


@dataclass
class Membership:
    id: str
    household_id: str
    person_id: str
    relationship: str
    valid_from: date
    valid_to: date | None
    recorded_at: datetime
    recorded_by: str
    reason: str

    @property
    def current(self) -> bool:
        return self.valid_to is None


@dataclass
class FactVersion:
    """One version of a fact. A correction is a new version that supersedes an earlier one;
    a change over time is a new version with a later `valid_from`. Nothing is overwritten."""

    kind: str
    id: str
    subject_id: str
    key: dict[str, Any]
    values: dict[str, Any]
    valid_from: date
    recorded_at: datetime
    recorded_by: str
    reason: str
    supersedes_id: str | None = None


@dataclass(frozen=True)
class PersonRecord:
    """What a reader is shown of a person: only the categories their purpose allows."""

    person: Person | None  # None when identity was not granted
    person_id: str
    membership: Membership | None  # None when household was not granted or the person is in none
    facts: list[FactVersion] = field(default_factory=list)
    categories: frozenset[str] = frozenset()
    record_status: RecordStatus = "active"
    merged_into: str | None = None  # a merged record says which record it is now an alias of


@dataclass(frozen=True)
class PersonMatch:
    """A search result: who, and which household they are in now (if any)."""

    person: Person
    household_id: str | None


@dataclass(frozen=True)
class HouseholdRecord:
    household: Household
    members: list[tuple[Membership, Person | None]]
    facts: list[FactVersion]
    categories: frozenset[str]


def current_versions(versions: list[FactVersion], on: date) -> list[FactVersion]:
    """The version in force on `on` for each subject's fact: not superseded, latest valid_from ≤ on."""
    superseded = {v.supersedes_id for v in versions if v.supersedes_id}
    best: dict[tuple[str, str, tuple[tuple[str, Any], ...]], FactVersion] = {}
    for v in versions:
        if v.id in superseded or v.valid_from > on:
            continue
        slot = (v.kind, v.subject_id, tuple(sorted(v.key.items())))
        held = best.get(slot)
        if held is None or (v.valid_from, v.recorded_at) > (held.valid_from, held.recorded_at):
            best[slot] = v
    return sorted(best.values(), key=lambda v: (v.kind, v.subject_id, str(sorted(v.key.items()))))
