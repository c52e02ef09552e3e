"""Synthetic population of a Spanish-speaking country, with seeded duplicates, written as Parquet.

Everything random comes from one seeded numpy Generator, so a spec gives byte-identical files.
Faker is only read once for its name lists; rows are drawn with numpy and built with pyarrow.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Dates = npt.NDArray[np.datetime64]
Facts = dict[str, npt.NDArray[Any]]

# Relationship to the household's reference person; the index is the role number used below.
ROLES = ("reference", "spouse", "child", "parent", "sibling", "grandchild", "grandparent",
         "other_relative", "non_relative")
REF, SPOUSE, CHILD, PARENT, SIBLING, GRANDCHILD, GRANDPARENT, OTHER, NON_RELATIVE = range(9)
_EXTRA_ROLE_P = np.array([0, 0, 0.74, 0.06, 0.05, 0.07, 0.01, 0.05, 0.02])
# A duplicate enrolled in the same household is recorded with a plausible wrong relationship.
_CONFUSED_ROLE = np.array([[OTHER, NON_RELATIVE], [NON_RELATIVE, OTHER], [GRANDCHILD, OTHER],
                           [GRANDPARENT, OTHER], [OTHER, NON_RELATIVE], [CHILD, OTHER], [PARENT, OTHER],
                           [NON_RELATIVE, SIBLING], [OTHER, OTHER]])
# Household sizes 1..9, mean about 3.3 (a poor, often multi-generational population).
_SIZE_P = np.array([0.15, 0.22, 0.22, 0.19, 0.11, 0.06, 0.025, 0.015, 0.01])

SEXES = ("F", "M", "X")
STATUSES = ("employed", "self_employed", "informal", "unemployed", "retired", "student",
            "homemaker", "unable_to_work", "child")
_AGE_BANDS = np.array([0, 15, 18, 25, 60, 65])
_STATUS_P = np.array([  # one row an age band, one column a status (order of STATUSES)
    [0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0.03, 0, 0.10, 0.05, 0, 0.75, 0.05, 0.02, 0],
    [0.20, 0.02, 0.25, 0.15, 0, 0.28, 0.08, 0.02, 0],
    [0.24, 0.09, 0.30, 0.12, 0.01, 0.02, 0.17, 0.05, 0],
    [0.12, 0.07, 0.20, 0.05, 0.33, 0, 0.16, 0.07, 0],
    [0.02, 0.03, 0.10, 0, 0.68, 0, 0.10, 0.07, 0]])
SOURCES = ("wages", "self_employment", "informal_work", "pension", "rent", "remittances", "other")
MINIMUM_WAGE_MINOR = 48_000  # 480.00 a month, the scale every amount below is drawn against
# Property kind: share of households holding it, median value (minor units), lognormal sigma.
PROPERTIES = {"dwelling": (0.38, 4_000_000, 0.6), "land": (0.07, 1_500_000, 0.8),
              "vehicle": (0.09, 900_000, 0.6), "business": (0.04, 600_000, 0.9),
              "savings": (0.12, 80_000, 1.2)}
HEALTH_KINDS = ("disability", "chronic")
DISABILITY_P = {"DIS-MOB": 0.35, "DIS-VIS": 0.15, "DIS-HEA": 0.12, "DIS-COG": 0.15,
                "DIS-SLF": 0.10, "DIS-COM": 0.13}
CHRONIC_ADULT_P = {"E10": 0.03, "E11": 0.20, "I10": 0.32, "I50": 0.07, "J44": 0.08, "J45": 0.08,
                   "N18": 0.06, "B20": 0.04, "G40": 0.06, "F20": 0.06}
CHRONIC_CHILD_P = {"E10": 0.20, "J45": 0.50, "G40": 0.20, "B20": 0.05, "F20": 0.05}
BENEFITS = ("contributory_pension", "social_pension", "unemployment_benefit", "housing_subsidy",
            "school_meals", "civicard_program")
_FOREIGN_BIRTH = {"Venezuela": 0.45, "Colombia": 0.15, "Perú": 0.10, "Ecuador": 0.10,
                  "Nicaragua": 0.08, "Haití": 0.05, "Bolivia": 0.04, "España": 0.03}
_NICKNAMES = {"José": "Pepe", "Francisco": "Pancho", "Jesús": "Chucho", "Ignacio": "Nacho",
              "Manuel": "Manolo", "Dolores": "Lola", "Rosario": "Charo", "Concepción": "Concha",
              "Enrique": "Quique", "Eduardo": "Lalo", "Antonio": "Toño", "Guillermo": "Memo",
              "Alberto": "Beto", "Roberto": "Beto", "Luis": "Lucho", "Mercedes": "Meche",
              "Isabel": "Chabela", "Alejandro": "Alejo", "Alejandra": "Ale", "Rafael": "Rafa",
              "Fernando": "Nando", "Consuelo": "Chelo", "Santiago": "Santi", "Juan": "Juancho",
              "Valentina": "Vale", "Gabriela": "Gaby", "Patricia": "Paty", "Teresa": "Tere",
              "Daniel": "Dani", "Cristina": "Cris", "Margarita": "Marga", "Natalia": "Naty",
              "Sebastián": "Sebas", "Carlos": "Carlitos", "Guadalupe": "Lupe"}
# Grid streets as in Colombia ("Carrera 45 # 12-30"), and streets named after people.
_GRID_STREETS = {"Calle": 0.4, "Carrera": 0.4, "Diagonal": 0.1, "Transversal": 0.1}
_NAMED_STREETS = ("Calle", "Avenida", "Pasaje", "Callejón", "Boulevard", "Privada")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_DAYS_A_YEAR = 365.2425

SCHEMAS = {
    "households": pa.schema([pa.field(name, pa.string(), nullable=False) for name in
                             ("household_id", "region", "municipality", "address_line", "postcode")]),
    "persons": pa.schema(
        [pa.field(name, pa.string(), nullable=False) for name in
         ("person_id", "truth_person_id", "given_names", "first_surname", "second_surname")]
        + [pa.field("birth_date", pa.date32(), nullable=False)]
        + [pa.field(name, pa.string(), nullable=False) for name in
           ("birth_place", "sex", "address_line", "municipality", "region", "postcode", "phone")]
        + [pa.field("national_id", pa.string()), pa.field("photo_ref", pa.string())]),
    "memberships": pa.schema([
        pa.field("household_id", pa.string(), False), pa.field("person_id", pa.string(), False),
        pa.field("relationship", pa.string(), False), pa.field("valid_from", pa.date32(), False)]),
    "employment": pa.schema([
        pa.field("person_id", pa.string(), False), pa.field("status", pa.string(), False),
        pa.field("valid_from", pa.date32(), False)]),
    "incomes": pa.schema([
        pa.field("person_id", pa.string(), False), pa.field("source", pa.string(), False),
        pa.field("monthly_amount_minor", pa.int64(), False),
        pa.field("valid_from", pa.date32(), False)]),
    "properties": pa.schema([
        pa.field("household_id", pa.string(), False), pa.field("kind", pa.string(), False),
        pa.field("value_minor", pa.int64(), False), pa.field("valid_from", pa.date32(), False)]),
    "health_needs": pa.schema([
        pa.field("person_id", pa.string(), False), pa.field("kind", pa.string(), False),
        pa.field("code", pa.string(), False), pa.field("degree_percent", pa.int32()),
        pa.field("valid_from", pa.date32(), False)]),
    "benefits_received": pa.schema([
        pa.field("person_id", pa.string(), False), pa.field("benefit", pa.string(), False),
        pa.field("monthly_amount_minor", pa.int64(), False),
        pa.field("valid_from", pa.date32(), False)]),
}


@dataclass(frozen=True)
class PopulationSpec:
    """What to generate; the same spec always gives byte-identical files."""

    households: int
    seed: int = 0
    duplicate_share: float = 0.05
    reference_date: date = date(2026, 11, 1)
    chunk_households: int = 200_000


@dataclass(frozen=True)
class PopulationSummary:
    """Rows written per file; `duplicates` counts the second enrollments among `persons`."""

    households: int
    persons: int
    memberships: int
    employment: int
    incomes: int
    properties: int
    health_needs: int
    benefits_received: int
    duplicates: int


@dataclass(frozen=True)
class Codes:
    """The part of codes.yaml the generator draws places from, in file order."""

    vocabularies: Mapping[str, tuple[str, ...]]
    regions: tuple[str, ...]
    municipalities: tuple[str, ...]
    municipality_region: tuple[int, ...]
    postcode_prefixes: tuple[str, ...]


def load_codes(path: Path | None = None) -> Codes:
    """Read codes.yaml (next to this module unless a path is given)."""
    raw = yaml.safe_load((path or Path(__file__).with_name("codes.yaml")).read_text("utf-8"))
    regions = raw["regions"]
    municipalities = [(code, r) for r, region in enumerate(regions.values())
                      for code in region["municipalities"]]
    return Codes(
        vocabularies={name: tuple(values) for name, values in raw.items() if name != "regions"},
        regions=tuple(regions),
        municipalities=tuple(code for code, _ in municipalities),
        municipality_region=tuple(r for _, r in municipalities),
        postcode_prefixes=tuple(str(region["postcode_prefix"]) for region in regions.values()))


def _check_vocabularies(codes: Codes) -> None:
    """Refuse to run if a code the generator writes is not in codes.yaml."""
    used = {"sexes": SEXES, "relationships": ROLES, "employment_statuses": STATUSES,
            "income_sources": SOURCES, "property_kinds": tuple(PROPERTIES),
            "health_kinds": HEALTH_KINDS, "disability_codes": tuple(DISABILITY_P),
            "chronic_codes": tuple(CHRONIC_ADULT_P) + tuple(CHRONIC_CHILD_P),
            "benefit_codes": BENEFITS}
    for vocabulary, values in used.items():
        missing = set(values) - set(codes.vocabularies.get(vocabulary, ()))
        if missing:
            raise ValueError(f"codes.yaml {vocabulary} lacks {sorted(missing)}")


@dataclass(frozen=True)
class _Pools:
    """Name and street lists from Faker's es_CO, es_MX and es_AR providers, with weights."""

    given: pa.Array  # female names, then male names
    n_female: int
    female_p: Floats
    male_p: Floats
    compound: Bools  # the pooled given name already has two words ("Juan Pablo")
    surnames: pa.Array
    surname_p: Floats


