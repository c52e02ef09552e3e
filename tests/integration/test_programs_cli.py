"""`civicard programs …`: exit 0 done, 1 refused (one line with the code), 2 usage; on both databases."""

from __future__ import annotations

import base64
import io
import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from civicard.adapters.cli import programs
from civicard.adapters.cli.programs import programs_app
from civicard.adapters.db.auth_store import AuthStore
from civicard.adapters.db.engine import make_engine
from civicard.identity.staff import Argon2Params, PasswordHashing
from civicard.shared.clock import Clock
from civicard.shared.keys import RootKey

from ..conftest import Database

runner = CliRunner()
ROOT_KEY = secrets.token_bytes(32)
RULEPACKS = Path(__file__).resolve().parents[2] / "rulepacks"
FOOD = str(RULEPACKS / "food_basket" / "2026.1.yaml")
CATALOGUE = str(RULEPACKS / "items.yaml")


@pytest.fixture
def env(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setattr(programs.out, "width", 200)  # tables unabridged in the captured output
    engine = make_engine(db.url)
    store = AuthStore(engine, Clock(), RootKey(ROOT_KEY), passwords=PasswordHashing(Argon2Params(1, 8, 1)))
    for username, role in (("ana", "program_admin"), ("beto", "program_admin"), ("rita", "registrar")):
        store.create_staff_account(username, username.title(), role, f"{username}-password-2026", "test")
    engine.dispose()
    return {
        "CIVICARD_DATA_DIR": str(tmp_path / "var"),
        "CIVICARD_MODE": "demo",
        "CIVICARD_DATABASE_URL": db.url,
        "CIVICARD_ROOT_KEY": base64.b64encode(ROOT_KEY).decode(),
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(programs_app, list(args), env=env)
    return result.exit_code, result.output


def test_propose_approve_list_show_and_retire(env: dict[str, str]) -> None:
    assert run(env, "items", "--by", "ana", "--file", CATALOGUE) == (0, "item catalogue loaded: 24 items\n")
    code, output = run(env, "propose", FOOD, "--by", "ana", "--note", "new year")
    assert code == 0, output
    assert "Impact of food_basket 2026.1 against no program" in output
    assert "checks passed" in output and "proposed food_basket 2026.1" in output
    code, output = run(env, "approve", "food_basket", "2026.1", "--by", "ana")
    assert code == 1 and "(same_person)" in output and len(output.strip().splitlines()) == 1
    code, output = run(env, "approve", "food_basket", "2026.1", "--by", "beto", "--note", "checked")
    assert code == 0 and "published food_basket 2026.1" in output
    code, output = run(env, "list")
    row = next(line for line in output.splitlines() if "food_basket" in line)
    assert code == 0 and "2026.1" in row and "published" in row and "ana" in row and "beto" in row
    code, output = run(env, "show", "food_basket", "2026.1")
    assert code == 0 and "Monthly food basket" in output and "100.00 from 2026-01-01" in output
    assert "decision note: checked" in output and "sha256: " in output and "Impact of food_basket" in output
    code, output = run(env, "retire", "food_basket", "2026.1", "--by", "ana", "--note", "replaced")
    assert code == 0 and "retired food_basket 2026.1" in output
    assert "retired" in next(line for line in run(env, "list")[1].splitlines() if "food_basket" in line)


def test_refusals_are_one_line_and_usage_errors_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    code, output = run(env, "propose", FOOD, "--by", "ana")
    assert code == 1 and "(unknown_item)" in output and "RICE-1KG" in output
    code, output = run(env, "items", "--by", "rita", "--file", CATALOGUE)
    assert code == 1 and "(not_program_admin)" in output
    code, output = run(env, "items", "--by", "nobody", "--file", CATALOGUE)
    assert code == 1 and "no staff account 'nobody'" in output
    code, output = run(env, "propose", str(tmp_path / "missing.yaml"), "--by", "ana")
    assert code == 1 and "cannot read" in output
    broken = tmp_path / "broken.yaml"
    broken.write_text("program: [", encoding="utf-8")
    code, output = run(env, "propose", str(broken), "--by", "ana")
    assert code == 1 and "(invalid_yaml)" in output
    code, output = run(env, "approve", "food_basket", "2099.1", "--by", "beto")
    assert code == 1 and "(version_not_found)" in output
    assert run(env, "approve", "food_basket", "2026.1")[0] == 2  # --by is required
    assert run(env, "frobnicate")[0] == 2


def test_the_demo_publishes_the_shipped_versions_once(db: Database, tmp_path: Path) -> None:
    from rich.console import Console

    from civicard.adapters.cli.demo_programs import publish_demo_programs
    from civicard.adapters.db.register_store import SqlProgramRegister
    from civicard.adapters.demo_accounts import ensure_demo_accounts
    from civicard.bootstrap import bootstrap
    from civicard.settings import Mode, Settings

    built = bootstrap(Settings(mode=Mode.DEMO, data_dir=tmp_path / "var", database_url=db.url))
    try:
        ensure_demo_accounts(built)
        quiet = Console(file=io.StringIO())
        assert publish_demo_programs(built, quiet, RULEPACKS) == 6
        assert publish_demo_programs(built, quiet, RULEPACKS) == 0  # idempotent
        with built.engine.connect() as conn:
            register = SqlProgramRegister(conn)
            shipped = {(v.program, v.version): (v.status, v.proposed_by, v.decided_by) for v in register.all()}
            assert len(register.items()) == 24
        assert shipped[("food_basket", "2025.1")] == ("retired", "administradora", "aprobador")
        assert shipped[("food_basket", "2026.1")] == ("published", "administradora", "aprobador")
        assert ("child_allowance", "2027.1") not in shipped  # a draft stays out of the register
        assert len(shipped) == 6
    finally:
        built.close()
