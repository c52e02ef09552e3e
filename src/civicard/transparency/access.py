"""The one enforcement point for personal data: role → purpose → categories, logged before release.

Every read or write of personal data names an actor and a purpose. `disclose` refuses a purpose
the actor's role does not have, returns the categories that purpose allows, and appends one log
entry per subject through the unit of work's log — in the same transaction, before any data is
returned. If the append fails, the transaction fails and nothing is released.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Protocol

from civicard.shared.errors import Forbidden, InvalidInput
from civicard.shared.vocab import load_yaml


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff account, a terminal, a resident's card or a process, with one role."""

    id: str
    role: str


@dataclass(frozen=True)
class AccessContext:
    actor: Actor
    purpose: str


@dataclass(frozen=True)
class Subject:
    """Whose data: a person or a household (exactly one of the two)."""

    person_id: str | None = None
    household_id: str | None = None

    @classmethod
    def person(cls, person_id: str) -> Subject:
        return cls(person_id=person_id)

    @classmethod
    def household(cls, household_id: str) -> Subject:
        return cls(household_id=household_id)


@dataclass(frozen=True)
class AccessEntry:
    occurred_at: datetime
    actor: str
    role: str
    purpose: str
    action: str  # "read" or "write"
    subject: Subject | None
    categories: tuple[str, ...]
    detail: str


class AccessLog(Protocol):
    """Where entries go; the database adapter writes them in the caller's transaction."""

    def append(self, entries: Sequence[AccessEntry]) -> None: ...


@dataclass(frozen=True)
class PurposePolicy:
    purposes: dict[str, frozenset[str]]
    descriptions: dict[str, str]
    roles: dict[str, frozenset[str]]
    read_only: frozenset[str] = frozenset()
    self_only: frozenset[str] = frozenset()
    descriptions_es: dict[str, str] = field(default_factory=dict)

    def described(self, locale: str) -> dict[str, str]:
        """Purpose → what it is for, in Spanish ("es") or English (anything else)."""
        if locale == "es":
            return {p: self.descriptions_es.get(p, text) for p, text in self.descriptions.items()}
        return dict(self.descriptions)

    def check(self, context: AccessContext) -> frozenset[str]:
        """The categories `context` may touch; refuses an unknown role or a purpose the role lacks."""
        role_purposes = self.roles.get(context.actor.role)
        if role_purposes is None:
            raise Forbidden("unknown_role", f"Role '{context.actor.role}' is not a civicard role.")
        if context.purpose not in self.purposes:
            raise InvalidInput("unknown_purpose", f"'{context.purpose}' is not an allowed purpose.")
        if context.purpose not in role_purposes:
            allowed = ", ".join(sorted(role_purposes)) or "none"
            raise Forbidden(
                "purpose_not_allowed",
                f"A {context.actor.role} may not read personal data for '{context.purpose}' (allowed: {allowed}).",
            )
        return self.purposes[context.purpose]

    def check_subjects(self, context: AccessContext, subjects: Sequence[Subject]) -> None:
        """A self-scoped purpose (a resident's) reaches only the actor's own person record."""
        if context.purpose not in self.self_only:
            return
        if not subjects or any(s.person_id != context.actor.id for s in subjects):
            raise Forbidden("not_your_record", "This purpose only reaches your own record.")

    def check_writable(self, context: AccessContext) -> None:
        if context.purpose in self.read_only:
            raise Forbidden("purpose_read_only", f"The purpose '{context.purpose}' does not allow changes.")


@cache
def purpose_policy() -> PurposePolicy:
    raw = load_yaml("civicard.transparency", "purposes.yaml")
    return PurposePolicy(
        purposes={p: frozenset(v["categories"]) for p, v in raw["purposes"].items()},
        descriptions={p: v["description"] for p, v in raw["purposes"].items()},
        roles={r: frozenset(ps) for r, ps in raw["roles"].items()},
        read_only=frozenset(p for p, v in raw["purposes"].items() if not v.get("writes", True)),
        self_only=frozenset(p for p, v in raw["purposes"].items() if v.get("scope") == "self"),
        descriptions_es={p: v["description_es"] for p, v in raw["purposes"].items() if "description_es" in v},
    )


def disclose(
    log: AccessLog,
    context: AccessContext,
    subjects: Iterable[Subject],
    wanted: Iterable[str],
    detail: str,
    at: datetime,
) -> frozenset[str]:
    """Authorise a read of `wanted` categories about `subjects` and log it; returns what may be shown.

    Categories the purpose does not allow are silently withheld (the caller shows only what is
    returned); if none of the wanted categories is allowed the read is refused outright.
    """
    policy = purpose_policy()
    allowed = policy.check(context)
    subjects = list(subjects)
    policy.check_subjects(context, subjects)
    wanted_set = frozenset(wanted)
    granted = wanted_set & allowed
    if wanted_set and not granted:
        raise Forbidden(
            "category_not_allowed",
            f"The purpose '{context.purpose}' does not allow reading {', '.join(sorted(wanted_set))}.",
        )
    _append(log, context, "read", subjects, granted, detail, at)
    return granted


def record_change(
    log: AccessLog,
    context: AccessContext,
    subjects: Iterable[Subject],
    categories: Iterable[str],
    detail: str,
    at: datetime,
) -> None:
    """Authorise and log a write; the entry commits with the change it records."""
    policy = purpose_policy()
    allowed = policy.check(context)
    policy.check_writable(context)
    subjects = list(subjects)
    policy.check_subjects(context, subjects)
    touched = frozenset(categories)
    if not touched <= allowed:
        missing = ", ".join(sorted(touched - allowed))
        raise Forbidden("category_not_allowed", f"The purpose '{context.purpose}' does not allow changing {missing}.")
    _append(log, context, "write", subjects, touched, detail, at)


def _append(
    log: AccessLog,
    context: AccessContext,
    action: str,
    subjects: Iterable[Subject],
    categories: frozenset[str],
    detail: str,
    at: datetime,
) -> None:
    cats = tuple(sorted(categories))
    entries = [
        AccessEntry(at, context.actor.id, context.actor.role, context.purpose, action, s, cats, detail)
        for s in subjects
    ]
    if not entries:  # a search that found nobody still leaves a trace of who searched and why
        entries = [AccessEntry(at, context.actor.id, context.actor.role, context.purpose, action, None, cats, detail)]
    log.append(entries)
