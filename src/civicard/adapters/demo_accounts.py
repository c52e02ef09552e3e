"""Demo staff accounts for the demo town (one per role, two program administrators); refused outside demo mode.

The passwords are printed by the demo and written here on purpose: they are only ever valid in
demo mode, whose root key and database are never used for real people. The TOTP secrets are
derived from the demo root key, so every run prints the same secret the accounts were made with.
"""

from __future__ import annotations

import base64
from contextlib import suppress
from typing import NamedTuple

from rich.console import Console

from civicard.adapters.db.auth_store import AuthStore
from civicard.bootstrap import Container
from civicard.identity.staff import role_needs_totp
from civicard.settings import Mode
from civicard.shared.errors import Conflict, Forbidden
from civicard.shared.keys import RootKey

DEMO_STAFF: tuple[tuple[str, str, str], ...] = (
    ("registrador", "registrar", "Rafael Registrador (demo)"),
    ("revisora", "reviewer", "Renata Revisora (demo)"),
    ("administradora", "program_admin", "Adriana Administradora (demo)"),
    # A second program administrator: a rule version is published only when another one approves it.
    ("aprobador", "program_admin", "Alberto Aprobador (demo)"),
    ("auditor", "oversight", "Augusto Auditor (demo)"),
)
DEMO_CREATED_BY = "demo:setup"


class DemoAccount(NamedTuple):
    username: str
    role: str
    password: str
    totp_secret: str | None


def demo_password(username: str) -> str:
    return f"demo-{username}-2026"


def demo_totp_secret(root_key: RootKey, username: str) -> str:
    """160 bits from the demo root key, base32: stable across runs of the same demo."""
    return base64.b32encode(root_key.derive(f"demo:totp-secret:{username}", 20)).decode()


def demo_credentials(container: Container) -> list[DemoAccount]:
    """The demo logins to show on the landing page (demo mode only; nothing is created here)."""
    if container.settings.mode is not Mode.DEMO:
        return []
    return [
        DemoAccount(
            username,
            role,
            demo_password(username),
            demo_totp_secret(container.root_key, username) if role_needs_totp(role) else None,
        )
        for username, role, _ in DEMO_STAFF
    ]


def ensure_demo_accounts(container: Container, store: AuthStore | None = None) -> list[DemoAccount]:
    """Create the missing demo accounts (idempotent) and return them all with their credentials."""
    if container.settings.mode is not Mode.DEMO:
        raise Forbidden("demo_only", "Demo accounts exist only in demo mode.")
    store = store or AuthStore(container.engine, container.clock, container.root_key)
    existing = {a.username for a in store.list_staff_accounts()}
    accounts = []
    for username, role, display_name in DEMO_STAFF:
        secret = demo_totp_secret(container.root_key, username) if role_needs_totp(role) else None
        password = demo_password(username)
        if username not in existing:
            # Conflict: another demo process created it between our list and our insert.
            with suppress(Conflict):
                store.create_staff_account(username, display_name, role, password, DEMO_CREATED_BY, totp_secret=secret)
        accounts.append(DemoAccount(username, role, password, secret))
    return accounts


def print_demo_accounts(accounts: list[DemoAccount], console: Console) -> None:
    console.print("Demo staff accounts (demo mode only):", highlight=False)
    for a in accounts:
        factor = f", TOTP secret {a.totp_secret}" if a.totp_secret else ""
        console.print(f"  {a.role:<14} {a.username:<15} password {a.password}{factor}", highlight=False, soft_wrap=True)


def active_demo_accounts(container: Container) -> list[str]:
    """Usernames of demo accounts that are still active: a production server must not start with any."""
    store = container.auth
    return [a.username for a in store.list_staff_accounts() if a.created_by == DEMO_CREATED_BY and a.active]
