"""Life events — a death, a birth, a household split or merge, a move: one transaction each.

Nothing is deleted and history is kept: a death marks the person deceased, ends their membership
on the day and revokes their cards; a split, merge or move ends memberships (`valid_to`) and
starts new ones, and the members' address changes go to the corrections history. Each event is
one `life_events` row written with the change. The current period's entitlements are left as
they are ("they stop from the next period"): the next cycle reads the current memberships.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Literal, Protocol

from civicard.dedup.matching import Matcher, match_keys
from civicard.identity.cards import DEFAULT_POLICY, CardKeys, CardPolicy, CardUnitOfWork, revoke_person_cards
from civicard.registry.enrollment import (
    CreateHousehold,
    EnrollmentUnitOfWork,
    EnrollPerson,
    dedup_record,
    new_household,
    register_person,
)
from civicard.registry.model import IDENTITY_FIELDS, Household, Membership, Person
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from civicard.shared.ids import is_id, new_id
from civicard.shared.text import clean_text
from civicard.transparency.access import Subject, disclose, record_change

LIFE_EVENT = "life_event"
LifeEventKind = Literal["death", "birth", "household_split", "household_merge", "move"]
LIFE_EVENT_KINDS: tuple[LifeEventKind, ...] = ("death", "birth", "household_split", "household_merge", "move")
ADDRESS_FIELDS = ("address_line", "municipality", "region", "postcode")
OLDEST_EVENT_DATE = date(1900, 1, 1)
_DOCUMENT_REF = re.compile(r"^[0-9A-Za-z][0-9A-Za-z /.-]{2,59}$")


@dataclass(frozen=True)
class LifeEvent:
    id: str
    kind: LifeEventKind
    person_id: str | None  # who died or was born
    household_id: str | None  # the household concerned (a split or merge: the one members left)
    other_household_id: str | None  # a split: the new household; a merge: the one joined
    effective_on: date
    document_ref: str | None
    recorded_at: datetime
    recorded_by: str
    reason: str
    details: dict[str, Any]  # ids and codes only


@dataclass(frozen=True)
class RecordBirth:
    household_id: str
    given_names: str
    first_surname: str
    birth_date: date
    birth_place: str
    sex: str
    document_ref: str
    reason: str
    relationship: str = "child"
    second_surname: str = ""
    national_id: str | None = None
    confirmed_new_person: bool = False  # as in enrollment: the registrar has seen the possible duplicates


@dataclass(frozen=True)
class NewAddress:
    municipality: str
    address_line: str
    postcode: str
    region: str | None = None  # optional; if given it must be the municipality's region


class LifeEventStore(Protocol):
    def add(self, event: LifeEvent) -> None: ...
    def about(self, person_ids: Sequence[str], household_ids: Sequence[str]) -> list[LifeEvent]: ...
    def households_of_person(self, person_id: str) -> list[str]:
        """Every household the person has been a member of, current or past."""
        ...

    def mark_deceased(self, person_id: str, on: date) -> None: ...
    def relocate(self, household: Household) -> None:
        """Store the household's new address fields."""
        ...


class LifeEventUnitOfWork(EnrollmentUnitOfWork, CardUnitOfWork, Protocol):
    """The registry, duplicate screening and cards, plus the life-event rows, in one transaction."""

    @property
    def life_events(self) -> LifeEventStore: ...


def record_death(
    uow: LifeEventUnitOfWork,
    keys: CardKeys,
    person_id: str,
    died_on: date,
    document_ref: str,
    reason: str,
    policy: CardPolicy = DEFAULT_POLICY,
) -> LifeEvent:
    """Mark the person deceased, end their membership on the day of death and revoke their cards.

    The record stays readable and in duplicate screening; entitlements already granted for the
    current period stay; the next cycle no longer counts the person in the household.
    """
    _require_purpose(uow)
    person = _require_person(uow, person_id)
    if person.record_status == "deceased":
        raise Conflict("already_deceased", "This person's death is already recorded.")
    if person.record_status == "merged":
        raise Conflict("person_merged", f"This record was merged into '{person.merged_into}'; use that record.")
    day = _effective(uow, died_on, "died_on", not_before=person.birth_date)
    ref, text = _document(document_ref), _reason(reason)
    uow.life_events.mark_deceased(person.id, day)
    membership = uow.memberships.current_of_person(person.id)
    if membership is not None:
        uow.memberships.end(membership, max(day, membership.valid_from), uow.context.actor.id, "death")
    revoked = revoke_person_cards(uow, keys, person.id, "deceased", policy)
    household_id = membership.household_id if membership else None
    details = {"cards_revoked": [c.id for c in revoked], "membership_id": membership.id if membership else None}
    event = _event(uow, "death", day, text, ref, details, person_id=person.id, household_id=household_id)
    _store(uow, event, [Subject.person(person.id), *_households(household_id)])
    return event


