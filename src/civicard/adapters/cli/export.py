"""`civicard export …`: ask for a bulk export of personal data, and run it once approved (exit 0 ok,
1 refused, 2 usage).

`export request` files a four-eyes `bulk_export` request (governance/exports.py) as the staff
account `--by` names; an oversight account other than the asker approves it with `civicard
approvals approve`; then the asker runs `export run` once, before the request expires. The CSV is
written to a temporary file beside `--out` and renamed into place only after the run — its log
entries, one per exported person, and the request marked executed — is committed.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Annotated

import typer

from civicard.adapters.cli.approvals import as_staff
from civicard.adapters.cli.progress import counting_progress
from civicard.governance.exports import ExportDone, exportable_fields, request_export, run_export
from civicard.governance.kinds import KINDS

export_app = typer.Typer(help="Bulk exports of personal data (four-eyes).", no_args_is_help=True)
PROGRESS_FROM = 5000  # rows; smaller exports finish before a bar would tell anything

By = Annotated[str, typer.Option("--by", help="Username of the staff account asking (and later running it).")]


@export_app.command("request")
def export_request(
    program: Annotated[str, typer.Option("--program", help="Program code: its eligible households' members.")],
    fields: Annotated[str, typer.Option("--fields", help="Comma-separated registry fields (see `export fields`).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (the approver reads it).")],
    by: By,
    region: Annotated[str, typer.Option("--region", help="Only households in this region code.")] = "",
) -> None:
    """Ask for an export; an oversight account other than yours approves it."""
    from civicard.adapters.cli.main import container, out

    with container() as built:
        asked = as_staff(built, by, lambda uow: request_export(uow, KINDS, program, region or None, fields, reason))
    out.print(f"requested {asked.id}: {KINDS.get(asked.kind).describe(asked.data)}", highlight=False)
    out.print(f"  approvable and runnable until {asked.expires_at:%Y-%m-%d %H:%M} UTC", highlight=False)
    out.print(f"  an oversight account other than yours approves: civicard approvals approve {asked.id} --by …")


@export_app.command("run")
def export_run(
    request_id: Annotated[str, typer.Argument(help="The approved request's id.")],
    out_file: Annotated[Path, typer.Option("--out", help="The CSV file to write (replaced if it exists).")],
    by: By,
) -> None:
    """Carry out an approved export, once: one access-log entry per exported person."""
    from civicard.adapters.cli.main import container, fail, out

    target = out_file.resolve()
    if not target.parent.is_dir():
        raise fail(f"the directory {target.parent} does not exist")
    with container() as built, _staged_csv(target) as sink:
        done: ExportDone = as_staff(built, by, lambda uow: run_export(uow, KINDS, request_id, sink))
    out.print(f"exported {done.people} people (period {done.period}) to {target}", highlight=False)


@export_app.command("fields")
def export_fields() -> None:
    """The registry fields an export may include, with their data category."""
    from civicard.adapters.cli.main import out

    for name, category in exportable_fields().items():
        out.print(f"{name}\t{category}", highlight=False)


class _CsvSink:
    """Writes the export's rows to an open temporary file, with a bar for large exports."""

    def __init__(self, handle: IO[str], stack: ExitStack) -> None:
        self._writer = csv.writer(handle, lineterminator="\n")
        self._stack = stack
        self._advance: Callable[[int], None] | None = None

    def begin(self, header: Sequence[str], total: int) -> None:
        self._writer.writerow(header)
        if total >= PROGRESS_FROM:
            self._advance = self._stack.enter_context(counting_progress("exporting", total))

    def write(self, rows: Sequence[Sequence[str]]) -> None:
        self._writer.writerows(rows)
        if self._advance is not None:
            self._advance(len(rows))


@contextmanager
def _staged_csv(target: Path) -> Iterator[_CsvSink]:
    """A sink on a temporary file beside `target`, renamed onto it if the block succeeds (the run is
    committed by then) and removed otherwise, so `target` is never left half written."""
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with ExitStack() as stack, os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield _CsvSink(handle, stack)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
