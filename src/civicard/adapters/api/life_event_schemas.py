"""Request and response bodies of the life-event API (separate from the domain classes)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import Field

from civicard.adapters.api.schemas import Body
from civicard.registry.life_events import LifeEvent, LifeEventKind, NewAddress


class DeathIn(Body):
    person_id: str = Field(max_length=32)
    died_on: date
    document_ref: str = Field(max_length=60, description="Death certificate or civil-registry entry.")
    reason: str = Field(max_length=500)


class BirthIn(Body):
    household_id: str = Field(max_length=32)
    given_names: str = Field(max_length=200)
    first_surname: str = Field(max_length=200)
    second_surname: str = Field(default="", max_length=200)
    birth_date: date
    birth_place: str = Field(max_length=200)
    sex: str = Field(max_length=1, examples=["F"])
    relationship: str = Field(default="child", max_length=40)
    national_id: str | None = Field(default=None, max_length=40)
    document_ref: str = Field(max_length=60, description="Birth certificate or civil-registry entry.")
    reason: str = Field(max_length=500)
    confirmed_new_person: bool = Field(
        default=False, description="Set after checking the possible duplicates (as for an enrollment)."
    )


class AddressIn(Body):
    municipality: str = Field(max_length=40, examples=["SUR-02"])
    region: str | None = Field(default=None, max_length=40, description="Optional; must be the municipality's.")
    address_line: str = Field(max_length=300)
    postcode: str = Field(max_length=20)

    def address(self) -> NewAddress:
        return NewAddress(self.municipality, self.address_line, self.postcode, self.region)


class SplitIn(Body):
    household_id: str = Field(max_length=32)
    members: dict[str, str] = Field(
        description="Person id → relationship in the new household (exactly one `reference`).", max_length=50
    )
    address: AddressIn
    effective_on: date
    reason: str = Field(max_length=500)


class MergeIn(Body):
    from_household_id: str = Field(max_length=32)
    into_household_id: str = Field(max_length=32)
    relationships: dict[str, str] = Field(
        default_factory=dict, description="Optional person id → relationship in the household joined.", max_length=50
    )
    effective_on: date
    reason: str = Field(max_length=500)


class MoveIn(Body):
    household_id: str = Field(max_length=32)
    address: AddressIn
    effective_on: date
    reason: str = Field(max_length=500)


class LifeEventOut(Body):
    id: str
    kind: LifeEventKind
    person_id: str | None
    household_id: str | None
    other_household_id: str | None = Field(description="A split: the new household; a merge: the one joined.")
    effective_on: date
    document_ref: str | None
    recorded_at: datetime
    recorded_by: str
    reason: str
    details: dict[str, Any] = Field(description="Ids and codes only.")

    @classmethod
    def of(cls, event: LifeEvent) -> LifeEventOut:
        return cls(**event.__dict__)
