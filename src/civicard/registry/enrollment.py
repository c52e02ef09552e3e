"""Enrolling persons, creating households and moving members: one transaction per use case."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Protocol

from civicard.dedup.matching import Matcher, match_keys
from civicard.dedup.model import REVIEW_BAND
from civicard.dedup.pairs import ScoredPair
from civicard.dedup.ports import QueueUnitOfWork
from civicard.dedup.review import hold_for_review
from civicard.dedup.screening import Screening, ScreeningUnitOfWork, check_enrollment, screen
from civicard.registry.model import IDENTITY_FIELDS, Household, Membership, Person
from civicard.registry.ports import RegistryUnitOfWork
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import Conflict, InvalidInput, NotFound
from civicard.shared.ids import is_id, new_id
from civicard.shared.text import clean_text
from civicard.transparency.access import Subject, record_change


class EnrollmentUnitOfWork(RegistryUnitOfWork, ScreeningUnitOfWork, QueueUnitOfWork, Protocol):
    """Enrolling writes the registry, reads the match index and may queue a held enrollment."""


_POSTCODE = re.compile(r"^[0-9A-Za-z -]{3,10}$")
_PHONE = re.compile(r"^\+?[0-9 ()-]{6,20}$")
_DOCUMENT = re.compile(r"^[0-9A-Za-z-]{4,20}$")
OLDEST_BIRTH_DATE = date(1900, 1, 1)


@dataclass(frozen=True)
class EnrollPerson:
    given_names: str
    first_surname: str
    birth_date: date
    birth_place: str
    sex: str
    address_line: str
    municipality: str
    postcode: str
    second_surname: str = ""
    phone: str | None = None
    national_id: str | None = None
    photo_ref: str | None = None
    household_id: str | None = None
    relationship: str = "reference"
    reason: str = "enrollment"
    confirmed_new_person: bool = False
    """The registrar has seen the possible duplicates (`check_enrollment`) and says this is
    someone new. Needed whenever there are any; from the review band up the enrollment is then
    held for a reviewer instead of registered."""
    member_since: date | None = None
    """First day in `household_id` (a recorded birth: the birth date); default today."""


@dataclass(frozen=True)
class CreateHousehold:
    municipality: str
    address_line: str
    postcode: str
    reason: str = "enrollment"


def enroll_person(uow: EnrollmentUnitOfWork, cmd: EnrollPerson, matcher: Matcher | None = None) -> Person:
    """Register a new person (optionally straight into a household) with a random internal id.

    With a `matcher`, the person is first screened against the registry: any possible duplicate
    refuses the enrollment until the registrar confirms a new person; a likely one (from the
    review band up) then registers the person as held, queued for a reviewer.
    """
    person = register_person(uow, cmd, matcher)
    uow.commit()
    return person


def register_person(uow: EnrollmentUnitOfWork, cmd: EnrollPerson, matcher: Matcher | None = None) -> Person:
    """`enroll_person` inside the caller's transaction (no commit): what a recorded birth reuses,
    so a child gets the same checks, duplicate screening and search key as anyone enrolled."""
    today = uow.clock.today()
    fields = _validated_identity(cmd.__dict__, today)
    if fields["national_id"] and uow.persons.by_national_id(fields["national_id"]):
        raise Conflict(
            "national_id_in_use",
            "Someone is already enrolled with this document number; open their record instead.",
        )
    screening = screen(uow, matcher, dedup_record(fields, cmd.household_id)) if matcher else None
    if screening and screening.pairs and not cmd.confirmed_new_person:
        raise PossibleDuplicates(screening.pairs)
    person = Person(id=new_id(), enrolled_at=uow.clock.now(), enrolled_by=uow.context.actor.id, **fields)
    uow.persons.add(person)
    categories = ["identity"]
    if cmd.household_id:
        _join(uow, person.id, cmd.household_id, cmd.relationship, cmd.member_since or today, cmd.reason)
        categories.append("household")
    if screening is not None:
        uow.match_index.replace_keys(person.id, screening.keys)
        likely = [replace(p, id_l=person.id) for p in screening.pairs if p.match_probability >= REVIEW_BAND]
        if likely:
            hold_for_review(uow, person.id, likely)
            person = replace(person, record_status="held")
    record_change(
        uow.access_log, uow.context, [Subject.person(person.id)], categories, "person.enrolled", uow.clock.now()
    )
    return person


def check_duplicates(uow: EnrollmentUnitOfWork, cmd: EnrollPerson, matcher: Matcher) -> Screening:
    """The possible duplicates of a person a registrar is about to enroll, with reasons; each
    candidate shown is a logged read of their identity (committed here)."""
    fields = _validated_identity(cmd.__dict__, uow.clock.today())
    return check_enrollment(uow, matcher, dedup_record(fields, cmd.household_id))


class PossibleDuplicates(Conflict):
    """The registry holds records that may be this person; the registrar must look first."""

    def __init__(self, pairs: Sequence[ScoredPair]) -> None:
        best = pairs[0].match_probability
        super().__init__(
            "possible_duplicates",
            f"{len(pairs)} enrolled person(s) may be this person (best match {best:.0%}); check them and "
            "open the existing record, or confirm this is someone new.",
        )
        self.pairs = tuple(pairs)
        self.public = {
            "candidates": [{"person_id": p.id_r, "match_probability": round(p.match_probability, 4)} for p in pairs]
        }


def dedup_record(fields: dict[str, Any], household_id: str | None) -> dict[str, Any]:
    """A person's identity fields in the dedup input shape."""
    return {
        "first_name": fields["given_names"],
        "surname": f"{fields['first_surname']} {fields.get('second_surname') or ''}".strip(),
        "date_of_birth": fields["birth_date"].isoformat(),
        "sex": fields["sex"],
        "address": fields["address_line"],
        "postcode": fields["postcode"],
        "city": fields["municipality"],
        "phone": fields.get("phone"),
        "national_id": fields.get("national_id"),
        "household_id": household_id,
    }


