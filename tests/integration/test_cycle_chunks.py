"""A cycle in chunks: a town decided a few households at a time stores exactly what one chunk
stores, a failure in a later chunk leaves nothing behind, and a re-run in chunks changes only
the households whose facts changed."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from civicard.adapters.bulk import cycle
from civicard.adapters.bulk.cycle import CycleReport, run_cycle
from civicard.adapters.bulk.importer import import_population
from civicard.adapters.db import tables as t
from civicard.registry.lookup import get_household
from civicard.registry.population import PopulationSpec, generate_population
from civicard.registry.recording import record_fact
from civicard.shared.clock import Clock
from tests.integration.distribution_fixtures import register_rules
from tests.integration.test_cycle import LOADER, PERIOD, SYSTEM

HOUSEHOLDS = 40
CHUNK = 7  # 40 households: five full chunks and a partial one


@pytest.fixture
def town(engine: sa.Engine, clock: Clock, tmp_path: Path) -> sa.Engine:
    source = tmp_path / "population"
    generate_population(PopulationSpec(households=HOUSEHOLDS, seed=11, duplicate_share=0.0), source)
    import_population(engine, source, LOADER, clock, None)
    register_rules(engine, clock)
    return engine


def _stored(conn: sa.Connection) -> dict[str, Any]:
    """Everything a cycle stores, without the ids and times of this run."""
    d, e, i, log = t.decisions, t.entitlements, t.decision_inputs, t.access_log
    return {
        "decisions": sorted(
            conn.execute(
                sa.select(
                    d.c.household_id,
                    d.c.program,
                    d.c.program_version_id,
                    d.c.rules_sha256,
                    d.c.inputs_sha256,
                    d.c.status,
                    d.c.amount_minor,
                    d.c.conditions,
                    d.c["items"],
                    d.c.origin,
                    d.c.superseded_at.is_(None),
                )
            ).all()
        ),
        "entitlements": sorted(
            conn.execute(
                sa.select(e.c.household_id, e.c.program, e.c.item_code, e.c.granted, e.c.remaining).where(
                    e.c.period == PERIOD
                )
            ).all()
        ),
        "inputs": sorted(conn.execute(sa.select(i.c.household_id, i.c.inputs_sha256, i.c.region, i.c.inputs)).all()),
        "reads": sorted(
            conn.execute(
                sa.select(log.c.subject_household_id, log.c.purpose, log.c.categories).where(
                    log.c.detail == f"cycle {PERIOD}: rule inputs"
                )
            ).all()
        ),
    }


def _counts(report: CycleReport) -> tuple[Any, ...]:
    return (
        report.households,
        report.decisions_new,
        report.decisions_changed,
        report.entitlements_new,
        report.entitlements_changed,
        report.eligible,
    )


def _run_and_look(uow_for, out: Path, chunk: int) -> tuple[CycleReport, dict[str, Any], list[tuple[str, int, int]]]:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, int, int]] = []
    with uow_for("cycle_run", SYSTEM) as uow:  # not committed: each run starts from the same registry
        report = run_cycle(uow, PERIOD, out, None, lambda s, d, n: seen.append((s, d, n)), chunk_households=chunk)
        return report, _stored(uow.connection), seen


def test_a_cycle_in_chunks_stores_exactly_what_one_chunk_stores(town, uow_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    whole, whole_stored, _ = _run_and_look(uow_for, tmp_path / "whole", 10_000)
    chunked, chunked_stored, seen = _run_and_look(uow_for, tmp_path / "chunked", CHUNK)
    assert [d for s, d, _n in seen if s == "store"] == [7, 14, 21, 28, 35, 40]
    assert all(n == HOUSEHOLDS for _s, _d, n in seen)
    assert _counts(chunked) == _counts(whole)
    assert chunked.households == HOUSEHOLDS and chunked.decisions_new == HOUSEHOLDS * 5
    assert chunked.entitlements_new > 0 and chunked.changes == () == whole.changes  # new decisions are only counted
    for part in ("decisions", "entitlements", "inputs", "reads"):
        assert chunked_stored[part] == whole_stored[part], part
    assert len(chunked_stored["inputs"]) == len(chunked_stored["reads"]) == HOUSEHOLDS
    assert len(chunked_stored["decisions"]) == HOUSEHOLDS * 5
    one, many = pq.read_table(whole.output), pq.read_table(chunked.output)
    assert many.num_rows == HOUSEHOLDS and many.column_names == one.column_names
    assert many.sort_by("household_id").equals(one.sort_by("household_id"))
    assert many.schema.metadata[b"civicard.rules"] == one.schema.metadata[b"civicard.rules"]


def test_a_failure_in_a_later_chunk_leaves_no_trace(town, uow_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def stop_after_the_first_chunk(stage: str, done: int, _total: int) -> None:
        if stage == "store" and done > CHUNK:
            raise RuntimeError("stopped in the second chunk")

    with pytest.raises(RuntimeError, match="second chunk"), uow_for("cycle_run", SYSTEM) as uow:
        run_cycle(uow, PERIOD, tmp_path / "out", None, stop_after_the_first_chunk, chunk_households=CHUNK)
    with uow_for("cycle_run", SYSTEM) as uow:
        stored = _stored(uow.connection)
        periods = uow.connection.execute(sa.select(sa.func.count()).select_from(t.benefit_periods)).scalar_one()
        runs = uow.decisions.runs()
    assert stored == {"decisions": [], "entitlements": [], "inputs": [], "reads": []}
    assert periods == 0 and runs == []
    assert list((tmp_path / "out").glob("*.parquet")) == []  # nor a partial decisions file


def test_a_rerun_in_chunks_changes_only_the_households_whose_facts_changed(  # type: ignore[no-untyped-def]
    town, uow_for, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with uow_for("cycle_run", SYSTEM) as uow:
        run_cycle(uow, PERIOD, tmp_path / "out", chunk_households=CHUNK)
        uow.commit()
        households = sorted(uow.connection.execute(sa.select(t.households.c.id)).scalars())
    changed = [households[3], households[-1]]  # in the first chunk and in the last, partial one
    for household in changed:
        with uow_for("cycle_run", SYSTEM) as uow:
            person = get_household(uow, household).members[0][0].person_id
        with uow_for() as uow:  # a big income: whatever was means-tested is lost
            record_fact(
                uow,
                "incomes",
                person,
                {"source": "wages"},
                {"monthly_amount_minor": 9_000_000},
                date(2026, 11, 1),
                "job",
            )
            uow.commit()
    monkeypatch.setattr(cycle, "CHANGES_KEPT", 1)
    with uow_for("cycle_run", SYSTEM) as uow:
        again = run_cycle(uow, PERIOD, tmp_path / "out", chunk_households=CHUNK)
        uow.commit()
        replaced = uow.connection.execute(
            sa.select(t.decisions.c.household_id).where(t.decisions.c.superseded_at.is_not(None))
        ).scalars()
        superseded = set(replaced)
    assert again.households == HOUSEHOLDS and again.decisions_new == 0
    assert superseded == set(changed)  # both households' snapshots changed: every program decided again
    assert again.decisions_changed == 2 * 5
    assert len(again.changes) == 1 and again.changes[0].household_id == changed[0]
    assert again.changes[0].before is not None
    with uow_for("cycle_run", SYSTEM) as uow:
        third = run_cycle(uow, PERIOD, tmp_path / "out", chunk_households=CHUNK)
    assert (third.decisions_new, third.decisions_changed, third.entitlements_new, third.entitlements_changed) == (
        0,
        0,
        0,
        0,
    )
