"""The duplicate-detection model: its comparisons, blocking, training and the thresholds it runs at.

A Splink 5 model over the features of records.py. The household fields (address, postcode,
phone) are **one** comparison: scored separately, every member of a household looks like a
duplicate of every other. Trained without labels (EM blocked on the document number, then on
names and birth date) and saved as JSON beside this module (`model.json`), which is what runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import Linker, SettingsCreator, block_on
from splink.internals.blocking_rule_creator import BlockingRuleCreator
from splink.internals.comparison_creator import ComparisonCreator

OPERATING_THRESHOLD = 0.98
"""Pairs at or above this probability are the same person (clusters, bulk runs). Chosen on the
household-heavy benchmark (bench/RESULTS.md): 0.5 chains household members together."""

REVIEW_BAND = 0.5
"""Pairs from here up to the operating threshold are "possible": shown with reasons, and an
enrollment whose best match lies in [REVIEW_BAND, 1] is held for a reviewer."""

TF_COLUMNS = ("first_name", "surname")
"""Columns whose exact-match weight depends on how common the value is."""

U_SAMPLE_PAIRS = 2_000_000
"""Random pairs sampled to estimate u probabilities (how often non-matches agree by chance)."""

_MODEL_FILE = "model.json"

# A clerk (or a form) put the given name in the surname box and the other way round.
_SWAPPED = (
    "jaro_winkler_similarity(given_canon_l, surname_1_r) >= 0.88"
    " AND jaro_winkler_similarity(surname_1_l, given_canon_r) >= 0.88"
)


def _first_name() -> ComparisonCreator:
    return cl.CustomComparison(
        output_column_name="first_name",
        comparison_description="given names",
        comparison_levels=[
            cll.NullLevel("first_name"),
            cll.ExactMatchLevel("first_name", term_frequency_adjustments=True).configure(
                label_for_charts="same given names"
            ),
            cll.CustomLevel(_SWAPPED, label_for_charts="given name and surname swapped").configure(
                m_probability=0.005, fix_m_probability=True
            ),
            cll.CustomLevel("given_canon_l = given_canon_r", label_for_charts="same first given name or its nickname"),
            cll.JaroWinklerLevel("first_name", 0.92).configure(label_for_charts="given names nearly equal"),
            cll.CustomLevel(
                "jaro_winkler_similarity(first_name_1_l, first_name_1_r) >= 0.88"
                " OR damerau_levenshtein(first_name_1_l, first_name_1_r) <= 1"
                " OR ((length(first_name_1_l) = 1 OR length(first_name_1_r) = 1)"
                " AND left(first_name_1_l, 1) = left(first_name_1_r, 1))",
                label_for_charts="first given name similar or an initial",
            ),
            cll.JaroWinklerLevel("first_name", 0.7).configure(
                label_for_charts="given names somewhat alike", m_probability=0.01, fix_m_probability=True
            ),
            cll.ElseLevel().configure(
                label_for_charts="given names differ", m_probability=0.01, fix_m_probability=True
            ),
        ],
    )


def _surname() -> ComparisonCreator:
    return cl.CustomComparison(
        output_column_name="surname",
        comparison_description="surnames",
        comparison_levels=[
            cll.NullLevel("surname"),
            cll.ExactMatchLevel("surname", term_frequency_adjustments=True).configure(label_for_charts="same surnames"),
            cll.CustomLevel(_SWAPPED, label_for_charts="given name and surname swapped").configure(
                m_probability=0.005, fix_m_probability=True
            ),
            cll.CustomLevel(
                "surname_1_l = surname_1_r OR surname_1_l = surname_2_r OR surname_2_l = surname_1_r",
                label_for_charts="one surname equal (other missing, changed or swapped)",
            ),
            cll.JaroWinklerLevel("surname", 0.9).configure(label_for_charts="surnames nearly equal"),
            cll.JaroWinklerLevel("surname", 0.7).configure(label_for_charts="surnames somewhat alike"),
            cll.ElseLevel().configure(label_for_charts="surnames differ", m_probability=0.01, fix_m_probability=True),
        ],
    )


def _birth_date() -> ComparisonCreator:
    swapped = (
        "(substr(dob_l, 1, 4) = substr(dob_r, 1, 4) AND substr(dob_l, 6, 2) = substr(dob_r, 9, 2)"
        " AND substr(dob_l, 9, 2) = substr(dob_r, 6, 2))"
    )
    return cl.CustomComparison(
        output_column_name="dob",
        comparison_description="birth date",
        comparison_levels=[
            cll.NullLevel("dob"),
            cll.ExactMatchLevel("dob").configure(label_for_charts="same birth date"),
            cll.CustomLevel(
                f"damerau_levenshtein(dob_l, dob_r) <= 1 OR {swapped}",
                label_for_charts="one digit wrong, or day and month swapped",
            ),
            cll.CustomLevel(
                "substr(dob_l, 6, 5) = substr(dob_r, 6, 5)"
                " AND abs(CAST(substr(dob_l, 1, 4) AS INTEGER) - CAST(substr(dob_r, 1, 4) AS INTEGER)) <= 1",
                label_for_charts="year off by one",
            ),
            # Levels never (or hardly) seen among true duplicates in training cannot be estimated by EM:
            # they get fixed priors (here 1 in 200 duplicates has an unrelated birth date; for names
            # 1 in 100 differ outright, 1 in 200 are swapped) instead of Splink's defaults.
            cll.ElseLevel().configure(
                label_for_charts="birth dates differ", m_probability=0.005, fix_m_probability=True
            ),
        ],
    )


def _document() -> ComparisonCreator:
    return cl.CustomComparison(
        output_column_name="national_id",
        comparison_description="document number",
        comparison_levels=[
            cll.NullLevel("national_id"),
            # Document numbers are unique: two random people share one about once in a population.
            cll.ExactMatchLevel("national_id").configure(
                label_for_charts="same document number", u_probability=1e-7, fix_u_probability=True
            ),
            cll.DamerauLevenshteinLevel("national_id", 1).configure(
                label_for_charts="document numbers one keystroke apart", u_probability=1e-6, fix_u_probability=True
            ),
            cll.ElseLevel().configure(label_for_charts="document numbers differ"),
        ],
    )


def _household() -> ComparisonCreator:
    return cl.CustomComparison(
        output_column_name="household",
        comparison_description="home (address, postcode, phone)",
        comparison_levels=[
            cll.CustomLevel(
                "(address_l IS NULL OR address_r IS NULL) AND (phone_l IS NULL OR phone_r IS NULL)",
                label_for_charts="no address or phone to compare",
            ).configure(is_null_level=True),
            cll.CustomLevel(
                "address_l = address_r AND postcode_l = postcode_r AND phone_l = phone_r",
                label_for_charts="same address and phone",
            ),
            cll.CustomLevel(
                "address_l = address_r AND postcode_l = postcode_r",
                label_for_charts="same address (phone differs or missing)",
            ),
            cll.CustomLevel("phone_l = phone_r", label_for_charts="same phone, address differs").configure(
                u_probability=1e-6, fix_u_probability=True
            ),
            cll.CustomLevel(
                "postcode_l = postcode_r AND jaro_winkler_similarity(address_l, address_r) >= 0.9",
                label_for_charts="similar address",
            ).configure(m_probability=0.02, fix_m_probability=True),
            cll.CustomLevel("city_l = city_r", label_for_charts="same town only"),
            cll.ElseLevel().configure(label_for_charts="different home"),
        ],
    )


def _sex() -> ComparisonCreator:
    return cl.CustomComparison(
        output_column_name="sex",
        comparison_description="sex",
        comparison_levels=[
            cll.NullLevel("sex"),
            cll.ExactMatchLevel("sex").configure(label_for_charts="same sex"),
            cll.ElseLevel().configure(label_for_charts="sex differs"),
        ],
    )


BLOCKING_KEYS: tuple[tuple[str, ...], ...] = (
    ("national_id",),
    ("given_canon", "surname_1", "surname_2", "postcode"),
    ("given_canon", "surname_1", "dob"),
    ("given_canon", "surname_2", "dob"),
    ("surname_1", "surname_2", "dob"),
    ("given_canon", "surname_1", "surname_2", "birth_year"),
    ("given_canon", "surname_1", "surname_2", "birth_day"),
    ("given_canon", "dob", "postcode"),
    ("phone", "given_canon"),
    ("dob", "address", "postcode"),
    ("address", "postcode", "given_canon"),
)
"""Which pairs are compared at all: any one of these feature tuples equal. Candidate pairs must
grow linearly with the population, so every key either holds a value that grows with the country
(document, phone, an address within its postcode) or combines enough parts that its blocks stay
small at 30 M people: three name parts with a birth date or half of one, or with a place. A key of
values drawn from fixed lists — the full name alone, first surname + birth date, given name +
birth date, birth date + postcode — makes blocks that grow with the country and pairs that grow
with its square (0.25 pairs per record at 0.7 M records and rising). These keys give 0.059, 0.060
and 0.062 pairs per record at 0.17, 0.7 and 1.4 M generated records (bench/RESULTS.md). What that
costs: a re-enrollment after a move, without a document or the old phone, whose given name and
both surnames are not all typed alike, is no longer compared (cluster recall 0.971 instead of
0.973 on 0.7 M generated records, precision 0.998 both). The enrollment path prefilters registry
candidates on the same keys in SQL; after changing them, run `civicard dedup index` to recompute
the stored keys."""


def blocking_rules() -> list[BlockingRuleCreator | dict[str, Any]]:
    return [block_on(*keys) for keys in BLOCKING_KEYS]


def untrained_settings() -> SettingsCreator:
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[_first_name(), _surname(), _birth_date(), _sex(), _document(), _household()],
        blocking_rules_to_generate_predictions=blocking_rules(),
        additional_columns_to_retain=["household_id"],
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
    )


def train(linker: Linker, say: Callable[[str], None] = lambda _: None) -> None:
    """Estimate the model's parameters on `linker`'s data, without labels."""
    say("estimating how many pairs match")
    linker.training.estimate_probability_two_random_records_match(
        [block_on("national_id"), block_on("first_name", "surname", "dob")], recall=0.8
    )
    say("estimating chance agreement (u) on random pairs")
    linker.training.estimate_u_using_random_sampling(max_pairs=U_SAMPLE_PAIRS, seed=5)
    say("EM blocked on the document number")
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("national_id"))
    say("EM blocked on names and birth date")
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("given_canon", "surname_1", "dob"))


def saved_model() -> dict[str, Any]:
    """The trained model shipped with civicard (`civicard dedup train` writes it)."""
    text = resources.files("civicard.dedup").joinpath(_MODEL_FILE).read_text(encoding="utf-8")
    model: dict[str, Any] = json.loads(text)
    return model


def saved_model_path() -> Path:
    return Path(str(resources.files("civicard.dedup").joinpath(_MODEL_FILE)))
