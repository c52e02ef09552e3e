"""Recording and correcting need-related facts: every change is a new version with who, when, why."""

from __future__ import annotations

from datetime import date
from typing import Any

from civicard.registry.facts import FactKind, fact_kind, validate_fact
from civicard.registry.model import FactVersion
from civicard.registry.ports import RegistryUnitOfWork
from civicard.shared.errors import Conflict, InvalidInput, NotFound
from civicard.shared.ids import is_id, new_id
from civicard.shared.text import clean_text
from civicard.transparency.access import Subject, record_change

OLDEST_FACT_DATE = date(1900, 1, 1)


def record_fact(
    uow: RegistryUnitOfWork,
    kind_name: str,
    subject_id: str,
    key: dict[str, Any],
    values: dict[str, Any],
    valid_from: date,
    reason: str,
) -> FactVersion:
    """Record a fact that holds from `valid_from` (a new income, a diagnosed condition, a sale)."""
    kind = fact_kind(kind_name)
    _require_subject(uow, kind, subject_id)
    clean_key, clean_values = validate_fact(kind, key, values)
    version = _version(uow, kind, subject_id, clean_key, clean_values, valid_from, reason, supersedes=None)
    _store(uow, kind, version, "fact.recorded")
    return version


def correct_fact(
    uow: RegistryUnitOfWork,
    kind_name: str,
    version_id: str,
    values: dict[str, Any],
    reason: str,
    valid_from: date | None = None,
) -> FactVersion:
    """Correct a wrong version: the new version supersedes it; the old one stays in the history."""
    kind = fact_kind(kind_name)
    old = uow.facts.get(kind.name, version_id) if is_id(version_id) else None
    if old is None:
        raise NotFound("unknown_fact", f"No {kind.name} fact with id '{version_id}'.")
    if uow.facts.is_superseded(kind.name, version_id):
        raise Conflict("fact_already_corrected", "This version was already corrected; correct the latest one.")
    _, clean_values = validate_fact(kind, old.key, values)
    if clean_values == old.values and (valid_from is None or valid_from == old.valid_from):
        raise InvalidInput("no_change", "The correction changes nothing.")
    version = _version(
        uow, kind, old.subject_id, old.key, clean_values, valid_from or old.valid_from, reason, supersedes=old.id
    )
    _store(uow, kind, version, "fact.corrected")
    return version


def _version(
    uow: RegistryUnitOfWork,
    kind: FactKind,
    subject_id: str,
    key: dict[str, Any],
    values: dict[str, Any],
    valid_from: date,
    reason: str,
    supersedes: str | None,
) -> FactVersion:
    if not isinstance(valid_from, date):
        raise InvalidInput("invalid_date", "valid_from must be a date (YYYY-MM-DD).")
    if valid_from < OLDEST_FACT_DATE:
        raise InvalidInput("invalid_date", "valid_from is before 1900.")
    text = clean_text(reason, "reason", 500)
    return FactVersion(
        kind=kind.name,
        id=new_id(),
        subject_id=subject_id,
        key=key,
        values=values,
        valid_from=valid_from,
        recorded_at=uow.clock.now(),
        recorded_by=uow.context.actor.id,
        reason=text,
        supersedes_id=supersedes,
    )


def _store(uow: RegistryUnitOfWork, kind: FactKind, version: FactVersion, detail: str) -> None:
    uow.facts.add(version)
    subject = Subject.person(version.subject_id) if kind.subject == "person" else Subject.household(version.subject_id)
    record_change(uow.access_log, uow.context, [subject], [kind.category], f"{detail}:{kind.name}", uow.clock.now())
    uow.commit()


def _require_subject(uow: RegistryUnitOfWork, kind: FactKind, subject_id: str) -> None:
    if kind.subject == "person":
        if not is_id(subject_id) or uow.persons.get(subject_id) is None:
            raise NotFound("unknown_person", f"No person with id '{subject_id}'.")
    elif not is_id(subject_id) or uow.households.get(subject_id) is None:
        raise NotFound("unknown_household", f"No household with id '{subject_id}'.")
