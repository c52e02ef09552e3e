"""Which fact version is in force: per subject and key, corrections win, later dates take over."""

from __future__ import annotations

from datetime import UTC, date, datetime

from civicard.registry.model import FactVersion, current_versions

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _v(vid: str, subject: str, status: str, valid_from: date, supersedes: str | None = None) -> FactVersion:
    return FactVersion("employment", vid, subject, {}, {"status": status}, valid_from, AT, "x", "r", supersedes)


def test_each_member_keeps_their_own_fact_in_a_household_view() -> None:
    versions = [_v("a", "ana", "employed", date(2025, 1, 1)), _v("b", "luis", "unemployed", date(2025, 1, 1))]
    assert {(v.subject_id, v.values["status"]) for v in current_versions(versions, date(2026, 1, 1))} == {
        ("ana", "employed"),
        ("luis", "unemployed"),
    }


def test_a_correction_replaces_the_version_it_supersedes_even_with_an_earlier_date() -> None:
    versions = [_v("a", "ana", "employed", date(2025, 6, 1)), _v("b", "ana", "retired", date(2025, 1, 1), "a")]
    assert [v.id for v in current_versions(versions, date(2026, 1, 1))] == ["b"]


def test_a_version_dated_after_the_day_asked_is_not_yet_in_force() -> None:
    versions = [_v("a", "ana", "employed", date(2025, 1, 1)), _v("b", "ana", "unemployed", date(2026, 6, 1))]
    assert [v.id for v in current_versions(versions, date(2026, 5, 31))] == ["a"]
    assert [v.id for v in current_versions(versions, date(2026, 6, 1))] == ["b"]
