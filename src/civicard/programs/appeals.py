"""Appeals: a resident contests one of their household's decisions; a reviewer settles it.

No benefit depends on anything but published rules over need-related facts, so a reviewer cannot
override a decision. To overturn one, the reviewer corrects the wrong facts (the registry's
correction services, purpose `appeal_review`) and then decides the appeal: deciding re-evaluates
the household with its current facts (origin "appeal"). The appeal is overturned when the
re-decision differs from the appealed one, upheld when it does not; a reviewer's word that
contradicts the re-decision is refused. Every step is logged through the enforcement point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from civicard.programs.cycles import DecisionChange, Stored
from civicard.programs.explain import DecisionRecord, Explanation, VersionRegister, explain
from civicard.programs.reevaluation import reevaluate_household
from civicard.registry.lookup import get_household
from civicard.registry.model import HouseholdRecord
from civicard.registry.ports import RegistryUnitOfWork
from civicard.shared.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from civicard.shared.ids import is_id, new_id
from civicard.shared.text import clean_text
from civicard.transparency.access import Subject, disclose, record_change

APPEAL_STATUSES = ("open", "upheld", "overturned")
OUTCOMES = ("upheld", "overturned")
FILING, REVIEW, SELF_ACCESS = "appeal", "appeal_review", "self_access"
MIN_TEXT, MAX_REASON, MAX_NOTE = 10, 2000, 2000
MAX_PAGE = 100
_MAX_RAW = 20_000  # longer input is refused before it is even cleaned


@dataclass(frozen=True)
class Appeal:
    id: str
    period: str
    decision_id: str
    household_id: str
    program: str
    person_id: str  # the resident who appealed
    reason: str
    status: str  # open, upheld or overturned
    filed_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    outcome_note: str | None = None
    new_decision_id: str | None = None


class StoredDecisionRecord(DecisionRecord, Protocol):
    @property
    def household_id(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def decided_at(self) -> datetime: ...
    @property
    def superseded_at(self) -> datetime | None: ...


class AppealStore(Protocol):
    def add(self, appeal: Appeal) -> None: ...
    def get(self, appeal_id: str) -> Appeal | None: ...
    def open_for_decision(self, decision_id: str) -> Appeal | None: ...
    def of_person(self, person_id: str) -> list[Appeal]: ...
    def of_household(self, household_id: str) -> list[Appeal]: ...
    def queue(self, statuses: Sequence[str], limit: int, after: Appeal | None) -> list[Appeal]: ...
    def lock_decision(self, period: str, decision_id: str) -> None: ...
    def save_decision(self, appeal: Appeal) -> bool: ...


class DecisionReader(Protocol):
    def get(self, decision_id: str) -> StoredDecisionRecord | None: ...
    def of_household(self, household_id: str, current_only: bool = True) -> Sequence[StoredDecisionRecord]: ...
    def current(self, period: str, household_ids: Sequence[str] | None = None) -> dict[tuple[str, str], Stored]: ...
    def period_status(self, period: str) -> str | None: ...
    def household_entitlements(self, household_id: str, period: str | None = None) -> list[dict[str, Any]]: ...


class ProgramRegister(VersionRegister, Protocol):
    def items(self) -> list[dict[str, Any]]: ...


class AppealUnitOfWork(RegistryUnitOfWork, Protocol):
    @property
    def appeals(self) -> AppealStore: ...
    @property
    def decisions(self) -> DecisionReader: ...
    @property
    def register(self) -> ProgramRegister: ...


@dataclass(frozen=True)
class DecisionView:
    """A decision with its reasons (None, with the refusal's code, if it cannot be reproduced)."""

    decision: StoredDecisionRecord
    explanation: Explanation | None
    problem: str | None
    entitlements: tuple[dict[str, Any], ...]
    open_appeal: Appeal | None
    appealable: bool  # current, in an open period, with no open appeal


@dataclass(frozen=True)
class MyDecisions:
    household_id: str | None
    decisions: tuple[DecisionView, ...]
    appeals: tuple[Appeal, ...]
    items: dict[str, dict[str, str]]  # item code → {"es": name, "en": name}


@dataclass(frozen=True)
class AppealCase:
    appeal: Appeal
    decision: StoredDecisionRecord
    explanation: Explanation
    current: DecisionView | None  # the decision in force now, if another one replaced the appealed one
    history: tuple[StoredDecisionRecord, ...]  # the household's decisions under this program, newest first
    household: HouseholdRecord  # current facts, read through the enforcement point
    entitlements: tuple[dict[str, Any], ...]
    period_open: bool


@dataclass(frozen=True)
class AppealDecided:
    appeal: Appeal
    changes: tuple[DecisionChange, ...]


# --- the resident -----------------------------------------------------------------------------


def my_decisions(uow: AppealUnitOfWork, person_id: str) -> MyDecisions:
    """The current decisions of the resident's household with reasons, entitlements and appeals."""
    _require_purpose(uow, SELF_ACCESS)
    disclose(
        uow.access_log,
        uow.context,
        [Subject.person(person_id)],
        ["household", "decisions"],
        "decisions.read",
        uow.clock.now(),
    )
    items = {r["code"]: {"es": r["name_es"], "en": r["name_en"]} for r in uow.register.items()}
    appeals = tuple(uow.appeals.of_person(person_id))
    membership = uow.memberships.current_of_person(person_id)
    if membership is None:
        uow.commit()
        return MyDecisions(None, (), appeals, items)
    household_id = membership.household_id
    entitlements = uow.decisions.household_entitlements(household_id)
    open_appeals = {a.decision_id: a for a in uow.appeals.of_household(household_id) if a.status == "open"}
    views = tuple(_view(uow, d, entitlements, open_appeals.get(d.id)) for d in uow.decisions.of_household(household_id))
    uow.commit()
    return MyDecisions(household_id, views, appeals, items)


def my_appeals(uow: AppealUnitOfWork, person_id: str) -> list[Appeal]:
    _require_purpose(uow, SELF_ACCESS)
    disclose(uow.access_log, uow.context, [Subject.person(person_id)], ["decisions"], "appeals.read", uow.clock.now())
    found = uow.appeals.of_person(person_id)
    uow.commit()
    return found


def file_appeal(uow: AppealUnitOfWork, person_id: str, decision_id: str, reason: str) -> Appeal:
    """A resident contests a current decision about their own household, in their words."""
    _require_purpose(uow, FILING)
    text = _text(reason, "reason", MAX_REASON)
    decision = uow.decisions.get(decision_id) if is_id(decision_id) else None
    membership = uow.memberships.current_of_person(person_id)
    if decision is None or membership is None or membership.household_id != decision.household_id:
        raise NotFound("not_your_decision", "Your household has no decision with this id.")
    uow.appeals.lock_decision(decision.period, decision.id)  # one filing at a time per decision
    if decision.superseded_at is not None:
        raise Conflict("decision_superseded", "This decision was replaced by a newer one; appeal the current decision.")
    if uow.decisions.period_status(decision.period) == "closed":
        raise Conflict("period_closed", f"Period {decision.period} is settled; its decisions can no longer change.")
    if uow.appeals.open_for_decision(decision.id) is not None:
        raise Conflict("already_appealed", "This decision already has an open appeal; wait for its outcome.")
    now = uow.clock.now()
    appeal = Appeal(
        new_id(), decision.period, decision.id, decision.household_id, decision.program, person_id, text, "open", now
    )
    uow.appeals.add(appeal)
    record_change(
        uow.access_log,
        uow.context,
        [Subject.person(person_id)],
        ["decisions"],
        f"appeal.filed appeal={appeal.id} decision={decision.id}",
        now,
    )
    uow.commit()
    return appeal


# --- the reviewer -----------------------------------------------------------------------------


def list_appeals(
    uow: AppealUnitOfWork, statuses: Sequence[str] | None = None, limit: int = 50, after: str | None = None
) -> list[Appeal]:
    """A page of appeals, oldest first (default: open). Callers show no reason or name in the
    queue — those appear when a case is opened — so listing it is not logged."""
    _require_purpose(uow, REVIEW)
    wanted = tuple(statuses) if statuses else ("open",)
    if any(s not in APPEAL_STATUSES for s in wanted):
        raise InvalidInput("invalid_status", f"The status is one of: {', '.join(APPEAL_STATUSES)}.")
    cursor = None
    if after is not None:
        cursor = uow.appeals.get(after) if is_id(after) else None
        if cursor is None:
            raise InvalidInput("invalid_cursor", "The page cursor is not an appeal id.")
    return uow.appeals.queue(wanted, max(1, min(limit, MAX_PAGE)), cursor)


def open_case(uow: AppealUnitOfWork, appeal_id: str) -> AppealCase:
    """The appeal, the decision with its reasons and the facts it was made on, the household's
    current facts and its decision history. Logged for the household and the appellant."""
    _require_purpose(uow, REVIEW)
    appeal = _require_appeal(uow, appeal_id)
    disclose(
        uow.access_log,
        uow.context,
        [Subject.household(appeal.household_id), Subject.person(appeal.person_id)],
        ["decisions"],
        f"appeal.case_read appeal={appeal.id}",
        uow.clock.now(),
    )
    decision = _require_decision(uow, appeal.decision_id)
    explanation = explain(decision, uow.register)
    history = tuple(d for d in uow.decisions.of_household(appeal.household_id, False) if d.program == appeal.program)
    entitlements = uow.decisions.household_entitlements(appeal.household_id, appeal.period)
    current = next(
        (d for d in history if d.period == appeal.period and d.superseded_at is None and d.id != decision.id), None
    )
    current_view = _view(uow, current, entitlements, None) if current is not None else None
    record = get_household(uow, appeal.household_id)  # logged; commits
    return AppealCase(
        appeal,
        decision,
        explanation,
        current_view,
        history,
        record,
        tuple(e for e in entitlements if e["program"] == appeal.program),
        uow.decisions.period_status(appeal.period) != "closed",
    )


def decide_appeal(uow: AppealUnitOfWork, appeal_id: str, outcome: str, note: str) -> AppealDecided:
    """Re-decide the household with its current facts and settle the appeal by what came out.

    `overturned` needs a re-decision that differs from the appealed one (correct the facts first:
    `nothing_changed`); `upheld` needs one that does not (`decision_changed`)."""
    _require_purpose(uow, REVIEW)
    if outcome not in OUTCOMES:
        raise InvalidInput("invalid_outcome", f"The outcome is one of: {', '.join(OUTCOMES)}.")
    text = _text(note, "note", MAX_NOTE)
    appeal = _require_appeal(uow, appeal_id)
    if appeal.status != "open":
        raise Conflict("appeal_decided", f"This appeal was already decided ({appeal.status}).")
    appealed = _require_decision(uow, appeal.decision_id)
    period_open = uow.decisions.period_status(appeal.period) != "closed"
    if not period_open and outcome == "overturned":
        raise Conflict("period_closed", f"Period {appeal.period} is settled; its decisions can no longer change.")
    changes = tuple(reevaluate_household(uow, appeal.household_id, origin="appeal")) if period_open else ()
    now = uow.clock.now()
    current = uow.decisions.current(appeal.period, [appeal.household_id]).get((appeal.household_id, appeal.program))
    changed = current is not None and current.outcome != appealed.outcome
    if outcome == "overturned" and not changed:
        raise Conflict(
            "nothing_changed",
            "Deciding again with the household's current facts gives the same result. A decision follows "
            "the published rules only: correct the wrong facts first (purpose appeal_review), then decide.",
        )
    if outcome == "upheld" and changed:
        raise Conflict(
            "decision_changed",
            "With the household's current facts the decision comes out differently: decide 'overturned' "
            "and explain the corrected facts in the note.",
        )
    replaced = current.id if current is not None and current.id != appealed.id else None
    decided = replace(
        appeal,
        status=outcome,
        decided_by=uow.context.actor.id,
        decided_at=now,
        outcome_note=text,
        new_decision_id=replaced,
    )
    if not uow.appeals.save_decision(decided):  # another reviewer decided it meanwhile
        raise Conflict("appeal_decided", "This appeal was decided by someone else meanwhile.")
    record_change(
        uow.access_log,
        uow.context,
        [Subject.household(appeal.household_id), Subject.person(appeal.person_id)],
        ["decisions"],
        f"appeal.decided appeal={appeal.id} status={outcome}" + (f" new_decision={replaced}" if replaced else ""),
        now,
    )
    uow.commit()
    return AppealDecided(decided, changes)


# --- helpers ----------------------------------------------------------------------------------


def _view(
    uow: AppealUnitOfWork, d: StoredDecisionRecord, entitlements: list[dict[str, Any]], appeal: Appeal | None
) -> DecisionView:
    try:
        explanation, problem = explain(d, uow.register), None
    except DomainError as exc:  # shown as "cannot be explained", never as a made-up reason
        explanation, problem = None, exc.code
    mine = tuple(e for e in entitlements if e["period"] == d.period and e["program"] == d.program)
    appealable = appeal is None and d.superseded_at is None and uow.decisions.period_status(d.period) != "closed"
    return DecisionView(d, explanation, problem, mine, appeal, appealable)


def _require_purpose(uow: AppealUnitOfWork, purpose: str) -> None:
    if uow.context.purpose != purpose:
        raise Forbidden("purpose_not_allowed", f"This is done under the '{purpose}' purpose.")


def _require_appeal(uow: AppealUnitOfWork, appeal_id: str) -> Appeal:
    appeal = uow.appeals.get(appeal_id) if is_id(appeal_id) else None
    if appeal is None:
        raise NotFound("unknown_appeal", f"No appeal with id '{appeal_id}'.")
    return appeal


def _require_decision(uow: AppealUnitOfWork, decision_id: str) -> StoredDecisionRecord:
    decision = uow.decisions.get(decision_id)
    if decision is None:
        raise NotFound("unknown_decision", "The decision appealed is missing.")
    return decision


def _text(value: str, name: str, most: int) -> str:
    if isinstance(value, str) and len(value) > _MAX_RAW:
        raise InvalidInput(f"{name}_too_long", f"The {name} is longer than {most} characters.")
    text = clean_text(value, name, _MAX_RAW, required=False)
    if len(text) < MIN_TEXT:
        raise InvalidInput(f"{name}_too_short", f"Write at least {MIN_TEXT} characters.")
    if len(text) > most:
        raise InvalidInput(f"{name}_too_long", f"The {name} is longer than {most} characters.")
    return text