def record_birth(uow: LifeEventUnitOfWork, cmd: RecordBirth, matcher: Matcher | None = None) -> LifeEvent:
    """Enroll the child (the enrollment checks and duplicate screening apply) as a member of the
    household from the birth date; the next cycle counts them (age 0)."""
    _require_purpose(uow)
    household = _require_household(uow, cmd.household_id)
    ref, text = _document(cmd.document_ref), _reason(cmd.reason)
    child = register_person(
        uow,
        EnrollPerson(
            given_names=cmd.given_names,
            first_surname=cmd.first_surname,
            second_surname=cmd.second_surname,
            birth_date=cmd.birth_date,
            birth_place=cmd.birth_place,
            sex=cmd.sex,
            address_line=household.address_line,
            municipality=household.municipality,
            postcode=household.postcode,
            national_id=cmd.national_id,
            household_id=household.id,
            relationship=cmd.relationship,
            reason=f"birth: {text}",
            confirmed_new_person=cmd.confirmed_new_person,
            member_since=cmd.birth_date,
        ),
        matcher,
    )
    details = {"relationship": cmd.relationship, "record_status": child.record_status}
    event = _event(uow, "birth", cmd.birth_date, text, ref, details, person_id=child.id, household_id=household.id)
    _store(uow, event, [Subject.person(child.id), Subject.household(household.id)])
    return event


def split_household(
    uow: LifeEventUnitOfWork,
    household_id: str,
    members: Mapping[str, str],
    address: NewAddress,
    effective_on: date,
    reason: str,
    matcher: Matcher | None = None,
) -> LifeEvent:
    """Some members (person id → their relationship in the new household, exactly one `reference`)
    leave for a new household at a new address; the others stay."""
    _require_purpose(uow)
    household = _require_household(uow, household_id)
    day, text = _effective(uow, effective_on, "effective_on"), _reason(reason)
    current = {m.person_id: m for m in uow.memberships.current_of_household(household.id)}
    if not members:
        raise InvalidInput("no_members", "Choose the members who leave for the new household.")
    unknown = sorted(set(members) - set(current))
    if unknown:
        raise Conflict("not_a_member", f"Not a current member of this household: {', '.join(unknown)}.")
    if set(members) == set(current):
        raise Conflict("split_takes_everyone", "Everyone would leave: record a move of the household instead.")
    relationships = {p: vocabulary().require("relationships", r, "relationship") for p, r in members.items()}
    if list(relationships.values()).count("reference") != 1:
        raise InvalidInput("one_reference_person", "Name exactly one reference person for the new household.")
    new = new_household(uow, CreateHousehold(address.municipality, address.address_line, address.postcode))
    _check_region(address, new)
    uow.households.add(new)
    moved = _transfer(uow, [current[p] for p in sorted(members)], new.id, relationships, day, "household_split")
    _follow_address(uow, moved, new, f"household split: {text}", matcher)
    details = {"person_ids": moved, "municipality": new.municipality, "region": new.region}
    event = _event(uow, "household_split", day, text, None, details, household_id=household.id, other=new.id)
    _store(uow, event, [Subject.household(household.id), Subject.household(new.id), *map(Subject.person, moved)])
    return event


