"""Public statistics on both databases: the GROUP BY counts what a cycle stored, cells under 10
households read "<10", totals add only the cells shown (so no subtraction reveals a hidden cell),
and every read is logged under `public_statistics` for a system actor only."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from civicard.adapters.db import tables as t
from civicard.adapters.db.statistics_store import SqlStatisticsUnitOfWork
from civicard.programs.cycles import WriteSet
from civicard.programs.statistics import (
    PURPOSE,
    HouseholdCount,
    ItemTotal,
    PublicStatistics,
    public_statistics,
    suppress_line,
)
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.ids import new_id
from civicard.transparency.access import AccessContext, Actor

from .test_cycle import _cycle, town  # noqa: F401  (the 120-household town fixture)

PUBLIC = AccessContext(Actor("test:public-statistics", "system"), PURPOSE)
WRITER = AccessContext(Actor("test:cycle", "system"), "cycle_run")
PERIOD = "2026-12"


def _statistics(engine: sa.Engine, clock: Clock, context: AccessContext = PUBLIC) -> PublicStatistics:
    with SqlStatisticsUnitOfWork(engine, context, clock) as uow:
        return public_statistics(uow)


def _raw(engine: sa.Engine, clock: Clock) -> tuple[str | None, list[HouseholdCount], list[ItemTotal]]:
    with SqlStatisticsUnitOfWork(engine, PUBLIC, clock) as uow:
        period = uow.statistics.latest_period()
        assert period is not None
        return period, uow.statistics.household_counts(period), uow.statistics.item_totals(period)


def _decide(
    engine: sa.Engine,
    clock: Clock,
    period: str,
    region: str,
    households: int,
    *,
    program: str = "food_basket",
    status: str = "eligible",
    items: dict[str, int] | None = None,
) -> list[str]:
    """`households` new households in `region`, each with one current decision and its grants."""
    now = clock.now()
    ids = [new_id() for _ in range(households)]
    writes, inputs = WriteSet(), []
    for household in ids:
        sha = new_id()
        decision_id = new_id()
        writes.decisions.append(
            {
                "period": period,
                "id": decision_id,
                "household_id": household,
                "program": program,
                "program_version_id": new_id(),
                "rules_sha256": "r" * 64,
                "inputs_sha256": sha,
                "status": status,
                "amount_minor": 0,
                "conditions": "[]",
                "items": "{}",
                "origin": "cycle",
                "cycle_run_id": None,
                "decided_at": now,
                "superseded_at": None,
                "superseded_by": None,
            }
        )
        for item, quantity in (items or {}).items():
            writes.entitlements_new.append(
                {
                    "period": period,
                    "id": new_id(),
                    "household_id": household,
                    "program": program,
                    "item_code": item,
                    "granted": quantity,
                    "remaining": quantity,
                    "decision_id": decision_id,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        inputs.append(
            {"period": period, "household_id": household, "inputs_sha256": sha, "region": region, "inputs": "{}"}
        )
    with SqlStatisticsUnitOfWork(engine, WRITER, clock) as uow:
        uow.decisions.open_period(period, now)
        uow.decisions.add_inputs(inputs)
        uow.decisions.write(period, writes)
        uow.commit()
    return ids


def test_the_counts_are_what_the_cycle_stored_by_program_and_region(
    town: sa.Engine,  # noqa: F811
    uow_for,  # type: ignore[no-untyped-def]
    clock: Clock,
    tmp_path: Path,
) -> None:
    _cycle(uow_for, tmp_path)
    period, counts, totals = _raw(town, clock)
    assert period == PERIOD

    d, i, e = t.decisions, t.decision_inputs, t.entitlements
    with uow_for("oversight_case", Actor("test:auditor", "oversight")) as uow:
        conn = uow.connection
        region_of = {(r.household_id, r.inputs_sha256): r.region for r in conn.execute(sa.select(i))}
        current = {
            (r.household_id, r.program): (r.status, region_of[(r.household_id, r.inputs_sha256)])
            for r in conn.execute(sa.select(d).where(d.c.period == PERIOD, d.c.superseded_at.is_(None)))
        }
        grants = [tuple(r) for r in conn.execute(sa.select(e.c.household_id, e.c.program, e.c.item_code, e.c.granted))]
    eligible, entitled = Counter[tuple[str, str]](), defaultdict[tuple[str, str], set[str]](set)
    for (_, program), (status, region) in current.items():
        eligible[(program, region)] += status == "eligible"
    quantity, holders = Counter[tuple[str, str, str]](), defaultdict[tuple[str, str, str], set[str]](set)
    for household, program, item, granted in grants:
        region = current[(household, program)][1]
        if granted > 0:
            entitled[(program, region)].add(household)
            quantity[(program, region, item)] += granted
            holders[(program, region, item)].add(household)

    decided = {(program, region) for (_, program), (_, region) in current.items()}
    assert {(c.program, c.region): (c.eligible, c.entitled) for c in counts} == {
        key: (eligible[key], len(entitled[key])) for key in decided
    }
    assert {(x.program, x.region, x.item): (x.households, x.quantity) for x in totals} == {
        key: (len(holders[key]), quantity[key]) for key in quantity
    }
    assert sum(c.eligible for c in counts if c.program == "food_basket") > 0
    assert any(x.program == "food_basket" and x.item == "RICE-1KG" for x in totals)


def test_only_current_decisions_of_the_latest_period_count(engine: sa.Engine, clock: Clock) -> None:
    _decide(engine, clock, "2026-11", "NORTE", 40, items={"RICE-1KG": 2})
    ids = _decide(engine, clock, PERIOD, "NORTE", 12, items={"RICE-1KG": 2})
    _decide(engine, clock, PERIOD, "NORTE", 5, status="not_eligible")
    with SqlStatisticsUnitOfWork(engine, WRITER, clock) as uow:  # one household's decision was replaced
        d = t.decisions
        uow.connection.execute(
            sa.update(d)
            .where(d.c.period == PERIOD, d.c.household_id == ids[0])
            .values(superseded_at=clock.now() - timedelta(hours=1))
        )
        uow.commit()

    period, counts, totals = _raw(engine, clock)

    assert period == PERIOD
    assert counts == [HouseholdCount("food_basket", "NORTE", 11, 11)]
    assert totals == [ItemTotal("food_basket", "NORTE", "RICE-1KG", 11, 22)]


def test_small_cells_read_suppressed_and_no_total_gives_them_away(engine: sa.Engine, clock: Clock) -> None:
    _decide(engine, clock, PERIOD, "NORTE", 12, items={"RICE-1KG": 2, "MILK-POWDER-400G": 1})
    _decide(engine, clock, PERIOD, "SUR", 15, items={"RICE-1KG": 2})
    _decide(engine, clock, PERIOD, "ESTE", 3, items={"RICE-1KG": 4})  # 12 kg, but only 3 households
    _decide(engine, clock, PERIOD, "ESTE", 20, status="not_eligible")
    _decide(engine, clock, PERIOD, "SUR", 11, program="elderly_supplement")  # money only: no items

    shown = _statistics(engine, clock)

    assert shown.period == PERIOD and shown.small_cell == 10
    elderly, food = shown.programs  # sorted by program code
    assert food.program == "food_basket" and food.regions == ("ESTE", "NORTE", "SUR")
    assert dict(food.eligible.cells) == {"NORTE": 12, "SUR": 15, "ESTE": "<10"}
    assert dict(food.entitled.cells) == {"NORTE": 12, "SUR": 15, "ESTE": "<10"}
    items = dict(food.items)
    assert dict(items["RICE-1KG"].cells) == {"NORTE": 24, "SUR": 30, "ESTE": "<10"}
    assert dict(items["MILK-POWDER-400G"].cells) == {"NORTE": 12, "SUR": "<10", "ESTE": "<10"}
    # The complementary case: one region hidden in a line. A true total (30 households, 66 kg)
    # minus the shown cells would give the hidden one (3, 12); the published total is the sum of
    # the shown cells, so the subtraction gives nothing.
    for line in (food.eligible, food.entitled, items["RICE-1KG"]):
        numbers = [v for v in line.cells.values() if isinstance(v, int)]
        assert line.total_shown == sum(numbers) and line.hidden_regions == 1
    assert (food.eligible.total_shown, items["RICE-1KG"].total_shown) == (27, 54)
    assert (items["MILK-POWDER-400G"].total_shown, items["MILK-POWDER-400G"].hidden_regions) == (12, 2)
    assert elderly.program == "elderly_supplement" and dict(elderly.eligible.cells) == {"SUR": 11}
    assert dict(elderly.entitled.cells) == {"SUR": "<10"} and elderly.items == ()


def test_every_read_is_logged_and_only_a_system_actor_may_read(engine: sa.Engine, clock: Clock) -> None:
    _decide(engine, clock, PERIOD, "NORTE", 10, items={"RICE-1KG": 1})
    log = t.access_log
    before = _log_size(engine)

    _statistics(engine, clock)

    with engine.connect() as conn:
        rows = conn.execute(sa.select(log).where(log.c.seq > before)).all()
    assert [(r.actor, r.role, r.purpose, r.action, r.categories) for r in rows] == [
        ("test:public-statistics", "system", "public_statistics", "read", "decisions household")
    ]
    assert rows[0].subject_person_id is None and rows[0].subject_household_id is None
    for role in ("registrar", "oversight", "resident"):
        with pytest.raises(DomainError) as refused:
            _statistics(engine, clock, AccessContext(Actor("someone", role), PURPOSE))
        assert refused.value.code == "purpose_not_allowed"
    assert _log_size(engine) == before + 1


def test_before_any_cycle_there_is_no_period_and_no_figure(engine: sa.Engine, clock: Clock) -> None:
    assert _statistics(engine, clock) == PublicStatistics(None, ())


def _log_size(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.access_log.c.seq), 0))).scalar_one())


@given(st.dictionaries(st.sampled_from(["A", "B", "C", "D", "E"]), st.tuples(st.integers(0, 40), st.integers(0, 40))))
def test_a_line_hides_every_cell_under_ten_households_and_totals_only_what_it_shows(
    raw: dict[str, tuple[int, int]],
) -> None:
    line = suppress_line(raw)
    for region, (value, households) in raw.items():
        assert line.cells[region] == (value if households >= 10 else "<10")
    assert line.total_shown == sum(value for value, households in raw.values() if households >= 10)
    assert line.hidden_regions == sum(households < 10 for _, households in raw.values())
