"""The synthetic population generator: files, vocabularies, households, names and duplicates."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from civicard.registry.population import PopulationSpec, PopulationSummary, _typo, generate_population

CODES_YAML = Path(__file__).parents[2] / "src" / "civicard" / "registry" / "codes.yaml"
FILES = (
    "households",
    "persons",
    "memberships",
    "employment",
    "incomes",
    "properties",
    "health_needs",
    "benefits_received",
)
HEX_ID = re.compile(r"[0-9a-f]{32}")
REFERENCE_DATE = date(2026, 11, 1)


@dataclass(frozen=True)
class Population:
    summary: PopulationSummary
    out: Path
    rows: dict[str, list[dict[str, Any]]]

    def duplicated_truths(self) -> set[str]:
        counts = Counter(p["truth_person_id"] for p in self.rows["persons"])
        return {truth for truth, count in counts.items() if count > 1}

    def singletons(self) -> list[dict[str, Any]]:
        """People enrolled once: no record of theirs carries deliberate duplicate errors."""
        duplicated = self.duplicated_truths()
        return [p for p in self.rows["persons"] if p["truth_person_id"] not in duplicated]


def _generate(out: Path, **spec: Any) -> Population:
    summary = generate_population(PopulationSpec(**spec), out)
    rows = {name: pq.read_table(out / f"{name}.parquet").to_pylist() for name in FILES}
    return Population(summary, out, rows)


def _age(born: date) -> int:
    return REFERENCE_DATE.year - born.year - ((REFERENCE_DATE.month, REFERENCE_DATE.day) < (born.month, born.day))


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Population:
    return _generate(tmp_path_factory.mktemp("population"), households=2_000, seed=11)


@pytest.fixture(scope="module")
def many_duplicates(tmp_path_factory: pytest.TempPathFactory) -> Population:
    return _generate(tmp_path_factory.mktemp("duplicates"), households=6_000, seed=5, duplicate_share=0.2)


@pytest.fixture(scope="module")
def codes() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CODES_YAML.read_text("utf-8"))
    return loaded


def test_same_spec_writes_byte_identical_files(tmp_path: Path) -> None:
    spec = {"households": 500, "seed": 3, "chunk_households": 200}
    generate_population(PopulationSpec(**spec), tmp_path / "a")  # type: ignore[arg-type]
    generate_population(PopulationSpec(**spec), tmp_path / "b")  # type: ignore[arg-type]
    for name in FILES:
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == (tmp_path / "b" / f"{name}.parquet").read_bytes()


def test_another_seed_gives_other_people(population: Population, tmp_path: Path) -> None:
    other = _generate(tmp_path, households=2_000, seed=12)
    ours = {p["person_id"] for p in population.rows["persons"]}
    theirs = {p["person_id"] for p in other.rows["persons"]}
    assert not ours & theirs
    assert [p["given_names"] for p in population.rows["persons"][:50]] != [
        p["given_names"] for p in other.rows["persons"][:50]
    ]


def test_each_file_has_exactly_the_agreed_columns_and_types(population: Population) -> None:
    string, day, money = pa.string(), pa.date32(), pa.int64()
    expected = {
        "households": {
            "household_id": string,
            "region": string,
            "municipality": string,
            "address_line": string,
            "postcode": string,
        },
        "persons": {
            "person_id": string,
            "truth_person_id": string,
            "given_names": string,
            "first_surname": string,
            "second_surname": string,
            "birth_date": day,
            "birth_place": string,
            "sex": string,
            "address_line": string,
            "municipality": string,
            "region": string,
            "postcode": string,
            "phone": string,
            "national_id": string,
            "photo_ref": string,
        },
        "memberships": {"household_id": string, "person_id": string, "relationship": string, "valid_from": day},
        "employment": {"person_id": string, "status": string, "valid_from": day},
        "incomes": {"person_id": string, "source": string, "monthly_amount_minor": money, "valid_from": day},
        "properties": {"household_id": string, "kind": string, "value_minor": money, "valid_from": day},
        "health_needs": {
            "person_id": string,
            "kind": string,
            "code": string,
            "degree_percent": pa.int32(),
            "valid_from": day,
        },
        "benefits_received": {"person_id": string, "benefit": string, "monthly_amount_minor": money, "valid_from": day},
    }
    for name, columns in expected.items():
        schema = pq.read_schema(population.out / f"{name}.parquet")
        assert dict(zip(schema.names, schema.types, strict=True)) == columns, name


def test_summary_counts_the_rows_of_each_file(population: Population) -> None:
    for name in FILES:
        assert getattr(population.summary, name) == len(population.rows[name]), name
    assert population.summary.duplicates == len(population.duplicated_truths())


def test_every_code_value_is_in_codes_yaml(population: Population, codes: dict[str, Any]) -> None:
    municipality_region = {m: r for r, region in codes["regions"].items() for m in region["municipalities"]}
    rows = population.rows
    for place in rows["households"] + rows["persons"]:
        region = codes["regions"][place["region"]]
        assert municipality_region[place["municipality"]] == place["region"]
        assert re.fullmatch(region["postcode_prefix"] + r"\d{3}", place["postcode"])
    vocabularies = [
        ("persons", "sex", "sexes"),
        ("memberships", "relationship", "relationships"),
        ("employment", "status", "employment_statuses"),
        ("incomes", "source", "income_sources"),
        ("properties", "kind", "property_kinds"),
        ("health_needs", "kind", "health_kinds"),
        ("benefits_received", "benefit", "benefit_codes"),
    ]
    for table, column, vocabulary in vocabularies:
        used = {row[column] for row in rows[table]}
        assert used <= set(codes[vocabulary]), (table, column, used - set(codes[vocabulary]))
        assert len(used) >= min(3, len(codes[vocabulary])), (table, column)
    for need in rows["health_needs"]:
        assert need["code"] in codes["disability_codes" if need["kind"] == "disability" else "chronic_codes"]
    foreign = {p["birth_place"] for p in rows["persons"]} - set(municipality_region)
    assert foreign and all(not re.search(r"\d", place) for place in foreign)


def test_every_person_has_one_membership_and_every_household_one_reference(population: Population) -> None:
    members = Counter(m["person_id"] for m in population.rows["memberships"])
    assert set(members) == {p["person_id"] for p in population.rows["persons"]}
    assert set(members.values()) == {1}
    references = Counter(m["household_id"] for m in population.rows["memberships"] if m["relationship"] == "reference")
    households = {h["household_id"] for h in population.rows["households"]}
    assert set(references) == households
    assert set(references.values()) == {1}


def test_household_sizes_are_one_to_nine_with_a_mean_near_three_point_three(population: Population) -> None:
    sizes = Counter(m["household_id"] for m in population.rows["memberships"])
    assert min(sizes.values()) == 1
    assert max(sizes.values()) == 9
    originals = population.summary.persons - population.summary.duplicates
    assert 3.1 <= originals / 2_000 <= 3.5


def test_ids_are_unique_lowercase_128_bit_hex(population: Population) -> None:
    households = [h["household_id"] for h in population.rows["households"]]
    persons = [p["person_id"] for p in population.rows["persons"]]
    truths = {p["truth_person_id"] for p in population.rows["persons"]}
    for ids in (households, persons, truths):
        assert all(HEX_ID.fullmatch(i) for i in ids)
    assert len(set(households)) == len(households)
    assert len(set(persons)) == len(persons)
    assert not truths & set(persons)


def test_money_is_never_negative(population: Population) -> None:
    amounts = (
        [r["monthly_amount_minor"] for r in population.rows["incomes"]]
        + [r["monthly_amount_minor"] for r in population.rows["benefits_received"]]
        + [r["value_minor"] for r in population.rows["properties"]]
    )
    assert min(amounts) == 0  # a wage of 0 records a lost job
    assert max(amounts) > 100_000


def test_most_people_are_poor_and_incomes_are_skewed(population: Population) -> None:
    income: Counter[str] = Counter()
    by_source = defaultdict(list)
    for row in population.rows["incomes"]:
        income[row["person_id"]] += row["monthly_amount_minor"]
        by_source[row["source"]].append(row["monthly_amount_minor"])
    adults = [p["person_id"] for p in population.singletons() if 18 <= _age(p["birth_date"]) < 65]
    minimum_wage = 48_000
    assert sum(income[person] < minimum_wage for person in adults) / len(adults) > 0.6
    informal = sorted(by_source["informal_work"])
    assert len(informal) > 0.25 * len(population.rows["incomes"])
    assert sum(informal) / len(informal) > 1.1 * informal[len(informal) // 2]  # lognormal: a long right tail
    assert sum(1 for amount in by_source["wages"] if amount == 0) > 0


def test_duplicate_share_is_within_tolerance_and_each_duplicate_pairs_with_one_original(population: Population) -> None:
    records = Counter(p["truth_person_id"] for p in population.rows["persons"])
    assert set(records.values()) == {1, 2}
    duplicates = sum(1 for count in records.values() if count == 2)
    assert duplicates == population.summary.duplicates
    assert 0.045 <= duplicates / (population.summary.persons - duplicates) <= 0.055


def test_duplicates_carry_the_errors_dedup_must_tolerate(many_duplicates: Population) -> None:
    records = defaultdict(list)
    for person in many_duplicates.rows["persons"]:
        records[person["truth_person_id"]].append(person)
    pairs = [pair for pair in records.values() if len(pair) == 2]
    assert len(pairs) == many_duplicates.summary.duplicates > 2_000

    def share(differs: Any) -> float:
        return sum(1 for a, b in pairs if differs(a, b)) / len(pairs)

    assert share(lambda a, b: a["given_names"] != b["given_names"]) >= 0.20
    assert (
        share(lambda a, b: (a["first_surname"], a["second_surname"]) != (b["first_surname"], b["second_surname"]))
        >= 0.15
    )
    assert share(lambda a, b: a["birth_date"] != b["birth_date"]) >= 0.10
    assert share(lambda a, b: a["address_line"] != b["address_line"]) >= 0.20
    assert share(lambda a, b: a["phone"] != b["phone"]) >= 0.25
    assert share(lambda a, b: a["national_id"] is None or b["national_id"] is None) >= 0.30
    assert (
        0
        < share(lambda a, b: None not in (a["national_id"], b["national_id"]) and a["national_id"] != b["national_id"])
        < 0.05
    )
    assert share(lambda a, b: a["given_names"] == b["given_names"] and a["birth_date"] == b["birth_date"]) > 0.4


def test_national_ids_are_8_to_10_digits_and_never_shared_by_two_identities(population: Population) -> None:
    owner: dict[str, set[str]] = defaultdict(set)
    for person in population.rows["persons"]:
        if person["national_id"] is not None:
            assert re.fullmatch(r"[1-9]\d{7,9}", person["national_id"])
            owner[person["national_id"]].add(person["truth_person_id"])
    assert all(len(truths) == 1 for truths in owner.values())
    adults = [p for p in population.singletons() if _age(p["birth_date"]) >= 18]
    children = [p for p in population.singletons() if _age(p["birth_date"]) < 18]
    adult_share = sum(p["national_id"] is not None for p in adults) / len(adults)
    child_share = sum(p["national_id"] is not None for p in children) / len(children)
    assert 0.80 <= adult_share <= 0.90
    assert child_share < 0.5


def test_sex_agrees_with_the_first_given_name(population: Population) -> None:
    names: dict[str, set[str]] = {"F": set(), "M": set()}
    for person in population.singletons():
        if person["sex"] in names:
            names[person["sex"]].add(person["given_names"].split()[0])
    assert len(names["F"]) > 100
    assert len(names["M"]) > 100
    assert not names["F"] & names["M"]
    assert any(" " in p["given_names"] for p in population.singletons())


def _households(population: Population) -> dict[str, list[dict[str, Any]]]:
    person = {p["person_id"]: p for p in population.singletons()}
    members = defaultdict(list)
    for membership in population.rows["memberships"]:
        if membership["person_id"] in person:
            members[membership["household_id"]].append(person[membership["person_id"]] | membership)
    return members


def test_children_carry_the_fathers_and_the_mothers_first_surnames(population: Population) -> None:
    checked = 0
    for members in _households(population).values():
        couple = {m["relationship"]: m for m in members if m["relationship"] in ("reference", "spouse")}
        if len(couple) < 2 or {m["sex"] for m in couple.values()} != {"F", "M"}:
            continue
        father = next(m for m in couple.values() if m["sex"] == "M")
        mother = next(m for m in couple.values() if m["sex"] == "F")
        for child in (m for m in members if m["relationship"] == "child"):
            assert (child["first_surname"], child["second_surname"]) == (
                father["first_surname"],
                mother["first_surname"],
            )
            assert 16 <= _age(mother["birth_date"]) - _age(child["birth_date"]) <= 50
            checked += 1
    assert checked > 500


def test_household_members_share_address_and_mostly_a_surname(population: Population) -> None:
    shared = total = 0
    for members in _households(population).values():
        assert len({m["address_line"] for m in members}) == 1
        reference = next((m for m in members if m["relationship"] == "reference"), None)
        if reference is None:
            continue
        for member in members:
            if member is not reference and member["relationship"] != "spouse":
                total += 1
                surnames = {reference["first_surname"], reference["second_surname"]}
                shared += bool(surnames & {member["first_surname"], member["second_surname"]})
    assert shared / total > 0.7


def test_every_reference_person_enrolled_once_is_an_adult(population: Population) -> None:
    references = [
        m for members in _households(population).values() for m in members if m["relationship"] == "reference"
    ]
    assert len(references) > 1_500
    assert min(_age(m["birth_date"]) for m in references) >= 18


def test_twins_share_birth_date_and_surnames_but_not_first_names(population: Population) -> None:
    twins = 0
    for members in _households(population).values():
        born: dict[tuple[date, str, str], list[str]] = defaultdict(list)
        for child in (m for m in members if m["relationship"] == "child"):
            born[(child["birth_date"], child["first_surname"], child["second_surname"])].append(child["given_names"])
        for names in born.values():
            if len(names) == 2:
                twins += 1
                assert names[0].split()[0] != names[1].split()[0]
    assert twins > 5


def test_employment_follows_age(population: Population) -> None:
    born = {p["person_id"]: p["birth_date"] for p in population.singletons()}
    statuses: dict[str, Counter[str]] = {"young": Counter(), "adult": Counter(), "old": Counter()}
    for job in population.rows["employment"]:
        if job["person_id"] in born:
            age = _age(born[job["person_id"]])
            group = "young" if age <= 13 else "old" if age >= 70 else "adult" if age >= 18 else None
            if group:
                statuses[group][job["status"]] += 1
    assert set(statuses["young"]) == {"child"}
    assert "child" not in statuses["adult"] and "child" not in statuses["old"]
    assert statuses["old"].most_common(1)[0][0] == "retired"
    assert len(population.rows["employment"]) == population.summary.persons


def test_disabilities_and_chronic_conditions_have_plausible_shares(population: Population) -> None:
    needs = population.rows["health_needs"]
    people = population.summary.persons
    disabled = {n["person_id"] for n in needs if n["kind"] == "disability"}
    chronic = {n["person_id"] for n in needs if n["kind"] == "chronic"}
    assert 0.025 <= len(disabled) / people <= 0.06
    assert 0.05 <= len(chronic) / people <= 0.11
    for need in needs:
        if need["kind"] == "disability":
            assert 33 <= need["degree_percent"] <= 100
        else:
            assert need["degree_percent"] is None


def test_progress_reports_each_chunk_of_households(tmp_path: Path) -> None:
    reported: list[int] = []
    summary = generate_population(PopulationSpec(households=1_000, chunk_households=400), tmp_path, reported.append)
    assert reported == [400, 400, 200]
    assert summary.households >= 1_000
    assert pq.read_metadata(tmp_path / "persons.parquet").num_rows == summary.persons


@pytest.mark.parametrize(
    "spec",
    [
        PopulationSpec(households=0),
        PopulationSpec(households=10, duplicate_share=1.0),
        PopulationSpec(households=10, chunk_households=0),
    ],
)
def test_impossible_specs_are_refused(spec: PopulationSpec, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_population(spec, tmp_path)
    assert not list(tmp_path.glob("*.parquet"))


@given(
    text=st.text(alphabet="abcdeñáéíóú ABCDÉ", min_size=1, max_size=20),
    u=st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), min_size=3, max_size=3),
)
def test_a_typo_always_changes_a_name_by_at_most_two_characters(text: str, u: list[float]) -> None:
    wrong = _typo(text, np.array(u))
    assert wrong != text
    assert abs(len(wrong) - len(text)) <= 1
    assert sum(a != b for a, b in zip(wrong, text, strict=False)) <= 2 or len(wrong) != len(text)
