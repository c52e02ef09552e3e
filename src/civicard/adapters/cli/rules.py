"""`civicard rules`: check rule files, run their tests on every engine, explain a decision."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from rich.console import Console
from rich.table import Table

from civicard.programs.expressions import InvalidRule
from civicard.programs.rulepack import RulePack, load_rulepack
from civicard.programs.testing import load_all, run_tests

rules_app = typer.Typer(help="Program rules: check, test on every engine, explain.", no_args_is_help=True)
console = Console(stderr=True)
out = Console()
DEFAULT_DIR = Path("rulepacks")


def _fail(reason: str) -> typer.Exit:
    from civicard.adapters.cli.main import fail  # main imports this module

    return fail(reason)


@rules_app.command("check")
def rules_check(
    files: Annotated[list[Path], typer.Argument(help="Rule files (YAML) to check.", show_default=False)],
) -> None:
    """Parse and check rule files: allowed syntax, known and permitted fields, types. Exit 1 on the first problem."""
    for path in files:
        try:
            pack = load_rulepack(path)
        except InvalidRule as exc:
            raise _fail(f"{exc.message} ({exc.code})") from None
        out.print(
            f"{path}: {pack.program} {pack.version} ({pack.status}) — {len(pack.conditions)} condition(s), "
            f"{len(pack.tests)} test(s), sha256 {pack.sha256}",
            highlight=False,
        )


@rules_app.command("test")
def rules_test(
    root: Annotated[Path, typer.Argument(help="A rule file or a folder of them.")] = DEFAULT_DIR,
    postgres: Annotated[
        str | None, typer.Option(help="Also run on this PostgreSQL (libpq conninfo or postgresql:// URL).")
    ] = None,
) -> None:
    """Run every test case on the Python evaluator, DuckDB and SQLite (and PostgreSQL if given)."""
    try:
        packs = load_all(root)
    except InvalidRule as exc:
        raise _fail(f"{exc.message} ({exc.code})") from None
    if not packs:
        raise _fail(f"no rule files under {root}")
    engines: dict[str, Any] = {"duckdb": duckdb.connect(), "sqlite": sqlite3.connect(":memory:")}
    if postgres:
        import psycopg

        try:
            engines["postgres"] = psycopg.connect(postgres.replace("postgresql+psycopg://", "postgresql://"))
        except psycopg.Error as exc:
            raise _fail(f"cannot connect to PostgreSQL: {str(exc).splitlines()[0]}") from None
    try:
        results = run_tests(packs, engines)
    finally:
        for connection in engines.values():
            connection.close()
    table = Table("program", "version", "case", *engines.keys(), "python", title="Rule tests")
    by_case: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in results:
        by_case.setdefault((r.program, r.version, r.case), {})[r.engine] = "ok" if r.passed else "FAIL"
    for (program, version, case), marks in by_case.items():
        table.add_row(program, version, case, *(marks.get(e, "—") for e in [*engines, "python"]))
    out.print(table)
    failed = [r for r in results if not r.passed]
    for r in failed:
        console.print(f"[red]FAIL[/red] {r.program} {r.version} «{r.case}» on {r.engine}: {'; '.join(r.problems)}")
    if failed:
        raise typer.Exit(1)
    out.print(f"{len(results)} checks passed ({len(by_case)} cases × {len(engines) + 1} evaluators)")


def _registered(uow: Any, program: str, start: date, version: str | None) -> RulePack | None:
    """The register's version of `program` (in force on `start`, or the one named); None when the
    register holds no version of any program (a database where nothing was published yet)."""
    if not uow.register.all():
        return None
    if version is not None:
        found = uow.register.find(program, version)
        if found is None:
            raise InvalidRule("unknown_version", f"the register has no {program} version '{version}'")
        return found.pack()  # type: ignore[no-any-return]
    in_force = uow.register.in_force(start, [program])
    if not in_force:
        raise InvalidRule("no_version_in_force", f"no published version of {program} is in force for {start:%Y-%m}")
    return in_force[0].pack()  # type: ignore[no-any-return]


def pack_in_force(root: Path, program: str, period: date, version: str | None) -> RulePack:
    """The published version of `program` in force for `period` (or the named version)."""
    candidates = [p for p in load_all(root) if p.program == program]
    if not candidates:
        raise InvalidRule("unknown_program", f"no rule files for program '{program}' under {root}")
    if version is not None:
        chosen = [p for p in candidates if p.version == version]
        if not chosen:
            raise InvalidRule("unknown_version", f"{program} has no version '{version}'")
        return chosen[0]
    in_force = [p for p in candidates if p.status == "published" and p.effective_from <= period]
    if not in_force:
        raise InvalidRule("no_version_in_force", f"no published version of {program} is in force for {period:%Y-%m}")
    return max(in_force, key=lambda p: p.effective_from)


@rules_app.command("explain")
def rules_explain(
    program: Annotated[str, typer.Argument(help="Program id, e.g. food_basket.")],
    household: Annotated[str, typer.Option(help="Household id in the registry.")],
    period: Annotated[str, typer.Option(help="Period YYYY-MM (default: this month).")] = "",
    version: Annotated[str | None, typer.Option(help="A version other than the one in force.")] = None,
    rules: Annotated[
        Path | None,
        typer.Option(
            help="Folder of rule files to use instead of the register of published versions "
            "(default: the register; the rulepacks folder when the register is empty)."
        ),
    ] = None,
    lang: Annotated[str, typer.Option(help="es or en.")] = "es",
) -> None:
    """Decide one registry household under a program and say why, condition by condition."""
    from civicard.adapters.cli.main import container
    from civicard.programs.decisions import decide
    from civicard.programs.household_inputs import facts_of_household
    from civicard.registry.lookup import get_household
    from civicard.shared.errors import DomainError
    from civicard.transparency.access import AccessContext, Actor

    if lang not in ("es", "en"):
        console.print("[red]usage:[/red] --lang is es or en")
        raise typer.Exit(2)
    with container() as built:
        try:
            start = _period_start(period) if period else built.clock.today().replace(day=1)
            context = AccessContext(Actor("cli:rules-explain", "system"), "cycle_run")
            with built.uow(context) as uow:
                pack = _registered(uow, program, start, version) if rules is None else None
                if pack is None:
                    pack = pack_in_force(rules or DEFAULT_DIR, program, start, version)
                record = get_household(uow, household, on=start)
            decision = decide(pack, facts_of_household(record, start), start)
        except (DomainError, InvalidRule) as exc:
            raise _fail(f"{exc.message} ({exc.code})") from None
    verdict = {
        "eligible": ("ELEGIBLE", "ELIGIBLE"),
        "not_eligible": ("NO ELEGIBLE", "NOT ELIGIBLE"),
        "unknown": ("SIN DECIDIR (faltan datos)", "UNDECIDED (missing data)"),
    }[decision.status]
    out.print(
        f"[bold]{pack.title[lang]}[/bold] {pack.program} {pack.version} (sha256 {pack.sha256[:12]}…), "
        f"{start:%Y-%m}: [bold]{verdict[0 if lang == 'es' else 1]}[/bold]",
        highlight=False,
    )
    for c in decision.conditions:
        mark = {True: "✔", False: "✘", None: "?"}[c.met]
        out.print(f"  {mark} {c.label[lang]}: {c.detail(lang)}", highlight=False)
    if decision.status == "eligible" and (decision.amount_minor or not decision.items):
        out.print(f"  {'Importe' if lang == 'es' else 'Amount'}: {decision.amount_minor / 100:,.2f}", highlight=False)
        for item, quantity in sorted(decision.items.items()):
            out.print(f"  {item} × {quantity}", highlight=False)


def _period_start(period: str) -> date:
    try:
        return date.fromisoformat(f"{period}-01")
    except ValueError:
        raise InvalidRule("invalid_period", f"'{period}' is not a period (YYYY-MM)") from None
