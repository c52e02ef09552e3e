"""Backup and restore on SQLite and PostgreSQL: round trip, tampering, stale logs, schema revisions."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from civicard.adapters.api.app import create_app
from civicard.adapters.backup import (
    Snapshot,
    create_backup,
    published_checkpoint_file,
    read_snapshot,
)
from civicard.adapters.db import tables as t
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.log_store import latest_checkpoint, verify_stored_log
from civicard.adapters.db.migrate import alembic_config, current_revision, upgrade
from civicard.adapters.restore import INCIDENT_PURPOSE, RestoreRequest, restore_backup
from civicard.bootstrap import Container
from civicard.settings import generate_root_key_text
from civicard.shared.errors import DomainError
from civicard.transparency.backups import MANIFEST_NAME, Standing
from tests.conftest import Database
from tests.integration.backup_fixtures import UowFor, build_town, container, empty_database, log_more


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def source(db: Database, data_dir: Path) -> Iterator[Container]:
    built = container(db.url, data_dir)
    yield built
    built.close()


@pytest.fixture
def empty_target(empty_db: Database, tmp_path: Path) -> Iterator[str]:
    with empty_database(empty_db.backend, tmp_path) as url:
        yield url


@pytest.fixture
def target(empty_target: str, data_dir: Path) -> Iterator[Container]:
    built = container(empty_target, data_dir)
    yield built
    built.close()


def snapshot(url: str) -> Snapshot:
    engine = make_engine(url, guarded=False)
    try:
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar() if conn.dialect.name != "sqlite" else None
            return read_snapshot(conn, schema)
    finally:
        engine.dispose()


def latest_note(engine: Engine) -> str:
    with engine.connect() as conn:
        latest = latest_checkpoint(conn)
    assert latest is not None
    return latest.note


def refusal(action: Callable[[], object]) -> str:
    with pytest.raises(DomainError) as caught:
        action()
    return caught.value.code


# --------------------------------------------------------------------------- round trip


def test_round_trip_into_an_empty_database_restores_every_row_and_a_log_that_verifies(
    source: Container, target: Container, uow_for: UowFor, tmp_path: Path, data_dir: Path
) -> None:
    build_town(source, uow_for)
    archive = tmp_path / "backup.tar"
    manifest = create_backup(source, archive)
    before = snapshot(source.settings.effective_database_url)
    assert manifest.row_counts == before.row_counts and manifest.row_counts["persons"] == 2
    assert (manifest.tree_size, manifest.root_hash) == (before.tree_size, before.root_hash)
    assert published_checkpoint_file(data_dir).read_text(encoding="utf-8") == before.note

    report = restore_backup(target, archive, RestoreRequest())

    after = snapshot(target.settings.effective_database_url)
    assert after.row_counts == before.row_counts
    assert (after.revision, after.tree_size, after.root_hash, after.note) == (
        before.revision,
        before.tree_size,
        before.root_hash,
        before.note,
    )
    assert report.standing is Standing.CURRENT and report.incident_seq is None and report.upgraded_from is None
    with target.engine.connect() as conn:
        verified = verify_stored_log(conn, target.log_signer.verifier, against=before.note)
    assert verified.ok and verified.entries == before.tree_size
    assert archive.stat().st_mode & 0o077 == 0  # personal data: owner only


def test_the_archive_holds_no_root_key_and_names_the_log_key_instead(
    source: Container, uow_for: UowFor, tmp_path: Path, data_dir: Path
) -> None:
    build_town(source, uow_for)
    archive = tmp_path / "backup.tar"
    create_backup(source, archive)
    root_key_text = (data_dir / "demo-root.key").read_text().strip()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile(MANIFEST_NAME).read())  # type: ignore[union-attr]
    assert sorted(names) == sorted([MANIFEST_NAME, manifest["parts"][0]["name"]])
    assert root_key_text.encode() not in archive.read_bytes()
    assert manifest["access_log"]["log_key"] == source.log_signer.verifier.to_vkey()


def test_a_non_empty_target_is_refused_unless_forced(
    source: Container, target: Container, uow_for: UowFor, tmp_path: Path
) -> None:
    build_town(source, uow_for)
    archive = tmp_path / "backup.tar"
    create_backup(source, archive)
    upgrade(target.settings.effective_database_url)  # a migrated schema without rows counts as empty
    restore_backup(target, archive, RestoreRequest())
    assert refusal(lambda: restore_backup(target, archive, RestoreRequest())) == "target_not_empty"
    report = restore_backup(target, archive, RestoreRequest(force=True))
    assert report.standing is Standing.CURRENT
    assert snapshot(target.settings.effective_database_url).row_counts["persons"] == 2


# --------------------------------------------------------------------------- tampering


def _rewrite(archive: Path, changed: Path, edit: Callable[[str, bytes], bytes]) -> None:
    with tarfile.open(archive) as old, tarfile.open(changed, "w") as new:
        for member in old:
            data = edit(member.name, old.extractfile(member).read())  # type: ignore[union-attr]
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))


def test_a_tampered_archive_is_refused_before_the_target_is_touched(
    source: Container, target: Container, uow_for: UowFor, tmp_path: Path
) -> None:
    build_town(source, uow_for)
    archive = tmp_path / "backup.tar"
    create_backup(source, archive)

    def flip_a_byte(name: str, data: bytes) -> bytes:
        if name == MANIFEST_NAME:
            return data
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]

    def claim_more_persons(name: str, data: bytes) -> bytes:
        if name != MANIFEST_NAME:
            return data
        document = json.loads(data)
        document["row_counts"]["persons"] = 3
        return json.dumps(document).encode()

    for edit in (flip_a_byte, claim_more_persons):
        changed = tmp_path / f"{edit.__name__}.tar"
        _rewrite(archive, changed, edit)
        assert refusal(lambda c=changed: restore_backup(target, c, RestoreRequest())) == "backup_tampered"
    not_a_tar = tmp_path / "not-a-backup.tar"
    not_a_tar.write_bytes(b"hello")
    assert refusal(lambda: restore_backup(target, not_a_tar, RestoreRequest())) == "backup_unreadable"
    assert snapshot(target.settings.effective_database_url).row_counts == {}


def test_a_backup_made_under_another_root_key_is_refused(
    source: Container, empty_target: str, uow_for: UowFor, tmp_path: Path
) -> None:
    build_town(source, uow_for)
    archive = tmp_path / "backup.tar"
    create_backup(source, archive)
    other = container(empty_target, tmp_path / "other-var", root_key=generate_root_key_text())
    try:
        assert refusal(lambda: restore_backup(other, archive, RestoreRequest())) == "other_root_key"
    finally:
        other.close()


# --------------------------------------------------------------------------- stale logs


def test_a_stale_backup_is_refused_and_restored_only_with_an_incident_record(
    source: Container, target: Container, uow_for: UowFor, tmp_path: Path, data_dir: Path
) -> None:
    build_town(source, uow_for)
    stale = tmp_path / "stale.tar"
    old = create_backup(source, stale)
    log_more(source)
    newer = latest_note(source.engine)
    served = TestClient(create_app(source)).get("/v1/log/checkpoint")  # publishing it keeps it
    assert served.status_code == 200 and served.text == newer
    assert published_checkpoint_file(data_dir).read_text(encoding="utf-8") == newer

    assert refusal(lambda: restore_backup(target, stale, RestoreRequest())) == "stale_log"
    assert snapshot(target.settings.effective_database_url).row_counts == {}

    reason = "Disk of the district server failed; restored last night's backup (ticket 42)."
    report = restore_backup(target, stale, RestoreRequest(incident=reason))

    assert report.standing is Standing.STALE and report.incident_seq is not None
    with target.engine.connect() as conn:
        entry = conn.execute(select(t.access_log).where(t.access_log.c.seq == report.incident_seq)).one()
        assert verify_stored_log(conn, target.log_signer.verifier).ok
        latest = latest_checkpoint(conn)
    assert (entry.purpose, entry.role, entry.subject_person_id) == (INCIDENT_PURPOSE, "system", None)
    assert reason in entry.detail and f"size {old.tree_size}" in entry.detail
    assert latest is not None and latest.tree_size == old.tree_size + 1  # the incident is signed into the log
    superseded = list(data_dir.glob("published-checkpoint.superseded-*.note"))
    assert [p.read_text(encoding="utf-8") for p in superseded] == [newer]
    assert published_checkpoint_file(data_dir).read_text(encoding="utf-8") == latest.note


def test_a_checkpoint_held_by_a_monitor_makes_a_restore_stale_without_the_kept_note(
    source: Container, target: Container, uow_for: UowFor, tmp_path: Path, data_dir: Path
) -> None:
    build_town(source, uow_for)
    stale = tmp_path / "stale.tar"
    create_backup(source, stale)
    log_more(source)
    published_checkpoint_file(data_dir).unlink()  # the data dir was lost with the server
    held = ("monitor.note", latest_note(source.engine))
    assert refusal(lambda: restore_backup(target, stale, RestoreRequest(published_notes=(held,)))) == "stale_log"
    forged = ("forged.note", held[1].replace("civicard.example/log\n", "civicard.example/log\n1", 1))
    assert refusal(lambda: restore_backup(target, stale, RestoreRequest(published_notes=(forged,)))) == (
        "published_checkpoint_invalid"
    )


def test_restoring_an_older_backup_over_the_newer_database_is_stale_and_names_the_prefix(
    source: Container, uow_for: UowFor, tmp_path: Path, data_dir: Path
) -> None:
    build_town(source, uow_for)
    stale = tmp_path / "stale.tar"
    old = create_backup(source, stale)
    log_more(source)
    published_checkpoint_file(data_dir).unlink()  # only the database being replaced knows the newer checkpoint
    with pytest.raises(DomainError) as caught:
        restore_backup(source, stale, RestoreRequest(force=True))
    assert caught.value.code == "stale_log" and "it is a prefix of the published log" in caught.value.message

    report = restore_backup(source, stale, RestoreRequest(force=True, incident="rolled back a bad import"))
    assert report.standing is Standing.STALE
    assert snapshot(source.settings.effective_database_url).tree_size == old.tree_size + 1
    with source.engine.connect() as conn:
        assert verify_stored_log(conn, source.log_signer.verifier).ok


# --------------------------------------------------------------------------- schema revisions


def test_a_backup_from_a_newer_schema_revision_is_refused(
    db: Database, source: Container, target: Container, uow_for: UowFor, tmp_path: Path
) -> None:
    build_town(source, uow_for)
    engine = make_engine(db.url, guarded=False)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    archive = tmp_path / "future.tar"
    assert create_backup(source, archive).alembic_revision == "9999_from_the_future"
    assert refusal(lambda: restore_backup(target, archive, RestoreRequest())) == "schema_newer"
    assert snapshot(target.settings.effective_database_url).row_counts == {}


def test_an_older_schema_is_restored_then_upgraded_to_head(
    empty_db: Database, data_dir: Path, target: Container, tmp_path: Path
) -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    upgrade(empty_db.url, previous)
    older = container(empty_db.url, data_dir)
    try:
        log_more(older, entries=4)
        archive = tmp_path / "older.tar"
        assert create_backup(older, archive).alembic_revision == previous
    finally:
        older.close()

    report = restore_backup(target, archive, RestoreRequest())

    assert report.upgraded_from == previous
    assert current_revision(target.settings.effective_database_url) == head
    assert report.verification.ok and report.verification.entries == 4
