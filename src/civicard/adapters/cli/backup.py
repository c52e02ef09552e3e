"""`civicard backup` and `civicard restore`: the whole database as one sealed archive, and back.

Exit codes as everywhere in the CLI: 0 done, 1 refused or failed (one-line reason), 2 usage.
A restore whose access log is older than the latest published checkpoint is refused unless the
operator accepts it with `--accept-stale --incident TEXT`, which writes the incident to the log.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Annotated, TypeVar

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from civicard.adapters.backup import create_backup
from civicard.adapters.cli.progress import staged_progress
from civicard.adapters.restore import RestoreRequest, restore_backup

T = TypeVar("T")


def _cli() -> ModuleType:
    """The main CLI module, imported late because it registers these commands."""
    from civicard.adapters.cli import main

    return main


def _checked(action: Callable[[], T]) -> T:
    """Domain refusals and database errors become one line and exit code 1."""
    cli = _cli()
    try:
        return cli.run_checked(action)  # type: ignore[no-any-return]
    except (SQLAlchemyError, OSError) as exc:
        origin = getattr(exc, "orig", None) or exc
        lines = str(origin).strip().splitlines() or [type(exc).__name__]
        raise cli.fail(f"{type(exc).__name__}: {lines[0]}") from None


def _read_note(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise _cli().fail(f"{path} is not a readable checkpoint note") from None


def backup(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The archive to write (default ./civicard-<UTC time>.tar); never overwritten."),
    ] = None,
) -> None:
    """Back up the whole database (access log and stored keys; never the root key) into one sealed archive.

    SQLite is copied online: the server keeps running. Keep the archive encrypted and apart from the
    root key.
    """
    with _cli().container() as built:
        target = out or Path(f"civicard-{built.clock.now():%Y%m%dT%H%M%SZ}.tar")
        with staged_progress("Backup:") as progress:
            manifest = _checked(lambda: create_backup(built, target, progress))
    rows = sum(manifest.row_counts.values())
    typer.echo(
        f"wrote {target}: {manifest.backend} schema {manifest.alembic_revision}, "
        f"access log size {manifest.tree_size}, {rows:,} rows"
    )


def restore(
    archive: Annotated[Path, typer.Argument(help="A backup from `civicard backup`.", exists=True, dir_okay=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace a database that already holds data.")] = False,
    published: Annotated[
        list[Path] | None,
        typer.Option(
            "--published-checkpoint",
            help="A checkpoint note this log published (kept by a monitor, a resident or `audit checkpoint`); "
            "repeatable. The restored log must not be older.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    accept_stale: Annotated[
        bool,
        typer.Option("--accept-stale", help="Restore a log older than the published checkpoint (needs --incident)."),
    ] = False,
    incident: Annotated[
        str | None,
        typer.Option("--incident", help="Why the rollback is accepted; written to the public access log (no names)."),
    ] = None,
) -> None:
    """Restore a backup into the configured database (stop the server first), then migrate it and verify the log."""
    if accept_stale != (incident is not None):
        raise typer.BadParameter("--accept-stale and --incident TEXT go together.", param_hint="--accept-stale")
    if incident is not None and not incident.strip():
        raise typer.BadParameter("the incident needs a description.", param_hint="--incident")
    notes = tuple((str(p), _read_note(p)) for p in published or [])
    request = RestoreRequest(force=force, published_notes=notes, incident=incident)
    with _cli().container() as built:
        with staged_progress("Restore:") as progress:
            report = _checked(lambda: restore_backup(built, archive, request, progress))
        where = make_url(built.settings.effective_database_url).render_as_string(hide_password=True)
    upgraded = f", upgraded from {report.upgraded_from}" if report.upgraded_from else ""
    typer.echo(f"restored {archive} into {where}{upgraded}; {report.verification.message}")
    if report.incident_seq is not None:
        typer.echo(f"incident recorded in the access log as entry seq {report.incident_seq}")
