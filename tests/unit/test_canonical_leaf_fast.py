"""The directly written leaf (`canonical_leaf`, `erased_leaf`) is byte for byte the specification,
`canonical_json(public_leaf(...))`, for every entry — and so are the faster `format_time` and
`salt_bytes` that both of them use, checked here against their earlier definitions."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from civicard.transparency.log_entries import (
    LogEntry,
    canonical_json,
    canonical_leaf,
    entry_leaf_hash,
    erased_leaf,
    format_time,
    public_leaf,
    salt_bytes,
)
from civicard.transparency.merkle import leaf_hash

SALT = "00112233445566778899aabbccddeeff"
PERSON = "5f2c0e8a9b1d4c7e8f6a3b2c1d0e9f8a"
HEAD = bytes(range(32))
ENTRY = LogEntry(
    seq=42,
    occurred_at=datetime(2026, 11, 15, 10, 0, 0, 250000, tzinfo=UTC),
    actor="registrar-ana",
    role="registrar",
    purpose="enrollment",
    action="read",
    categories=("household", "identity"),
    detail="person.read",
    subject_person_id=PERSON,
    subject_salt=SALT,
)


def _outcome(make: Any, *args: Any) -> tuple[str, object]:
    """What a call gives: its bytes, or the type and message of what it raised."""
    try:
        return "bytes", make(*args)
    except Exception as error:  # compared, not swallowed: both paths must fail alike
        return type(error).__name__, str(error)


def _specified_leaf(entry: LogEntry, chain_prev: bytes | None) -> bytes:
    return canonical_json(public_leaf(entry, chain_prev))


def _specified_erased_leaf(entry: LogEntry, subject: str | None, chain: str | None) -> bytes:
    return canonical_json(public_leaf(entry, None) | {"subject": subject, "chain": chain})


def _mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` seven times in eight: mostly entries that give bytes, some that the spec refuses."""
    return st.integers(0, 7).flatmap(lambda n: rare if n == 0 else usual)


# Any text: quotes, backslashes, control characters, non-ASCII; in details now and then a lone
# surrogate, which neither path can encode as UTF-8.
texts = st.text(max_size=12) | st.sampled_from(
    ["", '"', "\\", "\n\t\x00\x1f\x7f", "revisión — Peña", "\u2028\u2029", "日本語", "😀"]
)
details = _mostly(texts, st.text(st.sampled_from(["\ud800", "\udfff", "a", "é"]), min_size=1, max_size=3))
offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
zones = (
    st.none()
    | st.just(UTC)
    | st.builds(timezone, offsets)
    | st.sampled_from([ZoneInfo("UTC"), ZoneInfo("Europe/Madrid"), ZoneInfo("America/Lima")])
    | st.timezones()
)
times = st.datetimes(timezones=zones)
times = times | times.map(lambda at: at.replace(microsecond=0))
hex_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
ids = _mostly(st.none() | hex_ids, texts)
salts = _mostly(st.binary(max_size=16).map(bytes.hex), texts)
chain_prevs = _mostly(st.none() | st.binary(min_size=32, max_size=32), st.binary(max_size=40))
entries = st.builds(
    LogEntry,
    seq=st.integers() | st.integers(1, 2**63 - 1),
    occurred_at=times,
    actor=texts,
    role=texts,
    purpose=texts,
    action=texts,
    categories=st.lists(texts, max_size=4).map(tuple),
    detail=details,
    subject_person_id=ids,
    subject_household_id=ids,
    subject_salt=salts,
)
erased = entries.map(lambda e: replace(e, subject_person_id=None, subject_household_id=None, subject_salt=""))


@settings(max_examples=300, deadline=None, database=None)
@given(entries, chain_prevs)
def test_the_written_leaf_is_the_specified_leaf_for_any_entry(entry: LogEntry, chain_prev: bytes | None) -> None:
    assert _outcome(canonical_leaf, entry, chain_prev) == _outcome(_specified_leaf, entry, chain_prev)


@settings(max_examples=300, deadline=None, database=None)
@given(entries | erased, st.none() | hex_ids | texts, st.none() | hex_ids | texts)
def test_the_written_erased_leaf_is_the_specified_one(entry: LogEntry, subject: str | None, chain: str | None) -> None:
    expected = _outcome(_specified_erased_leaf, entry, subject, chain)
    assert _outcome(erased_leaf, entry, subject, chain) == expected


