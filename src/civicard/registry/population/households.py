"""The members of each household: relationship, sex, age, birth, names, documents."""

from __future__ import annotations

from typing import Any

import numpy as np

from civicard.registry.population.arrays import DAYS_A_YEAR, Bools, Dates, Ints, probabilities
from civicard.registry.population.names import Pools
from civicard.registry.population.vocabulary import (
    CHILD,
    FOREIGN_BIRTH,
    GRANDCHILD,
    GRANDPARENT,
    NON_RELATIVE,
    OTHER,
    PARENT,
    REF,
    ROLES,
    SIBLING,
    SPOUSE,
)
from civicard.registry.population.world import World

# Roles of members after the reference and spouse, in ROLES order.
_EXTRA_ROLE_P = np.array([0, 0, 0.74, 0.06, 0.05, 0.07, 0.01, 0.05, 0.02])
# Household sizes 1..9, mean about 3.3 (a poor, often multi-generational population).
_SIZE_P = np.array([0.15, 0.22, 0.22, 0.19, 0.11, 0.06, 0.025, 0.015, 0.01])


def household_members(world: World, home_municipality: Ints) -> dict[str, Any]:
    """Members of n households: relationship, sex, age, names, birth place, documents."""
    rng, n = world.rng, home_municipality.size
    hh, first, role, has_spouse = _compose(rng, n)
    female = rng.random(hh.size) < 0.5
    female[first] = rng.random(n) < 0.47
    spouse = first[has_spouse] + 1  # mostly of the other sex
    female[spouse] = np.where(rng.random(spouse.size) < 0.98, ~female[spouse - 1], female[spouse - 1])
    age = _ages(rng, hh, role, female, first, has_spouse)
    birth = world.today - (age * DAYS_A_YEAR + rng.random(hh.size) * 365).astype("timedelta64[D]")
    twin = _twins(rng, hh, role)
    birth[twin], age[twin] = birth[twin - 1], age[twin - 1]
    place = _birth_places(world, home_municipality[hh], age)
    place[twin] = place[twin - 1]
    surnames = _surnames(world, hh, role, female, first, has_spouse)
    x = (rng.random(hh.size) < 0.002) & (age >= 16)
    start = world.today - rng.integers(30, 20 * 365, n).astype("timedelta64[D]")
    start = np.maximum(start, birth[first] + np.timedelta64(18 * 365, "D"))
    return {
        "hh": hh,
        "role": role,
        "female": female,
        "age": age,
        "birth": birth,
        "sex": np.where(x, 2, np.where(female, 0, 1)),
        "place": place,
        "national_id": _national_ids(world, age, birth),
        **surnames,
        **_given(rng, world.pools, female, twin),
        "own_phone": (age >= 16) & (rng.random(hh.size) < 0.35),
        "member_since": np.minimum(np.maximum(start[hh], birth), world.today),
    }


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


def _national_ids(world: World, age: Ints, birth: Dates) -> Ints:
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


def _ages(rng: np.random.Generator, hh: Ints, role: Ints, female: Bools, first: Ints, has_spouse: Bools) -> Ints:
    """Ages in whole years, plausible for each relationship to the reference person."""
    n = first.size
    ref = 18 + rng.gamma(2.6, 11.0, n)
    ref = np.where(_any(hh, role == GRANDCHILD, n), np.maximum(ref, 50 + rng.integers(0, 25, n)), ref)
    ref = np.where(_any(hh, role == PARENT, n), np.minimum(ref, 22 + rng.integers(0, 38, n)), ref)
    ref = np.where(_any(hh, role == GRANDPARENT, n), np.minimum(ref, 18 + rng.integers(0, 17, n)), ref)
    ref = np.clip(ref, 18, 98).astype(np.int64)
    partner = np.clip(ref + np.round(rng.normal(np.where(female[first], 3, -3), 4)), 18, 100)
    younger = np.where(has_spouse, np.minimum(ref, partner), ref).astype(np.int64)[hh]
    r, u = ref[hh], rng.random(hh.size)
    span = (u * (np.minimum(younger, 44) - 15)).astype(np.int64)
    gc_span = (u * (np.minimum(r, 62) - 37)).astype(np.int64)
    ages = np.select(
        [
            role == REF,
            role == SPOUSE,
            role == CHILD,
            role == PARENT,
            role == GRANDPARENT,
            role == SIBLING,
            role == GRANDCHILD,
            role == OTHER,
        ],
        [
            r,
            partner[hh],
            younger - 16 - span,
            np.minimum(r + 18 + (u * 23).astype(np.int64), 100),
            np.minimum(r + 38 + (u * 20).astype(np.int64), 102),
            np.clip(r + np.round(rng.normal(0, 6, hh.size)), 0, 100),
            np.maximum(r - 38 - gc_span, 0),
            rng.integers(0, 80, hh.size),
        ],
        np.minimum(18 + rng.gamma(2.0, 10.0, hh.size), 90),
    )
    return np.asarray(ages, dtype=np.int64)


