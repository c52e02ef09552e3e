"""Publishing rule versions on SQLite and PostgreSQL: two program administrators, tests on every
engine, an impact preview that counts what the per-household evaluator counts, and the log."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from civicard.adapters.bulk.importer import import_population
from civicard.adapters.cli.programs import postgres_connector
from civicard.adapters.db import tables as t
from civicard.adapters.db.program_inputs import registry_inputs
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.programs import publishing
from civicard.programs.decisions import decide
from civicard.programs.household_inputs import facts_of_household
from civicard.programs.projection import RuleInputs
from civicard.programs.rulepack import RulePack
from civicard.registry.lookup import get_household
from civicard.registry.population import PopulationSpec, generate_population
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.transparency.access import AccessContext, Actor

from ..conftest import FIXED_NOW, Database

RULEPACKS = Path(__file__).resolve().parents[2] / "rulepacks"
FOOD = (RULEPACKS / "food_basket" / "2026.1.yaml").read_text(encoding="utf-8")
CATALOGUE = (RULEPACKS / "items.yaml").read_text(encoding="utf-8")
PERIOD = date(2026, 11, 1)  # conftest's clock: 2026-11-15
SMALL = """\
program: rice_test
version: "1"
title: {es: Arroz de prueba, en: Test rice}
status: draft
legal_basis: "Test decree 1/2026"
entity: household
period: month
effective_from: 2026-01-01
parameters:
  limit:
    label: {es: Límite, en: Limit}
    unit: money
    values: {2026-01-01: 10000}
conditions:
  low_income:
    label: {es: Ingreso bajo, en: Low income}
    expression: household_income <= limit
amount: {unit: money, expression: 0}
items:
  - {item: RICE-1KG, quantity: member_count}
tests:
  - name: a poor couple gets two bags
    period: 2026-03
    household: {members: [{age: 40, income: 9000}, {age: 38}]}
    expect: {eligible: true, amount: 0, items: {RICE-1KG: 2}}
