"""`civicard restore`: a backup back into the configured database, refusing a rolled-back log.

Everything that can refuse runs before the target is touched: the archive's seal and hashes, the
schema revision (newer than this code: refused), the backend, a target that holds data (without
`force`), and the backup's access log against the largest published checkpoint known outside it —
the note kept in the data dir, notes the operator passes, and the replaced database's own. A log
behind it is restored only when the operator accepts it with an incident, which is appended to the
access log as a system entry and signed into a new checkpoint; the checkpoint it went behind is
kept beside the new one as evidence. After restoring: migrate to head if older, check row counts,
erase again every person the erasure journal says was erased after the backup, verify the whole log.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tarfile
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import IO, Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, inspect, literal, select, table, text
from sqlalchemy.engine import make_url
from sqlalchemy.sql.expression import TableClause

from civicard.adapters import backup_postgres as pg
from civicard.adapters.backup import (
    POSTGRES_PART,
    SQLITE_PART,
    Progress,
    keep_published_checkpoint,
    published_checkpoint_file,
    quiet,
    read_snapshot,
    seal_key,
    sqlite_path,
    write_public,
)
from civicard.adapters.db import tables as t
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.log_store import LogVerification, stored_consistency_proof, verify_stored_log
from civicard.adapters.db.migrate import alembic_config, upgrade
from civicard.adapters.db.repositories import SqlAccessLog
from civicard.adapters.db.retention_store import reapply_erasures
from civicard.adapters.erasure_journal import read_journal
from civicard.bootstrap import Container
from civicard.shared.errors import Conflict, DomainError, InvalidInput
from civicard.transparency.access import AccessEntry, Actor
from civicard.transparency.backups import (
    MANIFEST_NAME,
    Manifest,
    Part,
    Published,
    Standing,
    behind_published,
    check_parts,
    latest_published,
    open_manifest,
    standing,
)
from civicard.transparency.checkpoints import (
    CheckpointError,
    NoteSigner,
    VerifierKey,
    VerifierKeyring,
    open_checkpoint,
)
from civicard.transparency.log_entries import format_time
from civicard.transparency.merkle import verify_consistency

INCIDENT_ACTOR = "cli:restore"
INCIDENT_PURPOSE = "restore_incident"
ERASURE_ACTOR = "cli:restore"
TARGET_SOURCE = "the database being replaced"
MAX_CHECKPOINT_GENERATIONS = 256  # how far `_log_keys` looks for the backup's checkpoint key
_CHUNK = 1 << 20
_MANIFEST_MAX = 1 << 24
_INCIDENT_MAX = 1000


@dataclass(frozen=True)
class RestoreRequest:
    force: bool = False  # replace a database that holds data
    published_notes: tuple[tuple[str, str], ...] = ()  # (where from, note) the operator passes
    incident: str | None = None  # accept a stale or diverged log, recorded as this incident


@dataclass(frozen=True)
class RestoreReport:
    manifest: Manifest
    upgraded_from: str | None
    standing: Standing
    published: Published | None
    incident_seq: int | None
    verification: LogVerification
    erasures_reapplied: int = 0  # persons erased after the backup was taken, erased again (erasure journal)


def restore_backup(
    built: Container, archive: Path, request: RestoreRequest, progress: Progress = quiet
) -> RestoreReport:
    """Restore `archive` into the configured database, which must be empty unless `request.force`.

    Order: the archive is authenticated and every part's hash checked; a schema newer than this code,
    another backend, a non-empty target and a log behind the published checkpoint are refused —
    all before the target is touched. Then the database is replaced, migrated to head if older,
    an accepted rollback is recorded in the access log, and the log is verified.
    Codes: backup_unreadable, backup_tampered, other_root_key, schema_newer, wrong_backend,
    target_not_empty, published_checkpoint_invalid, stale_log, restore_failed, restore_incomplete,
    log_not_verified.
    """
    url = built.settings.effective_database_url
    built.settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=built.settings.data_dir) as work:
        raw, found = _unpack(archive, Path(work), progress)
        backup_key, key = _log_keys(built, raw)
        manifest = open_manifest(raw, seal_key(built), backup_key)
        check_parts(manifest, found)
        older = _older_schema(manifest.alembic_revision)
        _check_backend(manifest, url)
        target = _inspect_target(url, key)
        if target.tables_with_rows and not request.force:
            shown = ", ".join(target.tables_with_rows[:3]) + ("…" if len(target.tables_with_rows) > 3 else "")
            raise Conflict(
                "target_not_empty", f"The configured database holds data ({shown}); pass --force to replace it."
            )
        published, where, prefix = _against_published(built, manifest, target, request, key)
        built.engine.dispose()
        if manifest.backend == "sqlite":
            _restore_sqlite(url, Path(work) / SQLITE_PART, progress)
        else:
            pg.restore(url, Path(work) / POSTGRES_PART, manifest, Path(work), progress)
    _check_counts(url, manifest)
    built.key_custody.reload()  # the restored key_generations say which checkpoint key signs from now on
    if older:
        progress("upgrade schema", 0, 1)
        upgrade(url)
        progress("upgrade schema", 1, 1)
    built.engine.dispose()
    incident = None
    if where in (Standing.STALE, Standing.DIVERGED):
        assert published is not None and request.incident is not None  # _against_published refused otherwise
        incident = _record_incident(built, manifest, published, prefix, request.incident)
    reapplied = _reapply_erasures(built, manifest)
    verification = _verify(built, published.note if published and where is Standing.CURRENT else None, progress)
    _keep_restored(built, published if incident is not None else None)
    return RestoreReport(
        manifest, manifest.alembic_revision if older else None, where, published, incident, verification, reapplied
    )


def _unpack(archive: Path, work: Path, progress: Progress) -> tuple[bytes, dict[str, Part]]:
    """The manifest's bytes and each database part, extracted into `work` and hashed on the way."""
    manifest: bytes | None = None
    found: dict[str, Part] = {}
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in tar:
                name = member.name
                if not member.isfile() or name in found or (name == MANIFEST_NAME and manifest is not None):
                    raise InvalidInput("backup_tampered", f"The archive holds an unexpected member '{name}'.")
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members always have data
                    raise InvalidInput("backup_unreadable", f"'{name}' cannot be read.")
                if name == MANIFEST_NAME:
                    if member.size > _MANIFEST_MAX:
                        raise InvalidInput("backup_unreadable", "The manifest is implausibly large.")
                    manifest = source.read()
                elif name in (SQLITE_PART, POSTGRES_PART):
                    found[name] = _extract(source, work / name, member.size, progress)
                else:
                    raise InvalidInput("backup_tampered", f"The archive holds an unexpected member '{name}'.")
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidInput("backup_unreadable", f"{archive} is not a readable backup archive ({exc}).") from None
    if manifest is None:
        raise InvalidInput("backup_unreadable", f"{archive} holds no {MANIFEST_NAME}: it is not a civicard backup.")
    return manifest, found


