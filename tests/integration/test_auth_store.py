"""Staff sign-in, sessions and terminal signatures against the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import secrets
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from civicard.adapters.cli.users import users_app
from civicard.adapters.db import tables
from civicard.adapters.db.auth_store import AuthStore, NewStaffAccount, SignedIn, Terminal, ThrottlePolicy
from civicard.adapters.db.migrate import upgrade
from civicard.adapters.demo_accounts import ensure_demo_accounts
from civicard.bootstrap import Container
from civicard.identity.principals import Principal
from civicard.identity.staff import Argon2Params, PasswordHashing
from civicard.identity.terminal_auth import sign_request
from civicard.settings import Mode, Settings
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.ids import new_id
from civicard.shared.keys import RootKey
from tests.conftest import FIXED_NOW

FAST = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"
ROOT = RootKey(secrets.token_bytes(32))
HERE = "192.0.2.10"


class Now:
    """A clock the test moves by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def advance(self, **span: float) -> None:
        self.at += timedelta(**span)

    def clock(self) -> Clock:
        return Clock(lambda: self.at)


@pytest.fixture
def now() -> Now:
    return Now(FIXED_NOW)


@pytest.fixture
def store(engine: Engine, now: Now) -> AuthStore:
    roomy = ThrottlePolicy(attempts_per_window=1000)  # the address limit has its own test
    return AuthStore(engine, now.clock(), ROOT, passwords=PasswordHashing(FAST), throttle=roomy)


def _code(call: object) -> str:
    assert callable(call)
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value.code


def _refusal(call: object) -> DomainError:
    assert callable(call)
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value


def _create(store: AuthStore, username: str = "ana", role: str = "registrar") -> NewStaffAccount:
    return store.create_staff_account(username, f"{username.title()} Demo", role, PASSWORD, "test")


def _sign_in(store: AuthStore, username: str = "ana", password: str = PASSWORD, code: str | None = None) -> SignedIn:
    return store.sign_in(username, password, code, HERE)


# --- accounts and passwords ---------------------------------------------------------------------


def test_a_new_registrar_signs_in_and_the_session_resolves_to_the_account(store: AuthStore) -> None:
    account = _create(store).account
    signed_in = _sign_in(store, "ANA")
    assert signed_in.principal == Principal("staff", account.id, "registrar", "Ana Demo")
    session = store.resolve_session(signed_in.session_token)
    assert session.principal == signed_in.principal
    assert session.csrf_token == signed_in.csrf_token


def test_a_wrong_password_and_an_unknown_user_fail_with_the_same_code(store: AuthStore) -> None:
    _create(store)
    wrong = _refusal(lambda: _sign_in(store, password="correct horse batterz"))
    unknown = _refusal(lambda: _sign_in(store, username="nobody"))
    assert wrong.code == unknown.code == "sign_in_failed"
    assert wrong.message == unknown.message
    assert (wrong.details["reason"], unknown.details["reason"]) == ("wrong_password", "unknown_user")


def test_creating_accounts_refuses_weak_passwords_taken_names_and_other_roles(store: AuthStore) -> None:
    _create(store)
    assert _code(lambda: _create(store, "ANA", "reviewer")) == "username_taken"
    assert _code(lambda: store.create_staff_account("bea", "Bea", "registrar", "bea", "test")) == "weak_password"
    assert _code(lambda: store.create_staff_account("bea", "Bea", "vendor", PASSWORD, "test")) == "invalid_role"
    assert [a.username for a in store.list_staff_accounts()] == ["ana"]


def test_a_disabled_account_is_refused_with_the_uniform_code_and_its_sessions_end(store: AuthStore) -> None:
    _create(store)
    open_session = _sign_in(store)
    disabled = store.disable_staff_account("ana", "test")
    assert disabled.disabled_at is not None
    assert _code(lambda: _sign_in(store)) == "sign_in_failed"
    assert _code(lambda: store.resolve_session(open_session.session_token)) == "session_invalid"
    assert _code(lambda: store.disable_staff_account("ana", "test")) == "account_already_disabled"


