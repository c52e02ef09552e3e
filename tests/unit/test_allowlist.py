"""The allow-list and vocabularies name no forbidden concept, and the detector catches each one."""

from __future__ import annotations

import pytest

from civicard.adapters.db.schema_audit import allow_list_violations
from civicard.registry.allowlist import allow_list, forbidden_concept
from civicard.registry.vocabulary import vocabulary


@pytest.mark.parametrize(
    "name",
    [
        "political_party",
        "politics",
        "party_member",
        "partyAffiliation",
        "rally_attended",
        "voted",
        "voter_id",
        "voting_place",
        "electoral_roll",
        "religion",
        "religious_group",
        "church",
        "ethnicity",
        "ethnic_origin",
        "race",
        "caste",
        "union_member",
        "trade_union",
        "sexual_orientation",
        "orientation",
        "social_media",
        "socialMediaHandle",
        "facebook",
        "twitter_account",
        "instagram",
    ],
)
def test_each_forbidden_concept_is_recognised(name: str) -> None:
    assert forbidden_concept(name) is not None


@pytest.mark.parametrize(
    "name",
    [
        "given_names",
        "first_surname",
        "municipality",
        "postcode",
        "monthly_amount_minor",
        "relationship",
        "reunion_date",
        "valid_from",
        "degree_percent",
        "partial_income",
        "benefit",
    ],
)
def test_ordinary_registry_names_are_not_flagged(name: str) -> None:
    assert forbidden_concept(name) is None


def test_the_allow_list_file_names_no_forbidden_concept() -> None:
    assert allow_list_violations() == []


def test_every_vocabulary_code_and_label_is_free_of_forbidden_concepts() -> None:
    vocab = vocabulary()
    words = [code for entries in vocab.lists.values() for code in entries]
    words += [label["en"] for entries in vocab.lists.values() for label in entries.values()]
    flagged = [w for w in words if forbidden_concept(w.replace(" ", "_"))]
    assert flagged == []


def test_every_personal_column_has_a_known_category() -> None:
    spec = allow_list()
    known = set(spec.categories) | {"technical"}
    bad = [
        f"{t}.{c.name}" for t, table in spec.tables.items() for c in table.columns.values() if c.category not in known
    ]
    assert bad == []
    assert spec.special_categories() == {"health"}
