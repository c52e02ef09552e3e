"""Staff authentication rules: passwords, Argon2id, TOTP, lockout back-off, sessions, resident sign-in."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from civicard.identity.principals import Principal
from civicard.identity.sessions import (
    SessionPolicy,
    csrf_matches,
    hash_session_token,
    new_csrf_token,
    new_session_token,
)
from civicard.identity.staff import (
    STAFF_ROLES,
    Argon2Params,
    PasswordHashing,
    TotpSecretBox,
    TotpSecretUnreadable,
    check_password_policy,
    check_staff_role,
    check_totp_secret,
    check_username,
    lockout_duration,
    match_totp,
    new_totp_secret,
    role_needs_totp,
    totp_provisioning_uri,
)
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey

FAST = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)
AT = datetime(2026, 11, 15, 10, 0, 7, tzinfo=UTC)


def _code(call: object) -> str:
    assert callable(call)
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value.code


@pytest.mark.parametrize(
    "password",
    ["short-pass1", "aaaaaaaaaaaaaaaa", "Ana.Gomez.Ruiz", " ana.gomez.ruiz ", "x" * 1025 + "y"],
)
def test_short_repeated_username_or_huge_passwords_are_weak(password: str) -> None:
    assert _code(lambda: check_password_policy(password, "ana.gomez.ruiz")) == "weak_password"


def test_a_long_varied_password_passes_the_policy() -> None:
    check_password_policy("correct horse battery", "ana")
    check_password_policy("demo-registrador-2026", "registrador")


def test_usernames_are_lower_cased_and_roles_are_the_four_staff_roles() -> None:
    assert check_username("  Ana.Gomez ") == "ana.gomez"
    assert _code(lambda: check_username("a b")) == "invalid_username"
    assert sorted(STAFF_ROLES) == ["oversight", "program_admin", "registrar", "reviewer"]
    for role in ("vendor", "resident", "system", "admin"):
        assert _code(lambda role=role: check_staff_role(role)) == "invalid_role"


def test_only_program_admin_and_oversight_need_a_second_factor() -> None:
    assert {r for r in STAFF_ROLES if role_needs_totp(r)} == {"program_admin", "oversight"}


def test_argon2id_hashes_verify_only_the_right_password() -> None:
    hashing = PasswordHashing(FAST)
    hashed = hashing.hash("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert hashing.verify(hashed, "correct horse battery")
    assert not hashing.verify(hashed, "correct horse batterz")
    assert not hashing.verify("not a hash", "correct horse battery")


def test_composed_and_decomposed_accents_are_the_same_password() -> None:
    hashing = PasswordHashing(FAST)
    assert hashing.verify(hashing.hash("contraseña segura"), "contrasen\u0303a segura")


def test_a_hash_made_with_other_parameters_needs_rehashing() -> None:
    fast_hash = PasswordHashing(FAST).hash("correct horse battery")
    assert not PasswordHashing(FAST).needs_rehash(fast_hash)
    assert PasswordHashing().needs_rehash(fast_hash)


def test_lockout_starts_at_five_failures_and_doubles_up_to_an_hour() -> None:
    assert [lockout_duration(n) for n in range(5)] == [timedelta(0)] * 5
    minutes = [lockout_duration(n) / timedelta(minutes=1) for n in range(5, 12)]
    assert minutes == [1, 2, 4, 8, 16, 32, 60]
    assert lockout_duration(10_000) == timedelta(hours=1)


def test_a_totp_code_is_accepted_for_the_current_and_adjacent_steps_only() -> None:
    secret = new_totp_secret()
    totp = pyotp.TOTP(secret)
    assert match_totp(secret, totp.at(AT), AT) == totp.timecode(AT)
    assert match_totp(secret, totp.at(AT - timedelta(seconds=30)), AT) == totp.timecode(AT) - 1
    assert match_totp(secret, totp.at(AT + timedelta(seconds=30)), AT) == totp.timecode(AT) + 1
    assert match_totp(secret, totp.at(AT - timedelta(seconds=60)), AT) is None
    assert match_totp(secret, "12345a", AT) is None


def test_a_totp_code_is_not_accepted_again_after_its_step_was_used() -> None:
    secret = new_totp_secret()
    code = pyotp.TOTP(secret).at(AT)
    step = match_totp(secret, code, AT)
    assert step is not None
    assert match_totp(secret, code, AT, after_step=step) is None


def test_the_provisioning_uri_names_the_issuer_and_account() -> None:
    uri = totp_provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "auditor")
    assert uri.startswith("otpauth://totp/civicard:auditor?")
    assert "secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" in uri


def test_a_sealed_totp_secret_opens_only_for_its_account_and_key() -> None:
    key = RootKey(secrets.token_bytes(32))
    box = TotpSecretBox.from_root_key(key)
    sealed = box.seal("JBSWY3DPEHPK3PXP", "a" * 32)
    assert b"JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed, "a" * 32) == "JBSWY3DPEHPK3PXP"
    with pytest.raises(TotpSecretUnreadable):
        box.open(sealed, "b" * 32)
    with pytest.raises(TotpSecretUnreadable):
        TotpSecretBox.from_root_key(RootKey(secrets.token_bytes(32))).open(sealed, "a" * 32)
    assert "JBSW" not in repr(box)


def test_a_session_ends_after_fifteen_idle_minutes_or_eight_hours() -> None:
    policy = SessionPolicy()
    start = AT
    assert policy.expiry_reason(start, start, start + timedelta(minutes=14, seconds=59)) is None
    assert policy.expiry_reason(start, start, start + timedelta(minutes=15)) == "idle"
    active = start + timedelta(hours=7, minutes=59)
    assert policy.expiry_reason(start, active, start + timedelta(hours=8)) == "absolute"


def test_session_tokens_are_random_and_stored_only_as_sha256() -> None:
    token = new_session_token()
    assert len(token) >= 43 and token != new_session_token()
    digest = hash_session_token(token)
    assert len(digest) == 64 and token not in digest
    assert digest == hash_session_token(token)


def test_csrf_tokens_match_only_themselves() -> None:
    token = new_csrf_token()
    assert csrf_matches(token, token)
    assert not csrf_matches(token, new_csrf_token())
    assert not csrf_matches(token, None)
    assert not csrf_matches(token, "")
    assert not csrf_matches("", "")


def test_a_principal_acts_as_its_id_and_role() -> None:
    principal = Principal("staff", "f" * 32, "reviewer", "Renata")
    actor = principal.actor()
    assert (actor.id, actor.role) == ("f" * 32, "reviewer")


def test_a_supplied_totp_secret_must_be_base32_with_enough_bits() -> None:
    assert check_totp_secret("jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp") == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    for bad in ["JBSWY3DPEHPK3PXP", "not base32 at all, not at all!!", ""]:
        assert _code(lambda bad=bad: check_totp_secret(bad)) == "invalid_totp_secret"


def test_codes_in_other_scripts_digits_are_not_codes() -> None:
    assert match_totp(new_totp_secret(), "١٢٣٤٥٦", AT) is None