def merge_households(
    uow: LifeEventUnitOfWork,
    from_household_id: str,
    into_household_id: str,
    effective_on: date,
    reason: str,
    relationships: Mapping[str, str] | None = None,
    matcher: Matcher | None = None,
) -> LifeEvent:
    """Every member of one household joins another; the emptied household stays, with its history.

    Members keep their relationship unless `relationships` names another; the leaving household's
    reference person becomes `other_relative` (the household joined has its own).
    """
    _require_purpose(uow)
    source, target = _require_household(uow, from_household_id), _require_household(uow, into_household_id)
    if source.id == target.id:
        raise InvalidInput("same_household", "A household cannot be merged into itself.")
    day, text = _effective(uow, effective_on, "effective_on"), _reason(reason)
    leaving = uow.memberships.current_of_household(source.id)
    if not leaving:
        raise Conflict("household_empty", "The household has no current members to merge.")
    chosen = dict(relationships or {})
    unknown = sorted(set(chosen) - {m.person_id for m in leaving})
    if unknown:
        raise Conflict("not_a_member", f"Not a current member of this household: {', '.join(unknown)}.")
    roles = {
        m.person_id: vocabulary().require(
            "relationships",
            chosen.get(m.person_id) or ("other_relative" if m.relationship == "reference" else m.relationship),
            "relationship",
        )
        for m in leaving
    }
    has_reference = any(m.relationship == "reference" for m in uow.memberships.current_of_household(target.id))
    if (has_reference and "reference" in roles.values()) or list(roles.values()).count("reference") > 1:
        raise Conflict("reference_person_exists", "The household joined already has a reference person.")
    moved = _transfer(uow, leaving, target.id, roles, day, "household_merge")
    _follow_address(uow, moved, target, f"household merge: {text}", matcher)
    event = _event(
        uow, "household_merge", day, text, None, {"person_ids": moved}, household_id=source.id, other=target.id
    )
    _store(uow, event, [Subject.household(source.id), Subject.household(target.id), *map(Subject.person, moved)])
    return event


def move_household(
    uow: LifeEventUnitOfWork,
    household_id: str,
    address: NewAddress,
    effective_on: date,
    reason: str,
    matcher: Matcher | None = None,
) -> LifeEvent:
    """The household moves (perhaps to another municipality or region); its members' addresses
    follow. The old codes are kept in the event, the members' old addresses in their corrections."""
    _require_purpose(uow)
    household = _require_household(uow, household_id)
    day, text = _effective(uow, effective_on, "effective_on"), _reason(reason)
    checked = new_household(uow, CreateHousehold(address.municipality, address.address_line, address.postcode))
    _check_region(address, checked)
    moved = replace(household, **{f: getattr(checked, f) for f in ADDRESS_FIELDS})
    if moved == household:
        raise InvalidInput("no_change", "The new address is the household's current address.")
    uow.life_events.relocate(moved)
    members = [m.person_id for m in uow.memberships.current_of_household(household.id)]
    _follow_address(uow, members, moved, f"household moved: {text}", matcher)
    codes = ("municipality", "region", "postcode")
    details = {
        "from": {f: getattr(household, f) for f in codes},
        "to": {f: getattr(moved, f) for f in codes},
        "person_ids": members,
    }
    event = _event(uow, "move", day, text, None, details, household_id=household.id)
    _store(uow, event, [Subject.household(household.id), *map(Subject.person, members)])
    return event


def events_about_person(uow: LifeEventUnitOfWork, person_id: str) -> list[LifeEvent]:
    """The events about a person and every household they have been in, newest first (a logged
    read; committed here). What a resident sees on their portal."""
    _require_person(uow, person_id)
    disclose(
        uow.access_log,
        uow.context,
        [Subject.person(person_id)],
        ["identity", "household"],
        "life_event.read",
        uow.clock.now(),
    )
    events = uow.life_events.about([person_id], uow.life_events.households_of_person(person_id))
    uow.commit()
    return events


def events_of_household(uow: LifeEventUnitOfWork, household_id: str) -> list[LifeEvent]:
    """The events about a household, newest first (a logged read; committed here)."""
    _require_household(uow, household_id)
    disclose(
        uow.access_log,
        uow.context,
        [Subject.household(household_id)],
        ["household"],
        "life_event.read",
        uow.clock.now(),
    )
    events = uow.life_events.about([], [household_id])
    uow.commit()
    return events


def _transfer(
    uow: LifeEventUnitOfWork,
    leaving: Sequence[Membership],
    to_household_id: str,
    relationships: Mapping[str, str],
    day: date,
    reason: str,
) -> list[str]:
    """End each membership on `day` and start one in the other household on the same day."""
    actor = uow.context.actor.id
    for m in leaving:
        if day < m.valid_from:
            raise InvalidInput("effective_before_membership", "The date is before a member joined the household.")
        uow.memberships.end(m, day, actor, reason)
        uow.memberships.add(
            Membership(
                id=new_id(),
                household_id=to_household_id,
                person_id=m.person_id,
                relationship=relationships[m.person_id],
                valid_from=day,
                valid_to=None,
                recorded_at=uow.clock.now(),
                recorded_by=actor,
                reason=reason,
            )
        )
    return [m.person_id for m in leaving]