def _extract(source: IO[bytes], path: Path, size: int, progress: Progress) -> Part:
    digest, done = hashlib.sha256(), 0
    with path.open("wb") as sink:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            sink.write(chunk)
            done += len(chunk)
            progress("check archive", done, size)
    return Part(path.name, digest.hexdigest(), done)


def _older_schema(revision: str) -> bool:
    """True if the backup's schema is older than this code's head; refuses one this code does not know."""
    head = _script().get_current_head()
    if not _known_revision(revision):
        raise Conflict(
            "schema_newer",
            f"The backup's schema revision {revision} is unknown to this civicard (head {head}): "
            "it comes from a newer version; upgrade civicard before restoring it.",
        )
    return revision != head


def _check_backend(manifest: Manifest, url: str) -> None:
    backend = make_url(url).get_backend_name()
    if manifest.backend != backend:
        raise Conflict(
            "wrong_backend", f"The backup is of a {manifest.backend} database; the configured one is {backend}."
        )


@dataclass(frozen=True)
class _Target:
    tables_with_rows: list[str]
    checkpoint: tuple[str, int, bytes] | None  # (note, size, root) if signed by this log's key


def _log_keys(built: Container, raw: bytes) -> tuple[VerifierKey, VerifierKey]:
    """The log key the backup was made under, and a keyring for every checkpoint this restore meets.

    A source that rotated its checkpoint key (`civicard keys rotate checkpoint`) made its backup under
    generation g of the root key, while an empty target knows only generation 0. So the generation
    the manifest names is looked up among this root key's generations (a key of another root key is
    none of them, and `open_manifest` refuses it as `other_root_key`); the keyring then accepts
    generations 0..g and those the configured database knows, for the published checkpoints.
    """
    configured = built.log_signer.verifier
    known = configured.generations()
    try:
        claimed = json.loads(raw.decode("utf-8"))["access_log"]["log_key"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return configured, configured  # open_manifest says what is wrong with it
    name = built.log_signer.name
    generations: list[VerifierKey] = []
    for generation in range(MAX_CHECKPOINT_GENERATIONS):
        generations.append(NoteSigner.from_root_key(built.root_key, name, generation).verifier)
        if generations[-1].to_vkey() == claimed:
            break
    else:
        return configured, configured
    backup = generations[-1]
    return VerifierKeyring(name, backup.public_key, (*generations[:-1],)), VerifierKeyring(
        name, backup.public_key, (*generations[:-1], *known)
    )


def _inspect_target(url: str, key: VerifierKey) -> _Target:
    """What the database about to be replaced holds; a missing database or schema holds nothing."""
    if make_url(url).get_backend_name() == "sqlite" and not sqlite_path(url).exists():
        return _Target([], None)
    engine = make_engine(url, guarded=False)
    try:
        with engine.connect() as conn:
            schema = pg.existing_schema(conn) if conn.dialect.name == "postgresql" else None
            if conn.dialect.name == "postgresql" and schema is None:
                return _Target([], None)
            full = _tables_with_data(conn, schema)
            present = inspect(conn).get_table_names(schema=schema)
            snap = read_snapshot(conn, schema) if t.log_checkpoints.name in present else None
    finally:
        engine.dispose()
    if snap is None or snap.note is None:
        return _Target(full, None)
    try:
        open_checkpoint(snap.note, key, origin=None)
    except CheckpointError:  # another log's database: its checkpoint was never published by this one
        return _Target(full, None)
    return _Target(full, (snap.note, snap.tree_size, snap.root_hash))


def _tables_with_data(conn: Connection, schema: str | None) -> list[str]:
    """Tables holding rows other than those the migrations seed (a freshly migrated database is empty)."""
    revision = MigrationContext.configure(conn).get_current_revision()
    seeded = _seeded_rows(revision) if revision is not None and _known_revision(revision) else {}
    found = []
    # key_generations: `db upgrade` records the root key's fingerprint; the backup's rows replace it.
    for name in sorted(set(inspect(conn).get_table_names(schema=schema)) - {"alembic_version", "key_generations"}):
        rows = table(name, schema=schema)
        if conn.execute(select(literal(1)).select_from(rows).limit(1)).first() is None:
            continue
        if name not in seeded or _rows(conn, rows) != seeded[name]:
            found.append(name)
    return found


@cache
def _seeded_rows(revision: str) -> dict[str, frozenset[tuple[Any, ...]]]:
    """The rows of the small tables a fresh database at `revision` already holds."""
    with tempfile.TemporaryDirectory(prefix="civicard-reference-") as work:
        url = f"sqlite:///{Path(work) / 'reference.db'}"
        upgrade(url, revision)
        engine = make_engine(url, guarded=False)
        try:
            with engine.connect() as conn:
                names = [n for n, count in read_snapshot(conn).row_counts.items() if count]
                return {n: _rows(conn, table(n)) for n in names}
        finally:
            engine.dispose()


def _rows(conn: Connection, rows: TableClause) -> frozenset[tuple[Any, ...]]:
    return frozenset(tuple(row) for row in conn.execute(select(text("*")).select_from(rows)))


def _known_revision(revision: str) -> bool:
    return revision in {r.revision for r in _script().walk_revisions()}


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def _against_published(
    built: Container, manifest: Manifest, target: _Target, request: RestoreRequest, key: VerifierKey
) -> tuple[Published | None, Standing, bool | None]:
    """The largest published checkpoint known, where the backup stands against it, and (if the
    replaced database holds that tree) whether the backup's log is a prefix of it."""
    notes = list(request.published_notes)
    kept = published_checkpoint_file(built.settings.data_dir)
    if kept.exists():
        notes.append((str(kept), kept.read_text(encoding="utf-8")))
    if target.checkpoint is not None:
        notes.append((TARGET_SOURCE, target.checkpoint[0]))
    published = latest_published(notes, key)
    where = standing(manifest, published)
    if published is None or where in (Standing.CURRENT, Standing.NONE_PUBLISHED):
        return published, where, None
    prefix = _prefix_of_target(built.settings.effective_database_url, manifest, target, published)
    if request.incident is None:
        raise Conflict(
            "stale_log",
            f"Refusing to restore: {behind_published(manifest, published, prefix)}; residents holding "
            "that checkpoint would see tampering. Pass --accept-stale --incident TEXT to restore it anyway.",
        )
    return published, where, prefix


def _prefix_of_target(url: str, manifest: Manifest, target: _Target, published: Published) -> bool | None:
    if target.checkpoint is None or target.checkpoint[1] != published.checkpoint.tree_size:
        return None
    _, size, root = target.checkpoint
    if manifest.tree_size > size:
        return False
    engine = make_engine(url, guarded=False)
    try:
        with engine.connect() as conn:
            proof = stored_consistency_proof(conn, manifest.tree_size, size)
    except DomainError:  # the replaced log's nodes are damaged: no answer either way
        return None
    finally:
        engine.dispose()
    return verify_consistency(manifest.tree_size, size, manifest.root_hash, root, proof)


def _restore_sqlite(url: str, copy: Path, progress: Progress) -> None:
    """Copy the backup over the target page by page with the backup API (readers see old or new)."""
    target = sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    progress("restore database", 0, 1)
    try:
        with closing(sqlite3.connect(copy)) as source, closing(sqlite3.connect(target, timeout=30)) as dest:
            source.backup(dest)
    except sqlite3.Error as exc:
        raise Conflict("restore_failed", f"The SQLite restore failed: {exc}") from None
    progress("restore database", 1, 1)


def _check_counts(url: str, manifest: Manifest) -> None:
    engine = make_engine(url, guarded=False)
    try:
        with engine.connect() as conn:
            schema = pg.existing_schema(conn) if conn.dialect.name == "postgresql" else None
            counts = read_snapshot(conn, schema).row_counts
    finally:
        engine.dispose()
    differing = sorted(
        n for n in counts.keys() | manifest.row_counts.keys() if counts.get(n) != manifest.row_counts.get(n)
    )
    if differing:
        raise Conflict(
            "restore_incomplete", f"The restored row counts differ from the backup's in {', '.join(differing)}."
        )


def _record_incident(
    built: Container, manifest: Manifest, published: Published, prefix: bool | None, reason_text: str
) -> int:
    """Append the accepted rollback to the access log as a system entry and sign it into a checkpoint.

    The entry is public (a leaf): what happened, and the operator's reason — no personal data.
    """
    reason = " ".join(reason_text.split())[:_INCIDENT_MAX]
    detail = (
        f"restore incident: the backup of {format_time(manifest.created_at)} was restored although "
        f"{behind_published(manifest, published, prefix)}; accepted by the operator: {reason}"
    )
    entry = AccessEntry(built.clock.now(), INCIDENT_ACTOR, "system", INCIDENT_PURPOSE, "write", None, (), detail)
    with built.engine.begin() as conn:
        SqlAccessLog(conn).append([entry])
        seq = int(conn.execute(select(func.max(t.access_log.c.seq))).scalar_one())
    built.integrator.run_once(full=True)
    return seq


def _reapply_erasures(built: Container, manifest: Manifest) -> int:
    """A backup taken before an erasure still holds the person: erase them again from the journal
    kept outside the database (adapters/erasure_journal.py) before the restore is reported done."""
    journalled = [e for e in read_journal(built.settings.data_dir) if e.erased_at >= manifest.created_at]
    if not journalled:
        return 0
    count = reapply_erasures(built.engine, built.clock, Actor(ERASURE_ACTOR, "system"), journalled)
    built.integrator.run_once(full=True)
    return count


def _verify(built: Container, against: str | None, progress: Progress) -> LogVerification:
    progress("verify access log", 0, 1)
    with built.engine.connect() as conn:
        report = verify_stored_log(conn, built.log_signer.verifier, against=against)
    if not report.ok:
        raise Conflict(
            "log_not_verified",
            f"The database was restored but its access log does not verify: {report.message} ({report.code}).",
        )
    progress("verify access log", 1, 1)
    return report


def _keep_restored(built: Container, superseded: Published | None) -> None:
    with built.engine.connect() as conn:
        c = t.log_checkpoints.c
        note = conn.execute(select(c.note).order_by(c.tree_size.desc()).limit(1)).scalar()
    if note is None:
        return
    if superseded is not None:
        _supersede_published(built.settings.data_dir, superseded, note, built.clock.now())
    else:
        keep_published_checkpoint(built.settings.data_dir, note, built.log_signer.verifier)


def _supersede_published(data_dir: Path, published: Published, note: str, at: datetime) -> None:
    """After an accepted rollback: keep the checkpoint it went behind as evidence, and the new log's."""
    path = published_checkpoint_file(data_dir)
    write_public(path.with_name(f"published-checkpoint.superseded-{at:%Y%m%dT%H%M%SZ}.note"), published.note)
    write_public(path, note)
