"""`civicard retention …`: print the retention policy, apply it (exit 0 ok, 1 failed, 2 usage).

`run` applies transparency/retention.yaml as of now in one transaction and prints, per rule, how
many records it deleted or persons it erased; `--dry-run` prints what is due and changes nothing.
Erasures are journalled in the data directory (adapters/erasure_journal.py) so a restore of an
older backup erases those persons again.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from civicard.adapters.db.retention_store import RetentionReport, apply_retention
from civicard.adapters.erasure_journal import append_journal
from civicard.transparency.access import Actor
from civicard.transparency.retention import retention_policy

retention_app = typer.Typer(help="Retention periods and erasure (transparency/retention.yaml).", no_args_is_help=True)
ACTOR = Actor("cli:retention", "system")


@retention_app.command("policy")
def policy() -> None:
    """Print the retention policy: each rule, what it covers, and how long it is kept."""
    from civicard.adapters.cli.main import out, run_checked

    rules = run_checked(retention_policy).rules
    table = Table(Column("rule", no_wrap=True), "records", "kept", "why")
    for rule in rules:
        kept = "forever" if rule.keep is None else f"{rule.keep} after its anchor"
        records = rule.records + (f" ({', '.join(rule.tables)})" if rule.tables else "")
        table.add_row(rule.name, records, kept, rule.description)
    out.print(table)


@retention_app.command("run")
def run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what is due without changing anything.")] = False,
) -> None:
    """Apply the policy as of now: delete what is past its period and erase persons who are due."""
    from civicard.adapters.cli.main import container, out, run_checked

    with container() as built:
        policy = run_checked(retention_policy)
        report = run_checked(
            lambda: apply_retention(
                built.engine,
                built.clock,
                policy,
                ACTOR,
                lambda entries: append_journal(built.settings.data_dir, entries),
                dry_run=dry_run,
            )
        )
        if report.erasures:
            built.integrator.run_once(full=True)
    out.print(_table(report))


def _table(report: RetentionReport) -> Table:
    title = f"retention as of {report.as_of:%Y-%m-%d %H:%M} UTC" + (
        " (dry run: nothing changed)" if report.dry_run else ""
    )
    counted = "due" if report.dry_run else "erased or deleted"
    table = Table(Column("rule", no_wrap=True), "records", counted, title=title)
    for outcome in report.outcomes:
        table.add_row(outcome.rule, outcome.records, "kept" if outcome.kept_forever else str(outcome.count))
    return table
