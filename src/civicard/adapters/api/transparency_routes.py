"""/v1/transparency/statistics (public): households eligible and entitled and quantities granted,
by program and region, for the latest period with decisions; cells under 10 households read "<10".

No sign-in: the figures are aggregates, suppressed by programs/statistics.py (which also explains
why a total sums only the cells shown). The read of decisions behind them runs under a system
actor with the purpose `public_statistics` and is logged like any other. The figures are then kept
for `FRESH_FOR` per application: the page is public, and anonymous traffic must not be able to
grow the access log (or load the database) one entry per view.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from weakref import ref

from fastapi import APIRouter
from pydantic import BaseModel, Field

from civicard.adapters.api.access import App
from civicard.adapters.db.register_store import SqlProgramRegister
from civicard.adapters.db.statistics_store import SqlStatisticsUnitOfWork
from civicard.bootstrap import Container
from civicard.programs import statistics
from civicard.programs.publishing import SUPPRESSED
from civicard.transparency.access import AccessContext, Actor

router = APIRouter(prefix="/v1", tags=["transparency"])
PUBLIC_READER = AccessContext(Actor("public:statistics", "system"), statistics.PURPOSE)
Cell = statistics.Cell


FRESH_FOR = timedelta(minutes=5)
# id(container) → (the container, when computed, the figures); the weak reference guards against a
# later container that happens to get the same id.
_computed: dict[int, tuple[ref[Container], datetime, statistics.PublicStatistics]] = {}
_computing = threading.Lock()


def read_public_statistics(app: Container) -> statistics.PublicStatistics:
    """The suppressed figures (shared by the page and the API): read through the logged unit of
    work at most once per FRESH_FOR, by one request at a time."""
    with _computing:
        now = app.clock.now()
        kept = _computed.get(id(app))
        if kept is not None and kept[0]() is app and now - kept[1] < FRESH_FOR:
            return kept[2]
        with SqlStatisticsUnitOfWork(app.engine, PUBLIC_READER, app.clock) as uow:
            found = statistics.public_statistics(uow)
        _computed[id(app)] = (ref(app), now, found)
        return found


class StatisticsLineOut(BaseModel):
    regions: dict[str, Cell] = Field(description=f'Region code → number, or "{SUPPRESSED}" (fewer than 10 households).')
    total_shown: int = Field(description="Sum of the region figures shown; suppressed regions are not in it.")
    hidden_regions: int = Field(description=f'How many regions read "{SUPPRESSED}" and are left out of the total.')

    @classmethod
    def of(cls, line: statistics.Line) -> StatisticsLineOut:
        return cls(regions=dict(line.cells), total_shown=line.total_shown, hidden_regions=line.hidden_regions)


class ProgramStatisticsOut(BaseModel):
    program: str
    title_es: str | None = Field(description="From the register; None if no published version has this code.")
    title_en: str | None
    eligible_households: StatisticsLineOut
    entitled_households: StatisticsLineOut = Field(description="Households granted at least one item.")
    item_quantities: dict[str, StatisticsLineOut] = Field(
        description="Item code → units granted; suppressed where fewer than 10 households got the item."
    )


class StatisticsOut(BaseModel):
    period: str | None = Field(description="The latest period with decisions (YYYY-MM); None before any cycle.")
    small_cell: int
    programs: list[ProgramStatisticsOut]

    @classmethod
    def of(cls, found: statistics.PublicStatistics, titles: dict[str, dict[str, str]]) -> StatisticsOut:
        return cls(
            period=found.period,
            small_cell=found.small_cell,
            programs=[
                ProgramStatisticsOut(
                    program=p.program,
                    title_es=titles.get(p.program, {}).get("es"),
                    title_en=titles.get(p.program, {}).get("en"),
                    eligible_households=StatisticsLineOut.of(p.eligible),
                    entitled_households=StatisticsLineOut.of(p.entitled),
                    item_quantities={item: StatisticsLineOut.of(line) for item, line in p.items},
                )
                for p in found.programs
            ],
        )


def program_titles(app: Container) -> dict[str, dict[str, str]]:
    """Program code → title (es, en) of its latest published or retired version."""
    with app.engine.connect() as conn:
        versions = SqlProgramRegister(conn).all()
    return {v.program: v.title for v in versions if v.status in ("published", "retired")}


@router.get("/transparency/statistics")
def read_statistics(app: App) -> StatisticsOut:
    """Households eligible and entitled and quantities granted per item, by program and region (suppressed)."""
    return StatisticsOut.of(read_public_statistics(app), program_titles(app))
