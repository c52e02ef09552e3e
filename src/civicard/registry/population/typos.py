"""The errors made when a person enrolls again: misspelt names, misdated births, mistyped numbers."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pyarrow.compute as pc

from civicard.registry.population.arrays import Dates, Floats, Ints, choose, pick
from civicard.registry.population.names import given_names, strip_accents
from civicard.registry.population.world import World

_NICKNAMES = {
    "José": "Pepe",
    "Francisco": "Pancho",
    "Jesús": "Chucho",
    "Ignacio": "Nacho",
    "Manuel": "Manolo",
    "Dolores": "Lola",
    "Rosario": "Charo",
    "Concepción": "Concha",
    "Enrique": "Quique",
    "Eduardo": "Lalo",
    "Antonio": "Toño",
    "Guillermo": "Memo",
    "Alberto": "Beto",
    "Roberto": "Beto",
    "Luis": "Lucho",
    "Mercedes": "Meche",
    "Isabel": "Chabela",
    "Alejandro": "Alejo",
    "Alejandra": "Ale",
    "Rafael": "Rafa",
    "Fernando": "Nando",
    "Consuelo": "Chelo",
    "Santiago": "Santi",
    "Juan": "Juancho",
    "Valentina": "Vale",
    "Gabriela": "Gaby",
    "Patricia": "Paty",
    "Teresa": "Tere",
    "Daniel": "Dani",
    "Cristina": "Cris",
    "Margarita": "Marga",
    "Natalia": "Naty",
    "Sebastián": "Sebas",
    "Carlos": "Carlitos",
    "Guadalupe": "Lupe",
}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def misspelt(world: World, people: dict[str, Any], source: Ints) -> dict[str, list[str]]:
    """Names as written at the second enrollment: 30 % given-name errors (typo, accents,
    nickname, initial, dropped middle name), 22 % surname errors (typo, dropped second
    surname, swapped, accents)."""
    pools, n = world.pools, source.size
    given = given_names(pools, people["given"][source], people["middle"][source]).to_pylist()
    first = pick(pools.surnames, people["first"][source]).to_pylist()
    second = pc.fill_null(pick(pools.surnames, people["second"][source]), "").to_pylist()
    u = world.rng.random((n, 10))
    given_kind = choose(u[:, 1], [0.35, 0.20, 0.15, 0.15, 0.15])
    surname_kind = choose(u[:, 3], [0.30, 0.15, 0.25, 0.15, 0.15])
    for i in np.flatnonzero(u[:, 0] < 0.30):
        given[i] = _misspell_given(given[i], int(given_kind[i]), u[i, 4:7])
    for i in np.flatnonzero(u[:, 2] < 0.22):
        first[i], second[i] = _misspell_surnames(first[i], second[i], int(surname_kind[i]), u[i, 7:10])
    return {"given": given, "first": first, "second": second}


def typo(text: str, u: Floats) -> str:
    """One keyboard slip, always a change: substitution, deletion, transposition or doubling."""
    if len(text) < 2:
        return text + _LETTERS[int(u[2] * 26)]
    at, op = int(u[1] * (len(text) - 1)), int(u[0] * 4)
    if op == 1:
        return text[:at] + text[at + 1 :]
    if op == 2 and text[at] != text[at + 1]:
        return text[:at] + text[at + 1] + text[at] + text[at + 2 :]
    if op == 3:
        return text[:at] + text[at] + text[at:]
    letter = _LETTERS[int(u[2] * 26)]
    if letter == text[at].lower():
        letter = _LETTERS[(int(u[2] * 26) + 1) % 26]
    return text[:at] + (letter.upper() if text[at].isupper() else letter) + text[at + 1 :]


def _misspell_given(names: str, kind: int, u: Floats) -> str:
    words = names.split()
    if kind == 1:
        wrong = strip_accents(names)
    elif kind == 2:
        wrong = _NICKNAMES.get(words[0], names)
    elif kind == 3:  # "José" -> "J.", "María José" -> "María J."
        wrong = " ".join([*words[:-1], words[-1][0] + "."])
    elif kind == 4:
        wrong = words[0]
    else:
        wrong = names
    return wrong if wrong != names else typo(names, u)


def _misspell_surnames(first: str, second: str, kind: int, u: Floats) -> tuple[str, str]:
    if kind == 1 and second:
        wrong = (first, typo(second, u))
    elif kind == 2:
        wrong = (first, "")
    elif kind == 3:
        wrong = (second, first)
    elif kind == 4:
        wrong = (strip_accents(first), strip_accents(second))
    else:
        wrong = (first, second)
    return wrong if wrong != (first, second) and wrong[0] else (typo(first, u), second)


def misdated(world: World, birth: Dates) -> Dates:
    """13 % of birth dates recorded wrongly: a digit typo, day and month swapped, or a year off."""
    u = world.rng.random((birth.size, 4))
    kind = choose(u[:, 1], [0.4, 0.3, 0.3])
    latest = date.fromisoformat(str(world.today))
    for i in np.flatnonzero(u[:, 0] < 0.13):
        birth[i] = np.datetime64(_misdate(birth[i].item(), int(kind[i]), u[i, 2:], latest), "D")
    return birth


def _misdate(born: date, kind: int, u: Floats, latest: date) -> date:
    wrong: date | None = None
    if kind == 0:
        text = born.isoformat()
        at = (3, 8, 9)[int(u[0] * 3)]  # the year's last digit or the day's
        digit = str((int(text[at]) + 1 + int(u[1] * 9)) % 10)
        try:
            wrong = date.fromisoformat(text[:at] + digit + text[at + 1 :])
        except ValueError:
            wrong = None
    elif kind == 1 and born.day <= 12 and born.day != born.month:
        wrong = date(born.year, born.day, born.month)
    if wrong is None or wrong > latest:
        year = born.year + (1 if u[1] < 0.5 and born.year < latest.year - 1 else -1)
        wrong = born.replace(year=year, day=min(born.day, 28) if born.month == 2 else born.day)
    return wrong


def misnumbered(world: World, number: Ints) -> Ints:
    """35 % of document numbers not given again; 4 % of the rest mistyped by one digit (never
    into a number issued to someone else)."""
    rng = world.rng
    number[rng.random(number.size) < 0.35] = 0
    mistyped = np.flatnonzero((number > 0) & (rng.random(number.size) < 0.04))
    u = rng.random((mistyped.size, 3))
    for i, row in zip(mistyped, u, strict=True):
        text = str(number[i])
        at = 1 + int(row[0] * (len(text) - 2))
        if row[1] < 0.5 and text[at] != text[at + 1]:
            text = text[:at] + text[at + 1] + text[at] + text[at + 2 :]
        else:
            text = text[:at] + str((int(text[at]) + 1 + int(row[2] * 9)) % 10) + text[at + 1 :]
        number[i] = int(text)
    wrong = number[mistyped]
    order = np.argsort(wrong, kind="stable")
    repeated = np.zeros(wrong.size, dtype=bool)
    repeated[order[1:]] = wrong[order[1:]] == wrong[order[:-1]]
    clash = world.issued.taken(wrong) | repeated
    number[mistyped[clash]] = 0
    world.issued.add(wrong[~clash])
    return number
