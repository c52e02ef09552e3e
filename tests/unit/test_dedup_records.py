"""Normalising records for matching, and the blocking keys stored for each person."""

from __future__ import annotations

import duckdb
import pytest

from civicard.dedup.matching import ModelLevels, is_household_member, match_keys
from civicard.dedup.model import BLOCKING_KEYS, saved_model
from civicard.dedup.records import FEATURE_COLUMNS, features_of


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def test_names_lose_accents_case_and_punctuation_and_nicknames_resolve(con: duckdb.DuckDBPyConnection) -> None:
    [f] = features_of(con, [{"record_id": "1", "first_name": "  Pepe  Luis ", "surname": "Núñez-Peña  de la O"}])
    assert list(f) == list(FEATURE_COLUMNS)
    assert (f["first_name"], f["first_name_1"], f["given_canon"]) == ("pepe luis", "pepe", "jose")
    assert (f["surname"], f["surname_1"], f["surname_2"]) == ("nunez pena de la o", "nunez", "pena")


def test_codes_keep_only_digits_and_letters_and_bad_dates_become_missing(con: duckdb.DuckDBPyConnection) -> None:
    [f] = features_of(
        con,
        [
            {
                "record_id": 7,
                "date_of_birth": "1984-02-30",
                "phone": "+57 (300) 555-0101",
                "national_id": " ab-12.34 ",
                "sex": "f",
                "postcode": "10 001",
                "address": "Calle 5 # 10-20",
            }
        ],
    )
    assert f["unique_id"] == "7" and f["dob"] is None
    assert (f["phone"], f["national_id"], f["sex"], f["postcode"]) == ("3005550101", "AB1234", "F", "10001")
    assert f["address"] == "calle 5 10 20"


def test_empty_values_are_missing_not_empty_strings(con: duckdb.DuckDBPyConnection) -> None:
    [f] = features_of(con, [{"record_id": "x", "first_name": " ", "surname": "..", "phone": "", "national_id": "-"}])
    assert all(f[c] is None for c in ("first_name", "surname", "phone", "national_id", "surname_2"))


def test_match_keys_cover_each_blocking_rule_with_every_part_present(con: duckdb.DuckDBPyConnection) -> None:
    [full] = features_of(
        con,
        [
            {
                "record_id": "1",
                "first_name": "María",
                "surname": "Pérez Gómez",
                "date_of_birth": "1984-03-09",
                "phone": "3005550101",
                "postcode": "10001",
                "national_id": "52123456",
                "address": "Calle 5 # 10-20",
                "sex": "f",
            }
        ],
    )
    keys = match_keys(full)
    assert len(keys) == len(BLOCKING_KEYS)
    assert "0:52123456" in keys and "4:perez|gomez|1984-03-09" in keys
    # A name with a mistyped birth date still shares the year or the day with its other record.
    assert "5:maria|perez|gomez|1984" in keys and "6:maria|perez|gomez|03-09" in keys
    [partial] = features_of(con, [{"record_id": "2", "first_name": "María", "surname": "Pérez"}])
    assert match_keys(partial) == []  # every rule needs a part this record lacks


def test_reasons_read_levels_from_the_saved_model() -> None:
    levels = ModelLevels(saved_model())
    reasons = {
        r.field: r
        for r in levels.reasons({"first_name": 6, "surname": 0, "dob": 2, "sex": -1, "national_id": 2, "household": 5})
    }
    assert (reasons["first_name"].outcome, reasons["first_name"].label) == ("agree", "same given names")
    assert reasons["surname"].outcome == "disagree" and reasons["surname"].weight < 0
    assert reasons["dob"].outcome == "close" and reasons["dob"].weight > 0
    assert reasons["sex"].outcome == "missing" and reasons["sex"].weight == 0


def test_two_household_members_are_told_apart_but_a_reenrollment_at_home_is_not() -> None:
    twins = {"first_name": 0, "surname": 4, "dob": 3, "sex": 1, "national_id": -1, "household": 5}
    assert is_household_member(twins, same_household=False)
    father_and_son = {**twins, "first_name": 4, "dob": 0}
    assert is_household_member(father_and_son, same_household=True)
    nickname_at_home = {**twins, "first_name": 3}
    assert not is_household_member(nickname_at_home, same_household=True)
    elsewhere = {**twins, "household": 0}
    assert not is_household_member(elsewhere, same_household=False)


def test_scoring_finds_the_exact_copy_whatever_order_the_candidates_come_in() -> None:
    from civicard.dedup.matching import Matcher

    matcher = Matcher(saved_model(), duckdb.connect())
    new = {
        "first_name": "Zoe",
        "surname": "Abad Ruiz",
        "date_of_birth": "1990-01-02",
        "sex": "F",
        "address": "Calle 1",
        "postcode": "10001",
        "city": "NOR-01",
        "national_id": "11223344",
    }
    stranger = {
        **new,
        "record_id": "p1",
        "first_name": "Pepe",
        "surname": "Vera Luna",
        "date_of_birth": "1950-05-05",
        "national_id": "99887766",
        "address": "Otra 9",
        "sex": "M",
    }
    copy = {**new, "record_id": "p2"}
    for candidates in ([stranger, copy], [copy, stranger]):
        pairs = matcher.score(new, candidates, {})
        assert {p.id_r for p in pairs} == {"p1", "p2"}
        assert pairs[0].id_r == "p2" and pairs[0].match_probability > 0.99
