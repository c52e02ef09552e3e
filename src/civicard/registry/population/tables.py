"""A chunk's rows as Arrow tables, in the column order and types of the eight Parquet files."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from civicard.registry.population.arrays import Facts, Ints, as_text, hex_ids, pick
from civicard.registry.population.duplicates import with_duplicates
from civicard.registry.population.names import given_names
from civicard.registry.population.vocabulary import (
    BENEFITS,
    CHRONIC_ADULT_P,
    DISABILITY_P,
    FOREIGN_BIRTH,
    HEALTH_KINDS,
    PROPERTIES,
    ROLES,
    SEXES,
    SOURCES,
    STATUSES,
)
from civicard.registry.population.world import World

SCHEMAS = {
    "households": pa.schema(
        [
            pa.field(name, pa.string(), nullable=False)
            for name in ("household_id", "region", "municipality", "address_line", "postcode")
        ]
    ),
    "persons": pa.schema(
        [
            pa.field(name, pa.string(), nullable=False)
            for name in ("person_id", "truth_person_id", "given_names", "first_surname", "second_surname")
        ]
        + [pa.field("birth_date", pa.date32(), nullable=False)]
        + [
            pa.field(name, pa.string(), nullable=False)
            for name in ("birth_place", "sex", "address_line", "municipality", "region", "postcode", "phone")
        ]
        + [pa.field("national_id", pa.string()), pa.field("photo_ref", pa.string())]
    ),
    "memberships": pa.schema(
        [
            pa.field("household_id", pa.string(), False),
            pa.field("person_id", pa.string(), False),
            pa.field("relationship", pa.string(), False),
            pa.field("valid_from", pa.date32(), False),
        ]
    ),
    "employment": pa.schema(
        [
            pa.field("person_id", pa.string(), False),
            pa.field("status", pa.string(), False),
            pa.field("valid_from", pa.date32(), False),
        ]
    ),
    "incomes": pa.schema(
        [
            pa.field("person_id", pa.string(), False),
            pa.field("source", pa.string(), False),
            pa.field("monthly_amount_minor", pa.int64(), False),
            pa.field("valid_from", pa.date32(), False),
        ]
    ),
    "properties": pa.schema(
        [
            pa.field("household_id", pa.string(), False),
            pa.field("kind", pa.string(), False),
            pa.field("value_minor", pa.int64(), False),
            pa.field("valid_from", pa.date32(), False),
        ]
    ),
    "health_needs": pa.schema(
        [
            pa.field("person_id", pa.string(), False),
            pa.field("kind", pa.string(), False),
            pa.field("code", pa.string(), False),
            pa.field("degree_percent", pa.int32()),
            pa.field("valid_from", pa.date32(), False),
        ]
    ),
    "benefits_received": pa.schema(
        [
            pa.field("person_id", pa.string(), False),
            pa.field("benefit", pa.string(), False),
            pa.field("monthly_amount_minor", pa.int64(), False),
            pa.field("valid_from", pa.date32(), False),
        ]
    ),
}


def _stacked(homes: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    return {
        key: pa.concat_arrays([value, more[key]]) if isinstance(value, pa.Array) else np.concatenate([value, more[key]])
        for key, value in homes.items()
    }


def chunk_tables(
    world: World, people: dict[str, Any], homes: dict[str, Any], facts: dict[str, Facts], dup: dict[str, Any]
) -> dict[str, pa.Table]:
    """The chunk's rows as Arrow tables."""
    rng, codes = world.rng, world.codes
    size, n_dup = people["hh"].size, dup["source"].size
    homes = _stacked(homes, dup["homes"])
    household_ids = hex_ids(rng, homes["municipality"].size)
    person_ids = hex_ids(rng, size + n_dup)
    truth_ids = hex_ids(rng, size)
    facts = with_duplicates(rng, facts, dup["source"], size)
    hh = pa.array(np.r_[people["hh"], dup["hh"]])

    def of_person(rows: Facts) -> pa.Array:
        return person_ids.take(pa.array(rows["owner"]))

    persons = _persons_table(world, people, dup, homes, person_ids, truth_ids, rng.permutation(size + n_dup))
    health, income, benefit = (facts["health_needs"], facts["incomes"], facts["benefits_received"])
    return {
        "households": pa.Table.from_arrays(
            [
                household_ids,
                pick(codes.regions, homes["region"]),
                pick(codes.municipalities, homes["municipality"]),
                homes["address"],
                homes["postcode"],
            ],
            schema=SCHEMAS["households"],
        ),
        "persons": persons,
        "memberships": pa.Table.from_arrays(
            [
                household_ids.take(hh),
                person_ids,
                pick(ROLES, np.r_[people["role"], dup["role"]]),
                pa.array(np.r_[people["member_since"], dup["since"]], pa.date32()),
            ],
            schema=SCHEMAS["memberships"],
        ),
        "employment": pa.Table.from_arrays(
            [
                of_person(facts["employment"]),
                pick(STATUSES, facts["employment"]["status"]),
                pa.array(facts["employment"]["since"], pa.date32()),
            ],
            schema=SCHEMAS["employment"],
        ),
        "incomes": pa.Table.from_arrays(
            [
                of_person(income),
                pick(SOURCES, income["source"]),
                pa.array(income["amount"]),
                pa.array(income["since"], pa.date32()),
            ],
            schema=SCHEMAS["incomes"],
        ),
        "properties": pa.Table.from_arrays(
            [
                household_ids.take(pa.array(facts["properties"]["owner"])),
                pick(tuple(PROPERTIES), facts["properties"]["kind"]),
                pa.array(facts["properties"]["amount"]),
                pa.array(facts["properties"]["since"], pa.date32()),
            ],
            schema=SCHEMAS["properties"],
        ),
        "health_needs": pa.Table.from_arrays(
            [
                of_person(health),
                pick(HEALTH_KINDS, health["kind"]),
                pick([*DISABILITY_P, *CHRONIC_ADULT_P], health["code"]),
                pa.array(health["degree"], pa.int32(), mask=health["degree"] < 0),
                pa.array(health["since"], pa.date32()),
            ],
            schema=SCHEMAS["health_needs"],
        ),
        "benefits_received": pa.Table.from_arrays(
            [
                of_person(benefit),
                pick(BENEFITS, benefit["benefit"]),
                pa.array(benefit["amount"]),
                pa.array(benefit["since"], pa.date32()),
            ],
            schema=SCHEMAS["benefits_received"],
        ),
    }


def _persons_table(
    world: World,
    people: dict[str, Any],
    dup: dict[str, Any],
    homes: dict[str, Any],
    person_ids: pa.Array,
    truth_ids: pa.Array,
    order: Ints,
) -> pa.Table:
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
    return pa.Table.from_arrays(
        [
            person_ids.take(pa.array(order)),
            truth_ids.take(pa.array(truth)),
            names(given_names(pools, people["given"], people["middle"]), dup["given"]),
            names(pick(pools.surnames, people["first"]), dup["first"]),
            names(pc.fill_null(pick(pools.surnames, people["second"]), ""), dup["second"]),
            pa.array(both("birth"), pa.date32()),
            pick([*codes.municipalities, *FOREIGN_BIRTH], both("place")),
            pick(SEXES, both("sex")),
            homes["address"].take(hh),
            pick(codes.municipalities, homes["municipality"]).take(hh),
            pick(codes.regions, homes["region"]).take(hh),
            homes["postcode"].take(hh),
            as_text(both("phone")),
            pc.if_else(pa.array(national_id > 0), as_text(national_id), pa.scalar(None, pa.string())),
            pa.nulls(order.size, pa.string()),
        ],
        schema=SCHEMAS["persons"],
    )
