"""Given names and surnames pooled from Faker's es_CO, es_MX and es_AR lists, with weights."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from civicard.registry.population.arrays import Bools, Floats, Ints, pick, probabilities


@dataclass(frozen=True)
class Pools:
    """Name and street lists from Faker's es_CO, es_MX and es_AR providers, with weights."""

    given: pa.Array  # female names, then male names
    n_female: int
    female_p: Floats
    male_p: Floats
    compound: Bools  # the pooled given name already has two words ("Juan Pablo")
    surnames: pa.Array
    surname_p: Floats


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


@cache
def name_pools() -> Pools:
    """Faker is read once, on first use; rows are then drawn from these lists with numpy."""
    from faker.providers.person import es_AR, es_CO, es_MX

    shares = ((0.5, es_CO.Provider), (0.3, es_MX.Provider), (0.2, es_AR.Provider))
    female_lists = [(s, p.first_names_female) for s, p in shares]
    male_lists = [(s, p.first_names_male) for s, p in shares]
    ambiguous = {n for _, names in female_lists for n in names} & {n for _, names in male_lists for n in names}
    female = _pooled(female_lists, ambiguous)
    male = _pooled(male_lists, ambiguous)
    surnames = _pooled([(s, p.last_names) for s, p in shares], set())
    given = list(female) + list(male)
    return Pools(
        given=pa.array(given, pa.string()),
        n_female=len(female),
        female_p=probabilities(female.values()),
        male_p=probabilities(male.values()),
        compound=np.array([" " in name for name in given]),
        surnames=pa.array(list(surnames), pa.string()),
        surname_p=probabilities(surnames.values()),
    )


def given_names(pools: Pools, given: Ints, middle: Ints) -> pa.Array:
    """The given names as written: the first, then the middle one where there is one."""
    return pc.binary_join_element_wise(pick(pools.given, given), pick(pools.given, middle), " ", null_handling="skip")


def _weights(names: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    pairs = list(names.items()) if isinstance(names, Mapping) else [(n, 1.0) for n in names]
    total = sum(weight for _, weight in pairs)
    return {name: weight / total for name, weight in pairs}


def _pooled(lists: Sequence[tuple[float, Sequence[str] | Mapping[str, float]]], exclude: set[str]) -> dict[str, float]:
    """Merge locale lists; es_AR writes "Sofia" for "Sofía", so spellings are unified by the
    most accented variant of each word, keeping one identity per name."""
    words = [w for _, names in lists for name in names for w in name.split()]
    spelling: dict[str, str] = {}
    for word in words:
        known = spelling.get(strip_accents(word))
        if known is None or sum(ord(c) > 127 for c in word) > sum(ord(c) > 127 for c in known):
            spelling[strip_accents(word)] = word
    pooled: dict[str, float] = {}
    for share, names in lists:
        for name, weight in _weights(names).items():
            canonical = " ".join(spelling[strip_accents(w)] for w in name.split())
            if canonical not in exclude:
                pooled[canonical] = pooled.get(canonical, 0.0) + share * weight
    return pooled
