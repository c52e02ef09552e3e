"""generate_population: its spec and summary, and the chunk-by-chunk writing of the Parquet files."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from civicard.registry.population.arrays import mobiles
from civicard.registry.population.codes import check_vocabularies, load_codes
from civicard.registry.population.duplicates import second_enrollments
from civicard.registry.population.facts import need_facts
from civicard.registry.population.households import household_members
from civicard.registry.population.names import name_pools
from civicard.registry.population.places import places
from civicard.registry.population.tables import SCHEMAS, chunk_tables
from civicard.registry.population.world import Issued, World


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

    def __str__(self) -> str:
        return f"{self.households:,} households, {self.persons:,} persons ({self.duplicates:,} enrolled twice)"


def generate_population(
    spec: PopulationSpec, out_dir: Path, progress: Callable[[int], None] | None = None
) -> PopulationSummary:
    """Write the eight Parquet files of a synthetic registry into out_dir, chunk by chunk.

    `progress` is called after each chunk with the number of households just written (original
    households; the new single-person households of moved duplicates are extra).
    """
    if spec.households < 1 or spec.chunk_households < 1:
        raise ValueError("households and chunk_households must be at least 1")
    if not 0 <= spec.duplicate_share < 1:
        raise ValueError("duplicate_share must be in [0, 1)")
    codes = load_codes()
    check_vocabularies(codes)
    rng = np.random.default_rng(spec.seed)
    world = World(rng, codes, name_pools(), np.datetime64(spec.reference_date, "D"), Issued())
    counts = dict.fromkeys([*SCHEMAS, "duplicates"], 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        writers = {
            name: stack.enter_context(pq.ParquetWriter(out_dir / f"{name}.parquet", schema, compression="zstd"))
            for name, schema in SCHEMAS.items()
        }
        for start in range(0, spec.households, spec.chunk_households):
            n = min(spec.chunk_households, spec.households - start)
            for name, rows in _write_chunk(world, writers, n, spec.duplicate_share).items():
                counts[name] += rows
            if progress is not None:
                progress(n)
    return PopulationSummary(**counts)


def _write_chunk(
    world: World, writers: Mapping[str, pq.ParquetWriter], n: int, duplicate_share: float
) -> dict[str, int]:
    """Generate and write one chunk; its tables are freed before the next one is built."""
    tables, duplicates = _chunk(world, n, duplicate_share)
    for name, table in tables.items():
        writers[name].write_table(table)
    return {"duplicates": duplicates} | {name: t.num_rows for name, t in tables.items()}


def _chunk(world: World, n: int, duplicate_share: float) -> tuple[dict[str, pa.Table], int]:
    """One chunk of households with their people, facts and duplicates, as tables."""
    homes = places(world, n)
    people = household_members(world, homes["municipality"])
    people["phone"] = np.where(people["own_phone"], mobiles(world.rng, people["hh"].size), homes["phone"][people["hh"]])
    facts = need_facts(world, people, n)
    dup = second_enrollments(world, people, homes, duplicate_share)
    return chunk_tables(world, people, homes, facts, dup), dup["source"].size
