"""`civicard cards …` exit codes: 0 ok / valid, 3 valid but degraded, 1 refused or invalid (code printed), 2 usage."""

from __future__ import annotations

import base64
import json
import re
import secrets
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from typer.testing import CliRunner

from civicard.adapters.cli.cards import cards_app
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.identity.cards import CardKeys, issue_card
from civicard.identity.credentials import Keyring
from civicard.identity.terminal_check import read_qr
from civicard.registry.enrollment import EnrollPerson, enroll_person
from civicard.shared.clock import Clock
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext

from ..conftest import REGISTRAR, Database

runner = CliRunner()
ROOT_KEY = secrets.token_bytes(32)
PIN = "4821"


@pytest.fixture
def env(db: Database, tmp_path: Path) -> dict[str, str]:
    return {
        "CIVICARD_DATA_DIR": str(tmp_path / "var"),
        "CIVICARD_MODE": "demo",
        "CIVICARD_DATABASE_URL": db.url,
        "CIVICARD_ROOT_KEY": base64.b64encode(ROOT_KEY).decode(),
    }


def _enroll(db: Database, national_id: str = "52123456", clock: Clock | None = None) -> str:
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
        national_id=national_id,
    )
    try:
        with SqlUnitOfWork(engine, AccessContext(REGISTRAR, "enrollment"), clock or Clock()) as uow:
            return enroll_person(uow, cmd).id
    finally:
        engine.dispose()


def _issue(env: dict[str, str], person_id: str) -> tuple[str, str]:
    result = runner.invoke(cards_app, ["issue", person_id, "--pin-stdin"], env=env, input=f"{PIN}\n")
    assert result.exit_code == 0, result.output
    handle_line, token = result.stdout.strip().splitlines()
    assert not re.search(rf"(?<![0-9A-Za-z]){PIN}(?![0-9A-Za-z])", result.output)  # not as a word of its own
    return handle_line.removeprefix("handle "), token


def test_issue_then_verify_then_revoke_then_verify_again(db: Database, env: dict[str, str]) -> None:
    handle, token = _issue(env, _enroll(db))
    assert token.startswith("CC1:")
    valid = runner.invoke(cards_app, ["verify", token], env=env)
    assert valid.exit_code == 0 and "(card_valid)" in valid.stdout
    revoked = runner.invoke(cards_app, ["revoke", handle, "--reason", "lost"], env=env)
    assert revoked.exit_code == 0, revoked.output
    refused = runner.invoke(cards_app, ["verify", token], env=env)
    assert refused.exit_code == 1 and "(card_revoked)" in refused.output
    again = runner.invoke(cards_app, ["revoke", handle, "--reason", "lost"], env=env)
    assert again.exit_code == 1 and "(card_revoked)" in again.output


def test_suspend_and_reinstate_change_what_verify_says(db: Database, env: dict[str, str]) -> None:
    handle, token = _issue(env, _enroll(db))
    assert runner.invoke(cards_app, ["suspend", handle, "--reason", "reported_missing"], env=env).exit_code == 0
    suspended = runner.invoke(cards_app, ["verify", token], env=env)
    assert suspended.exit_code == 1 and "(card_suspended)" in suspended.output
    assert runner.invoke(cards_app, ["reinstate", handle, "--reason", "found"], env=env).exit_code == 0
    assert runner.invoke(cards_app, ["verify", token], env=env).exit_code == 0


def test_verify_against_a_stale_list_exits_3(db: Database, env: dict[str, str]) -> None:
    long_ago = Clock.fixed(datetime.now(UTC) - timedelta(days=8))
    person_id = _enroll(db, clock=long_ago)
    engine = make_engine(db.url)
    try:
        with SqlCardUnitOfWork(engine, AccessContext(REGISTRAR, "card_service"), long_ago) as uow:
            token = issue_card(uow, CardKeys.derive(RootKey(ROOT_KEY)), person_id).token
    finally:
        engine.dispose()
    degraded = runner.invoke(cards_app, ["verify", token], env=env)
    assert degraded.exit_code == 3 and "(status_list_stale)" in degraded.stdout
    assert runner.invoke(cards_app, ["publish"], env=env).exit_code == 0
    assert runner.invoke(cards_app, ["verify", token], env=env).exit_code == 0