def test_five_failures_lock_the_account_and_each_further_failure_doubles_the_lock(store: AuthStore, now: Now) -> None:
    _create(store)
    for _ in range(5):
        assert _code(lambda: _sign_in(store, password="wrong password!")) == "sign_in_failed"
    locked = _refusal(lambda: _sign_in(store))  # even the right password
    assert (locked.code, locked.details["retry_after_seconds"]) == ("account_locked", 60)
    now.advance(seconds=61)
    sixth = _refusal(lambda: _sign_in(store, password="wrong password!"))
    assert (sixth.code, sixth.details["locked_for_seconds"]) == ("sign_in_failed", 120)
    assert _refusal(lambda: _sign_in(store)).details["retry_after_seconds"] == 120
    now.advance(seconds=121)
    _sign_in(store)  # success resets the count
    for _ in range(4):
        assert _code(lambda: _sign_in(store, password="wrong password!")) == "sign_in_failed"
    _sign_in(store)


def test_too_many_attempts_from_one_address_are_refused_before_any_password_check(engine: Engine, now: Now) -> None:
    store = AuthStore(engine, now.clock(), ROOT, passwords=PasswordHashing(FAST))  # 20 per 5 minutes
    _create(store)
    for i in range(20):
        assert _code(lambda i=i: _sign_in(store, username=f"nobody{i}")) == "sign_in_failed"
    refused = _refusal(lambda: _sign_in(store))
    assert (refused.code, refused.details["retry_after_seconds"]) == ("too_many_attempts", 300)
    assert store.sign_in("ana", PASSWORD, None, "198.51.100.7").principal.role == "registrar"
    now.advance(minutes=5)
    assert _sign_in(store).principal.role == "registrar"


def test_a_hash_made_with_older_parameters_is_upgraded_at_sign_in(store: AuthStore, engine: Engine, now: Now) -> None:
    _create(store)
    stronger = AuthStore(engine, now.clock(), ROOT, passwords=PasswordHashing(Argon2Params(time_cost=2, memory_cost=8)))
    stronger.sign_in("ana", PASSWORD, None, HERE)
    with engine.connect() as conn:
        stored = conn.execute(select(tables.staff_accounts.c.password_hash)).scalar_one()
    assert "t=2" in stored


# --- second factor ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["program_admin", "oversight"])
def test_administrators_and_oversight_need_a_valid_totp_code(store: AuthStore, engine: Engine, role: str) -> None:
    created = _create(store, "adriana", role)
    assert created.totp_secret and created.totp_uri and created.totp_secret in created.totp_uri
    with engine.connect() as conn:
        sealed = conn.execute(select(tables.staff_accounts.c.totp_secret_enc)).scalar_one()
    assert created.totp_secret.encode() not in sealed
    assert _code(lambda: _sign_in(store, "adriana")) == "totp_required"
    right = pyotp.TOTP(created.totp_secret).at(FIXED_NOW)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    assert _code(lambda: _sign_in(store, "adriana", code=wrong)) == "totp_invalid"
    assert _code(lambda: _sign_in(store, "adriana", password="wrong password!", code=right)) == "sign_in_failed"
    assert _sign_in(store, "adriana", code=right).principal.role == role


def test_a_totp_code_cannot_be_used_twice_and_wrong_codes_count_towards_lockout(store: AuthStore, now: Now) -> None:
    secret = _create(store, "auditor", "oversight").totp_secret
    assert secret
    code = pyotp.TOTP(secret).at(FIXED_NOW)
    _sign_in(store, "auditor", code=code)
    assert _code(lambda: _sign_in(store, "auditor", code=code)) == "totp_invalid"
    for _ in range(4):
        assert _code(lambda: _sign_in(store, "auditor", code="000000")) == "totp_invalid"
    assert _code(lambda: _sign_in(store, "auditor", code=code)) == "account_locked"
    now.advance(seconds=61)
    _sign_in(store, "auditor", code=pyotp.TOTP(secret).at(now.at))


def test_registrars_and_reviewers_have_no_second_factor(store: AuthStore) -> None:
    for username, role in [("ana", "registrar"), ("rita", "reviewer")]:
        created = _create(store, username, role)
        assert created.totp_uri is None and created.totp_secret is None
        assert _sign_in(store, username).principal.role == role


# --- sessions -----------------------------------------------------------------------------------


