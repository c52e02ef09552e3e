"""`civicard programs`: the register of program rule versions — list, show, propose, approve, reject, retire.

A version binds only once one program administrator has proposed it and a second one has
approved it (docs/rules.md). `--by` names the enabled staff account acting; the operator of the
CLI is trusted with the database, as in the other commands.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from civicard.adapters.db.register_store import RegisteredVersion, SqlProgramRegister
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.adapters.publication import impact_reader, postgres_connector, publication_uow
from civicard.bootstrap import Container
from civicard.identity.staff import StaffAccount, normalise_username
from civicard.programs import publishing
from civicard.programs.publishing import METRICS, SUMS

programs_app = typer.Typer(
    help="Program rule versions: propose, approve (a second administrator), retire.", no_args_is_help=True
)
console = Console(stderr=True)
out = Console()
T = TypeVar("T")
DEFAULT_CATALOGUE = Path("rulepacks/items.yaml")

By = Annotated[str, typer.Option("--by", help="Username of the enabled program administrator acting.")]
Note = Annotated[str, typer.Option(help="Why (kept in the register).")]
_HEADINGS = {
    "households": "households",
    "gain": "gain",
    "lose": "lose",
    "amount_up": "amount ↑",
    "amount_down": "amount ↓",
    "items_change": "items ≠",
    "unchanged": "unchanged",
    "eligible_before": "eligible before",
    "eligible_after": "eligible after",
    "amount_before": "amount before",
    "amount_after": "amount after",
}


def _fail(reason: str) -> typer.Exit:
    from civicard.adapters.cli.main import fail  # main imports this module

    return fail(reason)


def _run(action: Callable[[], T]) -> T:
    from civicard.adapters.cli.main import run_checked

    return run_checked(action)


@contextmanager
def _container() -> Iterator[Container]:
    from civicard.adapters.cli.main import container

    with container() as built:
        yield built


# --- adapters the service is given -----------------------------------------------------------------


def staff_account(built: Container, username: str) -> StaffAccount:
    """The enabled staff account `username`, or a one-line failure."""
    name = normalise_username(username)
    for account in built.auth.list_staff_accounts():
        if account.username == name:
            if not account.active:
                raise _fail(f"the staff account '{name}' is disabled")
            return account
    raise _fail(f"there is no staff account '{name}'")


def propose_text(built: Container, source: str, account: StaffAccount, note: str) -> publishing.Proposal:
    with publication_uow(built, account) as uow:
        return publishing.propose(
            uow,
            source,
            account,
            note,
            read_inputs=impact_reader(built, account),
            connect_postgres=postgres_connector(built.engine),
        )


def _versions(built: Container) -> list[RegisteredVersion]:
    with built.engine.connect() as conn:
        return SqlProgramRegister(conn).all()


def _find(built: Container, program: str, version: str) -> RegisteredVersion:
    with built.engine.connect() as conn:
        found = SqlProgramRegister(conn).find(program, version)
    if found is None:
        raise _fail(f"{program} {version} is not in the register (version_not_found)")
    return found


# --- commands --------------------------------------------------------------------------------------


@programs_app.command("list")
def programs_list() -> None:
    """Every registered version: status, effective date, hash, who proposed and who decided."""
    with _container() as built:
        versions = _versions(built)
    table = Table(
        "program",
        "version",
        "status",
        "effective from",
        "sha256",
        "proposed by",
        "approved by",
        title="Program register",
    )
    for v in versions:
        table.add_row(
            v.program,
            v.version,
            v.status,
            f"{v.effective_from}",
            v.sha256[:12],
            v.proposed_by,
            v.decided_by if v.status in ("published", "retired") else "",
        )
    out.print(table)
    if not versions:
        out.print("the register is empty: propose a version with `civicard programs propose FILE --by USERNAME`")


@programs_app.command("show")
def programs_show(
    program: Annotated[str, typer.Argument(help="Program id, e.g. food_basket.")],
    version: Annotated[str, typer.Argument(help="Version, e.g. 2026.1.")],
) -> None:
    """One registered version, readable: labels, dated parameters, conditions, items, hash, impact."""
    with _container() as built:
        v = _find(built, program, version)
    pack = _run(v.pack)
    p = out.print
    p(f"[bold]{v.title['es']}[/bold] / {v.title['en']}", highlight=False)
    p(f"{v.program} {v.version} — {v.status}, effective from {v.effective_from}", highlight=False)
    p(f"legal basis: {v.legal_basis}", highlight=False)
    p(f"sha256: {v.sha256}", highlight=False)
    decided = f"; decided by {v.decided_by} on {v.decided_at:%Y-%m-%d}" if v.decided_by and v.decided_at else ""
    retired = f"; retired by {v.retired_by} on {v.retired_at:%Y-%m-%d}" if v.retired_by and v.retired_at else ""
    p(f"proposed by {v.proposed_by} on {v.proposed_at:%Y-%m-%d}{decided}{retired}", highlight=False)
    for label, text in (("proposal note", v.proposal_note), ("decision note", v.decision_note)):
        if text:
            p(f"{label}: {text}", highlight=False)
    p(f"tests: {len(pack.tests)} case(s), {v.tests_passed} check(s) passed when proposed", highlight=False)
    p("[bold]Parameters[/bold]")
    for name, parameter in pack.parameters.items():
        dated = ", ".join(f"{_value(parameter.unit, value)} from {since}" for since, value in parameter.values)
        p(f"  {name} — {parameter.label['en']} ({parameter.unit}): {dated}", highlight=False)
    if pack.derived:
        p("[bold]Derived values[/bold]")
        for d in pack.derived:
            p(f"  {d.name} — {d.label['en']}: {d.source}", highlight=False)
    p("[bold]Conditions[/bold] (all must be met)")
    for c in pack.conditions:
        p(f"  {c.name} — {c.label['en']}: {c.source}", highlight=False)
    p(f"[bold]Amount[/bold]: {pack.amount.source}", highlight=False)
    if pack.items:
        p("[bold]Items[/bold]")
        for grant in pack.items:
            p(f"  {grant.item} × {grant.source}", highlight=False)
    if v.impact:
        print_impact(json.loads(v.impact))


@programs_app.command("propose")
def programs_propose(
    file: Annotated[Path, typer.Argument(help="The rule file (YAML) to propose.")],
    by: By,
    note: Note = "",
) -> None:
    """Check, test on every engine, preview the impact and register a rule file as proposed."""
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    with _container() as built:
        account = staff_account(built, by)
        proposal = _run(lambda: propose_text(built, source, account, note))
    v, tests = proposal.version, proposal.tests
    print_impact(proposal.impact.as_dict())
    out.print(
        f"tests: {tests.cases} case(s) × {len(tests.engines)} evaluators ({', '.join(tests.engines)}): "
        f"{tests.passed} checks passed",
        highlight=False,
    )
    out.print(
        f"proposed {v.program} {v.version} (sha256 {v.sha256[:12]}…) by {account.username}; "
        f"another program administrator approves it with `civicard programs approve {v.program} {v.version} --by …`",
        highlight=False,
    )


def _decide(
    action: Callable[[SqlUnitOfWork, str, StaffAccount, str], Any], program: str, version: str, by: str, note: str
) -> RegisteredVersion:
    with _container() as built:
        account = staff_account(built, by)
        found = _find(built, program, version)

        def act() -> RegisteredVersion:
            with publication_uow(built, account) as uow:
                decided: RegisteredVersion = action(uow, found.id, account, note)
            return decided

        return _run(act)


@programs_app.command("approve")
def programs_approve(program: str, version: str, by: By, note: Note = "") -> None:
    """Publish a proposed version: by a program administrator other than the one who proposed it."""
    v = _decide(publishing.approve, program, version, by, note)
    out.print(f"published {v.program} {v.version} (sha256 {v.sha256[:12]}…), in force from {v.effective_from}")


@programs_app.command("reject")
def programs_reject(program: str, version: str, by: By, note: Note = "") -> None:
    """Turn a proposed version down (it stays in the register as rejected)."""
    v = _decide(publishing.reject, program, version, by, note)
    out.print(f"rejected {v.program} {v.version}")


@programs_app.command("retire")
def programs_retire(program: str, version: str, by: By, note: Note = "") -> None:
    """Retire a published version: from now on no cycle finds it in force."""
    v = _decide(publishing.retire, program, version, by, note)
    out.print(f"retired {v.program} {v.version}")


@programs_app.command("items")
def programs_items(
    by: By,
    file: Annotated[Path, typer.Option(help="The item catalogue (YAML).")] = DEFAULT_CATALOGUE,
) -> None:
    """Load the item catalogue (code, names, unit, kind, ATC code) into the register; existing codes are updated."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    with _container() as built:
        account = staff_account(built, by)

        def load() -> int:
            with publication_uow(built, account) as uow:
                return publishing.load_catalogue(uow, text, account)

        count = _run(load)
    out.print(f"item catalogue loaded: {count} items")


def print_impact(impact: dict[str, Any], console: Console = out) -> None:
    """The preview as a table, one column per region (cells under 10 households show as <10)."""
    against = impact.get("against") or "no program"
    columns = [*impact["regions"], {"region": "total", **impact["total"]}]
    title = (
        f"Impact of {impact['program']} {impact['version']} against {against}, {impact['period']} "
        f"(cells under {impact.get('small_cell', 10)} households suppressed; amounts in currency units)"
    )
    console.print(title, highlight=False)
    table = Table("", *(str(c["region"]) for c in columns))
    for metric in METRICS:
        table.add_row(_HEADINGS[metric], *(_cell(c[metric], metric in SUMS) for c in columns))
    console.print(table)


def _cell(value: Any, money: bool) -> str:
    if isinstance(value, int) and money:
        return f"{value / 100:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _value(unit: str, value: float) -> str:
    if unit == "money":
        return f"{value / 100:,.2f}"
    if unit == "percent":
        return f"{value:g} %"
    return f"{value:g}"
