"""A registry household as rule inputs (inputs.yaml): members' ages, incomes, needs, property.

This is the per-household projection used by explanations and the API; the bulk projection of
a cycle must compute the same values (a parity test holds the two together).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from civicard.programs.decisions import HouseholdFacts
from civicard.programs.evaluate import Value
from civicard.programs.inputs import rule_inputs
from civicard.registry.model import FactVersion, HouseholdRecord

WORKING = ("employed", "self_employed", "informal")
PENSIONS = ("contributory_pension", "social_pension")


def facts_of_household(record: HouseholdRecord, period_start: date) -> HouseholdFacts:
    """Rule inputs of a household as read through the enforcement point (`lookup.get_household`),
    for the period starting on `period_start`. Members whose record is not readable are left out."""
    by_person: dict[str, list[FactVersion]] = {}
    household_facts: list[FactVersion] = []
    member_ids = {m.person_id for m, _ in record.members}
    for fact in record.facts:
        if fact.subject_id in member_ids:
            by_person.setdefault(fact.subject_id, []).append(fact)
        else:
            household_facts.append(fact)
    members = []
    for membership, person in record.members:
        if person is None or person.record_status in ("merged", "deceased"):
            continue
        members.append(_member(person.age_on(period_start), by_person.get(membership.person_id, [])))
    values: dict[str, Value] = {
        "member_count": float(len(members)),
        "household_income": float(sum(float(m["income"] or 0) for m in members)),
        "benefits_income": float(
            sum(_amounts(f for fs in by_person.values() for f in fs if f.kind == "benefits_received"))
        ),
        "property_value": float(sum(f.values["value_minor"] for f in household_facts if f.kind == "properties")),
        "savings": float(sum(f.values["value_minor"] for f in _properties(household_facts, "savings"))),
        "owns_dwelling": bool(_properties(household_facts, "dwelling")),
        "owns_vehicle": bool(_properties(household_facts, "vehicle")),
    }
    return HouseholdFacts(values, members)


def _member(age: int, facts: list[FactVersion]) -> dict[str, Value]:
    inputs = rule_inputs()
    member: dict[str, Value] = {name: False if f.kind == "boolean" else 0.0 for name, f in inputs.member.items()}
    statuses = {f.values.get("status") for f in facts if f.kind == "employment"}
    health = [f for f in facts if f.kind == "health_needs" and f.values.get("present", True)]
    member.update(
        age=float(age),
        income=float(sum(_amounts(f for f in facts if f.kind == "incomes"))),
        employed=bool(statuses & set(WORKING)),
        unemployed="unemployed" in statuses,
        retired="retired" in statuses,
        student="student" in statuses,
        unable_to_work="unable_to_work" in statuses,
        receives_pension=any(f.kind == "benefits_received" and f.key.get("benefit") in PENSIONS for f in facts),
        disability_degree=float(
            max((f.values.get("degree_percent") or 0 for f in health if f.key.get("kind") == "disability"), default=0)
        ),
        chronic_illness=any(f.key.get("kind") == "chronic" for f in health),
    )
    for f in health:
        if f.key.get("kind") == "chronic":
            name = f"chronic_{str(f.key.get('code', '')).lower()}"
            if name in inputs.member:
                member[name] = True
    return member


def _amounts(facts: Iterable[FactVersion]) -> list[float]:
    return [float(f.values.get("monthly_amount_minor") or 0) for f in facts]


def _properties(facts: list[FactVersion], kind: str) -> list[FactVersion]:
    return [f for f in facts if f.kind == "properties" and f.key.get("kind") == kind]