def test_a_session_expires_after_fifteen_idle_minutes(store: AuthStore, now: Now) -> None:
    _create(store)
    token = _sign_in(store).session_token
    now.advance(minutes=14)
    store.resolve_session(token)
    now.advance(minutes=14)
    store.resolve_session(token)  # each use restarts the idle timer
    now.advance(minutes=15)
    expired = _refusal(lambda: store.resolve_session(token))
    assert (expired.code, expired.details["reason"]) == ("session_expired", "idle")
    assert _code(lambda: store.resolve_session(token)) == "session_invalid"


def test_a_session_expires_after_eight_hours_even_when_in_use(store: AuthStore, now: Now) -> None:
    _create(store)
    token = _sign_in(store).session_token
    for _ in range(47):
        now.advance(minutes=10)
        store.resolve_session(token)
    now.advance(minutes=10)
    expired = _refusal(lambda: store.resolve_session(token))
    assert (expired.code, expired.details["reason"]) == ("session_expired", "absolute")


def test_signing_out_ends_the_session(store: AuthStore) -> None:
    _create(store)
    token = _sign_in(store).session_token
    assert store.sign_out(token)
    assert _code(lambda: store.resolve_session(token)) == "session_invalid"
    assert not store.sign_out(token)
    assert _code(lambda: store.resolve_session("made-up")) == "session_invalid"
    assert _code(lambda: store.resolve_session("")) == "session_invalid"


def test_a_resident_session_resolves_to_the_resident_role_and_person_id(store: AuthStore) -> None:
    person_id = new_id()
    opened = store.open_resident_session(person_id)
    session = store.resolve_session(opened.session_token)
    assert (session.principal.kind, session.principal.id, session.principal.role) == ("resident", person_id, "resident")
    assert session.principal.actor().role == "resident"
    assert _code(lambda: store.open_resident_session("not-an-id")) == "invalid_person_id"


# --- vendor terminals ---------------------------------------------------------------------------


