"""Reading the registry: every read passes the access enforcement point before data is returned."""

from __future__ import annotations

from datetime import date

from civicard.registry.facts import FACT_KINDS
from civicard.registry.model import (
    FactVersion,
    Household,
    HouseholdRecord,
    PersonMatch,
    PersonRecord,
    current_versions,
    fold,
)
from civicard.registry.ports import RegistryUnitOfWork
from civicard.shared.errors import InvalidInput, NotFound
from civicard.shared.ids import is_id
from civicard.shared.text import clean_text
from civicard.transparency.access import Subject, disclose

ALL_CATEGORIES = ("identity", "household", "income", "property", "health", "benefits")
MAX_PAGE = 100


def get_person(uow: RegistryUnitOfWork, person_id: str, on: date | None = None) -> PersonRecord:
    """A person's record as the reader's purpose allows, with the facts in force on `on`.

    A merged record is still readable (history is kept) and says which record it is an alias of.
    """
    person = uow.persons.get(person_id) if is_id(person_id) else None
    if person is None:
        raise NotFound("unknown_person", f"No person with id '{person_id}'.")
    granted = disclose(
        uow.access_log, uow.context, [Subject.person(person_id)], ALL_CATEGORIES, "person.read", uow.clock.now()
    )
    membership = uow.memberships.current_of_person(person_id)
    facts = _facts(uow, "person", [person_id], granted, on or uow.clock.today())
    uow.commit()
    return PersonRecord(
        person=person if "identity" in granted else None,
        person_id=person_id,
        membership=membership if "household" in granted else None,
        facts=facts,
        categories=granted,
        record_status=person.record_status,
        merged_into=person.merged_into,
    )


def search_persons(uow: RegistryUnitOfWork, query: str, limit: int = 20) -> list[PersonMatch]:
    """Find persons by any part of their names or by document number (accents and case ignored)."""
    words = [w for w in fold(clean_text(query, "query", 200, required=False)).split() if w]
    if not words or sum(len(w) for w in words) < 2:
        raise InvalidInput("query_too_short", "Type at least two letters of a name or a document number.")
    limit = max(1, min(limit, MAX_PAGE))
    found = uow.persons.search(words, limit)
    disclose(
        uow.access_log,
        uow.context,
        [Subject.person(p.id) for p in found],
        ["identity", "household"],
        "person.search",
        uow.clock.now(),
    )
    matches = []
    for person in found:
        membership = uow.memberships.current_of_person(person.id)
        matches.append(PersonMatch(person, membership.household_id if membership else None))
    uow.commit()
    return matches


def get_household(uow: RegistryUnitOfWork, household_id: str, on: date | None = None) -> HouseholdRecord:
    household = uow.households.get(household_id) if is_id(household_id) else None
    if household is None:
        raise NotFound("unknown_household", f"No household with id '{household_id}'.")
    members = uow.memberships.current_of_household(household_id)
    subjects = [Subject.household(household_id), *(Subject.person(m.person_id) for m in members)]
    granted = disclose(uow.access_log, uow.context, subjects, ALL_CATEGORIES, "household.read", uow.clock.now())
    day = on or uow.clock.today()
    people = uow.persons.get_many([m.person_id for m in members]) if "identity" in granted else {}
    facts = _facts(uow, "household", [household_id], granted, day)
    facts += _facts(uow, "person", [m.person_id for m in members], granted, day)
    uow.commit()
    return HouseholdRecord(
        household=household,
        members=[(m, people.get(m.person_id)) for m in members],
        facts=facts,
        categories=granted,
    )


def get_household_address(uow: RegistryUnitOfWork, household_id: str) -> Household:
    """Only the household's address (no members, no facts): what enrolling someone into it
    needs. The read is logged for the household; the caller commits."""
    household = uow.households.get(household_id) if is_id(household_id) else None
    if household is None:
        raise NotFound("unknown_household", f"No household with id '{household_id}'.")
    disclose(
        uow.access_log,
        uow.context,
        [Subject.household(household_id)],
        ["household"],
        "household.address",
        uow.clock.now(),
    )
    return household


def list_households(
    uow: RegistryUnitOfWork, limit: int = 50, after: str | None = None, region: str | None = None
) -> list[HouseholdRecord]:
    """A page of households in id order (keyset pagination: pass the last id as `after`)."""
    limit = max(1, min(limit, MAX_PAGE))
    if after is not None and not is_id(after):
        raise InvalidInput("invalid_cursor", "The page cursor is not a household id.")
    page = uow.households.page(limit, after, region)
    granted = disclose(
        uow.access_log,
        uow.context,
        [Subject.household(h.id) for h in page],
        ["household"],
        "household.list",
        uow.clock.now(),
    )
    uow.commit()
    return [HouseholdRecord(household=h, members=[], facts=[], categories=granted) for h in page]


def _facts(
    uow: RegistryUnitOfWork, subject: str, subject_ids: list[str], granted: frozenset[str], on: date
) -> list[FactVersion]:
    if not subject_ids:
        return []
    versions: list[FactVersion] = []
    for kind in FACT_KINDS.values():
        if kind.subject == subject and kind.category in granted:
            versions += uow.facts.of_subjects(kind.name, subject_ids)
    return current_versions(versions, on)
