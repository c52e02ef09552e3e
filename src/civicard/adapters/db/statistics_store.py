"""SQL for the public statistics: GROUP BY program and region over a period's current decisions
and entitlements (raw counts; programs/statistics.py suppresses them before anyone sees them).

The region is the one in the decision's input snapshot (decision_inputs), i.e. where the household
lived when it was decided, not where it lives today; a decision without a snapshot counts under
"(none)". Only the region column of the snapshot is read.
"""

from __future__ import annotations

import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.programs.statistics import HouseholdCount, ItemTotal

NO_REGION = "(none)"


class SqlStatistics:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def latest_period(self) -> str | None:
        d = t.decisions
        found: str | None = self.conn.execute(
            sa.select(sa.func.max(d.c.period)).where(d.c.superseded_at.is_(None))
        ).scalar_one_or_none()
        return found

    def household_counts(self, period: str) -> list[HouseholdCount]:
        current = _current_decisions(period)
        entitled = _entitled_households(period)
        query = (
            sa.select(
                current.c.program,
                current.c.region,
                sa.func.sum(sa.case((current.c.status == "eligible", 1), else_=0)).label("eligible"),
                sa.func.count(entitled.c.household_id).label("entitled"),
            )
            .select_from(
                current.outerjoin(
                    entitled,
                    (entitled.c.household_id == current.c.household_id) & (entitled.c.program == current.c.program),
                )
            )
            .group_by(current.c.program, current.c.region)
            .order_by(current.c.program, current.c.region)
        )
        return [
            HouseholdCount(row.program, row.region, int(row.eligible or 0), int(row.entitled))
            for row in self.conn.execute(query)
        ]

    def item_totals(self, period: str) -> list[ItemTotal]:
        current = _current_decisions(period)
        e = t.entitlements
        query = (
            sa.select(
                current.c.program,
                current.c.region,
                e.c.item_code,
                sa.func.count(sa.distinct(e.c.household_id)).label("households"),
                sa.func.sum(e.c.granted).label("quantity"),
            )
            .select_from(
                e.join(current, (current.c.household_id == e.c.household_id) & (current.c.program == e.c.program))
            )
            .where(e.c.period == period, e.c.granted > 0)
            .group_by(current.c.program, current.c.region, e.c.item_code)
            .order_by(current.c.program, current.c.region, e.c.item_code)
        )
        return [
            ItemTotal(row.program, row.region, row.item_code, int(row.households), int(row.quantity))
            for row in self.conn.execute(query)
        ]


def _current_decisions(period: str) -> sa.CTE:
    """Step `current_decisions`: each household's current decision per program, with its region."""
    d, i = t.decisions, t.decision_inputs
    return (
        sa.select(
            d.c.household_id,
            d.c.program,
            d.c.status,
            sa.func.coalesce(i.c.region, NO_REGION).label("region"),
        )
        .select_from(
            d.outerjoin(
                i,
                (i.c.period == d.c.period)
                & (i.c.household_id == d.c.household_id)
                & (i.c.inputs_sha256 == d.c.inputs_sha256),
            )
        )
        .where(d.c.period == period, d.c.superseded_at.is_(None))
        .cte("current_decisions")
    )


def _entitled_households(period: str) -> sa.CTE:
    """Step `entitled_households`: (household, program) pairs granted at least one unit this period."""
    e = t.entitlements
    return (
        sa.select(e.c.household_id, e.c.program)
        .where(e.c.period == period, e.c.granted > 0)
        .group_by(e.c.household_id, e.c.program)
        .cte("entitled_households")
    )


class SqlStatisticsUnitOfWork(SqlUnitOfWork):
    """The base unit of work plus the statistics store, on the same connection and transaction."""

    def __enter__(self) -> SqlStatisticsUnitOfWork:
        super().__enter__()
        self.statistics = SqlStatistics(self.connection)
        return self


def opened_periods(conn: sa.Connection) -> list[str]:
    """Benefit periods opened so far, newest first (periods are not personal data)."""
    bp = t.benefit_periods
    return list(conn.execute(sa.select(bp.c.period).order_by(bp.c.period.desc())).scalars())


__all__ = ["SqlStatistics", "SqlStatisticsUnitOfWork", "opened_periods"]
