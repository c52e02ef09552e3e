"""Request and response bodies of the program register API (separate from domain classes and tables)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from pydantic import BaseModel, Field

from civicard.adapters.api.schemas import Body
from civicard.adapters.db.register_store import RegisteredVersion
from civicard.programs.publishing import MAX_NOTE_CHARS, MAX_SOURCE_CHARS, Proposal

Cell = int | str


class ProposalIn(Body):
    source: str = Field(max_length=MAX_SOURCE_CHARS, description="The rule file's exact text (YAML, docs/rules.md).")
    note: str = Field(default="", max_length=MAX_NOTE_CHARS, description="Why it is proposed; kept in the register.")


class DecisionIn(Body):
    note: str = Field(default="", max_length=MAX_NOTE_CHARS, description="Why; kept in the register.")


class ProgramVersionOut(BaseModel):
    """A registered version as the public sees it: rules and who decided, never personal data."""

    program: str
    version: str
    title_es: str
    title_en: str
    status: str = Field(description="published or retired (proposed and rejected versions are not public).")
    effective_from: date
    sha256: str
    legal_basis: str
    proposed_by: str
    approved_by: str | None

    @classmethod
    def of(cls, v: RegisteredVersion) -> ProgramVersionOut:
        return cls(
            program=v.program,
            version=v.version,
            title_es=v.title["es"],
            title_en=v.title["en"],
            status=v.status,
            effective_from=v.effective_from,
            sha256=v.sha256,
            legal_basis=v.legal_basis,
            proposed_by=v.proposed_by,
            approved_by=v.decided_by if v.status in ("published", "retired") else None,
        )


class ProgramVersionDetailOut(ProgramVersionOut):
    source: str = Field(description="The rule file exactly as approved; its canonical SHA-256 is `sha256`.")

    @classmethod
    def of(cls, v: RegisteredVersion) -> ProgramVersionDetailOut:
        return cls(**ProgramVersionOut.of(v).model_dump(), source=v.source)


class ProgramListOut(BaseModel):
    versions: list[ProgramVersionOut]


class ImpactCellsOut(BaseModel):
    """Households (and money sums in minor units); a cell under `small_cell` households reads "<10"."""

    households: Cell
    gain: Cell
    lose: Cell
    amount_up: Cell
    amount_down: Cell
    items_change: Cell
    unchanged: Cell
    eligible_before: Cell
    eligible_after: Cell
    amount_before: Cell
    amount_after: Cell


class ImpactRegionOut(ImpactCellsOut):
    region: str


class ImpactOut(BaseModel):
    program: str
    version: str
    against: str | None = Field(description="The version in force compared with; null for a program's first version.")
    period: str = Field(description="The first period the proposed version would apply to, YYYY-MM.")
    small_cell: int
    regions: list[ImpactRegionOut]
    total: ImpactCellsOut

    @classmethod
    def of(cls, impact: dict[str, Any]) -> ImpactOut:
        return cls.model_validate(impact)


class TestsOut(BaseModel):
    cases: int
    engines: list[str]
    passed: int


class RegisteredOut(BaseModel):
    """A version in the register as its administrators see it."""

    id: str
    program: str
    version: str
    status: str
    sha256: str
    effective_from: date
    proposed_by: str
    proposed_at: datetime
    decided_by: str | None
    decided_at: datetime | None

    @classmethod
    def of(cls, v: RegisteredVersion) -> RegisteredOut:
        return cls(
            id=v.id,
            program=v.program,
            version=v.version,
            status=v.status,
            sha256=v.sha256,
            effective_from=v.effective_from,
            proposed_by=v.proposed_by,
            proposed_at=v.proposed_at,
            decided_by=v.decided_by,
            decided_at=v.decided_at,
        )


class ProposalOut(BaseModel):
    version: RegisteredOut
    tests: TestsOut
    impact: ImpactOut

    @classmethod
    def of(cls, proposal: Proposal) -> ProposalOut:
        t = proposal.tests
        return cls(
            version=RegisteredOut.of(cast(RegisteredVersion, proposal.version)),
            tests=TestsOut(cases=t.cases, engines=list(t.engines), passed=t.passed),
            impact=ImpactOut.of(proposal.impact.as_dict()),
        )
