"""`civicard cards …`: issue, print, revoke, suspend, reinstate, set PINs, ask to unlock a locked PIN,
verify, publish keys and the list.

Exit codes: 0 success (for `verify`: the card is valid), 1 refused or invalid (the reason's code is
printed), 2 usage, and for `verify` 3: valid but degraded (the status list held is stale).
PINs are read from standard input, never from the command line (shell history, process list).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from civicard.adapters.cli.users import operator
from civicard.adapters.db.card_store import PublishedCardMaterial, SqlCardUnitOfWork
from civicard.bootstrap import Container
from civicard.governance.kinds import request_pin_unlock
from civicard.identity.cards import (
    CardKeys,
    issue_card,
    print_cards,
    publish_status_list,
    reinstate_card,
    reset_card_pin,
    revoke_card,
    suspend_card,
)
from civicard.identity.credentials import format_handle, parse_handle
from civicard.identity.terminal_check import CheckResult, OfflineVerifier
from civicard.transparency.access import AccessContext, Actor

cards_app = typer.Typer(help="Identity cards: issue, print, revoke, verify.", no_args_is_help=True)
out = Console()
EXIT_DEGRADED = 3
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
T = TypeVar("T")

PinFromStdin = Annotated[bool, typer.Option("--pin-stdin", help="Read the holder's chosen PIN from stdin.")]
Reason = Annotated[str, typer.Option(help="Reason code (e.g. lost, stolen, damaged, deceased).")]


def _run(action: Callable[[Container, SqlCardUnitOfWork, CardKeys], T]) -> T:
    """Open the container and a card-service unit of work; a refusal becomes one line and exit 1."""
    from civicard.adapters.cli.main import container
    from civicard.adapters.cli.users import _run as run_refusing

    with container() as built:
        context = AccessContext(Actor(operator(), "registrar"), "card_service")
        keys = built.card_keys

        def step() -> T:
            with SqlCardUnitOfWork(built.engine, context, built.clock) as uow:
                return action(built, uow, keys)

        return run_refusing(step)


def _read_pin(from_stdin: bool) -> str | None:
    return sys.stdin.readline().strip() if from_stdin else None


@cards_app.command("issue")
def cards_issue(
    person_id: Annotated[str, typer.Argument(help="Internal id of the enrolled person.")],
    pin_stdin: PinFromStdin = False,
) -> None:
    """Issue a person's first card; prints the handle and the token text the QR holds."""
    pin = _read_pin(pin_stdin)
    issued = _run(lambda _, uow, keys: issue_card(uow, keys, person_id, pin))
    out.print(f"handle {format_handle(issued.card.handle)}", highlight=False)
    out.print(issued.token, highlight=False, soft_wrap=True)


@cards_app.command("print")
def cards_print(
    person_ids: Annotated[list[str], typer.Argument(help="One or more person ids (a batch prints one page each).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the PDF.")],
) -> None:
    """Print the current cards of one or more persons as a CR80 PDF."""
    pdf = _run(lambda _, uow, keys: print_cards(uow, keys, person_ids))
    out_file.write_bytes(pdf)
    out.print(f"wrote {len(person_ids)} card(s) to {out_file}", highlight=False)


@cards_app.command("revoke")
def cards_revoke(handle: Annotated[str, typer.Argument(help="The card handle.")], reason: Reason) -> None:
    """Revoke a card for good and republish the status list."""
    card = _run(lambda _, uow, keys: revoke_card(uow, keys, handle, reason))
    out.print(f"revoked {format_handle(card.handle)}", highlight=False)


@cards_app.command("suspend")
def cards_suspend(handle: Annotated[str, typer.Argument(help="The card handle.")], reason: Reason) -> None:
    """Suspend a card (reported missing, under investigation) and republish the status list."""
    card = _run(lambda _, uow, keys: suspend_card(uow, keys, handle, reason))
    out.print(f"suspended {format_handle(card.handle)}", highlight=False)