def create_household(uow: RegistryUnitOfWork, cmd: CreateHousehold) -> Household:
    household = new_household(uow, cmd)
    uow.households.add(household)
    record_change(
        uow.access_log,
        uow.context,
        [Subject.household(household.id)],
        ["household"],
        "household.created",
        uow.clock.now(),
    )
    uow.commit()
    return household


def new_household(uow: RegistryUnitOfWork, cmd: CreateHousehold) -> Household:
    """A household with a checked address and a random id, not stored yet (a split stores its own)."""
    vocab = vocabulary()
    municipality = vocab.require("municipalities", cmd.municipality, "municipality")
    return Household(
        id=new_id(),
        region=vocab.region_of(municipality),
        municipality=municipality,
        address_line=_text(cmd.address_line, "address_line", 300),
        postcode=_pattern(cmd.postcode, _POSTCODE, "postcode"),
        created_at=uow.clock.now(),
        created_by=uow.context.actor.id,
    )


def add_member(
    uow: RegistryUnitOfWork, household_id: str, person_id: str, relationship: str, reason: str, on: date | None = None
) -> Membership:
    """Put a person who is in no household into one."""
    day = on or uow.clock.today()
    _require_person(uow, person_id)
    membership = _join(uow, person_id, household_id, relationship, day, reason)
    _log_membership(uow, person_id, "household.member_added")
    uow.commit()
    return membership


def move_member(
    uow: RegistryUnitOfWork,
    person_id: str,
    to_household_id: str,
    relationship: str,
    reason: str,
    on: date | None = None,
) -> Membership:
    """End the current membership and start one in another household, in one transaction."""
    day = on or uow.clock.today()
    current = _require_current(uow, person_id)
    if current.household_id == to_household_id:
        raise Conflict("already_member", "The person is already a member of that household.")
    uow.memberships.end(current, day, uow.context.actor.id, reason)
    membership = _join(uow, person_id, to_household_id, relationship, day, reason)
    _log_membership(uow, person_id, "household.member_moved")
    uow.commit()
    return membership


def remove_member(uow: RegistryUnitOfWork, person_id: str, reason: str, on: date | None = None) -> None:
    current = _require_current(uow, person_id)
    uow.memberships.end(current, on or uow.clock.today(), uow.context.actor.id, _text(reason, "reason", 500))
    _log_membership(uow, person_id, "household.member_removed")
    uow.commit()


def correct_person(
    uow: EnrollmentUnitOfWork,
    person_id: str,
    changes: dict[str, Any],
    reason: str,
    matcher: Matcher | None = None,
) -> Person:
    """Change identity details; each changed field keeps its old value in the corrections history.
    With a `matcher`, the person's duplicate-matching keys follow the corrected details."""
    person = _require_person(uow, person_id)
    unknown = set(changes) - set(IDENTITY_FIELDS) - {"region"}
    if unknown:
        raise InvalidInput("unknown_field", f"Cannot correct: {', '.join(sorted(unknown))}.")
    merged = {f: getattr(person, f) for f in IDENTITY_FIELDS} | changes
    fields = _validated_identity(merged, uow.clock.today())
    diff = {f: (getattr(person, f), v) for f, v in fields.items() if getattr(person, f) != v}
    if not diff:
        raise InvalidInput("no_change", "The correction changes nothing.")
    nid = fields["national_id"]
    if "national_id" in diff and nid:
        holder = uow.persons.by_national_id(nid)
        if holder and holder.id != person_id:
            raise Conflict("national_id_in_use", "Another person is enrolled with this document number.")
    updated = replace(person, **fields)
    uow.persons.update(updated, diff, uow.context.actor.id, _text(reason, "reason", 500), uow.clock.now())
    if matcher is not None:
        features = matcher.features([{**dedup_record(fields, None), "record_id": person_id}])[0]
        uow.match_index.replace_keys(person_id, match_keys(features))
    record_change(
        uow.access_log, uow.context, [Subject.person(person_id)], ["identity"], "person.corrected", uow.clock.now()
    )
    uow.commit()
    return updated


