"""/v1/vendors/{id}/statements/{period} (JSON and .csv) and /v1/oversight/exclusions/{period}.

A statement is read by oversight staff (a session: `Authorization: Bearer …`) or by a terminal of
that vendor (a signed request: X-Civicard-Terminal, -Timestamp, -Nonce, -Signature, see
identity/terminal_auth.py). The exclusion report is for oversight staff only. Both run under the
operation's own purpose (`settlement`), so no X-Civicard-Purpose header is needed; each read is
logged. Neither holds a name, a person or household id: card holders appear only as the vendor's
pseudonym.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from civicard.adapters.api.access import App, caller, signed_request, terminal
from civicard.adapters.db.settlement_store import SqlSettlementUnitOfWork
from civicard.adapters.db.vendor_store import terminal_vendor
from civicard.bootstrap import Container
from civicard.distribution import settlement as service
from civicard.distribution.exclusion import ExclusionReport, exclusion_report
from civicard.distribution.statement_render import statement_csv
from civicard.identity.principals import Principal
from civicard.shared.errors import Forbidden, Unauthenticated
from civicard.transparency.access import AccessContext

router = APIRouter(prefix="/v1", tags=["settlement"])
PERIOD = r"^[0-9]{4}-[0-9]{2}$"
TERMINAL_HEADERS = ("x-civicard-terminal", "x-civicard-timestamp", "x-civicard-nonce", "x-civicard-signature")
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid session or terminal signature"},
    403: {"description": "Neither oversight staff nor a terminal of this vendor"},
    404: {"description": "Unknown vendor or period"},
    422: {"description": "Invalid vendor id or period"},
}
VendorId = Annotated[str, Path(max_length=32)]
PeriodText = Annotated[str, Path(pattern=PERIOD, description="The month, YYYY-MM.")]


async def settlement_reader(request: Request, app: App) -> Principal:
    """Oversight staff by session, or a vendor terminal by signature (checked against the vendor later)."""
    if any(h in request.headers for h in TERMINAL_HEADERS):
        h = request.headers
        if not all(name in h for name in TERMINAL_HEADERS):
            raise Unauthenticated("terminal_bad_request", "A terminal request carries all four X-Civicard headers.")
        return await terminal(app, await signed_request(request, *(h[name] for name in TERMINAL_HEADERS)))
    who = await run_in_threadpool(caller, request, app, None)
    return who.principal


Reader = Annotated[Principal, Depends(settlement_reader)]


def _oversight(principal: Principal) -> None:
    if principal.kind != "staff" or principal.role != "oversight":
        raise Forbidden("oversight_only", "Only oversight staff may read this.")


def _may_read_statement(app: Container, principal: Principal, vendor_id: str) -> None:
    if principal.kind == "terminal":
        with app.engine.connect() as conn:
            if terminal_vendor(conn, principal.id) != vendor_id:
                raise Forbidden("not_your_vendor", "A terminal reads only its own vendor's statements.")
        return
    _oversight(principal)


def _uow(app: Container, principal: Principal) -> SqlSettlementUnitOfWork:
    return SqlSettlementUnitOfWork(app.engine, AccessContext(principal.actor(), "settlement"), app.clock)


# --- response models ---------------------------------------------------------------------------------


class SubtotalOut(BaseModel):
    outlet_id: str
    outlet_name: str
    item_code: str | None = Field(description="None on an outlet's total over all items.")
    redemptions: int
    quantity: int
    subsidy_minor: int


class LineOut(BaseModel):
    transaction_id: str
    sold_at: datetime
    outlet_id: str
    outlet_name: str
    item_code: str
    quantity: int
    reference_price_minor: int
    subsidized_price_minor: int
    subsidy_minor: int
    channel: str
    holder: str = Field(description="The vendor's own pseudonym of the card holder.")


class SettledOut(BaseModel):
    subsidy_minor: int
    redemptions: int
    lines: int
    ledger_sha256: str
    settled_at: datetime
    matches_ledger: bool


class StatementOut(BaseModel):
    vendor_id: str
    vendor_name: str
    tax_id: str
    period: str
    period_status: str
    redemptions: int
    lines: int
    subsidy_minor: int = Field(description="Subsidy owed: Σ (reference − subsidized) × quantity, minor units.")
    ledger_sha256: str
    settled: SettledOut | None
    by_outlet: list[SubtotalOut]
    by_outlet_item: list[SubtotalOut]
    reconciliation: list[LineOut]

    @classmethod
    def of(cls, s: service.Statement) -> StatementOut:
        settled = None
        if s.settled is not None:
            fixed = s.settled.total
            settled = SettledOut(
                subsidy_minor=fixed.subsidy_minor,
                redemptions=fixed.redemptions,
                lines=fixed.lines,
                ledger_sha256=fixed.ledger_sha256,
                settled_at=s.settled.settled_at,
                matches_ledger=fixed == s.total,
            )
        return cls(
            vendor_id=s.vendor_id,
            vendor_name=s.vendor_name,
            tax_id=s.tax_id,
            period=s.period,
            period_status=s.period_status,
            redemptions=s.total.redemptions,
            lines=s.total.lines,
            subsidy_minor=s.total.subsidy_minor,
            ledger_sha256=s.total.ledger_sha256,
            settled=settled,
            by_outlet=[SubtotalOut(**vars(x)) for x in s.by_outlet],
            by_outlet_item=[SubtotalOut(**vars(x)) for x in s.by_outlet_item],
            reconciliation=[LineOut(**vars(x)) for x in s.lines],
        )


class OutletExclusionOut(BaseModel):
    outlet_id: str
    outlet_name: str
    kind: str
    vendor_id: str
    vendor_name: str
    sales: int
    failed_pin_attempts: int
    fallbacks: int
    refused: int
    refusals: dict[str, int] = Field(description="Refusals by reason code.")


class ExclusionsOut(BaseModel):
    period: str
    outlets: list[OutletExclusionOut] = Field(description="Highest refusal rate first; counts are not suppressed.")

    @classmethod
    def of(cls, report: ExclusionReport) -> ExclusionsOut:
        return cls(
            period=report.period,
            outlets=[
                OutletExclusionOut(
                    outlet_id=o.outlet_id,
                    outlet_name=o.outlet_name,
                    kind=o.kind,
                    vendor_id=o.vendor_id,
                    vendor_name=o.vendor_name,
                    sales=o.sales,
                    failed_pin_attempts=o.failed_pin_attempts,
                    fallbacks=o.fallbacks,
                    refused=o.refused,
                    refusals=dict(o.refusals),
                )
                for o in report.outlets
            ],
        )


# --- routes (the .csv route first: `{period}` alone would also match "2026-12.csv") -----------------


def _statement(app: Container, principal: Principal, vendor_id: str, period: str) -> service.Statement:
    _may_read_statement(app, principal, vendor_id)
    with _uow(app, principal) as uow:
        return service.statement(uow, app.root_key, vendor_id, period)


@router.get(
    "/vendors/{vendor_id}/statements/{period}.csv",
    responses={**PROBLEMS, 200: {"content": {"text/csv": {}}, "description": "One row per ledger line"}},
    response_class=Response,
)
def read_statement_csv(vendor_id: VendorId, period: PeriodText, app: App, reader: Reader) -> Response:
    """The statement's reconciliation lines as CSV (amounts in minor units)."""
    found = _statement(app, reader, vendor_id, period)
    filename = f"statement-{period}-{vendor_id[:8]}.csv"
    return Response(
        statement_csv(found),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/vendors/{vendor_id}/statements/{period}", responses=PROBLEMS)
def read_statement(vendor_id: VendorId, period: PeriodText, app: App, reader: Reader) -> StatementOut:
    """What the vendor is owed for the period, per outlet and item, with every redemption behind it."""
    return StatementOut.of(_statement(app, reader, vendor_id, period))


@router.get("/oversight/exclusions/{period}", responses=PROBLEMS)
def read_exclusions(period: PeriodText, app: App, reader: Reader) -> ExclusionsOut:
    """Per outlet: sales, failed PIN attempts, fallbacks and refusals by reason code."""
    _oversight(reader)
    with _uow(app, reader) as uow:
        return ExclusionsOut.of(exclusion_report(uow, period))
