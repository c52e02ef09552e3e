"""`civicard approvals …`: list, approve and refuse four-eyes requests (exit 0 ok, 1 refused, 2 usage).

`--by` names the staff account that decides: the step runs as that account (active, its role
checked against the kind, different from the requester and from the account a role grant is
about) and the access log records it. The command line cannot prove who typed `--by` — whoever
runs it can reach the database anyway — so it is the operator's console; staff without shell
access decide through POST /v1/approvals/{id}/approve with their own session (password, and the
second factor for oversight).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from civicard.adapters.cli.users import _run, auth_store, operator
from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork, staff_actor
from civicard.bootstrap import Container
from civicard.governance import approvals
from civicard.governance.approvals import FOUR_EYES, ApprovalRequest
from civicard.governance.kinds import KINDS
from civicard.programs.publishing import awaiting_decision, proposal_expires_at
from civicard.transparency.access import AccessContext, Actor

approvals_app = typer.Typer(help="Four-eyes approvals: actions a second staff account approves.", no_args_is_help=True)
T = TypeVar("T")

RequestId = Annotated[str, typer.Argument(help="The request id (from `civicard approvals list`).")]
By = Annotated[str, typer.Option("--by", help="Username of the staff account that decides.")]


def as_staff(built: Container, username: str, action: Callable[[SqlApprovalUnitOfWork], T]) -> T:
    """Run `action` in a four-eyes unit of work acting as the staff account `username`."""

    def step() -> T:
        context = AccessContext(staff_actor(built.engine, username), FOUR_EYES)
        with SqlApprovalUnitOfWork(
            built.engine, context, built.clock, card_keys=built.card_keys, root_key=built.root_key
        ) as uow:
            return action(uow)

    return _run(step)


def describe(found: ApprovalRequest, names: dict[str, str]) -> str:
    """The request in words, with account ids shown as usernames."""
    text = KINDS.get(found.kind).describe(found.data)
    for account_id, username in names.items():
        text = text.replace(account_id, username)
    return text


@approvals_app.command("list")
def approvals_list() -> None:
    """Pending requests (marking expired ones), and rule versions awaiting a second program administrator."""
    from civicard.adapters.cli.main import container, out

    context = AccessContext(Actor(operator(), "system"), FOUR_EYES)
    with container() as built:

        def step() -> tuple[list[ApprovalRequest], list[tuple[str, str, str, str]]]:
            with SqlApprovalUnitOfWork(built.engine, context, built.clock) as uow:
                waiting = approvals.pending(uow, KINDS, everything=True)
                versions = uow.register.all()
            proposed = [
                (v.program, v.version, v.proposed_by, f"{proposal_expires_at(v):%Y-%m-%d %H:%M} UTC")
                for v in awaiting_decision(versions, built.clock.now())
            ]
            return waiting, proposed

        waiting, proposed = _run(step)
        names = {a.id: a.username for a in auth_store(built).list_staff_accounts()}
    if not waiting:
        out.print("no approval requests are waiting", highlight=False)
    else:
        table = Table("id", "kind", "what", "asked by", "reason", "expires")
        for r in waiting:
            asked = f"{names.get(r.requested_by, r.requested_by)} ({r.requested_role})"
            table.add_row(r.id, r.kind, describe(r, names), asked, r.reason, f"{r.expires_at:%Y-%m-%d %H:%M} UTC")
        out.print(table)
    if proposed:
        table = Table("program", "version", "proposed by", "expires", title="Rule versions awaiting a second "
                      "program administrator (civicard programs approve)")  # fmt: skip
        for row in proposed:
            table.add_row(*row)
        out.print(table)


@approvals_app.command("approve")
def approvals_approve(
    request_id: RequestId,
    by: By,
    note: Annotated[str, typer.Option("--note", help="Why you approve (optional).")] = "",
) -> None:
    """Approve a request as another account than the requester: the action is carried out at once
    (a bulk export is only approved: its requester runs it with `civicard export run`)."""
    from civicard.adapters.cli.main import container, out

    with container() as built:
        done = as_staff(built, by, lambda uow: approvals.approve(uow, KINDS, request_id, note or None))
        names = {a.id: a.username for a in auth_store(built).list_staff_accounts()}
    if done.request.status == "approved":  # a kind its requester carries out later (a bulk export)
        out.print(f"approved {done.request.id}: {describe(done.request, names)}", highlight=False)
        out.print("  the requester carries it out once, before it expires (civicard export run)", highlight=False)
        return
    out.print(f"approved and executed {done.request.id}: {describe(done.request, names)}", highlight=False)
    out.print(f"  {done.outcome}", highlight=False)


@approvals_app.command("refuse")
def approvals_refuse(
    request_id: RequestId,
    by: By,
    note: Annotated[str, typer.Option("--note", help="Why it is refused (required; the requester reads it).")],
) -> None:
    """Refuse a request (or withdraw your own); nothing is carried out."""
    from civicard.adapters.cli.main import container, out

    with container() as built:
        refused = as_staff(built, by, lambda uow: approvals.refuse(uow, KINDS, request_id, note))
    out.print(f"refused {refused.id} ({refused.kind})", highlight=False)
