"""`civicard backup`: the whole database as one sealed archive; and the published checkpoint kept
outside the database, which `restore.py` checks a restored log against.

An archive is an uncompressed tar of one database part and `manifest.json` (transparency/backups.py).
SQLite is copied with the online backup API in one step: in WAL mode it reads one snapshot while a
running server keeps writing. PostgreSQL is dumped with `pg_dump -Fc` inside an exported
REPEATABLE READ snapshot (backup_postgres.py), so the manifest's facts describe exactly what was
dumped. The database holds the access log and every key in its stored form (derived keys are not
stored; TOTP secrets are encrypted; terminal keys are public). The root key is never in a backup,
and neither are the demo terminals' private keys in the data dir: they belong to the devices.

The latest published checkpoint is kept in <data dir>/published-checkpoint.note:
`keep_published_checkpoint` runs with every backup and restore, and should run wherever a
checkpoint is published (`publish_checkpoint`: GET /v1/log/checkpoint, the transparency page,
`audit checkpoint`), so that a database restored from an
older backup cannot carry the newer checkpoint away with it.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import sqlite3
import tarfile
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, cast

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, func, inspect, select, table
from sqlalchemy.engine import make_url

from civicard.adapters import backup_postgres as pg
from civicard.adapters.db import tables as t
from civicard.bootstrap import Container
from civicard.shared.errors import Conflict, InvalidInput, NotFound
from civicard.transparency.backups import (
    MANIFEST_NAME,
    SEAL_LABEL,
    Manifest,
    Part,
)
from civicard.transparency.checkpoints import Checkpoint, CheckpointError, VerifierKey, open_checkpoint
from civicard.transparency.merkle import EMPTY_ROOT

Progress = Callable[[str, int, int], None]

SQLITE_PART = "database.sqlite3"
POSTGRES_PART = "database.pgdump"
PUBLISHED_FILE = "published-checkpoint.note"
log = logging.getLogger("civicard.backup")


def quiet(stage: str, done: int, total: int) -> None:
    return None


# --------------------------------------------------------------------------- what a database holds


@dataclass(frozen=True)
class Snapshot:
    """The manifest's facts about one database state."""

    revision: str | None
    tree_size: int
    root_hash: bytes
    note: str | None
    row_counts: dict[str, int]
    schema: str | None = None


def read_snapshot(conn: Connection, schema: str | None = None) -> Snapshot:
    """Schema revision, latest checkpoint and row counts, read in the caller's transaction.

    Counting rows reveals nothing personal; the caller's connection is an unguarded one.
    """
    present = set(inspect(conn).get_table_names(schema=schema))
    counts = {
        name: int(conn.execute(select(func.count()).select_from(table(name, schema=schema))).scalar_one())
        for name in sorted(present & t.metadata.tables.keys())
    }
    size, root, note = 0, EMPTY_ROOT, None
    if t.log_checkpoints.name in present:
        c = t.log_checkpoints.c
        row = conn.execute(select(c.tree_size, c.root_hash, c.note).order_by(c.tree_size.desc()).limit(1)).first()
        if row is not None:
            size, root, note = int(row.tree_size), bytes(row.root_hash), str(row.note)
    revision = MigrationContext.configure(conn).get_current_revision()
    return Snapshot(revision, size, root, note, counts, schema)


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise InvalidInput("unsupported_database", "Only a SQLite database in a file can be backed up or restored.")
    return Path(database)


# --------------------------------------------------------------------------- backup


def create_backup(built: Container, out: Path, progress: Progress = quiet) -> Manifest:
    """Write the whole database as one sealed archive at `out` (never overwritten), and keep its
    checkpoint as the latest published one. A running server is not stopped.

    Codes: backup_exists, no_database, no_schema, published_checkpoint_invalid (the database's log or the
    kept checkpoint is not signed by the configured root key's log key), backup_failed, pg_dump_failed.
    """
    if out.exists():
        raise Conflict("backup_exists", f"{out} exists; choose a new file name.")
    url = built.settings.effective_database_url
    backend = make_url(url).get_backend_name()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=out.parent) as work:
        part = Path(work) / (SQLITE_PART if backend == "sqlite" else POSTGRES_PART)
        snap = _copy_sqlite(url, part, progress) if backend == "sqlite" else pg.dump(url, part, progress, read_snapshot)
        if snap.revision is None:
            raise Conflict("no_schema", "The database has no schema yet (run `civicard db upgrade`).")
        staged = Path(work) / "archive.tar"
        digest = _write_archive(staged, part, progress)
        manifest = Manifest(
            created_at=built.clock.now(),
            backend=backend,
            alembic_revision=snap.revision,
            tree_size=snap.tree_size,
            root_hash=snap.root_hash,
            checkpoint_note=snap.note,
            log_key=built.log_signer.verifier.to_vkey(),
            row_counts=snap.row_counts,
            parts=(Part(part.name, digest, part.stat().st_size),),
            schema=snap.schema,
        )
        _append_manifest(staged, manifest.sealed(seal_key(built)), manifest.created_at)
        if snap.note is not None:
            keep_published_checkpoint(built.settings.data_dir, snap.note, built.log_signer.verifier)
        os.replace(staged, out)
    return manifest


