"""Settings refuse missing, short, demo or published root keys in production; demo keeps its key."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from civicard.settings import Mode, Settings, demo_root_key, key_appears_in


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def test_production_without_a_root_key_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CIVICARD_ROOT_KEY is required"):
        Settings(mode=Mode.PRODUCTION, data_dir=tmp_path)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (base64.b64encode(b"x" * 16).decode(), "at least 32 bytes"),
        ("not base64 at all!", "not valid base64"),
        (base64.b64encode(bytes(32)).decode(), "not random"),
    ],
)
def test_production_refuses_a_short_malformed_or_constant_key(tmp_path: Path, key: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(mode=Mode.PRODUCTION, data_dir=tmp_path, root_key=key)


def test_production_refuses_the_demo_key(tmp_path: Path) -> None:
    demo_key, created = demo_root_key(tmp_path)
    assert created
    with pytest.raises(ValidationError, match="demo key"):
        Settings(mode=Mode.PRODUCTION, data_dir=tmp_path, root_key=demo_key)


def test_a_key_written_in_a_source_file_is_recognised(tmp_path: Path) -> None:
    key = _key()
    (tmp_path / "example.md").write_text(f"CIVICARD_ROOT_KEY={key}\n")
    assert key_appears_in(key, [tmp_path])
    assert not key_appears_in(_key(), [tmp_path])


def test_production_accepts_a_fresh_random_key(tmp_path: Path) -> None:
    key = _key()
    settings = Settings(mode=Mode.PRODUCTION, data_dir=tmp_path, root_key=key)
    assert settings.root_key is not None and settings.root_key.get_secret_value() == key
    assert key not in repr(settings)


def test_demo_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first, created_first = demo_root_key(tmp_path)
    second, created_second = demo_root_key(tmp_path)
    assert (created_first, created_second) == (True, False)
    assert first == second
    assert (tmp_path / "demo-root.key").stat().st_mode & 0o777 == 0o600


def test_default_database_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve() / 'civicard.db'}"
