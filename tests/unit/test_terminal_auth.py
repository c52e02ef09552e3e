"""What a vendor terminal signs, and how the server checks signature and freshness."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from civicard.identity.terminal_auth import (
    canonical_request,
    check_fresh,
    check_request_shape,
    decode_signature,
    encode_signature,
    load_public_key,
    sign_request,
    verify_signature,
)
from civicard.shared.errors import DomainError

NOW = datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
TERMINAL = "0123456789abcdef0123456789abcdef"
NONCE = "n0nce-0000000001"
BODY = b'{"basket":[{"item":"rice","qty":2}]}'


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _code(call: object) -> str:
    assert callable(call)
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value.code


def test_the_canonical_request_is_seven_documented_lines() -> None:
    message = canonical_request("post", "/api/redeem?x=1", BODY, TS, NONCE, TERMINAL)
    assert message.decode().split("\n") == [
        "civicard-terminal-request-v1",
        "POST",
        "/api/redeem?x=1",
        hashlib.sha256(BODY).hexdigest(),
        str(TS),
        NONCE,
        TERMINAL,
    ]


def test_a_properly_signed_request_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    signature = sign_request(key, "POST", "/api/redeem", BODY, TS, NONCE, TERMINAL)
    verify_signature(_raw(key), signature, canonical_request("POST", "/api/redeem", BODY, TS, NONCE, TERMINAL))


@pytest.mark.parametrize(
    "changed",
    [
        ("POST", "/api/redeem", BODY + b" ", TS, NONCE, TERMINAL),
        ("PUT", "/api/redeem", BODY, TS, NONCE, TERMINAL),
        ("POST", "/api/redeem?x=1", BODY, TS, NONCE, TERMINAL),
        ("POST", "/api/redeem", BODY, TS + 1, NONCE, TERMINAL),
        ("POST", "/api/redeem", BODY, TS, NONCE + "x", TERMINAL),
        ("POST", "/api/redeem", BODY, TS, NONCE, "f" * 32),
    ],
)
def test_changing_any_signed_part_breaks_the_signature(changed: tuple[str, str, bytes, int, str, str]) -> None:
    key = Ed25519PrivateKey.generate()
    signature = sign_request(key, "POST", "/api/redeem", BODY, TS, NONCE, TERMINAL)
    assert _code(lambda: verify_signature(_raw(key), signature, canonical_request(*changed))) == (
        "terminal_bad_signature"
    )


def test_another_terminals_key_does_not_verify() -> None:
    signature = sign_request(Ed25519PrivateKey.generate(), "GET", "/x", b"", TS, NONCE, TERMINAL)
    message = canonical_request("GET", "/x", b"", TS, NONCE, TERMINAL)
    assert _code(lambda: verify_signature(_raw(Ed25519PrivateKey.generate()), signature, message)) == (
        "terminal_bad_signature"
    )


def test_requests_more_than_two_minutes_off_are_stale() -> None:
    check_fresh(TS - 120, NOW)
    check_fresh(TS + 120, NOW)
    assert _code(lambda: check_fresh(TS - 121, NOW)) == "terminal_stale_request"
    assert _code(lambda: check_fresh(TS + 121, NOW)) == "terminal_stale_request"
    assert _code(lambda: check_fresh(TS, NOW + timedelta(hours=1))) == "terminal_stale_request"


def test_signatures_travel_as_base64url_and_garbage_is_a_bad_signature() -> None:
    signature = bytes(range(64))
    assert decode_signature(encode_signature(signature)) == signature
    assert decode_signature(encode_signature(signature) + "==") == signature
    for garbage in ["", "!!!!", encode_signature(bytes(63))]:
        assert _code(lambda garbage=garbage: decode_signature(garbage)) == "terminal_bad_signature"


def test_nonces_and_keys_must_have_the_documented_shape() -> None:
    check_request_shape("POST", NONCE)
    assert _code(lambda: check_request_shape("POST", "short")) == "terminal_bad_nonce"
    assert _code(lambda: check_request_shape("POST", "x" * 16 + "\n")) == "terminal_bad_nonce"
    assert _code(lambda: check_request_shape("PO ST", NONCE)) == "terminal_bad_request"
    assert _code(lambda: load_public_key(bytes(31))) == "invalid_public_key"
