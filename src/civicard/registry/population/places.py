"""Dwellings: municipality, street address, postcode and the household's phone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from civicard.registry.population.arrays import Bools, Ints, as_text, join_text, mobiles, pick, probabilities
from civicard.registry.population.world import World

# Grid streets as in Colombia ("Carrera 45 # 12-30"), and streets named after people.
_GRID_STREETS = {"Calle": 0.4, "Carrera": 0.4, "Diagonal": 0.1, "Transversal": 0.1}
_NAMED_STREETS = ("Calle", "Avenida", "Pasaje", "Callejón", "Boulevard", "Privada")


def places(world: World, n: int) -> dict[str, Any]:
    """Dwellings: municipality (the first of each region weighted as its seat), street address,
    postcode (region prefix, municipality digit, two digits) and the household phone."""
    rng, codes = world.rng, world.codes
    region_of = np.array(codes.municipality_region)
    seat = np.r_[True, region_of[1:] != region_of[:-1]]
    weight = np.where(seat, 2.0, 1.0)
    municipality = rng.choice(len(region_of), n, p=weight / weight.sum())
    return dwellings_in(world, municipality, rng.random(n) < 0.75)


def dwellings_in(world: World, municipality: Ints, mobile: Bools) -> dict[str, Any]:
    """A dwelling in each given municipality: a grid, named-street or block address, a postcode,
    and a phone (a mobile where asked, otherwise a landline)."""
    rng, codes, pools, n = world.rng, world.codes, world.pools, municipality.size
    region = np.array(codes.municipality_region)[municipality]
    first_of_region = np.searchsorted(codes.municipality_region, region)
    grid = join_text(
        pick(tuple(_GRID_STREETS), rng.choice(4, n, p=probabilities(_GRID_STREETS.values()))),
        " ",
        as_text(rng.integers(1, 200, n)),
        pick(["", "A", "B", "C"], rng.choice(4, n, p=[0.85, 0.07, 0.05, 0.03])),
        " # ",
        as_text(rng.integers(1, 150, n)),
        "-",
        as_text(rng.integers(1, 99, n)),
    )
    street = rng.choice(len(pools.surnames), n, p=pools.surname_p)
    named = join_text(
        pick(_NAMED_STREETS, rng.integers(0, len(_NAMED_STREETS), n)),
        " ",
        pick(pools.surnames, street),
        " ",
        as_text(rng.integers(1, 3000, n)),
    )
    block = join_text("Manzana ", as_text(rng.integers(1, 80, n)), " Casa ", as_text(rng.integers(1, 40, n)))
    style = rng.choice(3, n, p=[0.5, 0.35, 0.15])
    address = pc.if_else(pa.array(style == 0), grid, pc.if_else(pa.array(style == 1), named, block))
    digit = (municipality - first_of_region + 1) % 10
    postcode = join_text(
        pick(codes.postcode_prefixes, region), as_text(digit), pc.utf8_lpad(as_text(rng.integers(0, 100, n)), 2, "0")
    )
    phone = np.where(mobile, mobiles(rng, n), 6_000_000_000 + rng.integers(0, 10**9, n))
    return {"municipality": municipality, "region": region, "address": address, "postcode": postcode, "phone": phone}
