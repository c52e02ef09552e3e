"""The places and vocabularies of the registry's codes.yaml, as the generator reads them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from civicard.registry.population.vocabulary import (
    BENEFITS,
    CHRONIC_ADULT_P,
    CHRONIC_CHILD_P,
    DISABILITY_P,
    HEALTH_KINDS,
    PROPERTIES,
    ROLES,
    SEXES,
    SOURCES,
    STATUSES,
)

# codes.yaml lives in the registry package, one level above this one.
CODES_YAML = Path(__file__).parent.parent / "codes.yaml"


@dataclass(frozen=True)
class Codes:
    """The part of codes.yaml the generator draws places from, in file order."""

    vocabularies: Mapping[str, tuple[str, ...]]
    regions: tuple[str, ...]
    municipalities: tuple[str, ...]
    municipality_region: tuple[int, ...]
    postcode_prefixes: tuple[str, ...]


def load_codes(path: Path | None = None) -> Codes:
    """Read the registry's codes.yaml unless a path is given."""
    raw = yaml.safe_load((path or CODES_YAML).read_text("utf-8"))
    regions = raw["regions"]
    municipalities = [(code, r) for r, region in enumerate(regions.values()) for code in region["municipalities"]]
    return Codes(
        vocabularies={name: tuple(values) for name, values in raw.items() if name != "regions"},
        regions=tuple(regions),
        municipalities=tuple(code for code, _ in municipalities),
        municipality_region=tuple(r for _, r in municipalities),
        postcode_prefixes=tuple(str(region["postcode_prefix"]) for region in regions.values()),
    )


def check_vocabularies(codes: Codes) -> None:
    """Refuse to run if a code the generator writes is not in codes.yaml."""
    used = {
        "sexes": SEXES,
        "relationships": ROLES,
        "employment_statuses": STATUSES,
        "income_sources": SOURCES,
        "property_kinds": tuple(PROPERTIES),
        "health_kinds": HEALTH_KINDS,
        "disability_codes": tuple(DISABILITY_P),
        "chronic_codes": tuple(CHRONIC_ADULT_P) + tuple(CHRONIC_CHILD_P),
        "benefit_codes": BENEFITS,
    }
    for vocabulary, values in used.items():
        missing = set(values) - set(codes.vocabularies.get(vocabulary, ()))
        if missing:
            raise ValueError(f"codes.yaml {vocabulary} lacks {sorted(missing)}")
