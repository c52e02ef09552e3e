"""/v1/persons and /v1/households: enroll, look up, list, move members, record and correct facts."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from civicard.adapters.api.access import Access, App
from civicard.adapters.api.schemas import (
    Created,
    DuplicateCandidateOut,
    DuplicateCheckOut,
    EnrolledOut,
    FactCorrectionIn,
    FactIn,
    FactKindName,
    FactOut,
    HouseholdIn,
    HouseholdOut,
    HouseholdPage,
    LeaveIn,
    MemberIn,
    MoveIn,
    PersonCorrectionIn,
    PersonIn,
    PersonOut,
    PersonSummaryOut,
)
from civicard.dedup.model import REVIEW_BAND
from civicard.programs.reevaluation import redecide_after_fact
from civicard.registry import enrollment, lookup, recording
from civicard.shared.errors import InvalidInput

router = APIRouter(prefix="/v1", tags=["registry"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read (not JSON or not UTF-8)"},
    401: {"description": "No (or not allowed) identity"},
    403: {"description": "Purpose not allowed for this role"},
    404: {"description": "Unknown person, household or fact"},
    409: {"description": "Conflicts with the current state"},
    422: {"description": "Invalid input; nothing was written"},
}


@router.post("/persons", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def enroll(body: PersonIn, app: App, access: Access) -> EnrolledOut:
    """Enroll a person. Refused with 409 `possible_duplicates` (candidate ids and probabilities)
    until `confirmed_new_person` is set; a likely duplicate is then registered as `held`."""
    with app.uow(access) as uow:
        person = enrollment.enroll_person(uow, enrollment.EnrollPerson(**body.model_dump()), app.matcher)
    return EnrolledOut(id=person.id, record_status=person.record_status)


@router.post("/persons/duplicate-check", responses=PROBLEMS)
def duplicate_check(body: PersonIn, app: App, access: Access) -> DuplicateCheckOut:
    """Who in the registry may be this person, with the probability and the reasons; nothing is
    written except the access-log entries of the candidates shown."""
    command = enrollment.EnrollPerson(**body.model_dump())
    with app.uow(access) as uow:
        screening = enrollment.check_duplicates(uow, command, app.matcher)
    return DuplicateCheckOut(
        candidates=[DuplicateCandidateOut.of(pair, screening.records[pair.id_r]) for pair in screening.pairs],
        review_band=REVIEW_BAND,
    )


@router.get("/persons", responses=PROBLEMS)
def search(
    app: App,
    access: Access,
    q: Annotated[str, Query(max_length=200, description="Any part of the names, or a document number.")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[PersonSummaryOut]:
    with app.uow(access) as uow:
        found = lookup.search_persons(uow, q, limit)
    return [PersonSummaryOut.of(p) for p in found]


@router.get("/persons/{person_id}", responses=PROBLEMS)
def read_person(person_id: str, app: App, access: Access) -> PersonOut:
    with app.uow(access) as uow:
        record = lookup.get_person(uow, person_id)
    return PersonOut.of_record(record)


@router.post("/persons/{person_id}/corrections", responses=PROBLEMS)
def correct_person(person_id: str, body: PersonCorrectionIn, app: App, access: Access) -> Created:
    changes: dict[str, object] = dict(body.changes)
    if "birth_date" in changes:
        changes["birth_date"] = _date(changes["birth_date"])
    with app.uow(access) as uow:
        person = enrollment.correct_person(uow, person_id, changes, body.reason, app.matcher)
    return Created(id=person.id)


@router.post("/persons/{person_id}/facts", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def record_person_fact(person_id: str, body: FactIn, app: App, access: Access) -> FactOut:
    with app.uow(access) as uow:
        fact = recording.record_fact(uow, body.kind, person_id, body.key, body.values, body.valid_from, body.reason)
        redecided = redecide_after_fact(uow, fact.kind, fact.subject_id)
    return FactOut.of(fact, redecided)


@router.post("/persons/{person_id}/move", responses=PROBLEMS)
def move(person_id: str, body: MoveIn, app: App, access: Access) -> Created:
    with app.uow(access) as uow:
        m = enrollment.move_member(uow, person_id, body.to_household_id, body.relationship, body.reason)
    return Created(id=m.id)


@router.post("/persons/{person_id}/leave", status_code=status.HTTP_204_NO_CONTENT, responses=PROBLEMS)
def leave(person_id: str, body: LeaveIn, app: App, access: Access) -> None:
    with app.uow(access) as uow:
        enrollment.remove_member(uow, person_id, body.reason)


@router.post("/households", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def create_household(body: HouseholdIn, app: App, access: Access) -> Created:
    with app.uow(access) as uow:
        household = enrollment.create_household(uow, enrollment.CreateHousehold(**body.model_dump()))
    return Created(id=household.id)


@router.get("/households", responses=PROBLEMS)
def list_households(
    app: App,
    access: Access,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    after: Annotated[str | None, Query(max_length=32, description="Cursor: the last id of the previous page.")] = None,
    region: Annotated[str | None, Query(max_length=40)] = None,
) -> HouseholdPage:
    with app.uow(access) as uow:
        page = lookup.list_households(uow, limit, after, region)
    items = [HouseholdOut.of_record(r) for r in page]
    return HouseholdPage(items=items, next_cursor=items[-1].id if len(items) == limit else None)


@router.get("/households/{household_id}", responses=PROBLEMS)
def read_household(household_id: str, app: App, access: Access) -> HouseholdOut:
    with app.uow(access) as uow:
        record = lookup.get_household(uow, household_id)
    return HouseholdOut.of_record(record)


@router.post("/households/{household_id}/members", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def add_member(household_id: str, body: MemberIn, app: App, access: Access) -> Created:
    with app.uow(access) as uow:
        m = enrollment.add_member(uow, household_id, body.person_id, body.relationship, body.reason)
    return Created(id=m.id)


@router.post("/households/{household_id}/facts", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def record_household_fact(household_id: str, body: FactIn, app: App, access: Access) -> FactOut:
    with app.uow(access) as uow:
        fact = recording.record_fact(uow, body.kind, household_id, body.key, body.values, body.valid_from, body.reason)
        redecided = redecide_after_fact(uow, fact.kind, fact.subject_id)
    return FactOut.of(fact, redecided)


@router.post("/facts/{kind}/{version_id}/corrections", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def correct_fact(kind: FactKindName, version_id: str, body: FactCorrectionIn, app: App, access: Access) -> FactOut:
    with app.uow(access) as uow:
        fact = recording.correct_fact(uow, kind, version_id, body.values, body.reason, body.valid_from)
        redecided = redecide_after_fact(uow, fact.kind, fact.subject_id)
    return FactOut.of(fact, redecided)


def _date(value: object) -> date:
    if not isinstance(value, str):
        raise InvalidInput("invalid_birth_date", "The birth date must be YYYY-MM-DD.")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("invalid_birth_date", "The birth date must be YYYY-MM-DD.") from None