def _follow_address(
    uow: LifeEventUnitOfWork, person_ids: Sequence[str], household: Household, reason: str, matcher: Matcher | None
) -> None:
    """Members' addresses become the household's; each change goes to the corrections history."""
    for person in uow.persons.get_many(person_ids).values():
        diff = {f: (getattr(person, f), getattr(household, f)) for f in ADDRESS_FIELDS}
        diff = {f: change for f, change in diff.items() if change[0] != change[1]}
        if not diff:
            continue
        updated = replace(person, **{f: new for f, (_, new) in diff.items()})
        uow.persons.update(updated, diff, uow.context.actor.id, reason, uow.clock.now())
        if matcher is not None:
            fields = {f: getattr(updated, f) for f in IDENTITY_FIELDS}
            features = matcher.features([{**dedup_record(fields, None), "record_id": person.id}])[0]
            uow.match_index.replace_keys(person.id, match_keys(features))


def _event(
    uow: LifeEventUnitOfWork,
    kind: LifeEventKind,
    day: date,
    reason: str,
    document_ref: str | None,
    details: dict[str, Any],
    person_id: str | None = None,
    household_id: str | None = None,
    other: str | None = None,
) -> LifeEvent:
    return LifeEvent(
        id=new_id(),
        kind=kind,
        person_id=person_id,
        household_id=household_id,
        other_household_id=other,
        effective_on=day,
        document_ref=document_ref,
        recorded_at=uow.clock.now(),
        recorded_by=uow.context.actor.id,
        reason=reason,
        details=details,
    )


def _store(uow: LifeEventUnitOfWork, event: LifeEvent, subjects: list[Subject]) -> None:
    uow.life_events.add(event)
    detail = f"life_event.{event.kind} event={event.id}"
    record_change(uow.access_log, uow.context, subjects, ["identity", "household"], detail, uow.clock.now())
    uow.commit()


def _households(household_id: str | None) -> list[Subject]:
    return [Subject.household(household_id)] if household_id else []


def _require_purpose(uow: LifeEventUnitOfWork) -> None:
    """Life events revoke cards and end memberships: only under their own purpose, never by the way."""
    if uow.context.purpose != LIFE_EVENT:
        raise Forbidden("purpose_not_allowed", f"Life events are recorded under the '{LIFE_EVENT}' purpose.")


def _require_person(uow: LifeEventUnitOfWork, person_id: str) -> Person:
    person = uow.persons.get(person_id) if is_id(person_id) else None
    if person is None:
        raise NotFound("unknown_person", f"No person with id '{person_id}'.")
    return person


def _require_household(uow: LifeEventUnitOfWork, household_id: str) -> Household:
    household = uow.households.get(household_id) if is_id(household_id) else None
    if household is None:
        raise NotFound("unknown_household", f"No household with id '{household_id}'.")
    return household


def _check_region(address: NewAddress, household: Household) -> None:
    if address.region and address.region != household.region:
        raise InvalidInput(
            "region_mismatch", f"Municipality '{household.municipality}' is in region '{household.region}'."
        )


def _effective(uow: LifeEventUnitOfWork, day: Any, name: str, not_before: date | None = None) -> date:
    if not isinstance(day, date):
        raise InvalidInput("invalid_date", f"The {name.replace('_', ' ')} must be a date (YYYY-MM-DD).")
    if day > uow.clock.today():
        raise InvalidInput("date_in_future", f"The date {day.isoformat()} is in the future.")
    if not_before is not None and day < not_before:
        raise InvalidInput("date_before_birth", f"The date {day.isoformat()} is before the person's birth.")
    if day < OLDEST_EVENT_DATE:
        raise InvalidInput("invalid_date", f"The date {day.isoformat()} is before 1900.")
    return day


def _document(value: Any) -> str:
    ref = clean_text(value, "document_ref", 60)
    if not _DOCUMENT_REF.match(ref):
        raise InvalidInput("invalid_document_ref", "The document reference is 3–60 letters, digits, '/', '.' or '-'.")
    return ref


def _reason(value: Any) -> str:
    return clean_text(value, "reason", 500)
