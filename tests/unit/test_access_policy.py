"""The enforcement point: roles, purposes, categories, self-scoped and read-only purposes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from civicard.shared.errors import DomainError
from civicard.transparency.access import AccessContext, AccessEntry, Actor, Subject, disclose, record_change

AT = datetime(2026, 11, 15, tzinfo=UTC)


class ListLog:
    def __init__(self) -> None:
        self.entries: list[AccessEntry] = []

    def append(self, entries: list[AccessEntry]) -> None:  # type: ignore[override]
        self.entries += entries


def _code(action: object) -> str:
    with pytest.raises(DomainError) as refused:
        action()  # type: ignore[operator]
    return refused.value.code


def test_a_resident_reads_only_their_own_record_and_each_read_is_logged() -> None:
    log = ListLog()
    me = AccessContext(Actor("p-ana", "resident"), "self_access")
    granted = disclose(log, me, [Subject.person("p-ana")], ["identity", "health"], "person.read", AT)
    assert granted == {"identity", "health"}
    assert [(e.actor, e.subject, e.purpose) for e in log.entries] == [("p-ana", Subject.person("p-ana"), "self_access")]
    assert _code(lambda: disclose(log, me, [Subject.person("p-luis")], ["identity"], "x", AT)) == "not_your_record"
    assert _code(lambda: disclose(log, me, [Subject.household("h-1")], ["household"], "x", AT)) == "not_your_record"
    assert _code(lambda: disclose(log, me, [], ["identity"], "person.search", AT)) == "not_your_record"
    assert len(log.entries) == 1


def test_read_only_purposes_cannot_change_anything() -> None:
    log = ListLog()
    me = AccessContext(Actor("p-ana", "resident"), "self_access")
    auditor = AccessContext(Actor("aud-1", "oversight"), "oversight_case")
    assert _code(lambda: record_change(log, me, [Subject.person("p-ana")], ["income"], "x", AT)) == "purpose_read_only"
    assert _code(lambda: record_change(log, auditor, [Subject.person("p")], ["income"], "x", AT)) == "purpose_read_only"
    assert log.entries == []


def test_a_purpose_outside_the_role_or_unknown_is_refused() -> None:
    log = ListLog()
    vendor = AccessContext(Actor("t-1", "vendor"), "enrollment")
    nobody = AccessContext(Actor("x", "registrar"), "curiosity")
    stranger = AccessContext(Actor("x", "mayor"), "enrollment")
    assert _code(lambda: disclose(log, vendor, [Subject.person("p")], ["identity"], "x", AT)) == "purpose_not_allowed"
    assert _code(lambda: disclose(log, nobody, [Subject.person("p")], ["identity"], "x", AT)) == "unknown_purpose"
    assert _code(lambda: disclose(log, stranger, [Subject.person("p")], ["identity"], "x", AT)) == "unknown_role"
    assert log.entries == []


def test_categories_outside_the_purpose_are_withheld_or_refused() -> None:
    log = ListLog()
    desk = AccessContext(Actor("r-1", "registrar"), "enrollment")
    assert disclose(log, desk, [Subject.person("p")], ["identity", "health"], "x", AT) == {"identity"}
    assert _code(lambda: disclose(log, desk, [Subject.person("p")], ["health"], "x", AT)) == "category_not_allowed"
    assert _code(lambda: record_change(log, desk, [Subject.person("p")], ["health"], "x", AT)) == "category_not_allowed"
