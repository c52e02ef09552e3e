"""Key custody on SQLite and PostgreSQL: rotations need a second oversight account; an issuer rotation
keeps old cards verifying and pseudonyms stable; checkpoints of both generations verify; the
compromise procedure (revoke, rotate, re-issue) end to end; a wrong root key is refused."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from fastapi import Request
from sqlalchemy import Engine, select

from civicard.adapters.api.redemption_routes import redemption_keys
from civicard.adapters.backup import create_backup
from civicard.adapters.db import tables as t
from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork
from civicard.adapters.db.auth_store import AuthStore
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.key_store import record_root_fingerprint
from civicard.adapters.db.log_store import verify_stored_log
from civicard.adapters.restore import RestoreRequest, restore_backup
from civicard.bootstrap import Container
from civicard.governance import approvals
from civicard.governance.approvals import FOUR_EYES, Approved
from civicard.governance.kinds import KINDS, request_key_rotation
from civicard.identity.cards import IssuedCard, card_token, issue_card
from civicard.identity.credentials import decode_token, verify_token
from civicard.identity.pseudonyms import pseudonym
from civicard.identity.staff import Argon2Params, PasswordHashing
from civicard.settings import Mode, Settings
from civicard.shared.clock import Clock
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Actor
from civicard.transparency.checkpoints import NoteSigner

from ..conftest import REGISTRAR, Database
from .backup_fixtures import container as backup_container
from .backup_fixtures import empty_database
from .person_fixtures import enroll_in_new_household

ROOT = RootKey(b"\x0b" * 16 + bytes(range(16)))
FAST = PasswordHashing(Argon2Params(time_cost=1, memory_cost=8, parallelism=1))
TOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
DESK = AccessContext(REGISTRAR, "card_service")


@pytest.fixture
def container(db: Database, engine: Engine, clock: Clock, tmp_path: Path) -> Container:
    settings = Settings(mode=Mode.DEMO, data_dir=tmp_path / "data", database_url=db.url)
    return Container(settings, engine, clock, ROOT)


@pytest.fixture
def oversight(engine: Engine, clock: Clock) -> tuple[Actor, Actor, Actor]:
    """Two oversight accounts (olga, otto) and a registrar (rosa)."""
    auth = AuthStore(engine, clock, ROOT, passwords=FAST)

    def make(username: str, role: str) -> Actor:
        secret = TOTP if role == "oversight" else None
        made = auth.create_staff_account(
            username, username.title(), role, "llaves-2026-custodia", "t", totp_secret=secret
        )
        return Actor(made.account.id, role)

    return make("olga", "oversight"), make("otto", "oversight"), make("rosa", "registrar")


def _as(container: Container, actor: Actor) -> SqlApprovalUnitOfWork:
    context = AccessContext(actor, FOUR_EYES)
    return SqlApprovalUnitOfWork(container.engine, context, container.clock, root_key=container.root_key)


def _rotate(container: Container, asker: Actor, approver: Actor, key: str, compromised: bool = False) -> Approved:
    with _as(container, asker) as uow:
        asked = request_key_rotation(uow, key, "yearly rotation", compromised)
    with _as(container, approver) as uow:
        done = approvals.approve(uow, KINDS, asked.id, "checked")
    container.key_custody.reload()  # what the next poll does in every other process
    return done


def _code(action: Callable[[], object]) -> str:
    with pytest.raises(DomainError) as refused:
        action()
    return refused.value.code


def _person(engine: Engine, clock: Clock, national_id: str) -> str:
    return enroll_in_new_household(engine, clock, national_id)[1]


def _issue(container: Container, person_id: str) -> IssuedCard:
    with SqlCardUnitOfWork(container.engine, DESK, container.clock) as uow:
        return issue_card(uow, container.card_keys, person_id)


def test_a_rotation_needs_a_second_oversight_account(
    container: Container, oversight: tuple[Actor, Actor, Actor]
) -> None:
    olga, otto, rosa = oversight
    with _as(container, rosa) as uow:
        assert _code(lambda: request_key_rotation(uow, "issuer", "why not", False)) == "requester_role_not_allowed"
    with _as(container, olga) as uow:
        asked = request_key_rotation(uow, "issuer", "yearly rotation", False)
    assert asked.data == {"purpose": "issuer", "generation": "1", "compromised": "no"}
    with _as(container, olga) as uow:
        assert _code(lambda: approvals.approve(uow, KINDS, asked.id)) == "same_account"
    assert container.card_keys.current_kid == 1  # nothing rotates on request
    with _as(container, otto) as uow:
        done = approvals.approve(uow, KINDS, asked.id)
    assert done.outcome == "purpose=issuer generation=1->2"
    container.key_custody.reload()
    assert container.card_keys.current_kid == 2 and sorted(container.card_keys.issuers) == [1, 2]


def test_after_an_issuer_rotation_new_cards_carry_the_new_kid_old_cards_verify_and_pseudonyms_stay(
    container: Container, oversight: tuple[Actor, Actor, Actor], engine: Engine, clock: Clock
) -> None:
    olga, otto, _ = oversight
    first, second = _person(engine, clock, "52123456"), _person(engine, clock, "52123457")
    old = _issue(container, first)
    before = pseudonym(container.root_key, "vendor:v1", first)
    _rotate(container, olga, otto, "issuer")
    new = _issue(container, second)
    assert (old.card.kid, new.card.kid) == (1, 2)
    assert decode_token(new.token).kid == b"\x02"
    keyring, now = container.card_keys.keyring, clock.now()
    assert verify_token(old.token, keyring, now).handle == old.card.handle
    assert verify_token(new.token, keyring, now).handle == new.card.handle
    assert card_token(old.card, container.card_keys) == old.token  # reprints of old cards still work
    assert pseudonym(container.root_key, "vendor:v1", first) == before


def test_checkpoints_signed_by_both_checkpoint_generations_verify(
    container: Container, oversight: tuple[Actor, Actor, Actor], engine: Engine, clock: Clock
) -> None:
    olga, otto, _ = oversight
    _person(engine, clock, "52123456")
    container.integrator.run_once(full=True)
    old_vkey = container.log_signer.verifier.to_vkey()
    _rotate(container, olga, otto, "checkpoint")
    assert container.integrator.run_once(full=True) > 0  # the approval's own entries, signed by the new key
    assert container.log_signer.verifier.to_vkey() != old_vkey
    with engine.connect() as conn:
        signers = set(conn.execute(select(t.log_checkpoints.c.key_id)).scalars())
        assert len(signers) == 2
        assert verify_stored_log(conn, container.log_signer.verifier).ok
        only_new = NoteSigner.from_root_key(ROOT, generation=1).verifier
        assert verify_stored_log(conn, only_new).code == "bad_signature"


def test_the_compromise_procedure_revokes_the_cards_of_the_leaked_kid_and_reissued_cards_verify(
    container: Container, oversight: tuple[Actor, Actor, Actor], engine: Engine, clock: Clock
) -> None:
    olga, otto, _ = oversight
    person = _person(engine, clock, "52123456")
    old = _issue(container, person)
    done = _rotate(container, olga, otto, "issuer", compromised=True)
    assert done.outcome == "purpose=issuer generation=1->2 compromised cards_revoked=1"
    keys = container.card_keys
    assert sorted(keys.issuers) == [2]
    assert _code(lambda: verify_token(old.token, keys.keyring, clock.now())) == "token_unknown_kid"
    with SqlCardUnitOfWork(engine, DESK, clock) as uow:
        revoked = uow.cards.by_handle(old.card.handle)
        latest = uow.cards.latest_status_list()
    assert revoked is not None and (revoked.status, revoked.status_reason) == ("revoked", "key_compromised")
    assert latest is not None and decode_token_kid(latest.signed_list) == b"\x02"
    reissued = _issue(container, person)  # the holder comes to the desk
    assert verify_token(reissued.token, keys.keyring, clock.now()).handle == reissued.card.handle
    with _as(container, olga) as uow:  # the next request names generation 2
        assert request_key_rotation(uow, "issuer", "again", False).data["generation"] == "2"


def decode_token_kid(signed: bytes) -> bytes:
    from civicard.identity.credentials import parse_sign1

    return parse_sign1(signed, "status_list").kid


def test_a_process_started_with_another_root_key_is_refused(
    container: Container, db: Database, engine: Engine, clock: Clock, tmp_path: Path
) -> None:
    record_root_fingerprint(engine, ROOT, clock, "cli:db-upgrade")  # what `civicard db upgrade` does
    assert container.card_keys.current_kid == 1
    with engine.connect() as conn:
        stored = conn.execute(select(t.key_generations.c.fingerprint).where(t.key_generations.c.purpose == "root"))
        assert stored.scalar_one() == ROOT.fingerprint()
    settings = Settings(mode=Mode.DEMO, data_dir=tmp_path / "other", database_url=db.url)
    stranger = Container(settings, engine, clock, RootKey(bytes(range(100, 132))))
    assert _code(lambda: stranger.card_keys) == "root_key_mismatch"
    assert _code(lambda: stranger.log_signer) == "root_key_mismatch"


def test_a_backup_made_after_a_checkpoint_rotation_restores_into_an_empty_database_and_verifies(
    container: Container,
    oversight: tuple[Actor, Actor, Actor],
    engine: Engine,
    clock: Clock,
    db: Database,
    tmp_path: Path,
) -> None:
    """The empty target knows only generation 0; the backup names generation 1 of the same root key."""
    olga, otto, _ = oversight
    _person(engine, clock, "52123456")
    container.integrator.run_once(full=True)
    _rotate(container, olga, otto, "checkpoint")
    container.integrator.run_once(full=True)
    archive = tmp_path / "rotated.tar"
    made = create_backup(container, archive)
    assert made.log_key == NoteSigner.from_root_key(ROOT, generation=1).verifier.to_vkey()

    root_text = base64.b64encode(b"\x0b" * 16 + bytes(range(16))).decode()
    with empty_database(db.backend, tmp_path) as url:
        target = backup_container(url, tmp_path / "target-data", root_key=root_text)
        try:
            report = restore_backup(target, archive, RestoreRequest())
            assert report.verification.ok and report.manifest.tree_size == made.tree_size
            assert target.log_signer.verifier.to_vkey() == made.log_key  # the restored generations sign on
        finally:
            target.close()


def test_the_redemption_keys_follow_an_issuer_rotation_without_a_restart(
    container: Container, oversight: tuple[Actor, Actor, Actor], engine: Engine, clock: Clock
) -> None:
    """A terminal's online sale of a card signed with the new kid verifies in a server started before."""
    olga, otto, _ = oversight
    request = cast(Request, SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace())))
    before = redemption_keys(request, container)
    assert redemption_keys(request, container) is before  # parsed once per key generation, not per sale
    _rotate(container, olga, otto, "issuer")
    new = _issue(container, _person(engine, clock, "52123458"))
    after = redemption_keys(request, container)
    assert after is not before and after.keyring.get(b"\x02") is not None
    assert verify_token(new.token, after.keyring, clock.now()).handle == new.card.handle