def _weights(names: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    pairs = list(names.items()) if isinstance(names, Mapping) else [(n, 1.0) for n in names]
    total = sum(weight for _, weight in pairs)
    return {name: weight / total for name, weight in pairs}


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text)
                   if unicodedata.category(c) != "Mn")


def _pooled(lists: Sequence[tuple[float, Sequence[str] | Mapping[str, float]]],
            exclude: set[str]) -> dict[str, float]:
    """Merge locale lists; es_AR writes "Sofia" for "Sofía", so spellings are unified by the
    most accented variant of each word, keeping one identity per name."""
    words = [w for _, names in lists for name in names for w in name.split()]
    spelling: dict[str, str] = {}
    for word in words:
        known = spelling.get(_strip_accents(word))
        if known is None or sum(ord(c) > 127 for c in word) > sum(ord(c) > 127 for c in known):
            spelling[_strip_accents(word)] = word
    pooled: dict[str, float] = {}
    for share, names in lists:
        for name, weight in _weights(names).items():
            canonical = " ".join(spelling[_strip_accents(w)] for w in name.split())
            if canonical not in exclude:
                pooled[canonical] = pooled.get(canonical, 0.0) + share * weight
    return pooled


@cache
def _pools() -> _Pools:
    from faker.providers.person import es_AR, es_CO, es_MX

    shares = ((0.5, es_CO.Provider), (0.3, es_MX.Provider), (0.2, es_AR.Provider))
    female_lists = [(s, p.first_names_female) for s, p in shares]
    male_lists = [(s, p.first_names_male) for s, p in shares]
    ambiguous = ({n for _, names in female_lists for n in names}
                 & {n for _, names in male_lists for n in names})
    female = _pooled(female_lists, ambiguous)
    male = _pooled(male_lists, ambiguous)
    surnames = _pooled([(s, p.last_names) for s, p in shares], set())
    given = list(female) + list(male)
    return _Pools(
        given=pa.array(given, pa.string()), n_female=len(female),
        female_p=_probabilities(female.values()), male_p=_probabilities(male.values()),
        compound=np.array([" " in name for name in given]),
        surnames=pa.array(list(surnames), pa.string()),
        surname_p=_probabilities(surnames.values()))


def _probabilities(weights: Any) -> Floats:
    p = np.fromiter(weights, dtype=np.float64)
    return np.asarray(p / p.sum(), dtype=np.float64)