def _twins(rng: np.random.Generator, hh: Ints, role: Ints) -> Ints:
    """Second-born of twin pairs: a child right after a sibling child in the same household."""
    pair = (role[:-1] == CHILD) & (role[1:] == CHILD) & (hh[:-1] == hh[1:])
    pair &= rng.random(pair.size) < 0.03
    pair[1:] &= ~pair[:-1]  # no triplets: keeps copying from an unchanged elder twin
    return np.flatnonzero(pair) + 1


def _birth_places(world: World, home: Ints, age: Ints) -> Ints:
    """Index into municipalities, then foreign countries; most were born where they live."""
    rng, n, m = world.rng, home.size, len(world.codes.municipalities)
    u = rng.random(n)
    local, domestic = np.where(age < 18, 0.90, 0.65), np.where(age < 18, 0.98, 0.92)
    foreign = m + rng.choice(len(FOREIGN_BIRTH), n, p=probabilities(FOREIGN_BIRTH.values()))
    return np.select([u < local, u < domestic], [home, rng.integers(0, m, n)], foreign)


def _surnames(world: World, hh: Ints, role: Ints, female: Bools, first: Ints, has_spouse: Bools) -> dict[str, Ints]:
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
    roles = [
        role == REF,
        role == SPOUSE,
        role == CHILD,
        (role == PARENT) | (role == GRANDPARENT),
        role == SIBLING,
        role == GRANDCHILD,
        role == OTHER,
    ]
    first_surname = np.select(
        roles, [ref1, sp1[hh], child1, elder, ref1, np.where(coin, child1, r1), np.where(coin, ref1, r1)], r1
    )
    second = np.select(roles, [ref2, sp2[hh], child2[hh], r2, ref2, np.where(coin, r2, child1), r2], r2)
    second[((role == OTHER) | (role == NON_RELATIVE)) & (rng.random(size) < 0.01)] = -1
    return {"first": first_surname, "second": second}


def _given(rng: np.random.Generator, pools: Pools, female: Bools, twin: Ints) -> dict[str, Ints]:
    """Given names by sex, a third of them two names ("María José"); twins differ."""
    size, n_female = female.size, pools.n_female
    n_male = len(pools.given) - n_female

    def draw(k: int, sex: Bools) -> Ints:
        return np.where(
            sex, rng.choice(n_female, k, p=pools.female_p), n_female + rng.choice(n_male, k, p=pools.male_p)
        )

    name = draw(size, female)
    clash = twin[name[twin] == name[twin - 1]]
    while clash.size:
        name[clash] = draw(clash.size, female[clash])
        clash = clash[name[clash] == name[clash - 1]]
    middle = draw(size, female)
    middle = np.where(
        middle != name, middle, np.where(female, (middle + 1) % n_female, n_female + (middle - n_female + 1) % n_male)
    )
    two = (rng.random(size) < 0.3) & ~pools.compound[name] & ~pools.compound[middle]
    return {"given": name, "middle": np.where(two, middle, -1)}


def _any(hh: Ints, mask: Bools, n: int) -> Bools:
    """Per household: does any member satisfy mask?"""
    return np.bincount(hh[mask], minlength=n) > 0
