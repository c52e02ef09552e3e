"""Public statistics of decisions: households eligible and entitled, and quantities granted per
item, by program and region for the latest period with decisions; small cells suppressed.

Suppression. A cell that counts fewer than `SMALL_CELL` households (an item's quantity: fewer
than `SMALL_CELL` households granted that item there) is published as "<10", never as its number.
The total of a line is the sum of the cells *shown*, and the number of hidden regions is given
beside it; the true total over all regions is never published.

Why not the true total with complementary suppression (as the impact preview does for program
administrators)? With a true total, one hidden cell is the total minus the shown ones, so a second
cell must be hidden; that second cell is usually 10 or more, so labelling it "<10" would publish
something false, and labelling it differently tells the reader which hidden cell is the small
one — then total − shown − (complement ≥ 10) bounds it, and pins it down when the complement is
exactly 10. A total of shown cells carries nothing about the hidden ones however many there are,
every "<10" is true, and the page says how many regions the total leaves out (each under 10
households). The cost is a total that undercounts by those regions. No identity links two lines
(entitled ≤ eligible is only a bound), and programs are not summed together, so no other
subtraction reaches a hidden cell.

Every figure is read under an access context (a system actor, purpose `public_statistics`); the
read is logged before anything is returned, like every other read of decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from civicard.programs.publishing import SMALL_CELL, SUPPRESSED
from civicard.shared.clock import Clock
from civicard.transparency.access import AccessContext, AccessLog, disclose

PURPOSE = "public_statistics"
Cell = int | str  # a number, or SUPPRESSED


@dataclass(frozen=True)
class HouseholdCount:
    """Raw counts of one program in one region (never shown as such: `public_statistics` shows)."""

    program: str
    region: str
    eligible: int
    entitled: int


@dataclass(frozen=True)
class ItemTotal:
    """Raw quantity of one item granted by one program in one region, and to how many households."""

    program: str
    region: str
    item: str
    households: int
    quantity: int


class StatisticsStore(Protocol):
    def latest_period(self) -> str | None: ...
    def household_counts(self, period: str) -> list[HouseholdCount]: ...
    def item_totals(self, period: str) -> list[ItemTotal]: ...


class StatisticsUnitOfWork(Protocol):
    @property
    def statistics(self) -> StatisticsStore: ...
    @property
    def access_log(self) -> AccessLog: ...
    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...

    def commit(self) -> None: ...


@dataclass(frozen=True)
class Line:
    """One figure across regions: region → number or "<10", and the total of the numbers shown."""

    cells: Mapping[str, Cell]
    total_shown: int
    hidden_regions: int


@dataclass(frozen=True)
class ProgramStatistics:
    program: str
    regions: tuple[str, ...]  # region codes with decisions of this program, sorted
    eligible: Line
    entitled: Line
    items: tuple[tuple[str, Line], ...]  # item code → quantities, codes sorted


@dataclass(frozen=True)
class PublicStatistics:
    period: str | None  # None when no period has decisions yet
    programs: tuple[ProgramStatistics, ...]
    small_cell: int = SMALL_CELL


def public_statistics(uow: StatisticsUnitOfWork) -> PublicStatistics:
    """Suppressed aggregates of the latest period with decisions; the read is logged first."""
    disclose(
        uow.access_log,
        uow.context,
        [],
        ["decisions", "household"],
        "public statistics: households and quantities by program and region, latest period",
        uow.clock.now(),
    )
    period = uow.statistics.latest_period()
    if period is None:
        uow.commit()
        return PublicStatistics(None, ())
    counts = uow.statistics.household_counts(period)
    items = uow.statistics.item_totals(period)
    uow.commit()
    return PublicStatistics(period, summarise(counts, items))


def summarise(counts: Iterable[HouseholdCount], items: Iterable[ItemTotal]) -> tuple[ProgramStatistics, ...]:
    """Raw counts → suppressed lines per program (regions: those where the program decided anyone)."""
    by_program: dict[str, dict[str, HouseholdCount]] = {}
    for c in counts:
        by_program.setdefault(c.program, {})[c.region] = c
    grants: dict[str, dict[str, dict[str, ItemTotal]]] = {}
    for i in items:
        grants.setdefault(i.program, {}).setdefault(i.item, {})[i.region] = i
    programs = []
    for program in sorted(by_program):
        regions = tuple(sorted(by_program[program]))
        rows = by_program[program]
        eligible = suppress_line({r: (rows[r].eligible, rows[r].eligible) for r in regions})
        entitled = suppress_line({r: (rows[r].entitled, rows[r].entitled) for r in regions})
        item_lines = []
        for item, per_region in sorted(grants.get(program, {}).items()):
            none = ItemTotal(program, "", item, 0, 0)
            raw = {r: (per_region.get(r, none).quantity, per_region.get(r, none).households) for r in regions}
            item_lines.append((item, suppress_line(raw)))
        programs.append(ProgramStatistics(program, regions, eligible, entitled, tuple(item_lines)))
    return tuple(programs)


def suppress_line(raw: Mapping[str, tuple[int, int]]) -> Line:
    """region → (value, households behind it) as a published line: a value over fewer than
    SMALL_CELL households is "<10"; the total sums only the values shown (see the module docstring)."""
    cells: dict[str, Cell] = {}
    for region, (value, households) in raw.items():
        cells[region] = value if households >= SMALL_CELL else SUPPRESSED
    shown = [v for v in cells.values() if isinstance(v, int)]
    return Line(cells, sum(shown), len(cells) - len(shown))
