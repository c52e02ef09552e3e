"""`civicard users …`: create, disable and list staff accounts, ask for a role change (exit 0 ok,
1 refused, 2 usage).

Changing an existing account's role needs a second person: `users grant` files a four-eyes
request (governance/kinds.py `role_grant`) that an oversight account approves with
`civicard approvals approve`; nothing else changes a role.

Creating an account, whatever its role, stays the operator's bootstrap step (`users create`):
the first accounts must exist before anyone can approve anything, a new account gives no existing
person more power (it is a new identity, with its own password and, for program_admin and
oversight, its own second factor, handed to its holder), and it is recorded (created_by, the OS
account). Widening what an existing person may do is what four eyes guard.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork, staff_actor
from civicard.adapters.db.auth_store import AuthStore
from civicard.bootstrap import Container
from civicard.governance.approvals import FOUR_EYES
from civicard.governance.kinds import request_role_grant
from civicard.transparency.access import AccessContext

users_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
T = TypeVar("T")


class StaffRoleName(StrEnum):
    registrar = "registrar"
    reviewer = "reviewer"
    program_admin = "program_admin"
    oversight = "oversight"


def auth_store(built: Container) -> AuthStore:
    return AuthStore(built.engine, built.clock, built.root_key)


def operator() -> str:
    """Who ran the command, for created_by and the caller's log: the OS account."""
    try:
        return f"cli:{getpass.getuser()}"[:120]
    except (KeyError, OSError):  # no passwd entry (containers) and no LOGNAME/USER
        return "cli:unknown"


def _run(action: Callable[[], T]) -> T:
    """A domain refusal or a database failure becomes one line and exit code 1."""
    from civicard.adapters.cli.main import fail, run_checked

    try:
        return run_checked(action)
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise fail(f"database: {first} (is the schema migrated? `civicard db upgrade`)") from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    entered: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return entered


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Sign-in name: a letter, then letters, digits, '.', '_' or '-'.")],
    role: Annotated[StaffRoleName, typer.Option(help="The account's one role.")],
    name: Annotated[str, typer.Option("--name", help="Display name, as colleagues and residents see it.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Create a staff account; program_admin and oversight also get a TOTP secret, shown once."""
    from civicard.adapters.cli.main import container, out

    password = _read_password(password_stdin)
    with container() as built:
        created = _run(lambda: auth_store(built).create_staff_account(username, name, role.value, password, operator()))
    account = created.account
    out.print(f"created {account.username} ({account.role})", highlight=False)
    if created.totp_uri:
        out.print("Second factor (TOTP) — shown only now; add it to an authenticator app:", highlight=False)
        out.print(f"  secret: {created.totp_secret}", highlight=False, soft_wrap=True)
        out.print(f"  uri:    {created.totp_uri}", highlight=False, soft_wrap=True)


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument(help="The account to disable.")]) -> None:
    """Disable a staff account and end its open sessions (the row stays, for the record)."""
    from civicard.adapters.cli.main import container, out

    with container() as built:
        account = _run(lambda: auth_store(built).disable_staff_account(username, operator()))
    out.print(f"disabled {account.username} ({account.role})", highlight=False)


@users_app.command("list")
def users_list() -> None:
    """List staff accounts: username, role, name, status (never hashes or secrets)."""
    from civicard.adapters.cli.main import container, out

    with container() as built:
        accounts = _run(lambda: auth_store(built).list_staff_accounts())
    table = Table("username", "role", "name", "status", "created")
    for a in accounts:
        status = "active" if a.active else f"disabled {a.disabled_at:%Y-%m-%d %H:%M}"
        table.add_row(a.username, a.role, a.display_name, status, f"{a.created_at:%Y-%m-%d} by {a.created_by}")
    out.print(table)


@users_app.command("grant")
def users_grant(
    username: Annotated[str, typer.Argument(help="The existing account whose role changes.")],
    role: Annotated[StaffRoleName, typer.Argument(help="The role it should get.")],
    by: Annotated[str, typer.Option("--by", help="Username of the program_admin or oversight account asking.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (the approver reads it).")],
) -> None:
    """Ask for an account's role to change; it changes only when another oversight account approves."""
    from civicard.adapters.cli.main import container, out

    with container() as built:

        def step() -> tuple[str, str]:
            context = AccessContext(staff_actor(built.engine, by), FOUR_EYES)
            with SqlApprovalUnitOfWork(built.engine, context, built.clock) as uow:
                asked = request_role_grant(uow, username, role.value, reason)
            return asked.id, f"{asked.expires_at:%Y-%m-%d %H:%M} UTC"

        request_id, expires = _run(step)
    out.print(f"requested {request_id}: {username} → {role.value} (approvable until {expires})", highlight=False)
    out.print(f"  an oversight account other than yours approves: civicard approvals approve {request_id} --by …")