def generate_population(spec: PopulationSpec, out_dir: Path,
                        progress: Callable[[int], None] | None = None) -> PopulationSummary:
    """Write the eight Parquet files of a synthetic registry into out_dir, chunk by chunk.

    `progress` is called after each chunk with the number of households just written (original
    households; the new single-person households of moved duplicates are extra).
    """
    if spec.households < 1 or spec.chunk_households < 1:
        raise ValueError("households and chunk_households must be at least 1")
    if not 0 <= spec.duplicate_share < 1:
        raise ValueError("duplicate_share must be in [0, 1)")
    codes = load_codes()
    _check_vocabularies(codes)
    rng = np.random.default_rng(spec.seed)
    world = _World(rng, codes, _pools(), np.datetime64(spec.reference_date, "D"), _Issued())
    counts = dict.fromkeys([*SCHEMAS, "duplicates"], 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        writers = {name: stack.enter_context(
            pq.ParquetWriter(out_dir / f"{name}.parquet", schema, compression="zstd"))
            for name, schema in SCHEMAS.items()}
        for start in range(0, spec.households, spec.chunk_households):
            n = min(spec.chunk_households, spec.households - start)
            for name, rows in _write_chunk(world, writers, n, spec.duplicate_share).items():
                counts[name] += rows
            if progress is not None:
                progress(n)
    return PopulationSummary(**counts)


def _write_chunk(world: _World, writers: Mapping[str, pq.ParquetWriter], n: int,
                 duplicate_share: float) -> dict[str, int]:
    """Generate and write one chunk; its tables are freed before the next one is built."""
    tables, duplicates = _chunk(world, n, duplicate_share)
    for name, table in tables.items():
        writers[name].write_table(table)
    return {"duplicates": duplicates} | {name: t.num_rows for name, t in tables.items()}


class _Issued:
    """National document numbers already issued, so every true identity gets its own."""

    def __init__(self) -> None:
        self._sorted: Ints = np.empty(0, dtype=np.int64)

    def taken(self, numbers: Ints) -> Bools:
        if self._sorted.size == 0:
            return np.zeros(numbers.size, dtype=bool)
        at = np.minimum(np.searchsorted(self._sorted, numbers), self._sorted.size - 1)
        return np.asarray(self._sorted[at] == numbers)

    def add(self, numbers: Ints) -> None:
        self._sorted = np.sort(np.concatenate([self._sorted, numbers]))

    def issue(self, rng: np.random.Generator, digits: Ints) -> Ints:
        low, high = 10 ** (digits - 1), 10 ** digits
        numbers = rng.integers(low, high)
        while True:
            order = np.argsort(numbers, kind="stable")
            repeated = np.zeros(numbers.size, dtype=bool)
            repeated[order[1:]] = numbers[order[1:]] == numbers[order[:-1]]
            clash = repeated | self.taken(numbers)
            if not clash.any():
                break
            numbers[clash] = rng.integers(low[clash], high[clash])
        self.add(numbers)
        return numbers


@dataclass(frozen=True)
class _World:
    rng: np.random.Generator
    codes: Codes
    pools: _Pools
    today: np.datetime64
    issued: _Issued


def _hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """Random 128-bit ids as 32 lowercase hex characters, built without a Python loop."""
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16)
    text = np.empty((n, 32), dtype=np.uint8)
    text[:, 0::2] = _HEX[raw >> 4]
    text[:, 1::2] = _HEX[raw & 15]
    offsets = np.arange(0, 32 * n + 1, 32, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def _pick(pool: pa.Array | Sequence[str], index: npt.NDArray[Any]) -> pa.Array:
    """pool[index] as a string array; a negative index gives null."""
    pool = pool if isinstance(pool, pa.Array) else pa.array(list(pool), pa.string())
    index = np.asarray(index, dtype=np.int64)
    return pool.take(pa.array(index, mask=index < 0))


def _text(numbers: npt.NDArray[Any]) -> pa.Array:
    return pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string())


def _join(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "", null_handling="skip")


def _money(rng: np.random.Generator, median: float | Floats, sigma: float | Floats,
           n: int) -> Ints:
    """Skewed amounts in minor units, rounded to whole currency units."""
    return np.round(rng.lognormal(np.log(median), sigma, n) / 100).astype(np.int64) * 100


def _since(world: _World, birth: Dates, min_age: int, max_days: int) -> Dates:
    """A start date in the last max_days, never before the person was min_age years old."""
    earliest = birth + np.timedelta64(int(min_age * _DAYS_A_YEAR), "D")
    start = world.today - world.rng.integers(0, max_days, birth.size).astype("timedelta64[D]")
    return np.minimum(np.maximum(start, earliest), world.today)


def _chunk(world: _World, n: int, duplicate_share: float) -> tuple[dict[str, pa.Table], int]:
    """One chunk of households with their people, facts and duplicates, as tables."""
    homes = _places(world, n)
    people = _people(world, homes["municipality"])
    people["phone"] = np.where(people["own_phone"], _mobiles(world.rng, people["hh"].size),
                               homes["phone"][people["hh"]])
    facts = _facts(world, people, n)
    dup = _duplicates(world, people, homes, duplicate_share)
    return _tables(world, people, homes, facts, dup), dup["source"].size


def _mobiles(rng: np.random.Generator, n: int) -> Ints:
    return 3_000_000_000 + rng.integers(0, 1_000_000_000, n)


def _places(world: _World, n: int) -> dict[str, Any]:
    """Dwellings: municipality (the first of each region weighted as its seat), street address,
    postcode (region prefix, municipality digit, two digits) and the household phone."""
    rng, codes = world.rng, world.codes
    region_of = np.array(codes.municipality_region)
    seat = np.r_[True, region_of[1:] != region_of[:-1]]
    weight = np.where(seat, 2.0, 1.0)
    municipality = rng.choice(len(region_of), n, p=weight / weight.sum())
    return _at(world, municipality, rng.random(n) < 0.75)


def _at(world: _World, municipality: Ints, mobile: Bools) -> dict[str, Any]:
    """A dwelling in each given municipality: a grid, named-street or block address, a postcode,
    and a phone (a mobile where asked, otherwise a landline)."""
    rng, codes, pools, n = world.rng, world.codes, world.pools, municipality.size
    region = np.array(codes.municipality_region)[municipality]
    first_of_region = np.searchsorted(codes.municipality_region, region)
    grid = _join(_pick(tuple(_GRID_STREETS), rng.choice(4, n, p=_probabilities(_GRID_STREETS.values()))), " ",
                 _text(rng.integers(1, 200, n)),
                 _pick(["", "A", "B", "C"], rng.choice(4, n, p=[0.85, 0.07, 0.05, 0.03])),
                 " # ", _text(rng.integers(1, 150, n)), "-", _text(rng.integers(1, 99, n)))
    street = rng.choice(len(pools.surnames), n, p=pools.surname_p)
    named = _join(_pick(_NAMED_STREETS, rng.integers(0, len(_NAMED_STREETS), n)),
                  " ", _pick(pools.surnames, street), " ", _text(rng.integers(1, 3000, n)))
    block = _join("Manzana ", _text(rng.integers(1, 80, n)), " Casa ",
                  _text(rng.integers(1, 40, n)))
    style = rng.choice(3, n, p=[0.5, 0.35, 0.15])
    address = pc.if_else(pa.array(style == 0), grid, pc.if_else(pa.array(style == 1), named, block))
    digit = (municipality - first_of_region + 1) % 10
    postcode = _join(_pick(codes.postcode_prefixes, region), _text(digit),
                     pc.utf8_lpad(_text(rng.integers(0, 100, n)), 2, "0"))
    phone = np.where(mobile, _mobiles(rng, n), 6_000_000_000 + rng.integers(0, 10**9, n))
    return {"municipality": municipality, "region": region, "address": address,
            "postcode": postcode, "phone": phone}


