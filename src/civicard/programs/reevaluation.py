"""Re-deciding one household after its facts changed (a correction, an appeal).

For every open period that has decisions, the household is read through the enforcement point
(logged under the caller's purpose), decided again with the versions in force for that period,
and only what differs is stored: the earlier decision is superseded and the entitlements of the
open period follow the new grant. Closed periods are never touched.
"""

from __future__ import annotations

from typing import Any

from civicard.programs.cycles import DecisionChange, Proposed, apply, inputs_json, period_start, snapshot_id
from civicard.programs.decisions import decide
from civicard.programs.engines import Outcome
from civicard.programs.household_inputs import facts_of_household
from civicard.registry.facts import FACT_KINDS
from civicard.registry.lookup import get_household


def reevaluate_household(uow: Any, household_id: str, origin: str = "reevaluation") -> list[DecisionChange]:
    """Decide `household_id` again in each open period it has decisions in; returns what changed.
    The caller commits."""
    changes: list[DecisionChange] = []
    for period in uow.decisions.open_periods():
        stored = uow.decisions.current(period, [household_id])
        if not stored:
            continue
        start = period_start(period)
        versions = uow.register.in_force(start)
        record = get_household(uow, household_id, on=start)
        facts = facts_of_household(record, start)
        text = inputs_json(facts.household, facts.members)
        sha = snapshot_id(text)
        if not uow.decisions.has_inputs(period, household_id, sha):
            uow.decisions.add_inputs(
                [
                    {
                        "period": period,
                        "household_id": household_id,
                        "inputs_sha256": sha,
                        "region": record.household.region,
                        "inputs": text,
                    }
                ]
            )
        proposed = [
            Proposed(household_id, v.program, v.id, v.sha256, sha, Outcome.of(decide(v.pack(), facts, start)))
            for v in versions
        ]
        made, _ = apply(uow.decisions, period, proposed, origin, None, uow.clock.now(), [household_id])
        changes += made
    return changes


def redecide_after_fact(uow: Any, kind: str, subject_id: str) -> int:
    """After a fact was recorded or corrected: decide its household again in the open periods (its
    entitlements follow) and commit; how many decisions changed (0 if the person has no household)."""
    if FACT_KINDS[kind].subject == "household":
        household_id: str | None = subject_id
    else:
        membership = uow.memberships.current_of_person(subject_id)
        household_id = membership.household_id if membership else None
    if household_id is None:
        return 0
    changes = reevaluate_household(uow, household_id)
    uow.commit()
    return len(changes)
