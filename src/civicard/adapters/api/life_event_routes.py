"""/v1/life-events: a registrar records deaths, births, household splits and merges and moves;
the events about a person or a household are listed (every read and write logged)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from civicard.adapters.api.access import Access, App
from civicard.adapters.api.life_event_schemas import BirthIn, DeathIn, LifeEventOut, MergeIn, MoveIn, SplitIn
from civicard.adapters.db.life_event_store import SqlLifeEventUnitOfWork
from civicard.bootstrap import Container
from civicard.registry import life_events
from civicard.transparency.access import AccessContext

router = APIRouter(prefix="/v1", tags=["life events"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read (not JSON or not UTF-8)"},
    401: {"description": "No (or not allowed) identity"},
    403: {"description": "Purpose not allowed for this role (events are recorded under `life_event`)"},
    404: {"description": "Unknown person or household"},
    409: {"description": "Conflicts with the current state (already deceased, not a member, possible duplicates)"},
    422: {"description": "Invalid input; nothing was written"},
}


def _uow(app: Container, access: AccessContext) -> SqlLifeEventUnitOfWork:
    return SqlLifeEventUnitOfWork(app.engine, access, app.clock)


@router.post("/life-events/deaths", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def record_death(body: DeathIn, app: App, access: Access) -> LifeEventOut:
    """The person is marked deceased (the record is kept), leaves their household on the day and
    their cards are revoked; entitlements of the current period stay, the next cycle omits them."""
    with _uow(app, access) as uow:
        event = life_events.record_death(
            uow, app.card_keys, body.person_id, body.died_on, body.document_ref, body.reason
        )
    return LifeEventOut.of(event)


@router.post("/life-events/births", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def record_birth(body: BirthIn, app: App, access: Access) -> LifeEventOut:
    """The child is enrolled (duplicate screening applies: 409 `possible_duplicates` until
    `confirmed_new_person`) as a member of the household from the birth date."""
    with _uow(app, access) as uow:
        event = life_events.record_birth(uow, life_events.RecordBirth(**body.model_dump()), app.matcher)
    return LifeEventOut.of(event)


@router.post("/life-events/household-splits", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def split_household(body: SplitIn, app: App, access: Access) -> LifeEventOut:
    with _uow(app, access) as uow:
        event = life_events.split_household(
            uow, body.household_id, body.members, body.address.address(), body.effective_on, body.reason, app.matcher
        )
    return LifeEventOut.of(event)


@router.post("/life-events/household-merges", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def merge_households(body: MergeIn, app: App, access: Access) -> LifeEventOut:
    with _uow(app, access) as uow:
        event = life_events.merge_households(
            uow,
            body.from_household_id,
            body.into_household_id,
            body.effective_on,
            body.reason,
            body.relationships,
            app.matcher,
        )
    return LifeEventOut.of(event)


@router.post("/life-events/moves", status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def move_household(body: MoveIn, app: App, access: Access) -> LifeEventOut:
    with _uow(app, access) as uow:
        event = life_events.move_household(
            uow, body.household_id, body.address.address(), body.effective_on, body.reason, app.matcher
        )
    return LifeEventOut.of(event)


@router.get("/persons/{person_id}/life-events", responses=PROBLEMS)
def person_life_events(person_id: str, app: App, access: Access) -> list[LifeEventOut]:
    """Events about the person and every household they have been in, newest first."""
    with _uow(app, access) as uow:
        events = life_events.events_about_person(uow, person_id)
    return [LifeEventOut.of(e) for e in events]


@router.get("/households/{household_id}/life-events", responses=PROBLEMS)
def household_life_events(household_id: str, app: App, access: Access) -> list[LifeEventOut]:
    with _uow(app, access) as uow:
        events = life_events.events_of_household(uow, household_id)
    return [LifeEventOut.of(e) for e in events]