"""


@dataclass(frozen=True)
class Staff:
    id: str
    username: str
    role: str = "program_admin"


ANA = Staff("acct-ana", "ana")
BETO = Staff("acct-beto", "beto")
RITA = Staff("acct-rita", "rita", "registrar")

UowFor = Callable[..., SqlUnitOfWork]


def publication(uow_for: UowFor, who: Staff) -> SqlUnitOfWork:
    return uow_for(publishing.PURPOSE, Actor(who.id, who.role))


def reader(uow_for: UowFor, who: Staff) -> publishing.InputsReader:
    def read(day: date, detail: str) -> RuleInputs:
        with uow_for("impact_preview", Actor(who.id, who.role)) as uow:
            inputs = registry_inputs(uow, day, detail)
            uow.commit()
        return inputs

    return read


def propose(uow_for: UowFor, engine: Engine, source: str, who: Staff = ANA) -> publishing.Proposal:
    with publication(uow_for, who) as uow:
        return publishing.propose(
            uow, source, who, "test", read_inputs=reader(uow_for, who), connect_postgres=postgres_connector(engine)
        )


def decide_as(uow_for: UowFor, action: Callable[..., Any], version_id: str, who: Staff) -> Any:
    with publication(uow_for, who) as uow:
        return action(uow, version_id, who, "test")


def load_catalogue(uow_for: UowFor) -> None:
    with publication(uow_for, ANA) as uow:
        assert publishing.load_catalogue(uow, CATALOGUE, ANA) == 24


def refusal(action: Callable[[], Any]) -> str:
    with pytest.raises(DomainError) as refused:
        action()
    return refused.value.code


def log_details(engine: Engine, purpose: str) -> list[str]:
    with engine.connect() as conn:
        query = sa.select(t.access_log.c.detail).where(t.access_log.c.purpose == purpose).order_by(t.access_log.c.seq)
        return list(conn.execute(query).scalars())


def versions(engine: Engine) -> list[tuple[str, str, str]]:
    pv = t.program_versions
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(pv.c.program, pv.c.version, pv.c.status))]  # type: ignore[misc]


def in_force(engine: Engine, uow_for: UowFor, program: str = "food_basket") -> list[str]:
    with publication(uow_for, ANA) as uow:
        return [v.version for v in uow.register.in_force(PERIOD, [program])]


def test_a_version_proposed_by_one_admin_and_approved_by_another_comes_into_force(
    db: Database, engine: Engine, uow_for: UowFor
) -> None:
    load_catalogue(uow_for)
    proposal = propose(uow_for, engine, FOOD)
    assert proposal.version.status == "proposed" and in_force(engine, uow_for) == []
    engines = (
        ("python", "duckdb", "sqlite", "postgres") if db.backend == "postgresql" else ("python", "duckdb", "sqlite")
    )
    assert proposal.tests.engines == engines
    assert proposal.tests.passed == proposal.tests.cases * len(engines) == 8 * len(engines)
    published = decide_as(uow_for, publishing.approve, proposal.version.id, BETO)
    assert (published.status, published.proposed_by, published.decided_by) == ("published", "ana", "beto")
    assert in_force(engine, uow_for) == ["2026.1"]
    with publication(uow_for, ANA) as uow:
        stored = uow.register.get(proposal.version.id)
    assert stored is not None and stored.source == FOOD and stored.sha256 == proposal.version.pack().sha256
    assert json.loads(stored.impact) == proposal.impact.as_dict()
    details = log_details(engine, publishing.PURPOSE)
    assert details[0] == "loaded the item catalogue: 24 items"
    assert details[1] == f"proposed food_basket 2026.1 sha256 {stored.sha256}"
    assert details[2] == f"approved food_basket 2026.1 sha256 {stored.sha256}"


def test_the_proposer_cannot_decide_their_own_version_nor_can_anyone_but_a_program_admin(
    engine: Engine, uow_for: UowFor
) -> None:
    load_catalogue(uow_for)
    proposal = propose(uow_for, engine, SMALL)
    vid = proposal.version.id
    assert refusal(lambda: decide_as(uow_for, publishing.approve, vid, ANA)) == "same_person"
    assert refusal(lambda: decide_as(uow_for, publishing.reject, vid, ANA)) == "same_person"
    other = SMALL.replace('version: "1"', 'version: "2"')
    assert refusal(lambda: propose(uow_for, engine, other, RITA)) == "purpose_not_allowed"  # the unit refuses
    with publication(uow_for, ANA) as uow:  # and the service, whatever unit it is given
        assert refusal(lambda: publishing.propose(uow, other, RITA, "", read_inputs=reader(uow_for, ANA))) == (
            "not_program_admin"
        )
    with uow_for("fact_correction") as uow:  # a registrar's unit, whatever the account claims to be
        assert refusal(lambda: publishing.approve(uow, vid, RITA, "")) == "not_program_admin"
    assert versions(engine) == [("rice_test", "1", "proposed")]
    rejected = decide_as(uow_for, publishing.reject, vid, BETO)
    assert rejected.status == "rejected" and in_force(engine, uow_for, "rice_test") == []
    assert refusal(lambda: decide_as(uow_for, publishing.approve, vid, BETO)) == "not_proposed"
    assert log_details(engine, publishing.PURPOSE)[-1].startswith("rejected rice_test 1 sha256 ")


def test_a_proposal_nobody_decides_in_two_weeks_expires_and_is_logged(engine: Engine, uow_for: UowFor) -> None:
    load_catalogue(uow_for)
    vid = propose(uow_for, engine, SMALL).version.id
    later = Clock.fixed(FIXED_NOW + publishing.PROPOSAL_LIFETIME)
    with SqlUnitOfWork(engine, AccessContext(Actor(BETO.id, BETO.role), publishing.PURPOSE), later) as uow:
        assert publishing.awaiting_decision(uow.register.all(), later.now()) == []
        assert refusal(lambda: publishing.approve(uow, vid, BETO, "late")) == "proposal_expired"
    assert versions(engine) == [("rice_test", "1", "expired")]  # kept in the register, never in force
    assert log_details(engine, publishing.PURPOSE)[-1].startswith("expired rice_test 1 sha256 ")
    assert refusal(lambda: decide_as(uow_for, publishing.reject, vid, BETO)) == "not_proposed"


def test_failing_tests_unknown_items_no_tests_and_duplicates_are_refused_and_nothing_is_stored(
    engine: Engine, uow_for: UowFor
) -> None:
    assert refusal(lambda: propose(uow_for, engine, SMALL)) == "unknown_item"
    with pytest.raises(DomainError, match="RICE-1KG"):
        propose(uow_for, engine, SMALL)
    load_catalogue(uow_for)
    wrong = SMALL.replace("{2026-01-01: 10000}", "{2026-01-01: 100}")
    assert wrong != SMALL
    with pytest.raises(DomainError) as failed:
        propose(uow_for, engine, wrong)
    assert failed.value.code == "tests_failed" and "failed" in failed.value.message
    untested = SMALL[: SMALL.index("tests:")]
    assert refusal(lambda: propose(uow_for, engine, untested)) == "no_tests"
    assert refusal(lambda: propose(uow_for, engine, "program: [")) == "invalid_yaml"
    assert refusal(lambda: propose(uow_for, engine, "a: &x [1]\nb: *x\n")) == "invalid_yaml"
    assert versions(engine) == []
    first = propose(uow_for, engine, SMALL)
    assert refusal(lambda: propose(uow_for, engine, SMALL + "\n# the same rules again\n")) == "version_exists"
    with publication(uow_for, ANA) as uow:  # a row holding this text's hash under another name
        uow.register.update(first.version.id, program="rice_copy")
        uow.commit()
    assert refusal(lambda: propose(uow_for, engine, SMALL)) == "hash_exists"
    assert versions(engine) == [("rice_copy", "1", "proposed")]


def test_retiring_takes_a_version_out_of_force_and_each_step_is_logged(engine: Engine, uow_for: UowFor) -> None:
    load_catalogue(uow_for)
    vid = propose(uow_for, engine, SMALL).version.id
    assert refusal(lambda: decide_as(uow_for, publishing.retire, vid, BETO)) == "not_published"
    decide_as(uow_for, publishing.approve, vid, BETO)
    retired = decide_as(uow_for, publishing.retire, vid, ANA)
    assert (retired.status, retired.retired_by) == ("retired", "ana")
    assert in_force(engine, uow_for, "rice_test") == []
    assert refusal(lambda: decide_as(uow_for, publishing.retire, vid, ANA)) == "not_published"
    assert refusal(lambda: decide_as(uow_for, publishing.approve, "no-such-id", BETO)) == "version_not_found"
    steps = [d.split(" ")[0] for d in log_details(engine, publishing.PURPOSE)]
    assert steps == ["loaded", "proposed", "approved", "retired"]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.access_log.c.actor, t.access_log.c.role, t.access_log.c.subject_household_id).where(
                t.access_log.c.purpose == publishing.PURPOSE
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("acct-ana", "program_admin", None),
        ("acct-ana", "program_admin", None),
        ("acct-beto", "program_admin", None),
        ("acct-ana", "program_admin", None),
    ]


# --- the impact preview ----------------------------------------------------------------------------

LOADER = AccessContext(Actor("test:loader", "system"), "bulk_import")
RAISED = FOOD.replace('version: "2026.1"', 'version: "2026.2"').replace(
    "effective_from: 2026-01-01", "effective_from: 2026-11-01"
)


@pytest.fixture
def town(engine: Engine, clock: Clock, tmp_path: Path) -> Engine:
    source = tmp_path / "population"
    generate_population(PopulationSpec(households=120, seed=5, duplicate_share=0.0), source)
    import_population(engine, source, LOADER, clock, None)
    return engine


def independent_counts(uow_for: UowFor, before: RulePack | None, after: RulePack) -> dict[str, dict[str, int]]:
    """The per-household evaluator, one household at a time, counted by hand."""
    counts: dict[str, dict[str, int]] = {}
    with uow_for("cycle_run", Actor("test:cycle", "system")) as uow:
        ids = list(uow.connection.execute(sa.select(t.households.c.id)).scalars())
        for household_id in ids:
            record = get_household(uow, household_id, on=PERIOD)
            facts = facts_of_household(record, PERIOD)
            new = decide(after, facts, PERIOD)
            old = decide(before, facts, PERIOD) if before else None
            was = old is not None and old.status == "eligible"
            now = new.status == "eligible"
            if now and not was:
                change = "gain"
            elif was and not now:
                change = "lose"
            elif was and now and old is not None and new.amount_minor != old.amount_minor:
                change = "amount_up" if new.amount_minor > old.amount_minor else "amount_down"
            elif was and now and old is not None and new.items != old.items:
                change = "items_change"
            else:
                change = "unchanged"
            row = counts.setdefault(record.household.region, dict.fromkeys(publishing.METRICS, 0))
            row["households"] += 1
            row[change] += 1
            row["eligible_before"] += was
            row["eligible_after"] += now
            row["amount_before"] += old.amount_minor if was and old is not None else 0
            row["amount_after"] += new.amount_minor if now else 0
    return counts


def check_shown(impact: dict[str, Any], raw: dict[str, dict[str, int]]) -> None:
    """Every shown cell is the true count; every cell under 10 households is hidden."""
    total = {m: sum(r[m] for r in raw.values()) for m in publishing.METRICS}
    rows = [(r["region"], r, raw[r["region"]]) for r in impact["regions"]] + [("", impact["total"], total)]
    assert sorted(r["region"] for r in impact["regions"]) == sorted(raw)
    for _, shown, true in rows:
        for metric in publishing.METRICS:
            base = true[publishing.SUMS.get(metric, metric)]
            if base < publishing.SMALL_CELL:
                assert shown[metric] == "<10", (metric, shown)
            else:
                assert shown[metric] in (true[metric], "<10"), (metric, shown)


def test_the_impact_preview_counts_what_the_per_household_evaluator_decides_and_hides_small_cells(
    town: Engine, uow_for: UowFor
) -> None:
    load_catalogue(uow_for)
    first = propose(uow_for, town, FOOD)
    assert first.impact.against is None
    old = first.version.pack()
    expected_first = independent_counts(uow_for, None, old)
    assert sum(r["households"] for r in expected_first.values()) == 120
    check_shown(first.impact.as_dict(), expected_first)
    decide_as(uow_for, publishing.approve, first.version.id, BETO)

    raised = RAISED.replace(  # a later date, so the file's test cases (up to 2026-08) still hold
        "      2026-07-01: 11000        # 110.00 (Resolución MDS 41/2026)\n",
        "      2026-07-01: 11000\n      2026-11-01: 30000\n",
    )
    assert raised != RAISED
    second = propose(uow_for, town, raised)
    new = second.version.pack()
    expected = independent_counts(uow_for, old, new)
    assert second.impact.against == "2026.1" and second.impact.period == PERIOD
    with uow_for("impact_preview", Actor(ANA.id, ANA.role)) as uow:
        inputs = registry_inputs(uow, PERIOD, "test")
    assert publishing.count_impact(old, new, PERIOD, inputs) == expected
    assert sum(r["gain"] for r in expected.values()) > 0
    check_shown(second.impact.as_dict(), expected)
    reads = log_details(town, "impact_preview")
    assert reads.count("impact preview of food_basket 2026.2") == 120
    assert reads.count("impact preview of food_basket 2026.1") == 120


def test_suppression_also_hides_a_second_cell_when_one_hidden_cell_could_be_worked_out() -> None:
    row = dict.fromkeys(publishing.METRICS, 0)
    big = {**row, "households": 50, "unchanged": 20, "gain": 30, "eligible_after": 30, "amount_after": 900}
    small = {**row, "households": 12, "unchanged": 7, "gain": 5, "eligible_after": 5, "amount_after": 100}
    regions, total = publishing.suppress({"NORTE": big, "SUR": small, "ESTE": dict(big)})
    shown = dict(regions)
    assert shown["SUR"]["gain"] == "<10" and shown["SUR"]["amount_after"] == "<10"
    assert shown["SUR"]["unchanged"] == "<10" and shown["SUR"]["households"] == 12
    # NORTE and ESTE tie; one of their gains goes too, or total − NORTE − ESTE would give SUR's.
    assert [shown[r]["gain"] for r in ("ESTE", "NORTE")].count("<10") == 1
    assert total["households"] == 112 and total["gain"] == 65
