"""The erasure journal: <data dir>/erasure-journal.jsonl, kept outside the database.

A backup taken before an erasure still holds the person; `civicard restore` reads this journal and
erases again every journalled person the restored database holds (retention_store.reapply_erasures),
so a restore never resurrects anyone. Like published-checkpoint.note it lives in the data directory
so it survives replacing the database. One JSON line per erasure (transparency/retention.py):
its id, time, rule and the person as a tagged SHA-256 of their id — not the id, so the file names
nobody on its own, while a restore can still find the person by hashing the restored ids.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path

from civicard.shared.errors import Conflict
from civicard.transparency.retention import JournalEntry, parse_journal_line

JOURNAL_FILE = "erasure-journal.jsonl"


def journal_file(data_dir: Path) -> Path:
    return data_dir / JOURNAL_FILE


def append_journal(data_dir: Path, entries: Sequence[JournalEntry]) -> None:
    """Append and fsync, under a lock (a server and the CLI may both erase); owner-only file."""
    if not entries:
        return
    path = journal_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as journal:
        fcntl.flock(journal, fcntl.LOCK_EX)
        journal.write("".join(e.to_line() for e in entries))
        journal.flush()
        os.fsync(journal.fileno())


def read_journal(data_dir: Path) -> list[JournalEntry]:
    """Every journalled erasure (none if there is no journal); a damaged line is refused by number."""
    path = journal_file(data_dir)
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(parse_journal_line(line))
        except ValueError as exc:
            raise Conflict("erasure_journal_invalid", f"{path} line {number} is not a journal entry ({exc}).") from None
    return entries
