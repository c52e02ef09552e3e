"""A benefit cycle over an imported town: decisions equal the per-household evaluator's, a second
run stores nothing, a corrected fact changes exactly that household, closed periods never change."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from civicard.adapters.bulk.cycle import run_cycle
from civicard.adapters.bulk.importer import import_population
from civicard.adapters.db import tables as t
from civicard.programs.decisions import decide
from civicard.programs.engines import Outcome
from civicard.programs.household_inputs import facts_of_household
from civicard.programs.reevaluation import reevaluate_household
from civicard.programs.rulepack import rulepack_from_dict
from civicard.registry.lookup import get_household
from civicard.registry.population import PopulationSpec, generate_population
from civicard.registry.recording import record_fact
from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, NotFound
from civicard.shared.ids import new_id
from civicard.transparency.access import AccessContext, Actor

RULES = Path(__file__).resolve().parents[2] / "rulepacks"
LOADER = AccessContext(Actor("test:loader", "system"), "bulk_import")
SYSTEM = Actor("test:cycle", "system")
PERIOD = "2026-12"


def register_published(uow, path: Path, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    """Put a rule file in the register as published (what two administrators' approval leads to)."""
    source = path.read_text(encoding="utf-8")
    pack = rulepack_from_dict(yaml.safe_load(source), path.name)
    uow.register.add(
        {
            "id": new_id(),
            "program": pack.program,
            "version": pack.version,
            "sha256": pack.sha256,
            "title_es": pack.title["es"],
            "title_en": pack.title["en"],
            "legal_basis": pack.legal_basis,
            "effective_from": pack.effective_from,
            "source": source,
            "status": "retired" if pack.status == "retired" else "published",
            "tests_passed": 1,
            "impact": "{}",
            "proposed_by": "admin-a",
            "proposed_at": clock.now(),
            "proposal_note": "test",
            "decided_by": "admin-b",
            "decided_at": clock.now(),
            "decision_note": "test",
            "retired_by": None,
            "retired_at": None,
        }
    )


@pytest.fixture
def town(engine, clock: Clock, tmp_path: Path, uow_for):  # type: ignore[no-untyped-def]
    source = tmp_path / "population"
    generate_population(PopulationSpec(households=120, seed=5, duplicate_share=0.0), source)
    import_population(engine, source, LOADER, clock, None)
    with uow_for("cycle_run", SYSTEM) as uow:
        for path in sorted(RULES.glob("*/*.yaml")):
            if yaml.safe_load(path.read_text(encoding="utf-8"))["status"] != "draft":
                register_published(uow, path, clock)
        uow.commit()
    return engine


def _cycle(uow_for, tmp_path: Path, period: str = PERIOD):  # type: ignore[no-untyped-def]
    with uow_for("cycle_run", SYSTEM) as uow:
        report = run_cycle(uow, period, tmp_path / "out")
        uow.commit()
    return report


def test_a_cycle_stores_what_the_per_household_evaluator_decides(town, uow_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = _cycle(uow_for, tmp_path)
    assert report.households == 120
    assert report.decisions_new == 120 * 5 and report.decisions_changed == 0
    assert sorted(p.split()[0] for p in report.programs) == [
        "child_allowance",
        "chronic_medicine",
        "disability_support",
        "elderly_supplement",
        "food_basket",
    ]
    assert 0 < report.eligible["food_basket"] < 120
    start = date(2026, 12, 1)
    with uow_for("appeal_review", Actor("reviewer-rita", "reviewer")) as uow:
        versions = {v.program: v.pack() for v in uow.register.in_force(start)}
        households = [r.id for r in uow.connection.execute(sa.select(t.households.c.id))]
        entitled = 0
        for household in households:
            facts = facts_of_household(get_household(uow, household, on=start), start)
            stored = {d.program: d for d in uow.decisions.of_household(household)}
            for program, pack in versions.items():
                expected = Outcome.of(decide(pack, facts, start))
                assert stored[program].outcome == expected, (household, program)
                assert (
                    json.loads(stored[program].inputs or "{}")["household"]["member_count"]
                    == facts.household["member_count"]
                )
            rows = uow.decisions.household_entitlements(household, PERIOD)
            granted = {(r["program"], r["item_code"]): r["granted"] for r in rows}
            want = {(p, i): q for p, d in stored.items() for i, q in d.outcome.items}
            assert granted == want
            assert all(r["remaining"] == r["granted"] for r in rows)
            entitled += bool(rows)
    assert entitled > 0
    written = pq.read_table(report.output)
    assert written.num_rows == 120 and "food_basket__status" in written.column_names
    assert "inputs_sha256" in written.column_names
    rules = json.loads(written.schema.metadata[b"civicard.rules"])
    assert rules["food_basket"]["version"] == "2026.1" and len(rules["food_basket"]["sha256"]) == 64


def test_running_a_period_again_creates_nothing(town, uow_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _cycle(uow_for, tmp_path)
    again = _cycle(uow_for, tmp_path)
    assert (again.decisions_new, again.decisions_changed, again.entitlements_new) == (0, 0, 0)
    with uow_for("cycle_run", SYSTEM) as uow:
        count = uow.connection.execute(sa.select(sa.func.count()).select_from(t.decisions)).scalar_one()
        runs = uow.decisions.runs(PERIOD)
    assert count == 600 and len(runs) == 2


def test_a_correction_changes_that_household_only_and_its_open_entitlements(town, uow_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _cycle(uow_for, tmp_path)
    with uow_for("cycle_run", SYSTEM) as uow:
        eligible = (
            uow.connection.execute(
                sa.select(t.decisions.c.household_id).where(
                    t.decisions.c.program == "food_basket", t.decisions.c.status == "eligible"
                )
            )
            .scalars()
            .first()
        )
        record = get_household(uow, eligible)
    person = record.members[0][0].person_id
    with uow_for() as uow:  # a big income appears: the household no longer qualifies for food
        record_fact(
            uow,
            "incomes",
            person,
            {"source": "wages"},
            {"monthly_amount_minor": 9_000_000},
            date(2026, 11, 1),
            "new job",
        )
        uow.commit()
    with uow_for("fact_correction") as uow:
        changes = reevaluate_household(uow, eligible)
        uow.commit()
    food = [c for c in changes if c.program == "food_basket"]
    assert food and food[0].before is not None and food[0].before.status == "eligible"
    assert food[0].after.status == "not_eligible" and food[0].kind == "lost"
    assert all(e.granted_after == 0 for e in food[0].entitlements)
    again = _cycle(uow_for, tmp_path)  # the bulk path agrees with what re-evaluation stored
    assert (again.decisions_new, again.decisions_changed) == (0, 0)
    with uow_for("cycle_run", SYSTEM) as uow:
        rows = uow.decisions.household_entitlements(eligible, PERIOD)
        history = uow.decisions.of_household(eligible, current_only=False)
    assert all(r["granted"] == 0 and r["remaining"] == 0 for r in rows if r["program"] == "food_basket")
    assert len([d for d in history if d.program == "food_basket"]) == 2


def test_a_closed_period_is_never_decided_again(town, uow_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _cycle(uow_for, tmp_path)
    with uow_for("cycle_run", SYSTEM) as uow:
        uow.connection.execute(sa.update(t.benefit_periods).values(status="closed"))
        uow.commit()
    with pytest.raises(Conflict) as refused:
        _cycle(uow_for, tmp_path)
    assert refused.value.code == "period_closed"


def test_a_period_without_a_version_in_force_is_refused(town, uow_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound) as refused:
        _cycle(uow_for, tmp_path, "2024-01")
    assert refused.value.code == "no_version_in_force"
