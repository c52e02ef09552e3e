"""`civicard keys …`: create the root key, see and rotate the key generations (exit 0 ok, 1 refused, 2 usage).

The root key is the one secret civicard holds; every signing key is derived from it and its
generations are recorded in the database (governance/key_custody.py). `keys init` makes the root
key of a new installation; `keys rotate` asks for the next generation of the card-issuer or the
log-checkpoint key, which a second oversight account approves (`civicard approvals approve`).
The custody procedure, rotation and compromise steps are in docs/operations.md ("Key custody and
compromise").
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from civicard.adapters.cli.users import _run, operator
from civicard.adapters.db import tables as t
from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.key_store import SqlKeyGenerations, record_root_fingerprint
from civicard.governance.approvals import FOUR_EYES
from civicard.governance.key_custody import (
    IssuerUsage,
    KeySchedule,
    drop_unused_issuer_keys,
    generations_with_defaults,
)
from civicard.governance.kinds import request_key_rotation
from civicard.settings import Settings
from civicard.shared.keys import RootKey, new_root_key_text, parse_root_key
from civicard.transparency.access import AccessContext, Actor

keys_app = typer.Typer(help="Root key custody and the rotation of signing keys.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

By = Annotated[str, typer.Option("--by", help="Username of the oversight account acting.")]

CUSTODY = """\
Root key fingerprint: {fingerprint}

Keep this key outside the database, the backups and the repository:
  1. Seal two copies offline (printed or on two encrypted USB keys), in two places, each held by a
     named person of a different office (e.g. the oversight officer and the head of IT). Record
     who holds them and the fingerprint above, never the key.
  2. Give it to the service as CIVICARD_ROOT_KEY in a root-only file (mode 0600) read by systemd
     (EnvironmentFile= or LoadCredential=, see docs/deployment.md), then delete any other copy
     (shell history, this --out file once sealed).
  3. At every start civicard compares the key with the fingerprint the database holds and refuses
     another key: check the fingerprint against the sealed record when you restore.
"""


class RotatedKey(StrEnum):
    issuer = "issuer"
    checkpoint = "checkpoint"


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new random root key for CIVICARD_ROOT_KEY (prefer `keys init`, which says how to keep it)."""
    out.print(new_root_key_text())


@keys_app.command("init")
def keys_init(
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the key to this new file (mode 0600) instead of stdout.")
    ] = None,
) -> None:
    """Generate the root key of a new installation and print how to keep it.

    The database records the key's fingerprint the first time civicard starts with it (and from
    then on refuses any other key); `init` refuses a database that already has one."""
    from civicard.adapters.cli.main import fail

    database = _configured_database()
    stored = _stored_fingerprint(database) if database is not None else None
    if stored is not None:
        raise fail(
            f"this database already has its root key (fingerprint {stored}); "
            "`keys init` is for a new installation — use the root key from the sealed copies"
        )
    text = new_root_key_text()
    root_key = RootKey(parse_root_key(text))
    if out_file is not None:
        try:
            fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise fail(f"{out_file} exists; `keys init` never overwrites a key file") from None
        except OSError as exc:
            raise fail(f"cannot write {out_file}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="ascii") as written:
            written.write(f"CIVICARD_ROOT_KEY={text}\n")
        err.print(f"wrote the root key to {out_file} (mode 0600)", highlight=False)
    else:
        out.print(text, highlight=False)
    err.print(CUSTODY.format(fingerprint=root_key.fingerprint()), highlight=False)


@keys_app.command("status")
def keys_status() -> None:
    """The key generations (current, retired, dropped, compromised) and the cards each issuer kid signed."""
    from civicard.adapters.cli.main import container

    with container() as built:
        # Refuses a root key other than the database's, and records the fingerprint if none is yet.
        schedule = _run(lambda: record_root_fingerprint(built.engine, built.root_key, built.clock, operator()))
        context = AccessContext(Actor(operator(), "system"), FOUR_EYES)

        def usage() -> dict[int, IssuerUsage]:
            with SqlApprovalUnitOfWork(built.engine, context, built.clock) as uow:
                return uow.key_generations.issuer_usage(built.clock.now())

        in_use = _run(usage)
    out.print(f"root key fingerprint {schedule.root_fingerprint or built.root_key.fingerprint()}", highlight=False)
    table = Table("key", "generation", "state", "since", "cards in circulation", "reason")
    recorded = {(g.purpose, g.generation): g for g in schedule.generations}
    for purpose, generation, state in generations_with_defaults(schedule):
        row = recorded.get((purpose, generation))
        since = f"{row.created_at:%Y-%m-%d}" if row and row.created_by != "initial" else ""
        cards = ""
        if purpose == "issuer":
            used = in_use.get(generation)
            cards = f"{used.cards} (last expires {used.last_expiry:%Y-%m-%d})" if used and used.last_expiry else "0"
            if state == "retired" and used is None:
                state = "retired (droppable: civicard keys prune)"
        table.add_row(purpose, str(generation), state, since, cards, (row.reason or "") if row else "")
    out.print(table)


@keys_app.command("rotate")
def keys_rotate(
    key: Annotated[RotatedKey, typer.Argument(help="issuer (card signing) or checkpoint (access-log signing).")],
    by: By,
    reason: Annotated[str, typer.Option("--reason", help="Why (the approver reads it).")],
    compromised: Annotated[
        bool,
        typer.Option("--compromised", help="The old key leaked: it stops verifying at once; its cards are revoked."),
    ] = False,
) -> None:
    """Ask for the next generation of a signing key; another oversight account approves it."""
    from civicard.adapters.cli.approvals import as_staff
    from civicard.adapters.cli.main import container

    with container() as built:
        asked = as_staff(built, by, lambda uow: request_key_rotation(uow, key.value, reason, compromised))
    out.print(f"requested {asked.id}: rotate the {key.value} key from generation {asked.data['generation']}")
    out.print(f"  another oversight account approves: civicard approvals approve {asked.id} --by …")


@keys_app.command("prune")
def keys_prune(by: By) -> None:
    """Drop from the published keyring every retired issuer kid that no card in circulation carries."""
    from civicard.adapters.cli.approvals import as_staff
    from civicard.adapters.cli.main import container

    with container() as built:
        dropped = as_staff(built, by, drop_unused_issuer_keys)
    if not dropped:
        out.print("no retired issuer key is unused yet", highlight=False)
    else:
        out.print(f"dropped issuer kid(s) {', '.join(map(str, dropped))}; terminals fetch /v1/keys again")


def _configured_database() -> str | None:
    """The database URL if the settings load and its schema has key_generations; else None."""
    try:
        url = Settings().effective_database_url
    except ValidationError:  # e.g. production without CIVICARD_ROOT_KEY: a new installation
        return None
    engine = make_engine(url)
    try:
        return url if sa.inspect(engine).has_table(t.key_generations.name) else None
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _stored_fingerprint(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return KeySchedule(tuple(SqlKeyGenerations(conn).all())).root_fingerprint
    finally:
        engine.dispose()
