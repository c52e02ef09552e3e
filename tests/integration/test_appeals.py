"""Appeals over an imported town after a cycle: a resident appeals, a reviewer reads the case (logged),
upholds without change, or corrects the facts and overturns; refusals carry stable codes. Every
stored decision's explanation, rebuilt from its snapshot and rule version, gives its outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from civicard.adapters.bulk.cycle import run_cycle
from civicard.adapters.bulk.importer import import_population
from civicard.adapters.db import tables as t
from civicard.programs import appeals
from civicard.programs.engines import Outcome
from civicard.programs.explain import DecisionNotReproducible, explain
from civicard.registry.lookup import get_household
from civicard.registry.population import PopulationSpec, generate_population
from civicard.registry.recording import correct_fact
from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, DomainError, InvalidInput, NotFound
from civicard.transparency.access import Actor
from tests.integration.test_cycle import LOADER, PERIOD, RULES, SYSTEM, register_published

REVIEWER = Actor("reviewer-rita", "reviewer")
REASON = "We earn much less than what is recorded; my husband lost his job."


@pytest.fixture
def decided_town(engine, clock: Clock, tmp_path: Path, uow_for):  # type: ignore[no-untyped-def]
    """120 imported households, the published rule packs, and one cycle for PERIOD."""
    source = tmp_path / "population"
    generate_population(PopulationSpec(households=120, seed=5, duplicate_share=0.0), source)
    import_population(engine, source, LOADER, clock, None)
    with uow_for("cycle_run", SYSTEM) as uow:
        for path in sorted(RULES.glob("*/*.yaml")):
            if yaml.safe_load(path.read_text(encoding="utf-8"))["status"] != "draft":
                register_published(uow, path, clock)
        uow.commit()
    with uow_for("cycle_run", SYSTEM) as uow:
        run_cycle(uow, PERIOD, tmp_path / "out")
        uow.commit()
    return engine


def _food_decisions(uow_for) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with uow_for("cycle_run", SYSTEM) as uow:
        d = t.decisions.c
        rows = uow.connection.execute(
            sa.select(d.id, d.household_id, d.status, d.conditions).where(
                d.program == "food_basket", d.superseded_at.is_(None)
            )
        )
        return [dict(r._mapping) for r in rows]


def _only_income_too_high(uow_for) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A food-basket decision refused only for income, in a household whose incomes are recorded."""
    for row in _food_decisions(uow_for):
        if json.loads(row["conditions"]) == [["low_income", False], ["limited_assets", True]]:
            return row["id"], row["household_id"]
    raise AssertionError("the town has no household refused for income only")


