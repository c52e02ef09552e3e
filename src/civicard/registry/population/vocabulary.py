"""The codes the generator writes (each must be in codes.yaml) and the shares it draws them with."""

from __future__ import annotations

# Relationship to the household's reference person; the index is the role number used below.
ROLES = (
    "reference",
    "spouse",
    "child",
    "parent",
    "sibling",
    "grandchild",
    "grandparent",
    "other_relative",
    "non_relative",
)
REF, SPOUSE, CHILD, PARENT, SIBLING, GRANDCHILD, GRANDPARENT, OTHER, NON_RELATIVE = range(9)

SEXES = ("F", "M", "X")
STATUSES = (
    "employed",
    "self_employed",
    "informal",
    "unemployed",
    "retired",
    "student",
    "homemaker",
    "unable_to_work",
    "child",
)
SOURCES = ("wages", "self_employment", "informal_work", "pension", "rent", "remittances", "other")
MINIMUM_WAGE_MINOR = 48_000  # 480.00 a month, the scale every amount below is drawn against
# Property kind: share of households holding it, median value (minor units), lognormal sigma.
PROPERTIES = {
    "dwelling": (0.38, 4_000_000, 0.6),
    "land": (0.07, 1_500_000, 0.8),
    "vehicle": (0.09, 900_000, 0.6),
    "business": (0.04, 600_000, 0.9),
    "savings": (0.12, 80_000, 1.2),
}
HEALTH_KINDS = ("disability", "chronic")
DISABILITY_P = {"DIS-MOB": 0.35, "DIS-VIS": 0.15, "DIS-HEA": 0.12, "DIS-COG": 0.15, "DIS-SLF": 0.10, "DIS-COM": 0.13}
CHRONIC_ADULT_P = {
    "E10": 0.03,
    "E11": 0.20,
    "I10": 0.32,
    "I50": 0.07,
    "J44": 0.08,
    "J45": 0.08,
    "N18": 0.06,
    "B20": 0.04,
    "G40": 0.06,
    "F20": 0.06,
}
CHRONIC_CHILD_P = {"E10": 0.20, "J45": 0.50, "G40": 0.20, "B20": 0.05, "F20": 0.05}
BENEFITS = (
    "contributory_pension",
    "social_pension",
    "unemployment_benefit",
    "housing_subsidy",
    "school_meals",
    "civicard_program",
)
# Birth places abroad, after the domestic municipalities (birth-place index m + i).
FOREIGN_BIRTH = {
    "Venezuela": 0.45,
    "Colombia": 0.15,
    "Perú": 0.10,
    "Ecuador": 0.10,
    "Nicaragua": 0.08,
    "Haití": 0.05,
    "Bolivia": 0.04,
    "España": 0.03,
}
