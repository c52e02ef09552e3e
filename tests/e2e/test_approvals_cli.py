"""`civicard users grant`, `civicard cards request-unlock` and `civicard approvals list|approve|refuse`
through the command line on SQLite and PostgreSQL: a second account decides, exit codes say how."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from civicard.adapters.cli import main
from civicard.adapters.cli.main import app
from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.identity.cards import CardKeys, attempt_card_pin
from civicard.identity.pins import LOCK_AFTER_FAILURES, TRIES_PER_TRANSACTION
from civicard.registry.enrollment import EnrollPerson, enroll_person
from civicard.shared.clock import Clock
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext
from tests.conftest import REGISTRAR, Database

runner = CliRunner()
ROOT_KEY = secrets.token_bytes(32)
PASSWORD = "dos-personas-deciden-2026"
STAFF = (
    ("ana", "program_admin"),
    ("olga", "oversight"),
    ("otto", "oversight"),
    ("rosa", "registrar"),
    ("beto", "registrar"),
)
PIN, WRONG_PIN, NEW_PIN = "4821", "9999", "7305"
REQUEST_ID = re.compile(r"requested ([0-9a-f]{32})")


@pytest.fixture
def env(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setattr(main.out, "width", 400)  # tables unabridged in the captured output
    env = {
        "CIVICARD_DATA_DIR": str(tmp_path / "var"),
        "CIVICARD_MODE": "demo",
        "CIVICARD_DATABASE_URL": db.url,
        "CIVICARD_ROOT_KEY": base64.b64encode(ROOT_KEY).decode(),
    }
    for username, role in STAFF:
        created = civicard(env, "users", "create", username, "--role", role, "--name", username.title(),
                           "--password-stdin", input=f"{PASSWORD}\n")  # fmt: skip
        assert created[0] == 0, created[1]
    return env


def civicard(env: dict[str, str], *args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env, input=input)
    return result.exit_code, result.output


def _roles(db: Database) -> dict[str, str]:
    engine = make_engine(db.url)
    try:
        accounts = t.staff_accounts.c
        with engine.connect() as conn:
            return {r.username: r.role for r in conn.execute(select(accounts.username, accounts.role))}
    finally:
        engine.dispose()


def _requested(output: str) -> str:
    found = REQUEST_ID.search(output)
    assert found is not None, output
    return found[1]


def test_a_role_grant_waits_for_another_oversight_account(db: Database, env: dict[str, str]) -> None:
    code, shown = civicard(env, "users", "grant", "rosa", "reviewer", "--by", "ana", "--reason", "north district")
    assert code == 0, shown
    request_id = _requested(shown)
    assert _roles(db)["rosa"] == "registrar"  # not yet
    code, listed = civicard(env, "approvals", "list")
    assert code == 0 and request_id in listed and "role_grant" in listed
    assert "rosa" in listed and "registrar to reviewer" in listed  # account ids shown as usernames

    code, refused = civicard(env, "approvals", "approve", request_id, "--by", "ana")
    assert code == 1 and "(same_account)" in refused
    code, refused = civicard(env, "approvals", "approve", request_id, "--by", "beto")
    assert code == 1 and "(approver_role_not_allowed)" in refused
    code, refused = civicard(env, "approvals", "approve", request_id, "--by", "nobody")
    assert code == 1 and "(account_not_found)" in refused
    assert _roles(db)["rosa"] == "registrar"

    code, approved = civicard(env, "approvals", "approve", request_id, "--by", "olga", "--note", "ok")
    assert code == 0, approved
    assert "approved and executed" in approved and _roles(db)["rosa"] == "reviewer"
    code, again = civicard(env, "approvals", "approve", request_id, "--by", "olga")
    assert code == 1 and "(approval_already_decided)" in again
    code, listed = civicard(env, "approvals", "list")
    assert code == 0 and "no approval requests are waiting" in listed


def test_a_refusal_needs_a_note_and_changes_nothing(db: Database, env: dict[str, str]) -> None:
    code, shown = civicard(env, "users", "grant", "beto", "reviewer", "--by", "olga", "--reason", "short of reviewers")
    assert code == 0, shown
    request_id = _requested(shown)
    code, _ = civicard(env, "approvals", "refuse", request_id, "--by", "ana")
    assert code == 2  # --note is required
    code, refused = civicard(env, "approvals", "refuse", request_id, "--by", "ana", "--note", "no")
    assert code == 1 and "(approver_role_not_allowed)" in refused  # a program administrator does not decide
    code, refused = civicard(env, "approvals", "refuse", request_id, "--by", "olga", "--note", "asked by mistake")
    assert code == 0 and f"refused {request_id}" in refused  # the requester withdraws its own
    assert _roles(db)["beto"] == "registrar"
    code, wrong = civicard(env, "users", "grant", "beto", "reviewer", "--by", "rosa", "--reason", "x")
    assert code == 1 and "(requester_role_not_allowed)" in wrong


def _locked_card(db: Database, env: dict[str, str]) -> str:
    """Enroll a person, issue a card with a PIN through the CLI, lock it with five wrong PINs."""
    engine = make_engine(db.url)
    cmd = EnrollPerson(
        given_names="Zoë",
        first_surname="Núñez",
        birth_date=date(1984, 3, 9),
        birth_place="San Rafael",
        sex="F",
        address_line="Calle 5 # 10-20",
        municipality="NOR-01",
        postcode="10001",
        national_id="52123456",
    )
    try:
        with SqlUnitOfWork(engine, AccessContext(REGISTRAR, "enrollment"), Clock()) as uow:
            person_id = enroll_person(uow, cmd).id
        code, issued = civicard(env, "cards", "issue", person_id, "--pin-stdin", input=f"{PIN}\n")
        assert code == 0, issued
        handle = issued.splitlines()[0].removeprefix("handle ")
        keys = CardKeys.derive(RootKey(ROOT_KEY))
        for attempt in range(LOCK_AFTER_FAILURES):
            with SqlCardUnitOfWork(engine, AccessContext(REGISTRAR, "card_service"), Clock()) as card_uow:
                attempt_card_pin(card_uow, keys, handle, WRONG_PIN, attempt % TRIES_PER_TRANSACTION)
    finally:
        engine.dispose()
    return handle


def test_a_locked_pin_is_reset_only_after_a_second_registrar_approves(db: Database, env: dict[str, str]) -> None:
    handle = _locked_card(db, env)
    code, refused = civicard(env, "cards", "reset-pin", handle, input=f"{NEW_PIN}\n")
    assert code == 1 and "(pin_reset_needs_approval)" in refused
    code, shown = civicard(env, "cards", "request-unlock", handle, "--by", "rosa", "--reason", "holder forgot it")
    assert code == 0, shown
    request_id = _requested(shown)
    code, refused = civicard(env, "approvals", "approve", request_id, "--by", "rosa")
    assert code == 1 and "(same_account)" in refused
    code, approved = civicard(env, "approvals", "approve", request_id, "--by", "beto")
    assert code == 0 and "pin_cleared" in approved, approved
    code, reset = civicard(env, "cards", "reset-pin", handle, input=f"{NEW_PIN}\n")
    assert code == 0 and NEW_PIN not in reset, reset


def test_a_checkpoint_key_rotation_waits_for_a_second_oversight_account_and_both_keys_verify(
    env: dict[str, str],
) -> None:
    code, before = civicard(env, "audit", "public-key")
    assert code == 0
    code, shown = civicard(env, "keys", "rotate", "checkpoint", "--by", "olga", "--reason", "yearly rotation")
    assert code == 0, shown
    request_id = _requested(shown)
    assert civicard(env, "audit", "integrate")[0] == 0  # the request's entry, signed by the old key
    code, refused = civicard(env, "approvals", "approve", request_id, "--by", "olga")
    assert code == 1 and "(same_account)" in refused
    code, approved = civicard(env, "approvals", "approve", request_id, "--by", "otto", "--note", "ok")
    assert code == 0, approved
    assert civicard(env, "audit", "integrate")[0] == 0  # the approval's entries, signed by the new key

    code, keys = civicard(env, "audit", "public-key", "--all")
    new, old = keys.split()
    assert code == 0 and old == before.strip() and new != old
    code, status = civicard(env, "keys", "status")
    assert code == 0 and "checkpoint" in status
    assert civicard(env, "audit", "verify")[0] == 0
    code, failed = civicard(env, "audit", "verify", "--public-key", new)
    assert code == 1 and "(bad_signature)" in failed  # older checkpoints need the older key
    code, verified = civicard(env, "audit", "verify", "--public-key", old, "--public-key", new)
    assert code == 0, verified

