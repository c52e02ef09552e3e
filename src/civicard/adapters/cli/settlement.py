"""`civicard settlement …`: vendor statements, closing a period, verifying it, the exclusion report.

Exit codes: 0 done (for `verify`: the ledger matches every settlement), 1 refused or a difference
found (one line each), 2 usage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from civicard.adapters.cli.users import operator
from civicard.adapters.db.settlement_store import SqlSettlementUnitOfWork
from civicard.bootstrap import Container
from civicard.distribution import settlement as service
from civicard.distribution.exclusion import exclusion_report
from civicard.distribution.statement_render import money, statement_csv, statement_pdf
from civicard.transparency.access import AccessContext, Actor

settlement_app = typer.Typer(
    help="Vendor settlement per period: statements, closing, verification.", no_args_is_help=True
)
out = Console()
T = TypeVar("T")
Period = Annotated[str, typer.Option(help="The month, YYYY-MM.")]


def settlement_uow(built: Container, purpose: str, by: str) -> SqlSettlementUnitOfWork:
    return SqlSettlementUnitOfWork(built.engine, AccessContext(Actor(by, "system"), purpose), built.clock)


def _with_uow(purpose: str, action: Callable[[Container, SqlSettlementUnitOfWork], T]) -> T:
    from civicard.adapters.cli.main import container
    from civicard.adapters.cli.users import _run as run_refusing

    with container() as built:

        def step() -> T:
            with settlement_uow(built, purpose, operator()) as uow:
                return action(built, uow)

        return run_refusing(step)


@settlement_app.command("statement")
def settlement_statement(
    vendor_id: Annotated[str, typer.Argument(help="The vendor's id.")],
    period: Period,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write every ledger line as CSV here.")] = None,
    pdf_file: Annotated[Path | None, typer.Option("--pdf", help="Write the statement as a PDF here.")] = None,
) -> None:
    """What a vendor is owed for a period, per outlet and item, with every redemption behind it."""
    found = _with_uow("settlement", lambda built, uow: service.statement(uow, built.root_key, vendor_id, period))
    out.print(f"{found.vendor_name} ({found.tax_id}), period {found.period} ({found.period_status})", highlight=False)
    table = Table("outlet", "item", "sales", "quantity", "subsidy")
    for s in found.by_outlet_item:
        table.add_row(s.outlet_name, s.item_code or "", str(s.redemptions), str(s.quantity), money(s.subsidy_minor))
    out.print(table)
    total = found.total
    out.print(
        f"subsidy owed {money(total.subsidy_minor)} for {total.redemptions} redemption(s), {total.lines} line(s)\n"
        f"ledger sha256 {total.ledger_sha256}",
        highlight=False,
    )
    if found.settled is not None:
        same = found.settled.total == total
        out.print(
            f"settled {found.settled.settled_at:%Y-%m-%d %H:%M} UTC: {money(found.settled.total.subsidy_minor)}"
            + ("" if same else " — DIFFERS from the ledger now; run `civicard settlement verify`"),
            highlight=False,
        )
    if csv_file is not None:
        csv_file.write_text(statement_csv(found), encoding="utf-8")
        out.print(f"wrote {len(found.lines)} line(s) to {csv_file}", highlight=False)
    if pdf_file is not None:
        pdf_file.write_bytes(statement_pdf(found))
        out.print(f"wrote the statement to {pdf_file}", highlight=False)


@settlement_app.command("close")
def settlement_close(period: Period) -> None:
    """Close the period for good and fix every vendor's total and ledger hash."""
    result = _with_uow("distribution_admin", lambda _, uow: service.settle(uow, period, operator()))
    table = Table("vendor", "redemptions", "lines", "subsidy", "ledger sha256")
    for t in result.totals:
        table.add_row(t.vendor_id, str(t.redemptions), str(t.lines), money(t.subsidy_minor), t.ledger_sha256[:16] + "…")
    out.print(table)
    out.print(
        f"closed {result.period}: {len(result.totals)} vendor(s), subsidy owed {money(result.subsidy_minor)}",
        highlight=False,
    )
    if result.unapplied_offline_receipts:
        out.print(
            f"note: {result.unapplied_offline_receipts} offline receipt(s) of {period} were not applied; "
            "they stay for review and are not in any total",
            highlight=False,
        )


@settlement_app.command("verify")
def settlement_verify(period: Period) -> None:
    """Recompute every settled total and ledger hash from the ledger; exit 1 on any difference."""
    differences = _with_uow("settlement", lambda _, uow: service.verify(uow, period))
    if not differences:
        out.print(f"{period}: every settlement matches the ledger", highlight=False)
        return
    err = Console(stderr=True)
    for d in differences:
        err.print(
            f"[red]difference:[/red] vendor {d.vendor_id} {d.field}: settled {d.settled}, ledger {d.ledger}",
            highlight=False,
        )
    raise typer.Exit(1)


@settlement_app.command("exclusions")
def settlement_exclusions(period: Period) -> None:
    """Per outlet: sales, failed PIN attempts, fallbacks and refusals by reason (highest refusal rate first)."""
    report = _with_uow("settlement", lambda _, uow: exclusion_report(uow, period))
    codes = [c for c in report.codes]
    table = Table("outlet", "vendor", "sales", "failed PINs", "fallbacks", "refused", "rate", *codes)
    for o in report.outlets:
        table.add_row(
            o.outlet_name,
            o.vendor_name,
            str(o.sales),
            str(o.failed_pin_attempts),
            str(o.fallbacks),
            str(o.refused),
            f"{o.refusal_rate:.0%}",
            *(str(o.refusals.get(c, 0)) for c in codes),
        )
    out.print(table)
    out.print(f"{period}: {len(report.outlets)} outlet(s) with activity", highlight=False)
