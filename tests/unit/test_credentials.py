"""Card handles, issuer keys and the signed card token: budget, codes, tamper evidence, independent verification."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

import base45
import cbor2
import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st
from pycose.keys import CoseKey
from pycose.messages import Sign1Message

from civicard.identity.credentials import (
    HANDLE_ALPHABET,
    MAX_TOKEN_BYTES,
    MAX_TOKEN_CHARS,
    QR_PREFIX,
    CardClaims,
    IssuerKey,
    Keyring,
    b45decode,
    decode_token,
    format_handle,
    issue_token,
    new_handle,
    parse_handle,
    token_bytes,
    verify_token,
)
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey

ROOT = RootKey(hashlib.sha256(b"civicard test root").digest())
OTHER_ROOT = RootKey(hashlib.sha256(b"someone else's root").digest())
KEY_1 = IssuerKey.derive(ROOT, 1)
KEY_2 = IssuerKey.derive(ROOT, 2)
NOW = datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
TAMPER_CODES = {"token_malformed", "token_bad_signature", "token_unknown_kid"}


def _claims(handle: str | None = None, index: int = 4_211_337, days: int = 5 * 365) -> CardClaims:
    return CardClaims(handle or new_handle(), index, NOW, NOW + timedelta(days=days))


def _code(text: str, keyring: Keyring, now: datetime = NOW) -> str:
    with pytest.raises(DomainError) as caught:
        verify_token(text, keyring, now)
    return caught.value.code


def _text(raw: bytes) -> str:
    return QR_PREFIX + base45.b45encode(raw).decode()


def test_new_handles_are_canonical_random_and_readable() -> None:
    handles = {new_handle() for _ in range(2_000)}
    assert len(handles) == 2_000
    for handle in list(handles)[:200]:
        assert parse_handle(handle) == handle and len(handle) == 11 and set(handle) <= set(HANDLE_ALPHABET)
        assert parse_handle(format_handle(handle).lower()) == handle
    assert format_handle("K7M2QXR9TZD") == "K7M2-QXR9-TZD"


def test_handle_check_character_catches_every_single_typo() -> None:
    handle = new_handle()
    for position in range(len(handle)):
        for replacement in HANDLE_ALPHABET:
            if replacement != handle[position]:
                typo = handle[:position] + replacement + handle[position + 1 :]
                with pytest.raises(DomainError) as caught:
                    parse_handle(typo)
                assert caught.value.code == "card_handle_invalid"


def test_handle_reading_aliases_are_accepted() -> None:
    body = "0110011001"
    handle = parse_handle(body + _valid_check(body))
    spoken = handle.replace("0", "o", 2).replace("1", "l", 1).replace("1", "I", 1)
    assert parse_handle(spoken) == handle


def _valid_check(body: str) -> str:
    for candidate in HANDLE_ALPHABET:
        try:
            return parse_handle(body + candidate)[-1]
        except DomainError:
            continue
    raise AssertionError("no check character found")


def test_token_round_trips_and_carries_no_personal_data() -> None:
    claims = _claims()
    text = issue_token(claims, KEY_1)
    assert text.startswith("CC1:")
    assert verify_token(text, Keyring.of([KEY_1]), NOW) == claims
    parsed = decode_token(text)
    assert parsed.kid == b"\x01" and parsed.headers == {1: -8, 4: b"\x01"}
    assert set(cbor2.loads(parsed.payload)) == {2, 4, 6, -65537, -65538}


def test_issuer_keys_are_derived_from_the_root_key_per_kid() -> None:
    assert IssuerKey.derive(ROOT, 1).public_bytes == KEY_1.public_bytes
    assert KEY_1.public_bytes != KEY_2.public_bytes != IssuerKey.derive(OTHER_ROOT, 2).public_bytes
    assert "secret" in repr(KEY_1)
    with pytest.raises(DomainError):
        IssuerKey.derive(ROOT, 256)


def test_card_signed_with_an_old_kid_verifies_while_the_kid_is_published() -> None:
    old_card = issue_token(_claims(), KEY_1)
    rotated = Keyring.of([KEY_1, KEY_2])
    assert verify_token(old_card, rotated, NOW).handle
    assert verify_token(issue_token(_claims(), KEY_2), rotated, NOW).handle
    assert _code(old_card, Keyring.of([KEY_2]), NOW) == "token_unknown_kid"


def test_token_resigned_with_another_key_under_the_same_kid_is_a_bad_signature() -> None:
    forger = IssuerKey.derive(OTHER_ROOT, 1)
    assert _code(issue_token(_claims(), forger), Keyring.of([KEY_1])) == "token_bad_signature"


def test_garbage_and_truncated_tokens_are_malformed() -> None:
    text = issue_token(_claims(), KEY_1)
    ring = Keyring.of([KEY_1])
    for bad in ["", "hello", "CC1:", "HC1:" + text[4:], text[:-1], text[:-3], text[:100], text.lower(), text + "00"]:
        assert _code(bad, ring) == "token_malformed", bad


def test_expired_card_is_refused_with_its_own_code() -> None:
    text = issue_token(_claims(days=30), KEY_1)
    assert verify_token(text, Keyring.of([KEY_1]), NOW + timedelta(days=29)).handle
    assert _code(text, Keyring.of([KEY_1]), NOW + timedelta(days=30)) == "card_expired"


def test_a_newer_token_format_gets_its_own_code() -> None:
    claims = _claims()
    newer = CardClaims(claims.handle, 1, claims.issued_at, claims.expires_at, format_version=2)
    assert _code(issue_token(newer, KEY_1), Keyring.of([KEY_1])) == "token_unsupported_version"


def test_issue_refuses_claims_that_are_not_canonical() -> None:
    for claims in (_claims("k7m2qxr9tzd"), _claims(index=-1), _claims(index=2**32), _claims(days=0)):
        with pytest.raises(DomainError):
            issue_token(claims, KEY_1)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_flipping_any_bit_of_a_token_fails_verification(data: st.DataObject) -> None:
    text = issue_token(_claims(), KEY_1)
    raw = bytearray(token_bytes(text))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1), label="bit")
    raw[bit // 8] ^= 1 << (bit % 8)
    assert _code(_text(bytes(raw)), Keyring.of([KEY_1, KEY_2])) in TAMPER_CODES


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_flipping_any_bit_of_the_qr_text_fails_verification(data: st.DataObject) -> None:
    text = issue_token(_claims(), KEY_1).encode()
    bit = data.draw(st.integers(0, len(text) * 8 - 1), label="bit")
    flipped = bytearray(text)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert _code(flipped.decode("latin-1"), Keyring.of([KEY_1, KEY_2])) in TAMPER_CODES


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=200).map(_text)))
def test_arbitrary_input_only_ever_yields_token_malformed(text: str) -> None:
    assert _code(text, Keyring.of([KEY_1])) in {"token_malformed"}


B45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fast_base45_decoding_agrees_with_the_base45_package(raw: bytes) -> None:
    assert b45decode(base45.b45encode(raw).decode()) == raw


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(alphabet=B45_ALPHABET, max_size=30), st.text(max_size=30)))
def test_fast_base45_refuses_exactly_what_the_base45_package_refuses(text: str) -> None:
    try:
        expected: bytes | None = base45.b45decode(text.rstrip("\n"))
    except ValueError:
        expected = None
    try:
        actual: bytes | None = b45decode(text.rstrip("\n"))
    except ValueError:
        actual = None
    assert actual == expected


def test_a_thousand_random_cards_fit_the_byte_and_qr_budget() -> None:
    rng = random.Random(20261115)
    sizes, versions = [], set()
    for _ in range(1_000):
        issued = NOW + timedelta(seconds=rng.randrange(0, 20 * 365 * 86_400))
        expires = issued + timedelta(days=rng.randrange(1, 3_650))
        text = issue_token(CardClaims(new_handle(), rng.randrange(0, 2**32), issued, expires), KEY_1)
        sizes.append((len(token_bytes(text)), len(text)))
        # mask 0: the mask never changes the version, and skipping its scoring keeps this test fast
        versions.add(segno.make_qr(text, error="q", mode="alphanumeric", mask=0, boost_error=False).version)
    assert max(b for b, _ in sizes) <= MAX_TOKEN_BYTES and max(c for _, c in sizes) <= MAX_TOKEN_CHARS
    assert versions <= {8, 9}, versions


def test_pycose_verifies_the_token_with_the_published_key_set() -> None:
    """Independent check: cwt signed; pycose (and only the published COSE_KeySet) verifies."""
    claims = _claims()
    raw = token_bytes(issue_token(claims, KEY_1))
    published = Keyring.of([KEY_1, KEY_2]).cose_key_set()
    keys = {entry[2]: CoseKey.decode(cbor2.dumps(entry)) for entry in cbor2.loads(published)}
    message = Sign1Message.decode(raw)
    message.key = keys[message.phdr[next(h for h in message.phdr if h.identifier == 4)]]
    assert message.verify_signature()
    assert cbor2.loads(message.payload)[2] == claims.handle
    tampered = bytearray(raw)
    tampered[-1] ^= 1
    forged = Sign1Message.decode(bytes(tampered))
    forged.key = message.key
    assert not forged.verify_signature()


def test_key_set_round_trips_and_jwks_lists_the_same_keys() -> None:
    ring = Keyring.of([KEY_1, KEY_2])
    assert Keyring.from_cose_key_set(ring.cose_key_set()).raw == ring.raw
    jwks = ring.jwks()["keys"]
    assert [k["kid"] for k in jwks] == ["AQ", "Ag"] and {k["crv"] for k in jwks} == {"Ed25519"}
    with pytest.raises(DomainError) as caught:
        Keyring.from_cose_key_set(b"\xa0")
    assert caught.value.code == "key_set_malformed"


def test_flipping_each_bit_of_one_token_exhaustively_fails_verification() -> None:
    text = issue_token(_claims(index=70_000), KEY_1)
    raw, ring = token_bytes(text), Keyring.of([KEY_1, KEY_2])
    codes = set()
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        codes.add(_code(_text(bytes(flipped)), ring))
    assert codes == TAMPER_CODES


def test_base45_values_past_the_byte_ranges_are_refused() -> None:
    for text in ("GGW", ":::", "ZZ", "::"):  # 65535 + 1 … and 255 + 1 …
        with pytest.raises(ValueError):
            b45decode(text)
    assert b45decode("FGW") == b"\xff\xff" and b45decode("U5") == b"\xff"
