"""`civicard backup` and `civicard restore` end to end through the CLI, on SQLite and PostgreSQL:
exit codes 0 / 1 (one-line reason with its code) / 2, and `audit verify` after every restore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from civicard.adapters.cli.main import app
from civicard.bootstrap import Container
from tests.conftest import Database
from tests.integration.backup_fixtures import UowFor, build_town, container, empty_database, log_more

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def town(db: Database, data_dir: Path, uow_for: UowFor) -> Iterator[Container]:
    built = container(db.url, data_dir)
    build_town(built, uow_for)
    yield built
    built.close()


@pytest.fixture
def restored_url(db: Database, tmp_path: Path) -> Iterator[str]:
    with empty_database(db.backend, tmp_path) as url:
        yield url


def civicard(url: str, data_dir: Path, *args: str) -> Any:
    env = {"CIVICARD_DATABASE_URL": url, "CIVICARD_DATA_DIR": str(data_dir), "CIVICARD_MODE": "demo"}
    return runner.invoke(app, list(args), env=env)


def error_line(result: Any) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_backup_then_restore_into_an_empty_database_and_audit_verify_passes(
    db: Database, town: Container, restored_url: str, data_dir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "nightly.tar"
    made = civicard(db.url, data_dir, "backup", "--out", str(archive))
    assert made.exit_code == 0, made.output
    assert f"wrote {archive}: {db.backend} schema" in made.output
    original = civicard(db.url, data_dir, "audit", "verify")

    done = civicard(restored_url, data_dir, "restore", str(archive))
    assert done.exit_code == 0, done.output
    assert f"restored {archive} into" in done.output

    verified = civicard(restored_url, data_dir, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert verified.stdout == original.stdout and verified.stdout.startswith("verified 4 entries against")
    again = civicard(restored_url, data_dir, "restore", str(archive))
    assert again.exit_code == 1 and error_line(again).endswith("(target_not_empty)")


def test_a_tampered_archive_exits_1_with_a_one_line_reason(
    db: Database, town: Container, restored_url: str, data_dir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "nightly.tar"
    assert civicard(db.url, data_dir, "backup", "--out", str(archive)).exit_code == 0
    raw = bytearray(archive.read_bytes())
    raw[700] ^= 0xFF  # inside the database part, after its 512-byte tar header
    archive.write_bytes(bytes(raw))
    refused = civicard(restored_url, data_dir, "restore", str(archive))
    assert refused.exit_code == 1
    assert error_line(refused).endswith("(backup_tampered)")


def test_a_stale_restore_is_refused_then_accepted_with_an_incident(
    db: Database, town: Container, restored_url: str, data_dir: Path, tmp_path: Path
) -> None:
    stale, nightly = tmp_path / "monday.tar", tmp_path / "tuesday.tar"
    made = civicard(db.url, data_dir, "backup", "--out", str(stale))
    assert made.exit_code == 0 and "access log size 4," in made.output
    log_more(town)
    assert civicard(db.url, data_dir, "backup", "--out", str(nightly)).exit_code == 0  # keeps the newer checkpoint

    refused = civicard(restored_url, data_dir, "restore", str(stale))
    assert refused.exit_code == 1 and error_line(refused).endswith("(stale_log)")
    assert "is older than the checkpoint published in" in refused.output

    accepted = civicard(
        restored_url, data_dir, "restore", str(stale), "--accept-stale", "--incident", "tuesday's disk is corrupt"
    )
    assert accepted.exit_code == 0, accepted.output
    assert "incident recorded in the access log as entry seq" in accepted.output
    verified = civicard(restored_url, data_dir, "audit", "verify")
    assert verified.exit_code == 0 and verified.stdout.startswith("verified 5 entries"), verified.output


def test_a_backup_from_a_newer_schema_exits_1(
    db: Database, town: Container, restored_url: str, data_dir: Path, tmp_path: Path
) -> None:
    from sqlalchemy import text

    from civicard.adapters.db.engine import make_engine

    engine = make_engine(db.url, guarded=False)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    archive = tmp_path / "future.tar"
    assert civicard(db.url, data_dir, "backup", "--out", str(archive)).exit_code == 0
    refused = civicard(restored_url, data_dir, "restore", str(archive))
    assert refused.exit_code == 1 and error_line(refused).endswith("(schema_newer)")


@pytest.mark.parametrize(
    "args",
    [
        ["--accept-stale"],
        ["--incident", "no acceptance"],
        ["--accept-stale", "--incident", "   "],
    ],
)
def test_accepting_a_stale_log_needs_both_flags_and_a_reason(args: list[str], tmp_path: Path) -> None:
    archive = tmp_path / "any.tar"
    archive.write_bytes(b"")
    result = civicard(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "var", "restore", str(archive), *args)
    assert result.exit_code == 2, result.output


def test_restoring_a_missing_archive_is_a_usage_error(tmp_path: Path) -> None:
    result = civicard(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "var", "restore", str(tmp_path / "missing.tar"))
    assert result.exit_code == 2
