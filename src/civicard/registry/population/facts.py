"""Need-related facts of the original people: health, employment, incomes, property, benefits."""

from __future__ import annotations

from typing import Any

import numpy as np

from civicard.registry.population.arrays import Dates, Facts, Ints, money, probabilities
from civicard.registry.population.vocabulary import (
    BENEFITS,
    CHRONIC_ADULT_P,
    CHRONIC_CHILD_P,
    DISABILITY_P,
    MINIMUM_WAGE_MINOR,
    PROPERTIES,
    REF,
    SOURCES,
    STATUSES,
)
from civicard.registry.population.world import World, start_dates

_AGE_BANDS = np.array([0, 15, 18, 25, 60, 65])
_STATUS_P = np.array(
    [  # one row an age band, one column a status (order of STATUSES)
        [0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0.03, 0, 0.10, 0.05, 0, 0.75, 0.05, 0.02, 0],
        [0.20, 0.02, 0.25, 0.15, 0, 0.28, 0.08, 0.02, 0],
        [0.24, 0.09, 0.30, 0.12, 0.01, 0.02, 0.17, 0.05, 0],
        [0.12, 0.07, 0.20, 0.05, 0.33, 0, 0.16, 0.07, 0],
        [0.02, 0.03, 0.10, 0, 0.68, 0, 0.10, 0.07, 0],
    ]
)


def need_facts(world: World, people: dict[str, Any], n: int) -> dict[str, Facts]:
    """Need-related facts of the original people: health, work, income, property, benefits."""
    health = _health(world, people["age"], people["birth"])
    employment = _employment(world, people, health)
    incomes = _incomes(world, people, employment["status"])
    return {
        "health_needs": health,
        "employment": employment,
        "incomes": incomes,
        "properties": _properties(world, n),
        "benefits_received": _benefits(world, people, employment["status"], incomes),
    }


def _health(world: World, age: Ints, birth: Dates) -> Facts:
    """Disabilities (~4 %, degree 33-100) and chronic conditions (~8 %), both rising with age."""
    rng, size = world.rng, age.size
    disabled = np.flatnonzero(rng.random(size) < 0.013 + 0.0008 * age)
    chronic = np.flatnonzero(rng.random(size) < 0.02 + 0.3 * (age / 90.0) ** 2)
    codes = [*DISABILITY_P, *CHRONIC_ADULT_P]
    child_code = np.array([codes.index(code) for code in CHRONIC_CHILD_P])
    adult_p, child_p = probabilities(CHRONIC_ADULT_P.values()), probabilities(CHRONIC_CHILD_P.values())
    condition = np.where(
        age[chronic] >= 18,
        len(DISABILITY_P) + rng.choice(len(adult_p), chronic.size, p=adult_p),
        child_code[rng.choice(len(child_p), chronic.size, p=child_p)],
    )
    elder = chronic[(age[chronic] >= 50) & (rng.random(chronic.size) < 0.2)]
    second = len(DISABILITY_P) + rng.choice(len(adult_p), elder.size, p=adult_p)
    keep = second != condition[np.searchsorted(chronic, elder)]
    owner = np.concatenate([disabled, chronic, elder[keep]])
    days = (world.today - birth[owner]).astype(np.int64)
    return {
        "owner": owner,
        "kind": np.repeat([0, 1], [disabled.size, owner.size - disabled.size]),
        "code": np.concatenate(
            [
                rng.choice(len(DISABILITY_P), disabled.size, p=probabilities(DISABILITY_P.values())),
                condition,
                second[keep],
            ]
        ),
        "degree": np.concatenate(
            [33 + np.round(67 * rng.beta(1.3, 2.5, disabled.size)), np.full(owner.size - disabled.size, -1)]
        ).astype(np.int64),
        "since": birth[owner] + (rng.random(owner.size) * days).astype("timedelta64[D]"),
    }


def _employment(world: World, people: dict[str, Any], health: Facts) -> Facts:
    """One status a person, drawn by age band; a severe disability often means unable to work."""
    rng, age, birth = world.rng, people["age"], people["birth"]
    band = np.searchsorted(_AGE_BANDS, age, side="right") - 1
    status = np.empty(age.size, dtype=np.int64)
    for b, p in enumerate(_STATUS_P):
        members = band == b
        status[members] = rng.choice(len(STATUSES), int(members.sum()), p=p / p.sum())
    severe = health["owner"][(health["kind"] == 0) & (health["degree"] >= 65)]
    severe = severe[
        (age[severe] >= 18) & (status[severe] != STATUSES.index("retired")) & (rng.random(severe.size) < 0.6)
    ]
    status[severe] = STATUSES.index("unable_to_work")
    since = np.where(status == STATUSES.index("child"), birth, start_dates(world, birth, 15, 3650))
    return {"owner": np.arange(age.size), "status": status, "since": since}