def _members(uow_for, household_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    with uow_for("cycle_run", SYSTEM) as uow:
        m = t.memberships.c
        return list(
            uow.connection.execute(
                sa.select(m.person_id).where(m.household_id == household_id, m.valid_to.is_(None)).order_by(m.person_id)
            ).scalars()
        )


def _resident(uow_for, person_id: str, purpose: str = "appeal"):  # type: ignore[no-untyped-def]
    return uow_for(purpose, Actor(person_id, "resident"))


def _file(uow_for, person_id: str, decision_id: str, reason: str = REASON) -> appeals.Appeal:  # type: ignore[no-untyped-def]
    with _resident(uow_for, person_id) as uow:
        return appeals.file_appeal(uow, person_id, decision_id, reason)


def _decide(uow_for, appeal_id: str, outcome: str, note: str) -> appeals.AppealDecided:  # type: ignore[no-untyped-def]
    with uow_for("appeal_review", REVIEWER) as uow:
        return appeals.decide_appeal(uow, appeal_id, outcome, note)


def _refusal(call: Any) -> DomainError:
    with pytest.raises(DomainError) as refused:
        call()
    return refused.value


def test_an_appeal_is_overturned_only_after_the_wrong_facts_are_corrected(decided_town, uow_for) -> None:  # type: ignore[no-untyped-def]
    decision_id, household = _only_income_too_high(uow_for)
    resident = _members(uow_for, household)[0]

    appeal = _file(uow_for, resident, decision_id)
    assert appeal.status == "open" and appeal.program == "food_basket" and appeal.period == PERIOD

    with uow_for("appeal_review", REVIEWER) as uow:
        queue = appeals.list_appeals(uow)
        case = appeals.open_case(uow, appeal.id)
    assert [a.id for a in queue] == [appeal.id]
    assert case.decision.id == decision_id and case.explanation.outcome.status == "not_eligible"
    assert case.explanation.text("en").startswith("not eligible: Income per person at or under the limit not met")
    assert "no se cumple" in case.explanation.text("es")
    low_income = case.explanation.conditions[0]
    assert (low_income.name, low_income.met) == ("low_income", False)
    assert " > " in low_income.detail["en"] and "monthly income per person" in low_income.detail["en"]
    used = {i.name: i for i in case.explanation.household_inputs}
    assert used["household_income"].used and used["household_income"].label["es"] == "ingreso del hogar"
    assert case.history and case.history[0].id == decision_id
    assert case.household.household.id == household and case.period_open
    with uow_for("cycle_run", SYSTEM) as uow:
        log = t.access_log.c
        entries = uow.connection.execute(
            sa.select(log.purpose, log.action, log.subject_household_id, log.subject_person_id, log.detail).where(
                log.detail.like(f"appeal.%appeal={appeal.id}%")
            )
        ).all()
    assert ("appeal", "write", None, resident) in [(e[0], e[1], e[2], e[3]) for e in entries]
    read = [
        (e.purpose, e.action, e.subject_household_id, e.subject_person_id) for e in entries if "case_read" in e.detail
    ]
    assert ("appeal_review", "read", household, None) in read and ("appeal_review", "read", None, resident) in read

    refused = _refusal(lambda: _decide(uow_for, appeal.id, "overturned", "The income looks wrong to me."))
    assert refused.code == "nothing_changed"

    with uow_for("appeal_review", REVIEWER) as uow:  # the reviewer corrects the wrong incomes
        record = get_household(uow, household)
        incomes = [f for f in record.facts if f.kind == "incomes" and f.values["monthly_amount_minor"] > 0]
        assert incomes
        for fact in incomes:
            correct_fact(uow, "incomes", fact.id, {"monthly_amount_minor": 0}, "job lost; employer's letter")
    refused = _refusal(lambda: _decide(uow_for, appeal.id, "upheld", "Nothing to change here at all."))
    assert refused.code == "decision_changed"

    decided = _decide(uow_for, appeal.id, "overturned", "The recorded income was last year's; corrected.")
    assert decided.appeal.status == "overturned" and decided.appeal.decided_by == REVIEWER.id
    new_id = decided.appeal.new_decision_id
    assert new_id is not None and new_id != decision_id
    assert any(c.program == "food_basket" and c.kind == "gained" for c in decided.changes)
    with uow_for("appeal_review", REVIEWER) as uow:
        new = uow.decisions.get(new_id)
        old = uow.decisions.get(decision_id)
        granted = uow.decisions.household_entitlements(household, PERIOD)
    assert new is not None and new.origin == "appeal" and new.outcome.status == "eligible"
    assert old is not None and old.superseded_by == new_id
    food = {r["item_code"]: (r["granted"], r["remaining"]) for r in granted if r["program"] == "food_basket"}
    assert food and food == {code: (q, q) for code, q in new.outcome.items}

    with _resident(uow_for, resident, "self_access") as uow:
        mine = appeals.my_appeals(uow, resident)
        seen = appeals.my_decisions(uow, resident)
    assert [(a.status, a.outcome_note) for a in mine] == [
        ("overturned", "The recorded income was last year's; corrected.")
    ]
    view = next(v for v in seen.decisions if v.decision.program == "food_basket")
    assert view.decision.id == new_id and view.explanation is not None
    assert view.explanation.text("es").startswith("elegible porque")
    assert {e["item_code"]: e["remaining"] for e in view.entitlements} == {c: q for c, q in new.outcome.items}

    refused = _refusal(lambda: _decide(uow_for, appeal.id, "upheld", "Deciding twice is refused."))
    assert refused.code == "appeal_decided"
    refused = _refusal(lambda: _file(uow_for, resident, decision_id))
    assert isinstance(refused, Conflict) and refused.code == "decision_superseded"


def test_an_appeal_without_a_change_is_upheld_and_shown_to_the_resident(decided_town, uow_for) -> None:  # type: ignore[no-untyped-def]
    decision_id, household = _only_income_too_high(uow_for)
    resident = _members(uow_for, household)[-1]
    appeal = _file(uow_for, resident, decision_id)
    decided = _decide(uow_for, appeal.id, "upheld", "The recorded incomes match the documents provided.")
    assert decided.appeal.status == "upheld" and decided.appeal.new_decision_id is None
    assert not [c for c in decided.changes if c.program == "food_basket"]
    with _resident(uow_for, resident, "self_access") as uow:
        seen = appeals.my_decisions(uow, resident)
    assert [(a.id, a.status) for a in seen.appeals] == [(appeal.id, "upheld")]
    view = next(v for v in seen.decisions if v.decision.id == decision_id)
    assert view.appealable and view.open_appeal is None  # it can be appealed again with new reasons
    with uow_for("appeal_review", REVIEWER) as uow:
        assert appeals.list_appeals(uow) == []
        assert [a.id for a in appeals.list_appeals(uow, ["upheld"])] == [appeal.id]


def test_refused_appeals_carry_their_code(decided_town, uow_for) -> None:  # type: ignore[no-untyped-def]
    decision_id, household = _only_income_too_high(uow_for)
    resident = _members(uow_for, household)[0]
    other = next(r for r in _food_decisions(uow_for) if r["household_id"] != household)

    refused = _refusal(lambda: _file(uow_for, resident, other["id"]))
    assert isinstance(refused, NotFound) and refused.code == "not_your_decision"
    assert _refusal(lambda: _file(uow_for, resident, "not-an-id")).code == "not_your_decision"
    refused = _refusal(lambda: _file(uow_for, resident, decision_id, "too short"))
    assert isinstance(refused, InvalidInput) and refused.code == "reason_too_short"
    assert _refusal(lambda: _file(uow_for, resident, decision_id, "x" * 2001)).code == "reason_too_long"
    assert _refusal(lambda: _file(uow_for, resident, decision_id, "  \n   \t ")).code == "reason_too_short"

    _file(uow_for, resident, decision_id)
    assert _refusal(lambda: _file(uow_for, resident, decision_id)).code == "already_appealed"

    stranger = _members(uow_for, other["household_id"])[0]
    with _resident(uow_for, resident) as uow:  # a resident's purpose reaches only their own record
        refused = _refusal(lambda: appeals.file_appeal(uow, stranger, other["id"], REASON))
    assert refused.code == "not_your_record"
    with uow_for("appeal_review", REVIEWER) as uow:
        assert _refusal(lambda: appeals.open_case(uow, "0" * 32)).code == "unknown_appeal"
        assert _refusal(lambda: appeals.list_appeals(uow, ["closed"])).code == "invalid_status"
    appeal_id = _open_appeal(uow_for)
    assert _refusal(lambda: _decide(uow_for, appeal_id, "upheld", "short")).code == "note_too_short"
    assert _refusal(lambda: _decide(uow_for, appeal_id, "granted", "a long enough note")).code == "invalid_outcome"
    with uow_for("duplicate_review", REVIEWER) as uow:
        assert _refusal(lambda: appeals.list_appeals(uow)).code == "purpose_not_allowed"


def _open_appeal(uow_for) -> str:  # type: ignore[no-untyped-def]
    with uow_for("appeal_review", REVIEWER) as uow:
        return appeals.list_appeals(uow)[0].id


def test_every_stored_decision_is_explained_with_its_stored_outcome(decided_town, uow_for) -> None:  # type: ignore[no-untyped-def]
    with uow_for("cycle_run", SYSTEM) as uow:
        households = list(uow.connection.execute(sa.select(t.households.c.id)).scalars())
        explained = 0
        for household in households:
            for decision in uow.decisions.of_household(household):
                explanation = explain(decision, uow.register)
                assert explanation.outcome == decision.outcome
                assert [(c.name, c.met) for c in explanation.conditions] == list(decision.outcome.conditions)
                assert explanation.text("es") and explanation.text("en")
                explained += 1
    assert explained == 120 * 5


def test_an_altered_decision_is_not_explained(decided_town, uow_for) -> None:  # type: ignore[no-untyped-def]
    decision_id, _ = _only_income_too_high(uow_for)
    with uow_for("cycle_run", SYSTEM) as uow:
        uow.connection.execute(sa.update(t.decisions).where(t.decisions.c.id == decision_id).values(status="eligible"))
        decision = uow.decisions.get(decision_id)
        assert decision is not None and decision.outcome == Outcome(
            "eligible", decision.outcome.amount_minor, decision.outcome.conditions, decision.outcome.items
        )
        with pytest.raises(DecisionNotReproducible) as refused:
            explain(decision, uow.register)
    assert refused.value.code == "decision_not_reproducible"