def _join(
    uow: RegistryUnitOfWork, person_id: str, household_id: str, relationship: str, day: date, reason: str
) -> Membership:
    if not is_id(household_id) or uow.households.get(household_id) is None:
        raise NotFound("unknown_household", f"No household with id '{household_id}'.")
    vocabulary().require("relationships", relationship, "relationship")
    if uow.memberships.current_of_person(person_id) is not None:
        raise Conflict(
            "already_in_household",
            "This person already belongs to a household; move them instead of adding them twice.",
        )
    if relationship == "reference" and any(
        m.relationship == "reference" for m in uow.memberships.current_of_household(household_id)
    ):
        raise Conflict("reference_person_exists", "The household already has a reference person.")
    membership = Membership(
        id=new_id(),
        household_id=household_id,
        person_id=person_id,
        relationship=relationship,
        valid_from=day,
        valid_to=None,
        recorded_at=uow.clock.now(),
        recorded_by=uow.context.actor.id,
        reason=_text(reason, "reason", 500),
    )
    uow.memberships.add(membership)
    return membership


def _log_membership(uow: RegistryUnitOfWork, person_id: str, detail: str) -> None:
    record_change(uow.access_log, uow.context, [Subject.person(person_id)], ["household"], detail, uow.clock.now())


def _require_person(uow: RegistryUnitOfWork, person_id: str) -> Person:
    person = uow.persons.get(person_id) if is_id(person_id) else None
    if person is None:
        raise NotFound("unknown_person", f"No person with id '{person_id}'.")
    return person


def _require_current(uow: RegistryUnitOfWork, person_id: str) -> Membership:
    _require_person(uow, person_id)
    current = uow.memberships.current_of_person(person_id)
    if current is None:
        raise Conflict("not_in_household", "The person is not a member of any household.")
    return current


def _validated_identity(raw: dict[str, Any], today: date) -> dict[str, Any]:
    vocab = vocabulary()
    birth = raw["birth_date"]
    if not isinstance(birth, date):
        raise InvalidInput("invalid_birth_date", "The birth date must be a date (YYYY-MM-DD).")
    if birth > today:
        raise InvalidInput("birth_date_in_future", f"The birth date {birth.isoformat()} is in the future.")
    if birth < OLDEST_BIRTH_DATE:
        raise InvalidInput("birth_date_implausible", f"The birth date {birth.isoformat()} is before 1900.")
    municipality = vocab.require("municipalities", raw["municipality"], "municipality")
    return {
        "given_names": _text(raw["given_names"], "given_names", 200),
        "first_surname": _text(raw["first_surname"], "first_surname", 200),
        "second_surname": _text(raw.get("second_surname") or "", "second_surname", 200, required=False),
        "birth_date": birth,
        "birth_place": _text(raw["birth_place"], "birth_place", 200),
        "sex": vocab.require("sexes", raw["sex"], "sex"),
        "address_line": _text(raw["address_line"], "address_line", 300),
        "municipality": municipality,
        "region": vocab.region_of(municipality),
        "postcode": _pattern(raw["postcode"], _POSTCODE, "postcode"),
        "phone": _optional_pattern(raw.get("phone"), _PHONE, "phone"),
        "national_id": _optional_pattern(raw.get("national_id"), _DOCUMENT, "national_id"),
        "photo_ref": _optional_text(raw.get("photo_ref"), "photo_ref", 200),
    }


def _text(value: Any, name: str, max_len: int, required: bool = True) -> str:
    return clean_text(value, name, max_len, required)


def _optional_text(value: Any, name: str, max_len: int) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value, name, max_len)


def _pattern(value: Any, pattern: re.Pattern[str], name: str) -> str:
    cleaned = _text(value, name, 40)
    if not pattern.match(cleaned):
        raise InvalidInput(f"invalid_{name}", f"'{cleaned}' is not a valid {name.replace('_', ' ')}.")
    return cleaned


def _optional_pattern(value: Any, pattern: re.Pattern[str], name: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _pattern(value, pattern, name)