def _any(hh: Ints, mask: Bools, n: int) -> Bools:
    """Per household: does any member satisfy mask?"""
    return np.bincount(hh[mask], minlength=n) > 0


def _people(world: _World, home_municipality: Ints) -> dict[str, Any]:
    """Members of n households: relationship, sex, age, names, birth place, documents."""
    rng, n = world.rng, home_municipality.size
    hh, first, role, has_spouse = _compose(rng, n)
    female = rng.random(hh.size) < 0.5
    female[first] = rng.random(n) < 0.47
    spouse = first[has_spouse] + 1  # mostly of the other sex
    female[spouse] = np.where(rng.random(spouse.size) < 0.98, ~female[spouse - 1], female[spouse - 1])
    age = _ages(rng, hh, role, female, first, has_spouse)
    birth = world.today - (age * _DAYS_A_YEAR + rng.random(hh.size) * 365).astype("timedelta64[D]")
    twin = _twins(rng, hh, role)
    birth[twin], age[twin] = birth[twin - 1], age[twin - 1]
    place = _birth_places(world, home_municipality[hh], age)
    place[twin] = place[twin - 1]
    surnames = _surnames(world, hh, role, female, first, has_spouse)
    x = (rng.random(hh.size) < 0.002) & (age >= 16)
    start = world.today - rng.integers(30, 20 * 365, n).astype("timedelta64[D]")
    start = np.maximum(start, birth[first] + np.timedelta64(18 * 365, "D"))
    return {"hh": hh, "role": role, "female": female, "age": age, "birth": birth,
            "sex": np.where(x, 2, np.where(female, 0, 1)), "place": place,
            "national_id": _national_ids(world, age, birth), **surnames,
            **_given(rng, world.pools, female, twin),
            "own_phone": (age >= 16) & (rng.random(hh.size) < 0.35),
            "member_since": np.minimum(np.maximum(start[hh], birth), world.today)}


def _compose(rng: np.random.Generator, n: int) -> tuple[Ints, Ints, Ints, Bools]:
    """Household of each person, each household's first person (the reference), each person's
    relationship, and whether the household has a spouse (always second)."""
    size = rng.choice(np.arange(1, 10), n, p=_SIZE_P)
    hh = np.repeat(np.arange(n), size)
    first = np.cumsum(size) - size
    pos = np.arange(hh.size) - first[hh]
    has_spouse = (size >= 2) & (rng.random(n) < np.where(size == 2, 0.55, 0.7))
    role = rng.choice(len(ROLES), hh.size, p=_EXTRA_ROLE_P)
    role[pos == 0] = REF
    role[(pos == 1) & has_spouse[hh]] = SPOUSE
    # A reference with grandchildren is too old to live with their own parents.
    role[np.isin(role, (PARENT, GRANDPARENT)) & _any(hh, role == GRANDCHILD, n)[hh]] = OTHER
    return hh, first, role, has_spouse


def _national_ids(world: _World, age: Ints, birth: Dates) -> Ints:
    """Document numbers (0 for none) for 85 % of adults, fewer children; older people hold the
    older 8-digit series, the young 10 digits, a few 9."""
    rng, size = world.rng, age.size
    year = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    documented = rng.random(size) < np.select([age >= 18, age >= 7], [0.85, 0.35], 0.10)
    digits = np.select([year < 1970, year < 1995], [8, np.where(rng.random(size) < 0.5, 8, 10)], 10)
    digits = np.where(rng.random(size) < 0.05, 9, digits).astype(np.int64)
    number = np.zeros(size, dtype=np.int64)
    number[documented] = world.issued.issue(rng, digits[documented])
    return number


def _ages(rng: np.random.Generator, hh: Ints, role: Ints, female: Bools, first: Ints,
          has_spouse: Bools) -> Ints:
    """Ages in whole years, plausible for each relationship to the reference person."""
    n = first.size
    ref = 18 + rng.gamma(2.6, 11.0, n)
    ref = np.where(_any(hh, role == GRANDCHILD, n), np.maximum(ref, 50 + rng.integers(0, 25, n)), ref)
    ref = np.where(_any(hh, role == PARENT, n), np.minimum(ref, 22 + rng.integers(0, 38, n)), ref)
    ref = np.where(_any(hh, role == GRANDPARENT, n), np.minimum(ref, 18 + rng.integers(0, 17, n)),
                   ref)
    ref = np.clip(ref, 18, 98).astype(np.int64)
    partner = np.clip(ref + np.round(rng.normal(np.where(female[first], 3, -3), 4)), 18, 100)
    younger = np.where(has_spouse, np.minimum(ref, partner), ref).astype(np.int64)[hh]
    r, u = ref[hh], rng.random(hh.size)
    span = (u * (np.minimum(younger, 44) - 15)).astype(np.int64)
    gc_span = (u * (np.minimum(r, 62) - 37)).astype(np.int64)
    ages = np.select(
        [role == REF, role == SPOUSE, role == CHILD, role == PARENT, role == GRANDPARENT,
         role == SIBLING, role == GRANDCHILD, role == OTHER],
        [r, partner[hh], younger - 16 - span, np.minimum(r + 18 + (u * 23).astype(np.int64), 100),
         np.minimum(r + 38 + (u * 20).astype(np.int64), 102),
         np.clip(r + np.round(rng.normal(0, 6, hh.size)), 0, 100), np.maximum(r - 38 - gc_span, 0),
         rng.integers(0, 80, hh.size)],
        np.minimum(18 + rng.gamma(2.0, 10.0, hh.size), 90))
    return np.asarray(ages, dtype=np.int64)


def _twins(rng: np.random.Generator, hh: Ints, role: Ints) -> Ints:
    """Second-born of twin pairs: a child right after a sibling child in the same household."""
    pair = (role[:-1] == CHILD) & (role[1:] == CHILD) & (hh[:-1] == hh[1:])
    pair &= rng.random(pair.size) < 0.03
    pair[1:] &= ~pair[:-1]  # no triplets: keeps copying from an unchanged elder twin
    return np.flatnonzero(pair) + 1