@settings(max_examples=300, deadline=None, database=None)
@given(times)
@example(datetime(2026, 11, 15, 10, 0))
@example(datetime(2026, 11, 15, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))))
@example(datetime(2026, 11, 15, 10, 0, 0, 1, tzinfo=ZoneInfo("Etc/UTC")))  # as psycopg gives them
@example(datetime(2026, 1, 15, 10, 0, tzinfo=ZoneInfo("Europe/London")))  # UTC in winter only
@example(datetime(2026, 7, 15, 10, 0, tzinfo=ZoneInfo("Europe/London")))
@example(datetime.min.replace(tzinfo=timezone(timedelta(hours=1))))  # before year 1 in UTC
@example(datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))))  # after year 9999 in UTC
def test_format_time_is_the_utc_conversion_it_always_was(at: datetime) -> None:
    def converted(at: datetime) -> str:
        aware = at if at.tzinfo else at.replace(tzinfo=UTC)
        return aware.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"

    assert _outcome(format_time, at) == _outcome(converted, at)


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=16).map(bytes.hex) | st.text(alphabet="0123456789abcdefABCDEF \t\n\u0660g", max_size=8))
@example(SALT.upper())
@example("0 0")
@example(" 00")
@example("0")
def test_a_salt_is_accepted_exactly_when_it_is_lowercase_hex_pairs(salt: str) -> None:
    if re.fullmatch(r"(?:[0-9a-f]{2})*", salt):
        assert salt_bytes(salt) == bytes.fromhex(salt)
    else:
        with pytest.raises(ValueError, match="lowercase hex"):
            salt_bytes(salt)


def test_a_leaf_is_written_with_sorted_keys_utf8_and_json_escapes_only() -> None:
    entry = replace(
        ENTRY,
        occurred_at=datetime(2026, 11, 15, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        categories=(),
        detail='revisión "Peña"\\\n\x01\u2028',
        subject_person_id=None,
        subject_salt="",
    )
    expected = (
        '{"action":"read","actor":"registrar-ana","at":"2026-11-15T10:00:00.000000Z","categories":[],'
        '"chain":null,"detail":"revisión \\"Peña\\"\\\\\\n\\u0001\u2028","purpose":"enrollment",'
        '"role":"registrar","seq":42,"subject":null,"v":1}'
    ).encode("utf-8")
    assert canonical_leaf(entry, None) == expected == _specified_leaf(entry, None)


def test_the_leaf_hash_hashes_the_specified_leaf() -> None:
    subject = hashlib.sha256(bytes.fromhex(SALT) + PERSON.encode()).hexdigest()
    chain = hashlib.sha256(b"civicard/log-chain\n" + bytes.fromhex(SALT) + HEAD).hexdigest()
    leaf = canonical_leaf(ENTRY, HEAD)
    assert leaf.endswith(f'"subject":"{subject}","v":1}}'.encode())
    assert f'"chain":"{chain}"'.encode() in leaf
    assert entry_leaf_hash(ENTRY, HEAD) == leaf_hash(_specified_leaf(ENTRY, HEAD))


def test_an_erased_leaf_carries_the_commitments_kept_at_erasure() -> None:
    entry = replace(ENTRY, subject_person_id=None, subject_salt="")
    leaf = erased_leaf(entry, "ab" * 32, "cd" * 32)
    assert leaf == _specified_erased_leaf(entry, "ab" * 32, "cd" * 32)
    assert f'"chain":"{"cd" * 32}"'.encode() in leaf and f'"subject":"{"ab" * 32}"'.encode() in leaf


@pytest.mark.parametrize(
    "change",
    [
        {"seq": True},  # an int to the type checker, `true` to json.dumps
        {"detail": None},  # json.dumps writes null where the written leaf expects a string
        {"categories": ("identity", None)},
        {"actor": type("Name", (str,), {})("registrar-ana")},  # a str subclass escapes as its text
    ],
    ids=["bool_seq", "null_detail", "null_category", "str_subclass"],
)
def test_fields_of_unexpected_types_give_the_specified_bytes_too(change: dict[str, object]) -> None:
    entry = replace(ENTRY, **cast(dict[str, Any], change))
    assert canonical_leaf(entry, HEAD) == _specified_leaf(entry, HEAD)
    assert erased_leaf(replace(entry, subject_person_id=None), "ab", None) == _specified_erased_leaf(
        replace(entry, subject_person_id=None), "ab", None
    )


def test_a_bad_salt_or_chain_head_fails_as_the_specification_does() -> None:
    for entry, head in ((replace(ENTRY, subject_salt="0G"), HEAD), (ENTRY, b"\x00" * 31)):
        assert _outcome(canonical_leaf, entry, head)[0] == "ValueError"
        assert _outcome(canonical_leaf, entry, head) == _outcome(_specified_leaf, entry, head)