def _incomes(world: World, people: dict[str, Any], status: Ints) -> Facts:
    """Monthly incomes by source: lognormal around the minimum wage, many informal, some ended
    (a wage of 0 marks a lost job), pensions for most retired people."""
    rng, age, birth, wage = world.rng, people["age"], people["birth"], MINIMUM_WAGE_MINOR
    size, u = age.size, rng.random(age.size)
    is_status = {name: status == i for i, name in enumerate(STATUSES)}
    pensioned = (is_status["retired"] & (u < 0.6)) | (~is_status["retired"] & (age >= 65) & (u < 0.08))
    # source: who has it, median and sigma of the amount (0 median: an ended income)
    plan = [
        ("wages", is_status["employed"], 1.15 * wage, 0.4),
        ("self_employment", is_status["self_employed"], 0.8 * wage, 0.8),
        ("informal_work", is_status["informal"], 0.45 * wage, 0.7),
        ("wages", is_status["unemployed"] & (u < 0.4), 0.0, 0.0),
        ("pension", pensioned, 0.9 * wage, 0.5),
        ("remittances", (people["role"] == REF) & (rng.random(size) < 0.07), 0.35 * wage, 0.6),
        ("rent", (age >= 40) & (rng.random(size) < 0.02), 0.5 * wage, 0.8),
        ("other", (age >= 18) & (rng.random(size) < 0.03), 0.15 * wage, 0.8),
    ]
    owners, sources, amounts = [], [], []
    for source, holders, median, sigma in plan:
        owner = np.flatnonzero(holders)
        owners.append(owner)
        sources.append(np.full(owner.size, SOURCES.index(source)))
        amounts.append(money(rng, median, sigma, owner.size) if median else np.zeros(owner.size, dtype=np.int64))
    owner = np.concatenate(owners)
    return {
        "owner": owner,
        "source": np.concatenate(sources),
        "amount": np.concatenate(amounts),
        "since": start_dates(world, birth[owner], 15, 3650),
    }


def _properties(world: World, n: int) -> Facts:
    """Assets of households: a dwelling for about a third, land, vehicles, businesses rarer."""
    rng, parts = world.rng, []
    for kind, (share, median, sigma) in enumerate(PROPERTIES.values()):
        owner = np.flatnonzero(rng.random(n) < share)
        parts.append((owner, np.full(owner.size, kind), money(rng, median, sigma, owner.size)))
    owner = np.concatenate([p[0] for p in parts])
    since = world.today - rng.integers(30, 25 * 365, owner.size).astype("timedelta64[D]")
    return {
        "owner": owner,
        "kind": np.concatenate([p[1] for p in parts]),
        "amount": np.concatenate([p[2] for p in parts]),
        "since": since,
    }


def _benefits(world: World, people: dict[str, Any], status: Ints, incomes: Facts) -> Facts:
    """Benefits already received: pensions, unemployment, housing, school meals, the program."""
    rng, age, size = world.rng, people["age"], people["age"].size
    pension = incomes["source"] == SOURCES.index("pension")
    has_pension = np.zeros(size, dtype=bool)
    has_pension[incomes["owner"][pension]] = True
    contributory = pension & (rng.random(pension.size) < 0.3)
    reference = people["role"] == REF
    plan = [
        ("social_pension", (age >= 65) & ~has_pension & (rng.random(size) < 0.35), [10_000, 12_000, 15_000]),
        (
            "unemployment_benefit",
            (status == STATUSES.index("unemployed")) & (rng.random(size) < 0.15),
            [24_000, 28_800, 33_600],
        ),
        ("housing_subsidy", reference & (rng.random(size) < 0.05), [8_000, 10_000, 15_000]),
        ("school_meals", (age >= 5) & (age <= 17) & (rng.random(size) < 0.35), [2_500]),
        ("civicard_program", reference & (rng.random(size) < 0.04), [15_000, 20_000, 25_000]),
    ]
    owners = [incomes["owner"][contributory]]
    kinds = [np.zeros(owners[0].size, dtype=np.int64)]
    amounts = [incomes["amount"][contributory]]
    for benefit, holders, levels in plan:
        owner = np.flatnonzero(holders)
        owners.append(owner)
        kinds.append(np.full(owner.size, BENEFITS.index(benefit)))
        amounts.append(rng.choice(np.array(levels, dtype=np.int64), owner.size))
    owner = np.concatenate(owners)
    return {
        "owner": owner,
        "benefit": np.concatenate(kinds),
        "amount": np.concatenate(amounts),
        "since": start_dates(world, people["birth"][owner], 0, 1800),
    }