def _terminal(store: AuthStore) -> tuple[Terminal, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return store.register_terminal("Tienda La Esquina, caja 1", raw, "test"), key


def _verify(
    store: AuthStore,
    terminal_id: str,
    key: Ed25519PrivateKey,
    *,
    nonce: str = "nonce-0000000001",
    body: bytes = b'{"basket":[]}',
    sent_body: bytes | None = None,
    timestamp: int | None = None,
) -> Principal:
    ts = int(store.clock.now().timestamp()) if timestamp is None else timestamp
    signature = sign_request(key, "POST", "/api/redemptions", body, ts, nonce, terminal_id)
    sent = body if sent_body is None else sent_body
    return store.verify_terminal_request(terminal_id, "POST", "/api/redemptions", sent, ts, nonce, signature)


def test_a_properly_signed_terminal_request_is_accepted_once(store: AuthStore) -> None:
    terminal, key = _terminal(store)
    principal = _verify(store, terminal.id, key)
    assert principal == Principal("terminal", terminal.id, "vendor", "Tienda La Esquina, caja 1")
    assert _code(lambda: _verify(store, terminal.id, key)) == "terminal_replayed"
    _verify(store, terminal.id, key, nonce="nonce-0000000002")


def test_stale_tampered_revoked_and_unknown_terminal_requests_are_refused(store: AuthStore) -> None:
    terminal, key = _terminal(store)
    ts = int(FIXED_NOW.timestamp())
    assert _code(lambda: _verify(store, terminal.id, key, timestamp=ts - 121)) == "terminal_stale_request"
    assert _code(lambda: _verify(store, terminal.id, key, timestamp=ts + 121)) == "terminal_stale_request"
    tampered = _refusal(lambda: _verify(store, terminal.id, key, nonce="nonce-tampered-01", sent_body=b'{"x":1}'))
    assert tampered.code == "terminal_bad_signature"
    _verify(store, terminal.id, key, nonce="nonce-tampered-01")  # a refused request does not burn its nonce
    assert _code(lambda: _verify(store, new_id(), key)) == "terminal_unknown"
    assert _code(lambda: _verify(store, "no-such-terminal", key)) == "terminal_unknown"
    store.revoke_terminal(terminal.id, "test")
    assert _code(lambda: _verify(store, terminal.id, key, nonce="nonce-0000000009")) == "terminal_revoked"
    assert _code(lambda: store.revoke_terminal(terminal.id, "test")) == "terminal_already_revoked"


def test_two_concurrent_uses_of_one_nonce_accept_exactly_one(store: AuthStore) -> None:
    terminal, key = _terminal(store)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt() -> None:
        start.wait()
        try:
            _verify(store, terminal.id, key, nonce="nonce-concurrent-1")
            outcomes.append("accepted")
        except DomainError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["accepted", "terminal_replayed"]


def test_nonces_are_pruned_once_no_fresh_request_could_reuse_them(store: AuthStore, engine: Engine, now: Now) -> None:
    terminal, key = _terminal(store)
    _verify(store, terminal.id, key, nonce="nonce-old-0000001")
    now.advance(minutes=6)
    _verify(store, terminal.id, key, nonce="nonce-new-0000001")
    with engine.connect() as conn:
        kept = conn.execute(select(tables.terminal_nonces.c.nonce)).scalars().all()
    assert kept == ["nonce-new-0000001"]
    now.advance(minutes=6)
    assert store.prune_expired().terminal_nonces == 1


# --- demo accounts and the CLI ------------------------------------------------------------------


def _container(engine: Engine, now: Now, mode: Mode) -> Container:
    settings = Settings.model_construct(mode=mode, data_dir=Path("var"), database_url=None, root_key=None)
    return Container(settings=settings, engine=engine, clock=now.clock(), root_key=ROOT)


def test_demo_accounts_exist_once_per_role_and_sign_in(store: AuthStore, engine: Engine, now: Now) -> None:
    demo = _container(engine, now, Mode.DEMO)
    first = ensure_demo_accounts(demo, store)
    assert ensure_demo_accounts(demo, store) == first  # idempotent, same credentials
    assert sorted((a.role, a.username) for a in first) == [
        ("oversight", "auditor"),
        ("program_admin", "administradora"),
        ("program_admin", "aprobador"),  # a version is published by one administrator and approved by another
        ("registrar", "registrador"),
        ("reviewer", "revisora"),
    ]
    for account in first:
        code = pyotp.TOTP(account.totp_secret).at(now.at) if account.totp_secret else None
        assert _sign_in(store, account.username, account.password, code).principal.role == account.role
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.staff_accounts)).scalar_one() == 5
    production = _container(engine, now, Mode.PRODUCTION)
    assert _code(lambda: ensure_demo_accounts(production, store)) == "demo_only"


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'civicard.db'}"
    upgrade(url)
    return {"CIVICARD_DATA_DIR": str(tmp_path / "var"), "CIVICARD_MODE": "demo", "CIVICARD_DATABASE_URL": url}


def test_the_users_cli_creates_lists_and_disables_accounts(cli_env: dict[str, str]) -> None:
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
        result = runner.invoke(users_app, list(args), input=stdin, env=cli_env)
        return result.exit_code, result.output

    code, output = run(
        "create", "auditor", "--role", "oversight", "--name", "Augusto", "--password-stdin", stdin=PASSWORD
    )
    assert code == 0, output
    assert "otpauth://totp/" in output and "secret:" in output
    assert run("create", "ana", "--role", "registrar", "--name", "Ana", stdin=f"{PASSWORD}\n{PASSWORD}\n")[0] == 0
    code, output = run("create", "ana", "--role", "reviewer", "--name", "Ana", "--password-stdin", stdin=PASSWORD)
    assert code == 1 and "username_taken" in output and len(output.strip().splitlines()) == 1
    code, output = run("create", "bea", "--role", "reviewer", "--name", "Bea", "--password-stdin", stdin="short")
    assert code == 1 and "weak_password" in output
    assert run("create", "bea", "--role", "vendor", "--name", "Bea", "--password-stdin", stdin=PASSWORD)[0] == 2
    code, output = run("list")
    assert code == 0 and "auditor" in output and "ana" in output and "$argon2" not in output
    assert run("disable", "ana")[0] == 0
    code, output = run("disable", "nobody")
    assert code == 1 and "account_not_found" in output