@cards_app.command("reinstate")
def cards_reinstate(handle: Annotated[str, typer.Argument(help="The card handle.")], reason: Reason) -> None:
    """Make a suspended card valid again."""
    card = _run(lambda _, uow, keys: reinstate_card(uow, keys, handle, reason))
    out.print(f"reinstated {format_handle(card.handle)}", highlight=False)


@cards_app.command("reset-pin")
def cards_reset_pin(handle: Annotated[str, typer.Argument(help="The card handle.")]) -> None:
    """In person: set the holder's new PIN (read from stdin) on a card whose PIN is not locked.

    A locked PIN is refused (pin_reset_needs_approval): ask with `request-unlock`; once another
    registrar or reviewer approves (`civicard approvals approve`), the PIN is cleared and this
    command sets the holder's new one.
    """
    pin = sys.stdin.readline().strip()
    _run(lambda _, uow, keys: reset_card_pin(uow, keys, handle, pin))
    out.print("PIN set", highlight=False)


@cards_app.command("request-unlock")
def cards_request_unlock(
    handle: Annotated[str, typer.Argument(help="The card handle.")],
    by: Annotated[str, typer.Option("--by", help="Username of the registrar asking.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (the approver reads it).")],
) -> None:
    """Ask a second registrar or reviewer to unlock a card's locked PIN (it is cleared on approval)."""
    from civicard.adapters.cli.approvals import as_staff
    from civicard.adapters.cli.main import container

    with container() as built:
        asked = as_staff(built, by, lambda uow: request_pin_unlock(uow, handle, reason))
    out.print(f"requested {asked.id}: unlock the PIN of {format_handle(parse_handle(handle))}", highlight=False)
    out.print(f"  another registrar or a reviewer approves: civicard approvals approve {asked.id} --by …")


@cards_app.command("publish")
def cards_publish() -> None:
    """Sign a fresh status list (run at least daily: terminals call a list older than 7 days stale)."""
    published = _run(lambda _, uow, keys: publish_status_list(uow, keys))
    out.print(f"status list version {published.version}", highlight=False)


@cards_app.command("keys")
def cards_keys(
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the COSE_KeySet (CBOR) here.")] = None,
) -> None:
    """The public card-verification keys: a JWK Set on stdout, or the COSE_KeySet written to --out."""
    from civicard.adapters.cli.main import container

    with container() as built:
        keyring = built.card_keys.keyring
    if out_file is None:
        out.print(json.dumps(keyring.jwks(), indent=2), highlight=False, soft_wrap=True)
        return
    out_file.write_bytes(keyring.cose_key_set())
    out.print(f"wrote {len(keyring.raw)} key(s) to {out_file}", highlight=False)


@cards_app.command("verify")
def cards_verify(code: Annotated[str, typer.Argument(help="The token text (CC1:…) or a PNG/JPEG of the QR.")]) -> None:
    """Check a card as a terminal would: signature, expiry, status bit in the latest published list."""
    from civicard.adapters.cli.main import container, fail

    image = Path(code) if code.lower().endswith(IMAGE_SUFFIXES) else None
    if image is not None and not image.is_file():
        raise typer.BadParameter(f"{image} is not a file", param_hint="CODE")
    with container() as built:
        latest = PublishedCardMaterial(built.engine).latest()
        if latest is None:
            raise fail("no status list has been published yet (status_list_missing)")
        verifier = OfflineVerifier.from_published(built.card_keys.keyring.cose_key_set(), latest.signed_list)
        now = built.clock.now()
        result = verifier.check_image(image.read_bytes(), now) if image else verifier.check(code, now)
    _report(result)


def _report(result: CheckResult) -> None:
    handle = f" {format_handle(result.claims.handle)}" if result.claims else ""
    line = f"{result.status}{handle} ({result.code})"
    if result.status == "invalid":
        Console(stderr=True).print(f"[red]invalid:[/red]{handle} ({result.code})", highlight=False)
        raise typer.Exit(1)
    out.print(line, highlight=False)
    if result.status == "valid_degraded":
        raise typer.Exit(EXIT_DEGRADED)
