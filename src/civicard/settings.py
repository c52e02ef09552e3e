"""Typed settings from the environment (CIVICARD_*); production refuses missing or known keys."""

from __future__ import annotations

import base64
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from civicard.shared.keys import RootKeyError, parse_root_key

DEMO_KEY_FILE = "demo-root.key"
# Where a key that appears in the repository would be found: the package and a source checkout.
_PACKAGE_DIR = Path(__file__).resolve().parent
_SCANNED_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".env", ".json", ".sh", ""}


class Mode(StrEnum):
    DEMO = "demo"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    JSON = "json"  # one JSON object per line on stderr: what a log shipper reads
    PLAIN = "plain"  # one readable line, for development


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CIVICARD_", extra="ignore")

    mode: Mode = Mode.DEMO
    data_dir: Path = Field(default=Path("var"), description="Where the embedded database and demo key live.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under data_dir.")
    root_key: SecretStr | None = Field(default=None, description="32+ random bytes, base64.")
    log_format: LogFormat = Field(default=LogFormat.JSON, description="Server logs on stderr: json or plain.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Root log level.")
    metrics_token: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="When set, GET /metrics requires `Authorization: Bearer <token>`; unset, /metrics is open.",
    )
    log_stall_seconds: float = Field(
        default=60.0,
        gt=0,
        description="/readyz answers 503 log_integrator_lagging once access-log entries have waited this long "
        "with the integrator folding none.",
    )

    @model_validator(mode="after")
    def _production_needs_a_real_key(self) -> Settings:
        if self.mode is Mode.PRODUCTION:
            if self.root_key is None:
                raise ValueError("CIVICARD_ROOT_KEY is required in production (32 random bytes, base64).")
            text = self.root_key.get_secret_value()
            try:
                parse_root_key(text)
            except RootKeyError as exc:
                raise ValueError(str(exc)) from None
            if self._is_known_key(text):
                raise ValueError(
                    "CIVICARD_ROOT_KEY is the demo key or appears in the repository; generate a new one "
                    "with `civicard keys generate`."
                )
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'civicard.db').resolve()}"

    def _is_known_key(self, text: str) -> bool:
        demo_file = self.data_dir / DEMO_KEY_FILE
        if demo_file.exists() and demo_file.read_text().strip() == text.strip():
            return True
        return key_appears_in(text.strip(), _source_roots())


def _source_roots() -> list[Path]:
    roots = [_PACKAGE_DIR]
    checkout = _PACKAGE_DIR.parent.parent  # src/civicard → the repository, when run from a checkout
    if (checkout / "pyproject.toml").exists():
        roots += [checkout / p for p in ("tests", "docs", "bench", "README.md", ".ci") if (checkout / p).exists()]
    return roots


def key_appears_in(key_text: str, roots: list[Path]) -> bool:
    """True if the key's text is written in any source or documentation file under `roots`."""
    needle = key_text.encode()
    for root in roots:
        files = [root] if root.is_file() else (p for p in root.rglob("*") if p.is_file())
        for path in files:
            if path.suffix in _SCANNED_SUFFIXES and path.stat().st_size < 2_000_000 and needle in path.read_bytes():
                return True
    return False


def generate_root_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def demo_root_key(data_dir: Path) -> tuple[str, bool]:
    """The demo key from data_dir, created on first use (0600). Returns (key text, created now)."""
    path = data_dir / DEMO_KEY_FILE
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    text = generate_root_key_text()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return text, True