def _birth_places(world: _World, home: Ints, age: Ints) -> Ints:
    """Index into municipalities, then foreign countries; most were born where they live."""
    rng, n, m = world.rng, home.size, len(world.codes.municipalities)
    u = rng.random(n)
    local, domestic = np.where(age < 18, 0.90, 0.65), np.where(age < 18, 0.98, 0.92)
    foreign = m + rng.choice(len(_FOREIGN_BIRTH), n, p=_probabilities(_FOREIGN_BIRTH.values()))
    return np.select([u < local, u < domestic], [home, rng.integers(0, m, n)], foreign)


def _surnames(world: _World, hh: Ints, role: Ints, female: Bools, first: Ints,
              has_spouse: Bools) -> dict[str, Ints]:
    """Spanish surnames: a child's first surname is the father's first, the second the mother's
    first; a child of an unrecognised father carries both of the mother's."""
    rng, pools, n, size = world.rng, world.pools, first.size, hh.size

    def draw(k: int) -> Ints:
        return rng.choice(len(pools.surnames), k, p=pools.surname_p)

    ref1, ref2, sp1, sp2, absent = draw(n), draw(n), draw(n), draw(n), draw(n)
    # About 1 % of adults have a single surname (born abroad, or one parent on record): -1.
    ref2[rng.random(n) < 0.01] = -1
    sp2[rng.random(n) < 0.01] = -1
    ref_female = female[first]
    mixed = has_spouse & (ref_female != female[np.minimum(first + 1, size - 1)])
    single_mother = ~has_spouse & ref_female
    unrecognised = single_mother & (rng.random(n) < 0.4)
    cases = [mixed & ref_female, mixed, has_spouse, unrecognised, single_mother]
    child1 = np.select(cases, [sp1, ref1, ref1, ref1, absent], ref1)
    child2 = np.select(cases, [ref1, sp1, sp1, ref2, ref1], absent)
    r1, r2, coin = draw(size), draw(size), rng.random(size) < 0.5
    ref1, ref2, child1 = ref1[hh], ref2[hh], child1[hh]
    # The reference's father gave their first surname, their mother the second.
    elder = np.where(female, np.where(ref2 >= 0, ref2, r1), ref1)
    roles = [role == REF, role == SPOUSE, role == CHILD, (role == PARENT) | (role == GRANDPARENT),
             role == SIBLING, role == GRANDCHILD, role == OTHER]
    first_surname = np.select(roles, [ref1, sp1[hh], child1, elder, ref1,
                                      np.where(coin, child1, r1), np.where(coin, ref1, r1)], r1)
    second = np.select(roles, [ref2, sp2[hh], child2[hh], r2, ref2, np.where(coin, r2, child1), r2],
                       r2)
    second[((role == OTHER) | (role == NON_RELATIVE)) & (rng.random(size) < 0.01)] = -1
    return {"first": first_surname, "second": second}


def _given(rng: np.random.Generator, pools: _Pools, female: Bools, twin: Ints) -> dict[str, Ints]:
    """Given names by sex, a third of them two names ("María José"); twins differ."""
    size, n_female = female.size, pools.n_female
    n_male = len(pools.given) - n_female

    def draw(k: int, sex: Bools) -> Ints:
        return np.where(sex, rng.choice(n_female, k, p=pools.female_p),
                        n_female + rng.choice(n_male, k, p=pools.male_p))

    name = draw(size, female)
    clash = twin[name[twin] == name[twin - 1]]
    while clash.size:
        name[clash] = draw(clash.size, female[clash])
        clash = clash[name[clash] == name[clash - 1]]
    middle = draw(size, female)
    middle = np.where(middle != name, middle,
                      np.where(female, (middle + 1) % n_female,
                               n_female + (middle - n_female + 1) % n_male))
    two = (rng.random(size) < 0.3) & ~pools.compound[name] & ~pools.compound[middle]
    return {"given": name, "middle": np.where(two, middle, -1)}


def _facts(world: _World, people: dict[str, Any], n: int) -> dict[str, Facts]:
    """Need-related facts of the original people: health, work, income, property, benefits."""
    health = _health(world, people["age"], people["birth"])
    employment = _employment(world, people, health)
    incomes = _incomes(world, people, employment["status"])
    return {"health_needs": health, "employment": employment, "incomes": incomes,
            "properties": _properties(world, n),
            "benefits_received": _benefits(world, people, employment["status"], incomes)}


def _health(world: _World, age: Ints, birth: Dates) -> Facts:
    """Disabilities (~4 %, degree 33-100) and chronic conditions (~8 %), both rising with age."""
    rng, size = world.rng, age.size
    disabled = np.flatnonzero(rng.random(size) < 0.013 + 0.0008 * age)
    chronic = np.flatnonzero(rng.random(size) < 0.02 + 0.3 * (age / 90.0) ** 2)
    codes = [*DISABILITY_P, *CHRONIC_ADULT_P]
    child_code = np.array([codes.index(code) for code in CHRONIC_CHILD_P])
    adult_p, child_p = _probabilities(CHRONIC_ADULT_P.values()), _probabilities(
        CHRONIC_CHILD_P.values())
    condition = np.where(age[chronic] >= 18,
                         len(DISABILITY_P) + rng.choice(len(adult_p), chronic.size, p=adult_p),
                         child_code[rng.choice(len(child_p), chronic.size, p=child_p)])
    elder = chronic[(age[chronic] >= 50) & (rng.random(chronic.size) < 0.2)]
    second = len(DISABILITY_P) + rng.choice(len(adult_p), elder.size, p=adult_p)
    keep = second != condition[np.searchsorted(chronic, elder)]
    owner = np.concatenate([disabled, chronic, elder[keep]])
    days = (world.today - birth[owner]).astype(np.int64)
    return {
        "owner": owner,
        "kind": np.repeat([0, 1], [disabled.size, owner.size - disabled.size]),
        "code": np.concatenate([
            rng.choice(len(DISABILITY_P), disabled.size, p=_probabilities(DISABILITY_P.values())),
            condition, second[keep]]),
        "degree": np.concatenate([33 + np.round(67 * rng.beta(1.3, 2.5, disabled.size)),
                                  np.full(owner.size - disabled.size, -1)]).astype(np.int64),
        "since": birth[owner] + (rng.random(owner.size) * days).astype("timedelta64[D]")}


def _employment(world: _World, people: dict[str, Any], health: Facts) -> Facts:
    """One status a person, drawn by age band; a severe disability often means unable to work."""
    rng, age, birth = world.rng, people["age"], people["birth"]
    band = np.searchsorted(_AGE_BANDS, age, side="right") - 1
    status = np.empty(age.size, dtype=np.int64)
    for b, p in enumerate(_STATUS_P):
        members = band == b
        status[members] = rng.choice(len(STATUSES), int(members.sum()), p=p / p.sum())
    severe = health["owner"][(health["kind"] == 0) & (health["degree"] >= 65)]
    severe = severe[(age[severe] >= 18) & (status[severe] != STATUSES.index("retired"))
                    & (rng.random(severe.size) < 0.6)]
    status[severe] = STATUSES.index("unable_to_work")
    since = np.where(status == STATUSES.index("child"), birth, _since(world, birth, 15, 3650))
    return {"owner": np.arange(age.size), "status": status, "since": since}


