"""Request and response bodies of the registry API (separate from domain classes and tables)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from civicard.dedup.model import REVIEW_BAND
from civicard.dedup.pairs import ScoredPair
from civicard.registry.model import (
    FactVersion,
    Household,
    HouseholdRecord,
    Membership,
    Person,
    PersonMatch,
    PersonRecord,
    RecordStatus,
)

FactKindName = Literal["employment", "incomes", "properties", "health_needs", "benefits_received"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonIn(Body):
    given_names: str = Field(max_length=200, examples=["María José"])
    first_surname: str = Field(max_length=200, examples=["Pérez"])
    second_surname: str = Field(default="", max_length=200, examples=["Gómez"])
    birth_date: date
    birth_place: str = Field(max_length=200)
    sex: str = Field(max_length=1, examples=["F"])
    address_line: str = Field(max_length=300)
    municipality: str = Field(max_length=40, examples=["NOR-01"])
    postcode: str = Field(max_length=20, examples=["10001"])
    phone: str | None = Field(default=None, max_length=40)
    national_id: str | None = Field(default=None, max_length=40)
    household_id: str | None = Field(default=None, max_length=32)
    relationship: str = Field(default="reference", max_length=40)
    reason: str = Field(default="enrollment", max_length=500)
    confirmed_new_person: bool = Field(
        default=False,
        description="Set after checking the possible duplicates (POST /v1/persons/duplicate-check): "
        "this is someone new. A likely duplicate is then held for a reviewer.",
    )


class ReasonOut(Body):
    field: str
    outcome: str = Field(description="agree, close, disagree or missing")
    label: str
    weight: float = Field(description="Evidence in bits; positive means 'same person'.")


class DuplicateCandidateOut(Body):
    person_id: str
    match_probability: float
    held_for_review_if_new: bool = Field(description="At or above the review band: a new enrollment would be held.")
    full_name: str
    birth_date: date
    municipality: str
    household_id: str | None
    reasons: list[ReasonOut]

    @classmethod
    def of(cls, pair: ScoredPair, record: dict[str, Any]) -> DuplicateCandidateOut:
        return cls(
            person_id=pair.id_r,
            match_probability=round(pair.match_probability, 4),
            held_for_review_if_new=pair.match_probability >= REVIEW_BAND,
            full_name=f"{record['first_name']} {record['surname']}",
            birth_date=date.fromisoformat(record["date_of_birth"]),
            municipality=record["city"],
            household_id=record["household_id"],
            reasons=[ReasonOut(**r.to_json()) for r in pair.reasons],
        )


class DuplicateCheckOut(Body):
    candidates: list[DuplicateCandidateOut]
    review_band: float


class EnrolledOut(Body):
    id: str
    record_status: str = Field(description="active, or held when a reviewer must first rule out a duplicate")


class PersonCorrectionIn(Body):
    changes: dict[str, str | None] = Field(description="Identity fields to change, with their new value.")
    reason: str = Field(max_length=500)


class HouseholdIn(Body):
    municipality: str = Field(max_length=40, examples=["NOR-01"])
    address_line: str = Field(max_length=300)
    postcode: str = Field(max_length=20)
    reason: str = Field(default="enrollment", max_length=500)


class MemberIn(Body):
    person_id: str = Field(max_length=32)
    relationship: str = Field(max_length=40)
    reason: str = Field(max_length=500)


class MoveIn(Body):
    to_household_id: str = Field(max_length=32)
    relationship: str = Field(max_length=40)
    reason: str = Field(max_length=500)


class LeaveIn(Body):
    reason: str = Field(max_length=500)


class FactIn(Body):
    kind: FactKindName
    key: dict[str, str] = Field(default_factory=dict, examples=[{"source": "wages"}])
    values: dict[str, StrictInt | StrictBool | str | None] = Field(examples=[{"monthly_amount_minor": 41000}])
    valid_from: date
    reason: str = Field(max_length=500)


class FactCorrectionIn(Body):
    values: dict[str, StrictInt | StrictBool | str | None]
    valid_from: date | None = None
    reason: str = Field(max_length=500)


class IdentityOut(BaseModel):
    given_names: str
    first_surname: str
    second_surname: str
    full_name: str
    birth_date: date
    birth_place: str
    sex: str
    address_line: str
    municipality: str
    region: str
    postcode: str
    phone: str | None
    national_id: str | None
    enrolled_at: datetime

    @classmethod
    def of(cls, p: Person) -> IdentityOut:
        fields = {k: getattr(p, k) for k in cls.model_fields if k != "full_name"}
        return cls(full_name=p.full_name, **fields)


class FactOut(BaseModel):
    id: str
    kind: str
    subject_id: str
    key: dict[str, Any]
    values: dict[str, Any]
    valid_from: date
    recorded_at: datetime
    recorded_by: str
    reason: str
    supersedes_id: str | None
    redecided: int = Field(
        0,
        description="How many of the household's decisions in open benefit periods were made again because "
        "of this change (the resident sees them in their portal; their contents are not shown here).",
    )

    @classmethod
    def of(cls, f: FactVersion, redecided: int = 0) -> FactOut:
        return cls(**f.__dict__, redecided=redecided)


class MembershipOut(BaseModel):
    household_id: str
    relationship: str
    valid_from: date


class PersonOut(BaseModel):
    id: str
    categories: list[str] = Field(description="Data categories this reader's purpose allowed.")
    identity: IdentityOut | None
    household: MembershipOut | None
    facts: list[FactOut]
    record_status: RecordStatus = Field(description="held: waiting for a duplicate reviewer; merged: an alias.")
    merged_into: str | None = Field(description="While merged: the id of the record this one was merged into.")

    @classmethod
    def of_record(cls, r: PersonRecord) -> PersonOut:
        return cls(
            id=r.person_id,
            categories=sorted(r.categories),
            record_status=r.record_status,
            merged_into=r.merged_into,
            identity=IdentityOut.of(r.person) if r.person else None,
            household=MembershipOut(
                household_id=r.membership.household_id,
                relationship=r.membership.relationship,
                valid_from=r.membership.valid_from,
            )
            if r.membership
            else None,
            facts=[FactOut.of(f) for f in r.facts],
        )


class PersonSummaryOut(BaseModel):
    id: str
    full_name: str
    birth_date: date
    municipality: str
    national_id: str | None
    household_id: str | None
    record_status: RecordStatus
    merged_into: str | None

    @classmethod
    def of(cls, match: PersonMatch) -> PersonSummaryOut:
        p = match.person
        return cls(
            id=p.id,
            record_status=p.record_status,
            merged_into=p.merged_into,
            full_name=p.full_name,
            birth_date=p.birth_date,
            municipality=p.municipality,
            national_id=p.national_id,
            household_id=match.household_id,
        )


class MemberOut(BaseModel):
    person_id: str
    relationship: str
    valid_from: date
    full_name: str | None
    birth_date: date | None

    @classmethod
    def of(cls, m: Membership, p: Person | None) -> MemberOut:
        return cls(
            person_id=m.person_id,
            relationship=m.relationship,
            valid_from=m.valid_from,
            full_name=p.full_name if p else None,
            birth_date=p.birth_date if p else None,
        )


class HouseholdOut(BaseModel):
    id: str
    region: str
    municipality: str
    address_line: str
    postcode: str
    created_at: datetime
    categories: list[str]
    members: list[MemberOut]
    facts: list[FactOut]

    @classmethod
    def of_record(cls, r: HouseholdRecord) -> HouseholdOut:
        h: Household = r.household
        return cls(
            id=h.id,
            region=h.region,
            municipality=h.municipality,
            address_line=h.address_line,
            postcode=h.postcode,
            created_at=h.created_at,
            categories=sorted(r.categories),
            members=[MemberOut.of(m, p) for m, p in r.members],
            facts=[FactOut.of(f) for f in r.facts],
        )


class HouseholdPage(BaseModel):
    items: list[HouseholdOut]
    next_cursor: str | None = Field(description="Pass as `after` to get the next page; null on the last page.")


class Created(BaseModel):
    id: str
