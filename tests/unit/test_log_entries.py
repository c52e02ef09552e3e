"""Access-log entries as leaves: exact canonical bytes, salted subjects, the hidden chain, proof bundles."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicard.transparency.checkpoints import Checkpoint, NoteSigner, sign_checkpoint
from civicard.transparency.log_entries import (
    LogEntry,
    canonical_leaf,
    categories_from_column,
    chain_commitment,
    entry_from_plain,
    entry_leaf_hash,
    next_chain_head,
    plain_entry,
    subject_hash,
)
from civicard.transparency.merkle import GENESIS, MerkleTree, chain_hash
from civicard.transparency.proofs import (
    ConsistencyProof,
    ProofBundle,
    ResidentEntry,
    ResidentLog,
    ResidentReceipt,
    check_proof_bundle,
    check_proof_json,
    verify_resident_log,
)

SALT = "00112233445566778899aabbccddeeff"
PERSON = "5f2c0e8a9b1d4c7e8f6a3b2c1d0e9f8a"
HOUSEHOLD = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
AT = datetime(2026, 11, 15, 10, 0, 0, 250000, tzinfo=UTC)
ENTRY = LogEntry(
    seq=42,
    occurred_at=AT,
    actor="registrar-ana",
    role="registrar",
    purpose="enrollment",
    action="read",
    categories=("household", "identity"),
    detail="person.read",
    subject_person_id=PERSON,
    subject_household_id=None,
    subject_salt=SALT,
)


def test_the_canonical_leaf_is_compact_sorted_json_with_salted_subject_and_chain() -> None:
    subject = hashlib.sha256(bytes.fromhex(SALT) + PERSON.encode()).hexdigest()
    chain = hashlib.sha256(b"civicard/log-chain\n" + bytes.fromhex(SALT) + GENESIS).hexdigest()
    expected = (
        '{"action":"read","actor":"registrar-ana","at":"2026-11-15T10:00:00.250000Z",'
        f'"categories":["household","identity"],"chain":"{chain}","detail":"person.read","purpose":"enrollment",'
        f'"role":"registrar","seq":42,"subject":"{subject}","v":1}}'
    ).encode()
    assert canonical_leaf(ENTRY, None) == expected
    assert entry_leaf_hash(ENTRY, None) == hashlib.sha256(b"\x00" + expected).digest()


def test_the_public_leaf_holds_neither_the_subject_id_nor_the_salt_nor_the_previous_head() -> None:
    previous = chain_hash(GENESIS, b"\x01" * 32)
    leaf = canonical_leaf(replace(ENTRY, subject_household_id=HOUSEHOLD), previous).decode()
    for secret in (PERSON, HOUSEHOLD, SALT, previous.hex()):
        assert secret not in leaf
    assert json.loads(leaf)["chain"] == chain_commitment(SALT, previous)


def test_the_subject_is_the_person_if_there_is_one_else_the_household() -> None:
    both = replace(ENTRY, subject_household_id=HOUSEHOLD)
    household_only = replace(ENTRY, subject_person_id=None, subject_household_id=HOUSEHOLD)
    assert json.loads(canonical_leaf(both, None))["subject"] == subject_hash(SALT, PERSON)
    assert json.loads(canonical_leaf(household_only, None))["subject"] == subject_hash(SALT, HOUSEHOLD)
    nobody = json.loads(canonical_leaf(replace(ENTRY, subject_person_id=None, subject_salt=""), None))
    assert nobody["subject"] is None and nobody["chain"] is None


def test_times_are_utc_with_microseconds_and_naive_times_count_as_utc() -> None:
    naive = replace(ENTRY, occurred_at=AT.replace(tzinfo=None))
    elsewhere = replace(ENTRY, occurred_at=AT.astimezone(timezone(timedelta(hours=-5))))
    assert canonical_leaf(naive, None) == canonical_leaf(elsewhere, None) == canonical_leaf(ENTRY, None)
    whole_second = replace(ENTRY, occurred_at=AT.replace(microsecond=0))
    assert b'"at":"2026-11-15T10:00:00.000000Z"' in canonical_leaf(whole_second, None)


def test_non_ascii_text_is_utf8_not_escaped() -> None:
    leaf = canonical_leaf(replace(ENTRY, detail="revisión — Peña"), None)
    assert "revisión — Peña".encode() in leaf and b"\\u" not in leaf


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 43},
        {"occurred_at": AT + timedelta(microseconds=1)},
        {"actor": "registrar-anb"},
        {"role": "reviewer"},
        {"purpose": "card_service"},
        {"action": "write"},
        {"categories": ("identity", "household")},
        {"categories": ("household", "identity", "")},
        {"detail": "person.read "},
        {"subject_person_id": PERSON[:-1] + "b"},
        {"subject_salt": SALT[:-1] + "0"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_changing_any_field_changes_the_leaf_hash(change: dict[str, object]) -> None:
    assert entry_leaf_hash(replace(ENTRY, **change), None) != entry_leaf_hash(ENTRY, None)  # type: ignore[arg-type]


def test_the_leaf_commits_to_the_previous_chain_head() -> None:
    head = next_chain_head(None, entry_leaf_hash(ENTRY, None))
    assert head == chain_hash(GENESIS, entry_leaf_hash(ENTRY, None))
    second = replace(ENTRY, seq=43)
    assert entry_leaf_hash(second, head) != entry_leaf_hash(second, None)
    assert entry_leaf_hash(second, head) != entry_leaf_hash(second, chain_hash(GENESIS, b"\x00" * 32))


@pytest.mark.parametrize("salt", [SALT.upper(), SALT[:2] + " " + SALT[2:], SALT[:-1], "zz"])
def test_a_salt_is_strict_lowercase_hex_so_it_cannot_be_rewritten_unnoticed(salt: str) -> None:
    with pytest.raises(ValueError, match="lowercase hex"):
        canonical_leaf(replace(ENTRY, subject_salt=salt), None)


def test_categories_are_split_exactly_so_every_stored_byte_counts() -> None:
    assert categories_from_column("") == ()
    assert categories_from_column("household identity") == ("household", "identity")
    assert categories_from_column("household  identity") == ("household", "", "identity")


texts = st.text(max_size=20)
entries = st.builds(
    LogEntry,
    seq=st.integers(1, 2**53),
    occurred_at=st.datetimes(timezones=st.just(UTC)),
    actor=texts,
    role=texts,
    purpose=texts,
    action=texts,
    categories=st.lists(texts, max_size=4).map(tuple),
    detail=texts,
    subject_person_id=st.none() | st.text(alphabet="0123456789abcdef", min_size=1, max_size=32),
    subject_household_id=st.none() | st.text(alphabet="0123456789abcdef", min_size=1, max_size=32),
    subject_salt=st.binary(max_size=16).map(bytes.hex),
)


@settings(max_examples=100, deadline=None, database=None)
@given(entries)
def test_the_plain_entry_round_trips_through_json(entry: LogEntry) -> None:
    again = entry_from_plain(json.loads(json.dumps(plain_entry(entry))))
    assert again == entry
    assert canonical_leaf(again, None) == canonical_leaf(entry, None)


# --------------------------------------------------------------------------- proofs over an in-memory tree

SIGNER = NoteSigner.from_seed("civicard.example/log", b"\x05" * 32)


def _log(count: int) -> tuple[MerkleTree, list[tuple[LogEntry, bytes | None, bytes]]]:
    """`count` entries, every third about PERSON, chained as the integrator chains them."""
    tree, rows, heads = MerkleTree(), [], {}  # type: ignore[var-annotated]
    for i in range(count):
        entry = replace(ENTRY, seq=i + 1, subject_person_id=PERSON if i % 3 == 0 else f"{i:032x}")
        prev = heads.get(entry.subject_id)
        digest = entry_leaf_hash(entry, prev)
        heads[entry.subject_id] = next_chain_head(prev, digest)
        tree.append_leaf_hash(digest)
        rows.append((entry, prev, heads[entry.subject_id]))
    return tree, rows


def _note(tree: MerkleTree, size: int) -> str:
    return sign_checkpoint(Checkpoint("civicard.example/log", size, tree.root(size), AT), SIGNER)


def _bundle(tree: MerkleTree, rows: list[tuple[LogEntry, bytes | None, bytes]], index: int) -> ProofBundle:
    entry, prev, _ = rows[index]
    return ProofBundle(
        "civicard.example/log",
        index,
        tree.size,
        entry,
        prev,
        tree.leaf(index),
        tuple(tree.inclusion_proof(index)),
        _note(tree, tree.size),
        SIGNER.verifier,
    )


def test_a_proof_bundle_checks_and_any_edit_to_it_is_caught_with_a_code() -> None:
    tree, rows = _log(11)
    bundle = _bundle(tree, rows, 6)
    assert check_proof_bundle(bundle, SIGNER.verifier).code == "proof_valid"
    document = json.loads(json.dumps(bundle.to_json()))
    assert check_proof_json(document).ok

    edited = json.loads(json.dumps(document))
    edited["entry"]["purpose"] = "oversight_case"
    edited["public_leaf"] = None
    assert check_proof_json(edited).code == "leaf_mismatch"
    assert check_proof_json(document | {"public_leaf": document["public_leaf"].replace("read", "write")}).code == (
        "leaf_mismatch"
    )
    assert check_proof_json(document | {"chain_head": "00" * 32}).code == "chain_mismatch"
    moved = document | {"leaf_index": 5}
    assert check_proof_json(moved).code == "inclusion_failed"
    other = NoteSigner.from_seed("civicard.example/log", b"\x06" * 32).verifier
    assert check_proof_json(document, other).code == "untrusted_key"
    assert check_proof_json(document | {"version": 2}).code == "unsupported_version"
    assert check_proof_json(document | {"inclusion_proof": ["zz"]}).code == "malformed_proof"


def _resident(tree: MerkleTree, rows: list[tuple[LogEntry, bytes | None, bytes]], since: int | None) -> ResidentLog:
    mine = [
        ResidentEntry(e, i, prev, head, tuple(tree.inclusion_proof(i)), True)
        for i, (e, prev, head) in enumerate(rows)
        if e.subject_person_id == PERSON
    ]
    proof = None if since is None else ConsistencyProof(since, tree.size, tuple(tree.consistency_proof(since)))
    return ResidentLog(PERSON, _note(tree, tree.size), tree.size, tuple(mine), proof)


def test_a_resident_log_verifies_and_its_receipt_carries_over_to_a_grown_log() -> None:
    tree, rows = _log(10)
    first = verify_resident_log(_resident(tree, rows, None), SIGNER.verifier)
    assert first.ok and first.code == "verified" and first.receipt is not None
    assert first.receipt.entries_seen == 4
    grown_tree, grown_rows = _log(17)
    again = verify_resident_log(_resident(grown_tree, grown_rows, 10), SIGNER.verifier, first.receipt)
    assert again.ok, again.message
    assert ResidentReceipt.from_json(first.receipt.to_json()) == first.receipt
    assert ResidentLog.from_json(_resident(tree, rows, None).to_json()) == _resident(tree, rows, None)


def test_a_resident_log_missing_one_of_their_entries_breaks_their_chain() -> None:
    tree, rows = _log(10)
    shown = _resident(tree, rows, None)
    without_second = replace(shown, entries=shown.entries[:1] + shown.entries[2:])
    verdict = verify_resident_log(without_second, SIGNER.verifier)
    assert (verdict.ok, verdict.code) == (False, "chain_broken")
    assert [v.code for v in verdict.entries] == ["verified", "chain_broken", "verified"]


def test_a_resident_log_that_shrank_since_the_last_visit_is_refused() -> None:
    tree, rows = _log(10)
    receipt = verify_resident_log(_resident(tree, rows, None), SIGNER.verifier).receipt
    small_tree, small_rows = _log(7)
    verdict = verify_resident_log(_resident(small_tree, small_rows, None), SIGNER.verifier, receipt)
    assert (verdict.ok, verdict.code) == (False, "checkpoint_shrinks")