def _incomes(world: _World, people: dict[str, Any], status: Ints) -> Facts:
    """Monthly incomes by source: lognormal around the minimum wage, many informal, some ended
    (a wage of 0 marks a lost job), pensions for most retired people."""
    rng, age, birth, wage = world.rng, people["age"], people["birth"], MINIMUM_WAGE_MINOR
    size, u = age.size, rng.random(age.size)
    is_status = {name: status == i for i, name in enumerate(STATUSES)}
    pensioned = (is_status["retired"] & (u < 0.6)) | (~is_status["retired"] & (age >= 65)
                                                      & (u < 0.08))
    # source: who has it, median and sigma of the amount (0 median: an ended income)
    plan = [("wages", is_status["employed"], 1.15 * wage, 0.4),
            ("self_employment", is_status["self_employed"], 0.8 * wage, 0.8),
            ("informal_work", is_status["informal"], 0.45 * wage, 0.7),
            ("wages", is_status["unemployed"] & (u < 0.4), 0.0, 0.0),
            ("pension", pensioned, 0.9 * wage, 0.5),
            ("remittances", (people["role"] == REF) & (rng.random(size) < 0.07), 0.35 * wage, 0.6),
            ("rent", (age >= 40) & (rng.random(size) < 0.02), 0.5 * wage, 0.8),
            ("other", (age >= 18) & (rng.random(size) < 0.03), 0.15 * wage, 0.8)]
    owners, sources, amounts = [], [], []
    for source, holders, median, sigma in plan:
        owner = np.flatnonzero(holders)
        owners.append(owner)
        sources.append(np.full(owner.size, SOURCES.index(source)))
        amounts.append(_money(rng, median, sigma, owner.size) if median else
                       np.zeros(owner.size, dtype=np.int64))
    owner = np.concatenate(owners)
    return {"owner": owner, "source": np.concatenate(sources), "amount": np.concatenate(amounts),
            "since": _since(world, birth[owner], 15, 3650)}


def _properties(world: _World, n: int) -> Facts:
    """Assets of households: a dwelling for about a third, land, vehicles, businesses rarer."""
    rng, parts = world.rng, []
    for kind, (share, median, sigma) in enumerate(PROPERTIES.values()):
        owner = np.flatnonzero(rng.random(n) < share)
        parts.append((owner, np.full(owner.size, kind), _money(rng, median, sigma, owner.size)))
    owner = np.concatenate([p[0] for p in parts])
    since = world.today - rng.integers(30, 25 * 365, owner.size).astype("timedelta64[D]")
    return {"owner": owner, "kind": np.concatenate([p[1] for p in parts]),
            "amount": np.concatenate([p[2] for p in parts]), "since": since}


def _benefits(world: _World, people: dict[str, Any], status: Ints, incomes: Facts) -> Facts:
    """Benefits already received: pensions, unemployment, housing, school meals, the program."""
    rng, age, size = world.rng, people["age"], people["age"].size
    pension = incomes["source"] == SOURCES.index("pension")
    has_pension = np.zeros(size, dtype=bool)
    has_pension[incomes["owner"][pension]] = True
    contributory = pension & (rng.random(pension.size) < 0.3)
    reference = people["role"] == REF
    plan = [("social_pension", (age >= 65) & ~has_pension & (rng.random(size) < 0.35),
             [10_000, 12_000, 15_000]),
            ("unemployment_benefit", (status == STATUSES.index("unemployed"))
             & (rng.random(size) < 0.15), [24_000, 28_800, 33_600]),
            ("housing_subsidy", reference & (rng.random(size) < 0.05), [8_000, 10_000, 15_000]),
            ("school_meals", (age >= 5) & (age <= 17) & (rng.random(size) < 0.35), [2_500]),
            ("civicard_program", reference & (rng.random(size) < 0.04), [15_000, 20_000, 25_000])]
    owners = [incomes["owner"][contributory]]
    kinds = [np.zeros(owners[0].size, dtype=np.int64)]
    amounts = [incomes["amount"][contributory]]
    for benefit, holders, levels in plan:
        owner = np.flatnonzero(holders)
        owners.append(owner)
        kinds.append(np.full(owner.size, BENEFITS.index(benefit)))
        amounts.append(rng.choice(np.array(levels, dtype=np.int64), owner.size))
    owner = np.concatenate(owners)
    return {"owner": owner, "benefit": np.concatenate(kinds), "amount": np.concatenate(amounts),
            "since": _since(world, people["birth"][owner], 0, 1800)}


def _given_names(pools: _Pools, given: Ints, middle: Ints) -> pa.Array:
    return pc.binary_join_element_wise(_pick(pools.given, given), _pick(pools.given, middle), " ",
                                       null_handling="skip")


def _duplicates(world: _World, people: dict[str, Any], homes: dict[str, Any],
                share: float) -> dict[str, Any]:
    """Second enrollments of a share of distinct people: 40 % of adults moved to a new single-person home,
    the rest listed again in their household under another relationship; with the errors
    clerks and residents make in names, birth dates, phones and document numbers."""
    rng = world.rng
    # A child of a crowded household is not enrolled twice: only adults move out alone.
    crowded = np.bincount(people["hh"])[people["hh"]] >= 8
    eligible = np.flatnonzero((people["age"] >= 18) | ~crowded)
    n_dup = min(round(share * people["hh"].size), eligible.size)
    source = np.sort(rng.choice(eligible, n_dup, replace=False))
    moved = _movers(rng, people, source)
    alone_child = moved & (people["age"][source] < 18)  # rare: no room left at home
    source, moved = source[~alone_child], moved[~alone_child]
    n_dup = source.size
    movers = int(moved.sum())
    old_town = homes["municipality"][people["hh"][source[moved]]]
    town = np.where(rng.random(movers) < 0.6, old_town,
                    rng.integers(0, len(world.codes.municipalities), movers))
    new_homes = _at(world, town, np.ones(movers, dtype=bool))
    hh = people["hh"][source].copy()
    hh[moved] = homes["municipality"].size + np.arange(movers)
    role = _CONFUSED_ROLE[people["role"][source], rng.integers(0, 2, n_dup)]
    role[moved] = REF
    municipality = homes["municipality"][people["hh"][source]]
    municipality[moved] = town
    sex = people["sex"][source].copy()
    flip = (rng.random(n_dup) < 0.01) & (sex < 2)
    sex[flip] = 1 - sex[flip]
    birth = people["birth"][source]
    return {
        "source": source, "hh": hh, "role": role, "homes": new_homes, "sex": sex,
        **_misspelt(world, people, source),
        "birth": _misdated(world, birth.copy()),
        "place": np.where(rng.random(n_dup) < 0.05, municipality, people["place"][source]),
        "phone": np.where(rng.random(n_dup) < np.where(moved, 0.7, 0.15), _mobiles(rng, n_dup),
                          people["phone"][source]),
        "national_id": _misnumbered(world, people["national_id"][source].copy()),
        "since": _since(world, birth, 0, 720)}