def test_verify_usage_errors_exit_2_and_garbage_exits_1(db: Database, env: dict[str, str], tmp_path: Path) -> None:
    assert runner.invoke(cards_app, ["verify"], env=env).exit_code == 2
    assert runner.invoke(cards_app, ["verify", str(tmp_path / "missing.png")], env=env).exit_code == 2
    _issue(env, _enroll(db))
    garbage = runner.invoke(cards_app, ["verify", "CC1:NOT A CARD"], env=env)
    assert garbage.exit_code == 1 and "(token_malformed)" in garbage.output
    blank = tmp_path / "blank.png"
    pdfium.PdfDocument.new().new_page(200, 200).render().to_pil().save(blank)
    no_qr = runner.invoke(cards_app, ["verify", str(blank)], env=env)
    assert no_qr.exit_code == 1 and "(qr_not_found)" in no_qr.output


def test_refusals_exit_1_with_their_code(db: Database, env: dict[str, str]) -> None:
    unknown = runner.invoke(cards_app, ["issue", "0" * 32], env=env)
    assert unknown.exit_code == 1 and "(unknown_person)" in unknown.output
    person_id = _enroll(db)
    _issue(env, person_id)
    twice = runner.invoke(cards_app, ["issue", person_id], env=env)
    assert twice.exit_code == 1 and "(card_exists)" in twice.output
    weak = runner.invoke(cards_app, ["issue", _enroll(db, "71234567"), "--pin-stdin"], env=env, input="1111\n")
    assert weak.exit_code == 1 and "(pin_too_weak)" in weak.output and "1111" not in weak.output
    bad_reason = runner.invoke(cards_app, ["revoke", "K7M2QXR9TZD", "--reason", "lost"], env=env)
    assert bad_reason.exit_code == 1
    assert runner.invoke(cards_app, ["revoke", "K7M2QXR9TZD"], env=env).exit_code == 2


def test_printed_pdf_qr_decodes_and_a_photo_of_it_verifies(db: Database, env: dict[str, str], tmp_path: Path) -> None:
    first, second = _enroll(db), _enroll(db, "71234567")
    tokens = [_issue(env, first)[1], _issue(env, second)[1]]
    pdf = tmp_path / "cards.pdf"
    printed = runner.invoke(cards_app, ["print", first, second, "--out", str(pdf)], env=env)
    assert printed.exit_code == 0, printed.output
    pages = [page.render(scale=200 / 72, grayscale=True).to_pil() for page in pdfium.PdfDocument(pdf)]
    assert [read_qr(image) for image in pages] == tokens
    photo = tmp_path / "card.png"
    pages[0].save(photo)
    checked = runner.invoke(cards_app, ["verify", str(photo)], env=env)
    assert checked.exit_code == 0 and "(card_valid)" in checked.stdout
    missing = runner.invoke(cards_app, ["print", _enroll(db, "81234567"), "--out", str(pdf)], env=env)
    assert missing.exit_code == 1 and "(no_valid_card)" in missing.output


def test_reset_pin_reads_stdin_and_never_echoes_it(db: Database, env: dict[str, str]) -> None:
    handle, _ = _issue(env, _enroll(db))
    reset = runner.invoke(cards_app, ["reset-pin", handle], env=env, input="7305\n")
    assert reset.exit_code == 0 and "7305" not in reset.output


def test_keys_prints_a_jwk_set_and_writes_the_cose_key_set(env: dict[str, str], tmp_path: Path) -> None:
    shown = runner.invoke(cards_app, ["keys"], env=env)
    assert shown.exit_code == 0
    expected = CardKeys.derive(RootKey(ROOT_KEY)).keyring
    assert json.loads(shown.stdout) == expected.jwks()
    target = tmp_path / "keys.cbor"
    assert runner.invoke(cards_app, ["keys", "--out", str(target)], env=env).exit_code == 0
    assert Keyring.from_cose_key_set(target.read_bytes()).raw == expected.raw
