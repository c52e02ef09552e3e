"""Sector pseudonyms: stable within a sector, unlinkable across sectors."""

from __future__ import annotations

import hashlib
import re

import pytest

from civicard.identity.pseudonyms import SectorKey, pseudonym
from civicard.shared.errors import DomainError
from civicard.shared.ids import new_id
from civicard.shared.keys import RootKey

ROOT = RootKey(hashlib.sha256(b"civicard test root").digest())
SECTORS = ("program:food-2026", "program:medicine", "vendor:shop-17", "vendor:pharmacy-3")


def test_pseudonyms_are_stable_and_26_base32_characters() -> None:
    person = new_id()
    first = pseudonym(ROOT, "vendor:shop-17", person)
    assert first == pseudonym(ROOT, "vendor:shop-17", person)
    assert re.fullmatch(r"[a-z2-7]{26}", first) and person not in first


def test_two_programs_and_two_vendors_share_no_pseudonym_over_ten_thousand_people() -> None:
    people = [new_id() for _ in range(10_000)]
    seen: dict[str, set[str]] = {}
    for sector in SECTORS:
        key = SectorKey.derive(ROOT, sector)
        seen[sector] = {key.pseudonym(person) for person in people}
        assert len(seen[sector]) == len(people)
    everything = set().union(*seen.values())
    assert len(everything) == len(SECTORS) * len(people)


def test_bulk_sector_key_matches_the_one_call_form_and_hides_its_key() -> None:
    key = SectorKey.derive(ROOT, "program:food-2026")
    assert key.pseudonym("abc") == pseudonym(ROOT, "program:food-2026", "abc")
    assert "secret" in repr(key) and key.key.hex() not in repr(key)


def test_another_root_key_gives_other_pseudonyms() -> None:
    other = RootKey(hashlib.sha256(b"other root").digest())
    assert pseudonym(ROOT, "vendor:shop-17", "abc") != pseudonym(other, "vendor:shop-17", "abc")


@pytest.mark.parametrize("sector", ["", "shop-17", "vendor:", "program: x", "registry:1", "vendor:a/b"])
def test_unknown_sector_kinds_are_refused(sector: str) -> None:
    with pytest.raises(DomainError) as caught:
        pseudonym(ROOT, sector, "abc")
    assert caught.value.code == "sector_invalid"


def test_an_empty_internal_id_is_refused() -> None:
    with pytest.raises(DomainError) as caught:
        pseudonym(ROOT, "vendor:shop-17", "")
    assert caught.value.code == "internal_id_missing"