def _movers(rng: np.random.Generator, people: dict[str, Any], source: Ints) -> Bools:
    """Which duplicates enrolled again elsewhere: 40 % of adults; and any whose household
    would otherwise grow past nine members."""
    moved: Bools = (rng.random(source.size) < 0.4) & (people["age"][source] >= 18)
    household = people["hh"][source]
    size = np.bincount(people["hh"])[household]
    while True:
        staying = np.flatnonzero(~moved)
        h = household[staying]  # sorted: people are grouped by household
        opens = np.r_[True, h[1:] != h[:-1]]
        rank = np.arange(h.size) - np.maximum.accumulate(np.where(opens, np.arange(h.size), 0))
        crowded = staying[size[staying] + rank + 1 > 9]
        if crowded.size == 0:
            return moved
        moved[crowded] = True


def _choose(u: Floats, shares: Sequence[float]) -> Ints:
    """Which of len(shares) kinds each uniform draw u falls in."""
    return np.searchsorted(np.cumsum(shares), u * sum(shares), side="right").astype(np.int64)


def _misspelt(world: _World, people: dict[str, Any], source: Ints) -> dict[str, list[str]]:
    """Names as written at the second enrollment: 30 % given-name errors (typo, accents,
    nickname, initial, dropped middle name), 22 % surname errors (typo, dropped second
    surname, swapped, accents)."""
    pools, n = world.pools, source.size
    given = _given_names(pools, people["given"][source], people["middle"][source]).to_pylist()
    first = _pick(pools.surnames, people["first"][source]).to_pylist()
    second = pc.fill_null(_pick(pools.surnames, people["second"][source]), "").to_pylist()
    u = world.rng.random((n, 10))
    given_kind = _choose(u[:, 1], [0.35, 0.20, 0.15, 0.15, 0.15])
    surname_kind = _choose(u[:, 3], [0.30, 0.15, 0.25, 0.15, 0.15])
    for i in np.flatnonzero(u[:, 0] < 0.30):
        given[i] = _misspell_given(given[i], int(given_kind[i]), u[i, 4:7])
    for i in np.flatnonzero(u[:, 2] < 0.22):
        first[i], second[i] = _misspell_surnames(first[i], second[i], int(surname_kind[i]),
                                                 u[i, 7:10])
    return {"given": given, "first": first, "second": second}


def _typo(text: str, u: Floats) -> str:
    """One keyboard slip, always a change: substitution, deletion, transposition or doubling."""
    if len(text) < 2:
        return text + _LETTERS[int(u[2] * 26)]
    at, op = int(u[1] * (len(text) - 1)), int(u[0] * 4)
    if op == 1:
        return text[:at] + text[at + 1:]
    if op == 2 and text[at] != text[at + 1]:
        return text[:at] + text[at + 1] + text[at] + text[at + 2:]
    if op == 3:
        return text[:at] + text[at] + text[at:]
    letter = _LETTERS[int(u[2] * 26)]
    if letter == text[at].lower():
        letter = _LETTERS[(int(u[2] * 26) + 1) % 26]
    return text[:at] + (letter.upper() if text[at].isupper() else letter) + text[at + 1:]


def _misspell_given(names: str, kind: int, u: Floats) -> str:
    words = names.split()
    if kind == 1:
        wrong = _strip_accents(names)
    elif kind == 2:
        wrong = _NICKNAMES.get(words[0], names)
    elif kind == 3:  # "José" -> "J.", "María José" -> "María J."
        wrong = " ".join([*words[:-1], words[-1][0] + "."])
    elif kind == 4:
        wrong = words[0]
    else:
        wrong = names
    return wrong if wrong != names else _typo(names, u)


def _misspell_surnames(first: str, second: str, kind: int, u: Floats) -> tuple[str, str]:
    if kind == 1 and second:
        wrong = (first, _typo(second, u))
    elif kind == 2:
        wrong = (first, "")
    elif kind == 3:
        wrong = (second, first)
    elif kind == 4:
        wrong = (_strip_accents(first), _strip_accents(second))
    else:
        wrong = (first, second)
    return wrong if wrong != (first, second) and wrong[0] else (_typo(first, u), second)


def _misdated(world: _World, birth: Dates) -> Dates:
    """13 % of birth dates recorded wrongly: a digit typo, day and month swapped, or a year off."""
    u = world.rng.random((birth.size, 4))
    kind = _choose(u[:, 1], [0.4, 0.3, 0.3])
    latest = date.fromisoformat(str(world.today))
    for i in np.flatnonzero(u[:, 0] < 0.13):
        birth[i] = np.datetime64(_misdate(birth[i].item(), int(kind[i]), u[i, 2:], latest), "D")
    return birth


def _misdate(born: date, kind: int, u: Floats, latest: date) -> date:
    wrong: date | None = None
    if kind == 0:
        text = born.isoformat()
        at = (3, 8, 9)[int(u[0] * 3)]  # the year's last digit or the day's
        digit = str((int(text[at]) + 1 + int(u[1] * 9)) % 10)
        try:
            wrong = date.fromisoformat(text[:at] + digit + text[at + 1:])
        except ValueError:
            wrong = None
    elif kind == 1 and born.day <= 12 and born.day != born.month:
        wrong = date(born.year, born.day, born.month)
    if wrong is None or wrong > latest:
        year = born.year + (1 if u[1] < 0.5 and born.year < latest.year - 1 else -1)
        wrong = born.replace(year=year, day=min(born.day, 28) if born.month == 2 else born.day)
    return wrong


def _misnumbered(world: _World, number: Ints) -> Ints:
    """35 % of document numbers not given again; 4 % of the rest mistyped by one digit (never
    into a number issued to someone else)."""
    rng = world.rng
    number[rng.random(number.size) < 0.35] = 0
    mistyped = np.flatnonzero((number > 0) & (rng.random(number.size) < 0.04))
    u = rng.random((mistyped.size, 3))
    for i, row in zip(mistyped, u, strict=True):
        text = str(number[i])
        at = 1 + int(row[0] * (len(text) - 2))
        if row[1] < 0.5 and text[at] != text[at + 1]:
            text = text[:at] + text[at + 1] + text[at] + text[at + 2:]
        else:
            text = text[:at] + str((int(text[at]) + 1 + int(row[2] * 9)) % 10) + text[at + 1:]
        number[i] = int(text)
    wrong = number[mistyped]
    order = np.argsort(wrong, kind="stable")
    repeated = np.zeros(wrong.size, dtype=bool)
    repeated[order[1:]] = wrong[order[1:]] == wrong[order[:-1]]
    clash = world.issued.taken(wrong) | repeated
    number[mistyped[clash]] = 0
    world.issued.add(wrong[~clash])
    return number


