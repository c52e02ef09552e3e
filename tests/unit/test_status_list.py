"""The IETF Token Status List: bit order, signed CWT form, deltas that rebuild the full list, freshness."""

from __future__ import annotations

import hashlib
import zlib
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycose.keys import CoseKey
from pycose.messages import Sign1Message

from civicard.identity import status_list as sl
from civicard.identity.credentials import IssuerKey, Keyring, parse_sign1
from civicard.identity.status_list import (
    INVALID,
    SUSPENDED,
    VALID,
    StatusDelta,
    StatusList,
    apply_signed_delta,
    diff,
    new_token,
    sign_delta,
    sign_status_list,
    verify_status_list,
)
from civicard.shared.errors import DomainError
from civicard.shared.keys import RootKey

ROOT = RootKey(hashlib.sha256(b"civicard test root").digest())
KEY = IssuerKey.derive(ROOT, 1)
RING = Keyring.of([KEY])
NOW = datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
URI = "https://civicard.example/status/1"


def _list(values: list[int], bits: int) -> StatusList:
    status = StatusList.empty(len(values), bits)
    for index, value in enumerate(values):
        status.set(index, value)
    return status


def _code(call: object) -> str:
    assert callable(call)
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value.code


def test_bit_order_matches_the_drafts_one_bit_example() -> None:
    status = _list([1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1], bits=1)
    assert bytes(status.data) == bytes([0xB9, 0xA3])


def test_bit_order_matches_the_drafts_two_bit_example() -> None:
    status = _list([1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3], bits=2)
    assert bytes(status.data) == bytes([0xC9, 0x44, 0xF9])
    assert [status.get(i) for i in range(12)] == [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]


def test_set_rejects_values_and_indices_outside_the_list() -> None:
    status = StatusList.empty(8, bits=2)
    assert status.size == 8
    assert _code(lambda: status.set(8, INVALID)) == "status_list_invalid"
    assert _code(lambda: status.set(0, 4)) == "status_list_invalid"
    with pytest.raises(IndexError):
        status.get(8)


def test_signed_list_has_the_ietf_cwt_form_and_round_trips() -> None:
    status = StatusList.empty(10_000)
    status.set(17, INVALID)
    status.set(9_999, SUSPENDED)
    raw = sign_status_list(new_token(status, URI, 3, NOW), KEY)
    message = parse_sign1(raw, "status_list")
    assert message.headers[16] == "application/statuslist+cwt"
    claims = cbor2.loads(message.payload)
    assert claims[2] == URI and claims[65534] == 12 * 3600 and claims[4] - claims[6] == 7 * 86_400
    assert claims[65533]["bits"] == 2 and zlib.decompress(claims[65533]["lst"]) == bytes(status.data)
    held = verify_status_list(raw, RING)
    assert held.version == 3
    assert (held.status.get(17), held.status.get(9_999), held.status.get(18)) == (INVALID, SUSPENDED, VALID)


def test_pycose_verifies_the_signed_list() -> None:
    raw = sign_status_list(new_token(StatusList.empty(64), URI, 1, NOW), KEY)
    message = Sign1Message.decode(raw)
    message.key = CoseKey.decode(cbor2.dumps(cbor2.loads(RING.cose_key_set())[0]))
    assert message.verify_signature()


def test_tampered_or_mistyped_lists_are_refused() -> None:
    raw = bytearray(sign_status_list(new_token(StatusList.empty(64), URI, 1, NOW), KEY))
    raw[-70] ^= 0x01  # inside the payload
    assert _code(lambda: verify_status_list(bytes(raw), RING)) == "status_list_bad_signature"
    other = Keyring.of([IssuerKey.derive(ROOT, 2)])
    signed = sign_status_list(new_token(StatusList.empty(8), URI, 1, NOW), KEY)
    assert _code(lambda: verify_status_list(signed, other)) == "status_list_unknown_kid"
    delta = sign_delta(StatusDelta(URI, 2, 64, 1, 2, (), ()), KEY, NOW)
    assert _code(lambda: verify_status_list(delta, RING)) == "status_list_malformed"


def test_a_zlib_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = sign_status_list(new_token(StatusList.empty(4 * 4096), URI, 1, NOW), KEY)
    monkeypatch.setattr(sl, "MAX_LIST_BYTES", 1024)
    assert _code(lambda: verify_status_list(raw, RING)) == "status_list_malformed"


changes = st.lists(st.tuples(st.integers(0, 799), st.integers(0, 2)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(start=changes, steps=st.lists(changes, min_size=1, max_size=4))
def test_deltas_applied_to_an_old_list_give_exactly_the_new_list(
    start: list[tuple[int, int]], steps: list[list[tuple[int, int]]]
) -> None:
    current = StatusList.empty(800)
    for index, value in start:
        current.set(index, value)
    published = new_token(current, URI, 1, NOW)
    held = verify_status_list(sign_status_list(published, KEY), RING)
    for version, step in enumerate(steps, start=2):
        following = published.status.copy()
        for index, value in step:
            following.set(index, value)
        moment = NOW + timedelta(hours=version)
        newer = new_token(following, URI, version, moment)
        held = apply_signed_delta(held, sign_delta(diff(published, newer), KEY, moment), RING)
        full = verify_status_list(sign_status_list(newer, KEY), RING)
        assert bytes(held.status.data) == bytes(full.status.data)
        assert (held.version, held.issued_at) == (full.version, full.issued_at)
        published = newer


def test_delta_lists_only_the_changed_cards() -> None:
    old = new_token(StatusList.empty(1_000), URI, 4, NOW)
    changed = old.status.copy()
    changed.set(3, INVALID)
    changed.set(998, SUSPENDED)
    delta = diff(old, new_token(changed, URI, 5, NOW))
    assert (delta.base_version, delta.version, delta.indices, delta.values) == (4, 5, (3, 998), (INVALID, SUSPENDED))


def test_a_delta_for_another_base_version_or_list_is_refused() -> None:
    held = verify_status_list(sign_status_list(new_token(StatusList.empty(64), URI, 7, NOW), KEY), RING)
    for delta in (
        StatusDelta(URI, 2, 64, 6, 8, (1,), (1,)),
        StatusDelta(URI + "x", 2, 64, 7, 8, (1,), (1,)),
        StatusDelta(URI, 2, 128, 7, 8, (1,), (1,)),
    ):
        assert _code(lambda d=delta: apply_signed_delta(held, sign_delta(d, KEY, NOW), RING)) == "status_delta_mismatch"
    newer = new_token(StatusList.empty(64), URI, 8, NOW)
    assert _code(lambda: diff(newer, held)) == "status_delta_invalid"


def test_a_list_older_than_the_max_age_or_past_its_exp_is_stale() -> None:
    held = new_token(StatusList.empty(8), URI, 1, NOW, lifetime=timedelta(days=10))
    assert not held.is_stale(NOW + timedelta(days=7))
    assert held.is_stale(NOW + timedelta(days=7, seconds=1))
    assert not held.is_stale(NOW + timedelta(days=2), max_age=timedelta(days=3))
    short = new_token(StatusList.empty(8), URI, 1, NOW, lifetime=timedelta(days=1))
    assert short.is_stale(NOW + timedelta(days=1))
    assert not held.needs_refresh(NOW + timedelta(hours=11)) and held.needs_refresh(NOW + timedelta(hours=12))
