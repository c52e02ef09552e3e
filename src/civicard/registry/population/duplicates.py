"""Second enrollments of some people, at home or in a new home, and the facts they declare again."""

from __future__ import annotations

from typing import Any

import numpy as np

from civicard.registry.population.arrays import Bools, Facts, Ints, mobiles
from civicard.registry.population.places import dwellings_in
from civicard.registry.population.typos import misdated, misnumbered, misspelt
from civicard.registry.population.vocabulary import (
    CHILD,
    GRANDCHILD,
    GRANDPARENT,
    NON_RELATIVE,
    OTHER,
    PARENT,
    REF,
    SIBLING,
)
from civicard.registry.population.world import World, start_dates

# A duplicate enrolled in the same household is recorded with a plausible wrong relationship.
_CONFUSED_ROLE = np.array(
    [
        [OTHER, NON_RELATIVE],
        [NON_RELATIVE, OTHER],
        [GRANDCHILD, OTHER],
        [GRANDPARENT, OTHER],
        [OTHER, NON_RELATIVE],
        [CHILD, OTHER],
        [PARENT, OTHER],
        [NON_RELATIVE, SIBLING],
        [OTHER, OTHER],
    ]
)


def second_enrollments(world: World, people: dict[str, Any], homes: dict[str, Any], share: float) -> dict[str, Any]:
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
    town = np.where(rng.random(movers) < 0.6, old_town, rng.integers(0, len(world.codes.municipalities), movers))
    new_homes = dwellings_in(world, town, np.ones(movers, dtype=bool))
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
        "source": source,
        "hh": hh,
        "role": role,
        "homes": new_homes,
        "sex": sex,
        **misspelt(world, people, source),
        "birth": misdated(world, birth.copy()),
        "place": np.where(rng.random(n_dup) < 0.05, municipality, people["place"][source]),
        "phone": np.where(rng.random(n_dup) < np.where(moved, 0.7, 0.15), mobiles(rng, n_dup), people["phone"][source]),
        "national_id": misnumbered(world, people["national_id"][source].copy()),
        "since": start_dates(world, birth, 0, 720),
    }


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


def with_duplicates(rng: np.random.Generator, facts: dict[str, Facts], source: Ints, size: int) -> dict[str, Facts]:
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
