"""`civicard terminal …`: the terminal client — register its device key, sync, redeem offline, look at the queue.

The terminal keeps its key and its SQLite queue in one directory (`--dir`, or CIVICARD_TERMINAL_DIR;
default var/terminal). It talks to the server only over HTTP with signed requests; it never opens the
server's database. Exit codes: 0 done, 1 refused or failed (the reason's code is printed), 2 usage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.table import Table

from civicard.distribution.sales import BasketLine
from civicard.shared.errors import DomainError
from civicard.terminal.client import TerminalClient
from civicard.terminal.config import DEFAULT_DIR, public_key_text, read_private_key

terminal_app = typer.Typer(help="The terminal client: offline redemption and sync.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

Directory = Annotated[
    Path,
    typer.Option("--dir", envvar="CIVICARD_TERMINAL_DIR", help="Where the device key and queue live."),
]


def _run(directory: Path, action: Callable[[TerminalClient], T]) -> T:
    """Open the terminal's files, run, close; a refusal becomes one line and exit code 1."""
    try:
        with TerminalClient.open(directory) as client:
            return action(client)
    except DomainError as refused:
        err.print(f"[red]refused:[/red] {refused.message} ({refused.code})", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@terminal_app.command("register")
def register(
    directory: Directory = DEFAULT_DIR,
    server: Annotated[str | None, typer.Option(help="The server's base URL, e.g. https://civicard.example")] = None,
    terminal_id: Annotated[str | None, typer.Option(help="The id the vendor administrator registered.")] = None,
    key_file: Annotated[
        Path | None, typer.Option(help="Use this existing device key (PEM, or base64 of the raw 32 bytes).")
    ] = None,
) -> None:
    """Make (or import) the device key and print its public half for the vendor administrator; store
    the server URL and the terminal id once known. Never replaces an existing key."""

    def step(client: TerminalClient) -> None:
        home = client.home
        if key_file is not None:
            if home.has_key():
                err.print(f"[red]error:[/red] {home.key_path} already holds a device key", highlight=False)
                raise typer.Exit(2)
            home.store_key(read_private_key(key_file.read_bytes()))
        elif not home.has_key():
            home.store_key(Ed25519PrivateKey.generate())
        client.configure(server, terminal_id)
        out.print(f"public key {public_key_text(home.load_key())}", highlight=False)
        out.print(f"terminal id {client.terminal_id or '(not set: register the key, then --terminal-id)'}")
        out.print(f"server {client.server_url or '(not set: --server)'}", highlight=False)

    _run(directory, step)


@terminal_app.command("sync")
def sync(directory: Directory = DEFAULT_DIR) -> None:
    """Upload queued receipts in order, then download the card keys and a fresh bundle."""

    def step(client: TerminalClient) -> None:
        api = client.http()
        try:
            report = client.sync(api)
        finally:
            api.close()
        out.print(
            f"sent {report.sent}: {report.applied} applied, {report.conflicts} conflicts, {report.refused} refused; "
            f"bundle {report.bundle_period} with {report.bundle_cards} known cards"
        )

    _run(directory, step)


@terminal_app.command("redeem")
def redeem(
    card: Annotated[str, typer.Option("--card", help="The scanned card code (CC1:…) or a typed card number.")],
    item: Annotated[list[str], typer.Option("--item", help="CODE=QUANTITY; repeat for each item.")],
    directory: Directory = DEFAULT_DIR,
) -> None:
    """Sell offline: check the card against the bundle, refuse beyond what is left, queue the signed receipt."""
    basket = [_line(text) for text in item]

    def step(client: TerminalClient) -> None:
        sale = client.redeem(card, basket)
        out.print(f"OK receipt {sale.seq} ({sale.period}, {sale.source})")
        for code, qty in sale.items.items():
            out.print(f"  {code} × {qty} (offline left {sale.left[code]})", highlight=False)

    _run(directory, step)


@terminal_app.command("sell")
def sell(
    card: Annotated[str, typer.Option("--card", help="The scanned card code (CC1:…).")],
    item: Annotated[list[str], typer.Option("--item", help="CODE=QUANTITY; repeat for each item.")],
    pin: Annotated[str, typer.Option("--pin", prompt=True, hide_input=True, help="The card holder's PIN.")],
    directory: Directory = DEFAULT_DIR,
) -> None:
    """Sell online: the server checks the card and PIN and redeems in one transaction."""
    basket = [_line(text) for text in item]

    def step(client: TerminalClient) -> None:
        api = client.http()
        try:
            receipt = client.sell_online(api, card, pin, basket)
        finally:
            api.close()
        out.print(f"APPROVED {receipt['transaction_id']} ({receipt['period']}), holder {receipt['holder']}")
        for line in receipt["items"]:
            out.print(
                f"  {line['item']} × {line['granted']} at {line['unit_price_minor'] / 100:.2f} "
                f"= {line['amount_minor'] / 100:.2f} (left {line['remaining']} {line['unit']})",
                highlight=False,
            )
        out.print(f"  to pay {receipt['total_minor'] / 100:.2f}")

    _run(directory, step)


@terminal_app.command("queue")
def queue(directory: Directory = DEFAULT_DIR) -> None:
    """The receipts not yet synced, in order."""

    def step(client: TerminalClient) -> None:
        table = Table("seq", "period", "items", "created")
        for r in client.queue():
            items = ", ".join(f"{k}×{v}" for k, v in r.items.items())
            table.add_row(str(r.seq), r.period, items, r.created_at.isoformat(timespec="seconds"))
        out.print(table)

    _run(directory, step)


@terminal_app.command("status")
def status(directory: Directory = DEFAULT_DIR) -> None:
    """Bundle age, queue length, conflicts and the last sync."""

    def step(client: TerminalClient) -> None:
        s = client.status()
        age = "none" if s.bundle_age_seconds is None else f"{s.bundle_age_seconds // 60} min"
        current = "current" if s.bundle_current else "NOT current: sync"
        out.print(f"terminal {s.terminal_id or '-'} at {s.server_url or '-'}", highlight=False)
        out.print(f"bundle {s.bundle_period or '-'}, age {age} ({current})")
        out.print(f"queued {s.queued}, conflicts {s.conflicts}")
        out.print(f"last sync {s.last_sync.isoformat(timespec='seconds') if s.last_sync else 'never'}")

    _run(directory, step)


def _line(text: str) -> BasketLine:
    code, sep, qty = text.partition("=")
    if not sep or not code.strip() or not qty.strip().isdigit():
        err.print(f"[red]error:[/red] --item {text!r} is not CODE=QUANTITY", highlight=False)
        raise typer.Exit(2)
    return BasketLine(code.strip().upper(), int(qty))