def seal_key(built: Container) -> bytes:
    return built.root_key.derive(SEAL_LABEL)


def _copy_sqlite(url: str, part: Path, progress: Progress) -> Snapshot:
    source_path = sqlite_path(url)
    if not source_path.is_file():
        raise NotFound("no_database", f"There is no database at {source_path}.")
    progress("copy database", 0, 1)
    try:
        with closing(sqlite3.connect(source_path, timeout=30)) as source, closing(sqlite3.connect(part)) as copy:
            # One step: a stepwise copy restarts whenever the server writes, and might never finish.
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    except sqlite3.Error as exc:
        raise Conflict("backup_failed", f"The SQLite backup failed: {exc}") from None
    progress("copy database", 1, 1)
    engine = create_engine(f"sqlite:///{part}")  # plain: engine.make_engine would switch the copy to WAL
    try:
        with engine.connect() as conn:
            return read_snapshot(conn)
    finally:
        engine.dispose()


class _Metered(io.RawIOBase):
    """Reads a file once, hashing it and reporting progress, while tarfile copies it."""

    def __init__(self, file: IO[bytes], total: int, progress: Progress) -> None:
        self.file, self.total, self.progress = file, total, progress
        self.sha256 = hashlib.sha256()
        self.done = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.sha256.update(chunk)
        self.done += len(chunk)
        self.progress("archive", self.done, self.total)
        return chunk


def _write_archive(staged: Path, part: Path, progress: Progress) -> str:
    """Start the archive with the database part (0600: it holds personal data); returns its SHA-256."""
    size = part.stat().st_size
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(part.name)
        info.size, info.mode, info.mtime = size, 0o600, int(part.stat().st_mtime)
        with part.open("rb") as data:
            metered = _Metered(data, size, progress)
            tar.addfile(info, cast(IO[bytes], metered))
    return metered.sha256.hexdigest()


def _append_manifest(staged: Path, manifest: bytes, created_at: datetime) -> None:
    with tarfile.open(staged, mode="a") as tar:
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size, info.mode, info.mtime = len(manifest), 0o600, int(created_at.timestamp())
        tar.addfile(info, io.BytesIO(manifest))
    with staged.open("rb") as written:
        os.fsync(written.fileno())


# --------------------------------------------------------------------------- the published checkpoint


def published_checkpoint_file(data_dir: Path) -> Path:
    return data_dir / PUBLISHED_FILE


def keep_published_checkpoint(data_dir: Path, note: str, key: VerifierKey) -> bool:
    """Keep `note` as the latest published checkpoint if it is larger than the one kept (True if so).

    Call it wherever a checkpoint is published; the file is public and outside the database, so a
    restore of an older database cannot carry the newer checkpoint away with it. Server workers
    publish concurrently: a lock file makes compare-and-replace one step, so a smaller checkpoint
    never overwrites a larger one.
    """
    new = _signed_by_this_log(note, key, "The checkpoint to keep")
    path = published_checkpoint_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            kept = _signed_by_this_log(path.read_text(encoding="utf-8"), key, f"The checkpoint kept in {path}")
            if kept.tree_size >= new.tree_size:
                return False
        write_public(path, note)
    return True


def publish_checkpoint(built: Container, note: str) -> None:
    """Keep `note` as published where a server or command hands it out (API, pages, CLI).

    Serving the checkpoint must not fail because the data directory is read-only or the kept file
    is damaged, so such a failure is logged as an error (the restore check then has less to go
    on) instead of raised.
    """
    try:
        keep_published_checkpoint(built.settings.data_dir, note, built.log_signer.verifier)
    except (OSError, Conflict) as exc:
        log.error("could not keep the published checkpoint in %s: %s", built.settings.data_dir, exc)


def _signed_by_this_log(note: str, key: VerifierKey, what: str) -> Checkpoint:
    try:
        return open_checkpoint(note, key, origin=None)
    except CheckpointError as exc:
        raise Conflict("published_checkpoint_invalid", f"{what}: {exc.message}") from None


def write_public(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)
