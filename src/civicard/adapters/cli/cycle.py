"""`civicard cycle`: run a benefit cycle for a period, list runs, re-decide one household."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from civicard.transparency.access import AccessContext, Actor

cycle_app = typer.Typer(help="Benefit cycles: decisions and entitlements per period.", no_args_is_help=True)
out = Console()
CYCLE = AccessContext(Actor("cli:cycle", "system"), "cycle_run")


@cycle_app.command("run")
def cycle_run(
    period: Annotated[str, typer.Option(help="The month to decide, YYYY-MM.")],
    program: Annotated[
        list[str] | None, typer.Option(help="Only this program (repeat for several); default: every program in force.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the decisions Parquet file (default: <data dir>/cycles).")
    ] = None,
    show: Annotated[int, typer.Option(help="How many changed households to list.")] = 20,
) -> None:
    """Decide every household under the versions in force, store the decisions and the period's
    entitlements. Running it again stores only what changed since (corrected facts, new versions)."""
    from civicard.adapters.bulk.cycle import run_cycle
    from civicard.adapters.cli.main import container, fail
    from civicard.adapters.cli.progress import staged_progress
    from civicard.programs.cycles import period_start
    from civicard.shared.errors import DomainError

    try:
        period_start(period)
    except DomainError as exc:
        out.print(f"[red]usage:[/red] {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    with container() as built:
        target = out_dir or built.settings.data_dir / "cycles"
        try:
            with built.uow(CYCLE) as uow, staged_progress(f"Cycle {period}") as progress:
                report = run_cycle(uow, period, target, program or None, progress)
                uow.commit()
        except DomainError as exc:
            raise fail(f"{exc.message} ({exc.code})") from None
    out.print(
        f"Cycle {report.period}: {report.households:,} households under {', '.join(report.programs)}.\n"
        f"  decisions: {report.decisions_new:,} new, {report.decisions_changed:,} changed; "
        f"entitlements: {report.entitlements_new:,} new, {report.entitlements_changed:,} adjusted.\n"
        f"  decisions file: {report.output}",
        highlight=False,
    )
    table = Table("program", "eligible households")
    for name, count in report.eligible.items():
        table.add_row(name, f"{count:,}")
    out.print(table)
    changed = [c for c in report.changes if c.before is not None]  # a sample when there are many
    if report.decisions_changed:
        out.print(f"Changed since the last run ({report.decisions_changed:,}; first {min(show, len(changed))}):")
        for c in changed[:show]:
            out.print(f"  household {c.household_id}: {c.summary()}", highlight=False)
    if not report.decisions_new and not report.decisions_changed:
        out.print("Nothing changed: every decision was already stored.")


@cycle_app.command("runs")
def cycle_runs(period: Annotated[str | None, typer.Option(help="Only this period.")] = None) -> None:
    """The cycle runs recorded, newest first."""
    from civicard.adapters.cli.main import container

    with container() as built, built.uow(CYCLE) as uow:
        runs = uow.decisions.runs(period)
    table = Table("period", "started", "by", "status", "households", "new", "changed", "entitlements")
    for r in runs:
        table.add_row(
            r["period"],
            f"{r['started_at']:%Y-%m-%d %H:%M}",
            r["started_by"],
            r["status"],
            f"{r['households']:,}",
            f"{r['decisions_new']:,}",
            f"{r['decisions_changed']:,}",
            f"{r['entitlements_new']:,}",
        )
    out.print(table)