def _with_duplicates(rng: np.random.Generator, facts: dict[str, Facts], source: Ints,
                     size: int) -> dict[str, Facts]:
    """Facts declared again at the second enrollment: every employment status, most incomes
    (amounts a little different), most health needs, some benefits (double dipping)."""
    copy_of = np.full(size, -1, dtype=np.int64)
    copy_of[source] = size + np.arange(source.size)
    keep = {"employment": 1.0, "incomes": 0.8, "health_needs": 0.8, "benefits_received": 0.3}
    out = dict(facts)
    for name, share in keep.items():
        rows = facts[name]
        copied = copy_of[rows["owner"]]
        taken = (copied >= 0) & (rng.random(copied.size) < share)
        extra = {key: column[taken] for key, column in rows.items()}
        extra["owner"] = copied[taken]
        if name == "incomes":
            jitter = rng.uniform(0.8, 1.2, extra["amount"].size)
            extra["amount"] = (np.round(extra["amount"] * jitter / 100) * 100).astype(np.int64)
        out[name] = {key: np.concatenate([rows[key], extra[key]]) for key in rows}
    return out


def _stacked(homes: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    return {key: pa.concat_arrays([value, more[key]]) if isinstance(value, pa.Array)
            else np.concatenate([value, more[key]]) for key, value in homes.items()}


def _tables(world: _World, people: dict[str, Any], homes: dict[str, Any],
            facts: dict[str, Facts], dup: dict[str, Any]) -> dict[str, pa.Table]:
    """The chunk's rows as Arrow tables."""
    rng, codes = world.rng, world.codes
    size, n_dup = people["hh"].size, dup["source"].size
    homes = _stacked(homes, dup["homes"])
    household_ids = _hex_ids(rng, homes["municipality"].size)
    person_ids = _hex_ids(rng, size + n_dup)
    truth_ids = _hex_ids(rng, size)
    facts = _with_duplicates(rng, facts, dup["source"], size)
    hh = pa.array(np.r_[people["hh"], dup["hh"]])

    def of_person(rows: Facts) -> pa.Array:
        return person_ids.take(pa.array(rows["owner"]))

    persons = _persons_table(world, people, dup, homes, person_ids, truth_ids,
                             rng.permutation(size + n_dup))
    health, income, benefit = (facts["health_needs"], facts["incomes"],
                               facts["benefits_received"])
    return {
        "households": pa.Table.from_arrays([
            household_ids, _pick(codes.regions, homes["region"]),
            _pick(codes.municipalities, homes["municipality"]), homes["address"],
            homes["postcode"]], schema=SCHEMAS["households"]),
        "persons": persons,
        "memberships": pa.Table.from_arrays([
            household_ids.take(hh), person_ids, _pick(ROLES, np.r_[people["role"], dup["role"]]),
            pa.array(np.r_[people["member_since"], dup["since"]], pa.date32())],
            schema=SCHEMAS["memberships"]),
        "employment": pa.Table.from_arrays([
            of_person(facts["employment"]), _pick(STATUSES, facts["employment"]["status"]),
            pa.array(facts["employment"]["since"], pa.date32())], schema=SCHEMAS["employment"]),
        "incomes": pa.Table.from_arrays([
            of_person(income), _pick(SOURCES, income["source"]), pa.array(income["amount"]),
            pa.array(income["since"], pa.date32())], schema=SCHEMAS["incomes"]),
        "properties": pa.Table.from_arrays([
            household_ids.take(pa.array(facts["properties"]["owner"])),
            _pick(tuple(PROPERTIES), facts["properties"]["kind"]),
            pa.array(facts["properties"]["amount"]),
            pa.array(facts["properties"]["since"], pa.date32())], schema=SCHEMAS["properties"]),
        "health_needs": pa.Table.from_arrays([
            of_person(health), _pick(HEALTH_KINDS, health["kind"]),
            _pick([*DISABILITY_P, *CHRONIC_ADULT_P], health["code"]),
            pa.array(health["degree"], pa.int32(), mask=health["degree"] < 0),
            pa.array(health["since"], pa.date32())], schema=SCHEMAS["health_needs"]),
        "benefits_received": pa.Table.from_arrays([
            of_person(benefit), _pick(BENEFITS, benefit["benefit"]), pa.array(benefit["amount"]),
            pa.array(benefit["since"], pa.date32())], schema=SCHEMAS["benefits_received"]),
    }


def _persons_table(world: _World, people: dict[str, Any], dup: dict[str, Any],
                   homes: dict[str, Any], person_ids: pa.Array, truth_ids: pa.Array,
                   order: Ints) -> pa.Table:
    """Person rows, originals then duplicates, shuffled by order so duplicates do not cluster
    (the shuffle is applied to indices, before strings are gathered)."""
    pools, codes = world.pools, world.codes

    def both(key: str) -> npt.NDArray[Any]:
        return np.asarray(np.r_[people[key], dup[key]][order])

    def names(own: pa.Array, again: list[str]) -> pa.Array:
        return pa.concat_arrays([own, pa.array(again, pa.string())]).take(pa.array(order))

    hh = pa.array(both("hh"))
    national_id = both("national_id")
    truth = np.r_[np.arange(people["hh"].size), dup["source"]][order]
    return pa.Table.from_arrays([
        person_ids.take(pa.array(order)), truth_ids.take(pa.array(truth)),
        names(_given_names(pools, people["given"], people["middle"]), dup["given"]),
        names(_pick(pools.surnames, people["first"]), dup["first"]),
        names(pc.fill_null(_pick(pools.surnames, people["second"]), ""), dup["second"]),
        pa.array(both("birth"), pa.date32()),
        _pick([*codes.municipalities, *_FOREIGN_BIRTH], both("place")),
        _pick(SEXES, both("sex")),
        homes["address"].take(hh),
        _pick(codes.municipalities, homes["municipality"]).take(hh),
        _pick(codes.regions, homes["region"]).take(hh),
        homes["postcode"].take(hh),
        _text(both("phone")),
        pc.if_else(pa.array(national_id > 0), _text(national_id), pa.scalar(None, pa.string())),
        pa.nulls(order.size, pa.string())], schema=SCHEMAS["persons"])
