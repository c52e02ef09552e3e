"""Request and response bodies of decisions and appeals (separate from domain classes and tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from civicard.adapters.api.schemas import Body, HouseholdOut
from civicard.programs.appeals import Appeal, AppealCase, AppealDecided, DecisionView, StoredDecisionRecord
from civicard.programs.explain import Explanation, InputLine

Lang = Literal["es", "en"]
AppealStatusName = Literal["open", "upheld", "overturned"]
OutcomeName = Literal["upheld", "overturned"]


class AppealIn(Body):
    decision_id: str = Field(max_length=32, description="The decision appealed (one of GET /v1/me/decisions).")
    reason: str = Field(
        max_length=20_000,
        description="Why the decision is wrong, in your words (10 to 2000 characters).",
        examples=["My husband lost his job in October; our income is lower now."],
    )


class AppealDecisionIn(Body):
    outcome: OutcomeName
    note: str = Field(
        max_length=20_000,
        description="The reviewer's reasons, shown to the resident (at least 10 characters).",
        examples=["The income recorded was last year's; corrected from the employer's letter."],
    )


class ConditionOut(BaseModel):
    name: str
    label: str
    met: bool | None = Field(description="true met, false not met, null unknown (missing data).")
    detail: str = Field(description='The operands: "income per person 410.00 > limit 350.00".')


class ExplanationOut(BaseModel):
    text: str
    title: str
    version: str
    conditions: list[ConditionOut]

    @classmethod
    def of(cls, e: Explanation, lang: Lang) -> ExplanationOut:
        return cls(
            text=e.text(lang),
            title=e.title.get(lang, e.program),
            version=e.version,
            conditions=[
                ConditionOut(name=c.name, label=c.label[lang], met=c.met, detail=c.detail[lang]) for c in e.conditions
            ],
        )


class EntitlementOut(BaseModel):
    item_code: str
    item_name: str | None
    granted: int
    remaining: int


class DecisionOut(BaseModel):
    id: str
    period: str
    program: str
    status: Literal["eligible", "not_eligible", "unknown"]
    amount_minor: int
    items: dict[str, int]
    origin: str
    decided_at: datetime
    superseded: bool
    explanation: ExplanationOut | None = Field(description="Null when the decision cannot be reproduced.")
    explanation_problem: str | None = Field(default=None, description="Why there is no explanation (a code).")

    @classmethod
    def of(
        cls, d: StoredDecisionRecord, explanation: Explanation | None, lang: Lang, problem: str | None = None
    ) -> DecisionOut:
        return cls(
            id=d.id,
            period=d.period,
            program=d.program,
            status=d.outcome.status,  # type: ignore[arg-type]
            amount_minor=d.outcome.amount_minor,
            items=dict(d.outcome.items),
            origin=d.origin,
            decided_at=d.decided_at,
            superseded=d.superseded_at is not None,
            explanation=ExplanationOut.of(explanation, lang) if explanation else None,
            explanation_problem=problem,
        )


class MyDecisionOut(DecisionOut):
    entitlements: list[EntitlementOut]
    open_appeal_id: str | None
    appealable: bool

    @classmethod
    def of_view(cls, v: DecisionView, lang: Lang, items: dict[str, dict[str, str]]) -> MyDecisionOut:
        base = DecisionOut.of(v.decision, v.explanation, lang, v.problem)
        return cls(
            **base.model_dump(exclude={"explanation"}),
            explanation=base.explanation,
            entitlements=[_entitlement(e, lang, items) for e in v.entitlements],
            open_appeal_id=v.open_appeal.id if v.open_appeal else None,
            appealable=v.appealable,
        )


class AppealOut(BaseModel):
    id: str
    period: str
    decision_id: str
    program: str
    status: AppealStatusName
    reason: str
    filed_at: datetime
    decided_at: datetime | None
    outcome_note: str | None
    new_decision_id: str | None

    @classmethod
    def of(cls, a: Appeal) -> AppealOut:
        return cls(
            id=a.id,
            period=a.period,
            decision_id=a.decision_id,
            program=a.program,
            status=a.status,  # type: ignore[arg-type]
            reason=a.reason,
            filed_at=a.filed_at,
            decided_at=a.decided_at,
            outcome_note=a.outcome_note,
            new_decision_id=a.new_decision_id,
        )


class MyDecisionsOut(BaseModel):
    decisions: list[MyDecisionOut]
    appeals: list[AppealOut]


class MyAppealsOut(BaseModel):
    items: list[AppealOut]


class QueueAppealOut(BaseModel):
    """A queue line: no reason and no name (open the case for those; that read is logged)."""

    id: str
    period: str
    program: str
    status: AppealStatusName
    filed_at: datetime
    decided_at: datetime | None

    @classmethod
    def of(cls, a: Appeal) -> QueueAppealOut:
        return cls(
            id=a.id,
            period=a.period,
            program=a.program,
            status=a.status,  # type: ignore[arg-type]
            filed_at=a.filed_at,
            decided_at=a.decided_at,
        )


class AppealPage(BaseModel):
    items: list[QueueAppealOut]
    next_cursor: str | None


class ReviewedAppealOut(AppealOut):
    household_id: str
    person_id: str = Field(description="The resident who appealed.")
    decided_by: str | None


class InputOut(BaseModel):
    name: str
    label: str
    value: str
    used: bool = Field(description="The program's rules name this input.")


class FactsUsedOut(BaseModel):
    household: list[InputOut]
    members: list[list[InputOut]]


class AppealCaseOut(BaseModel):
    appeal: ReviewedAppealOut
    decision: DecisionOut
    facts_used: FactsUsedOut = Field(description="The input snapshot the decision was made on.")
    current_decision: DecisionOut | None = Field(
        description="The decision in force now, if it replaced the appealed one."
    )
    history: list[DecisionOut] = Field(description="The household's decisions under this program, newest first.")
    entitlements: list[EntitlementOut]
    household: HouseholdOut = Field(
        description="The household's current facts (correct them with purpose appeal_review)."
    )
    period_open: bool

    @classmethod
    def of(cls, c: AppealCase, lang: Lang) -> AppealCaseOut:
        e = c.explanation
        return cls(
            appeal=ReviewedAppealOut(
                **AppealOut.of(c.appeal).model_dump(),
                household_id=c.appeal.household_id,
                person_id=c.appeal.person_id,
                decided_by=c.appeal.decided_by,
            ),
            decision=DecisionOut.of(c.decision, e, lang),
            facts_used=FactsUsedOut(
                household=[_input(i, lang) for i in e.household_inputs],
                members=[[_input(i, lang) for i in member] for member in e.member_inputs],
            ),
            current_decision=(
                DecisionOut.of(c.current.decision, c.current.explanation, lang, c.current.problem)
                if c.current
                else None
            ),
            history=[DecisionOut.of(d, None, lang, "not_requested") for d in c.history],
            entitlements=[_entitlement(x, lang, {}) for x in c.entitlements],
            household=HouseholdOut.of_record(c.household),
            period_open=c.period_open,
        )


class ChangeOut(BaseModel):
    program: str
    period: str
    kind: str
    summary: str


class AppealDecidedOut(BaseModel):
    appeal: ReviewedAppealOut
    changes: list[ChangeOut] = Field(description="What re-deciding the household changed, in every open period.")

    @classmethod
    def of(cls, d: AppealDecided) -> AppealDecidedOut:
        a = d.appeal
        return cls(
            appeal=ReviewedAppealOut(
                **AppealOut.of(a).model_dump(),
                household_id=a.household_id,
                person_id=a.person_id,
                decided_by=a.decided_by,
            ),
            changes=[
                ChangeOut(program=c.program, period=c.period, kind=c.kind, summary=c.summary()) for c in d.changes
            ],
        )


def _input(i: InputLine, lang: Lang) -> InputOut:
    return InputOut(name=i.name, label=i.label[lang], value=i.shown[lang], used=i.used)


def _entitlement(e: dict[str, Any], lang: Lang, items: dict[str, dict[str, str]]) -> EntitlementOut:
    code = str(e["item_code"])
    return EntitlementOut(
        item_code=code,
        item_name=items.get(code, {}).get(lang),
        granted=int(e["granted"]),
        remaining=int(e["remaining"]),
    )
