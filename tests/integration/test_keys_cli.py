"""`civicard keys init`: a new root key in a 0600 file (never overwritten), custody instructions with
its fingerprint, and a refusal for a database that already has its root key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from civicard.adapters.cli.main import app
from civicard.shared.keys import RootKey, parse_root_key

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CIVICARD_DATA_DIR": str(tmp_path / "var"), "CIVICARD_MODE": "demo", "CIVICARD_DATABASE_URL": ""}


def test_keys_init_writes_a_private_key_file_prints_its_fingerprint_and_never_overwrites(
    env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "root-key"
    made = runner.invoke(app, ["keys", "init", "--out", str(target)], env=env)
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    name, _, value = target.read_text().strip().partition("=")
    assert name == "CIVICARD_ROOT_KEY"
    assert f"Root key fingerprint: {RootKey(parse_root_key(value)).fingerprint()}" in made.output
    assert "two copies offline" in made.output and value not in made.output
    again = runner.invoke(app, ["keys", "init", "--out", str(target)], env=env)
    assert again.exit_code == 1 and "never overwrites" in again.output
    assert target.read_text().strip().endswith(value)


def test_keys_init_refuses_a_database_that_already_has_its_root_key(env: dict[str, str]) -> None:
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    status = runner.invoke(app, ["keys", "status"], env=env)  # the first use records the fingerprint
    assert status.exit_code == 0, status.output
    assert "issuer" in status.output and "checkpoint" in status.output
    refused = runner.invoke(app, ["keys", "init"], env=env)
    assert refused.exit_code == 1
    assert "already has its root key" in refused.output
    assert runner.invoke(app, ["keys", "rotate", "sideways", "--by", "x", "--reason", "y"], env=env).exit_code == 2
