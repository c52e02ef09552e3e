"""Synthetic population of a Spanish-speaking country, with seeded duplicates, written as Parquet.

Everything random comes from one seeded numpy Generator, so a spec gives byte-identical files.
Faker is only read once for its name lists; rows are drawn with numpy and built with pyarrow.
"""

from civicard.registry.population.codes import Codes, load_codes
from civicard.registry.population.tables import SCHEMAS
from civicard.registry.population.typos import typo as _typo
from civicard.registry.population.vocabulary import (
    BENEFITS,
    CHILD,
    CHRONIC_ADULT_P,
    CHRONIC_CHILD_P,
    DISABILITY_P,
    GRANDCHILD,
    GRANDPARENT,
    HEALTH_KINDS,
    MINIMUM_WAGE_MINOR,
    NON_RELATIVE,
    OTHER,
    PARENT,
    PROPERTIES,
    REF,
    ROLES,
    SEXES,
    SIBLING,
    SOURCES,
    SPOUSE,
    STATUSES,
)
from civicard.registry.population.writer import PopulationSpec, PopulationSummary, generate_population

__all__ = [
    "BENEFITS",
    "CHILD",
    "CHRONIC_ADULT_P",
    "CHRONIC_CHILD_P",
    "DISABILITY_P",
    "GRANDCHILD",
    "GRANDPARENT",
    "HEALTH_KINDS",
    "MINIMUM_WAGE_MINOR",
    "NON_RELATIVE",
    "OTHER",
    "PARENT",
    "PROPERTIES",
    "REF",
    "ROLES",
    "SCHEMAS",
    "SEXES",
    "SIBLING",
    "SOURCES",
    "SPOUSE",
    "STATUSES",
    "Codes",
    "PopulationSpec",
    "PopulationSummary",
    "_typo",
    "generate_population",
    "load_codes",
]
