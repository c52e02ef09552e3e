"""C2SP signed notes and checkpoints: round trips, tampering, other keys, reference vectors."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from civicard.shared.keys import RootKey
from civicard.transparency.checkpoints import (
    DEFAULT_ORIGIN,
    EM_DASH,
    Checkpoint,
    CheckpointError,
    NoteSigner,
    VerifierKey,
    key_id,
    open_checkpoint,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
)

ROOT = hashlib.sha256(b"a root").digest()
AT = datetime(2026, 11, 15, 10, 0, 0, 123456, tzinfo=UTC)

# golang.org/x/mod/sumdb/note, note_test.go / package example: the signer key, verifier key,
# text and signature line that Go's reference implementation produces.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIGNATURE = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="

# The example of https://c2sp.org/tlog-checkpoint (its public key is not published).
SPEC_EXAMPLE = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+"
    "xeMcTOAYQ8=\n"
)


def signer(seed: bytes = b"\x07" * 32, name: str = DEFAULT_ORIGIN) -> NoteSigner:
    return NoteSigner.from_seed(name, seed)


def signed(checkpoint: Checkpoint | None = None, by: NoteSigner | None = None) -> str:
    return sign_checkpoint(checkpoint or Checkpoint(DEFAULT_ORIGIN, 1234, ROOT, AT), by or signer())


def test_a_checkpoint_note_round_trips_and_its_signature_verifies() -> None:
    checkpoint = Checkpoint(DEFAULT_ORIGIN, 1234, ROOT, AT)
    note = signed(checkpoint)
    body = f"{DEFAULT_ORIGIN}\n1234\n{base64.b64encode(ROOT).decode()}\ntime 2026-11-15T10:00:00.123456Z\n"
    assert note.startswith(body + "\n" + EM_DASH + " " + DEFAULT_ORIGIN + " ")
    assert note.endswith("\n") and note.count("\n") == 6
    assert open_checkpoint(note, signer().verifier) == checkpoint
    assert parse_note(note).render() == note
    raw = base64.b64decode(note.rsplit(" ", 1)[1])
    assert len(raw) == 4 + 64 and raw[:4] == signer().verifier.key_id


@pytest.mark.parametrize(
    ("line", "replacement"),
    [
        (1, "1235"),
        (1, "1233"),
        (2, base64.b64encode(bytes(32)).decode()),
        (0, "civicard.example/other-log"),
        (3, "time 2026-11-15T10:00:01.123456Z"),
    ],
    ids=["bigger size", "smaller size", "other root", "other origin", "other time"],
)
def test_changing_the_size_root_origin_or_time_breaks_the_signature(line: int, replacement: str) -> None:
    lines = signed().split("\n")
    lines[line] = replacement
    with pytest.raises(CheckpointError) as refused:
        open_checkpoint("\n".join(lines), signer().verifier, origin=DEFAULT_ORIGIN)
    assert refused.value.code == "bad_signature"


def test_a_checkpoint_signed_by_another_key_or_name_is_refused() -> None:
    note = signed()
    with pytest.raises(CheckpointError) as other_key:
        open_checkpoint(note, signer(b"\x08" * 32).verifier)
    assert other_key.value.code == "bad_signature"
    same_key_other_name = signer(name="civicard.example/other")
    with pytest.raises(CheckpointError) as other_name:
        open_checkpoint(note, same_key_other_name.verifier, origin=DEFAULT_ORIGIN)
    assert other_name.value.code == "bad_signature"


def test_a_correctly_signed_checkpoint_of_another_log_is_refused_as_wrong_origin() -> None:
    note = signed(Checkpoint("elsewhere.example/log", 5, ROOT, AT))
    with pytest.raises(CheckpointError) as refused:
        open_checkpoint(note, signer().verifier)
    assert refused.value.code == "wrong_origin"


def test_signatures_by_unknown_keys_are_ignored_but_a_bad_signature_by_ours_is_not() -> None:
    ours, witness = signer(), signer(b"\x09" * 32, "witness.example/w1")
    text = Checkpoint(DEFAULT_ORIGIN, 9, ROOT, AT).body()
    cosigned = ours.sign_note(text) + witness.sign(text).line()
    assert open_checkpoint(cosigned, ours.verifier).tree_size == 9
    forged = ours.sign(text.replace("\n9\n", "\n10\n"))
    with pytest.raises(CheckpointError) as refused:
        open_checkpoint(cosigned + forged.line(), ours.verifier)
    assert refused.value.code == "bad_signature"


def test_key_id_and_signature_match_the_go_sumdb_note_reference_vector() -> None:
    seed = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])[1:]  # PRIVATE+KEY+name+id+base64(0x01 ‖ seed)
    go = NoteSigner.from_seed("PeterNeumann", seed)
    assert go.verifier.to_vkey() == GO_VERIFIER_KEY
    assert key_id("PeterNeumann", go.verifier.public_key).hex() == "c74f20a3"
    note = go.sign_note(GO_TEXT)
    assert note == GO_TEXT + "\n" + f"{EM_DASH} PeterNeumann {GO_SIGNATURE}\n"
    assert VerifierKey.from_vkey(GO_VERIFIER_KEY).verify(parse_note(note))


def test_the_c2sp_spec_example_checkpoint_parses() -> None:
    note = parse_note(SPEC_EXAMPLE)
    checkpoint = parse_checkpoint(note.text)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.tree_size == 20852163
    assert checkpoint.root_hash.hex() == "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
    assert checkpoint.signed_at is None and checkpoint.extensions == ()
    (signature,) = note.signatures
    assert signature.name == "example.com/behind-the-sofa" and len(signature.signature) == 64
    assert signature.key_id.hex() == "033de0ae"


def test_a_verifier_key_string_round_trips_and_a_wrong_key_id_is_refused() -> None:
    key = signer().verifier
    assert VerifierKey.from_vkey(key.to_vkey()) == key
    name, _, encoded = key.to_vkey().split("+", 2)
    with pytest.raises(CheckpointError) as refused:
        VerifierKey.from_vkey(f"{name}+00000000+{encoded}")
    assert refused.value.code == "malformed_key"


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda n: n.replace(EM_DASH, "-"), "malformed_note"),  # an ASCII hyphen is not the em dash
        (lambda n: n.replace("\n\n", "\n"), "malformed_note"),  # no blank line before the signatures
        (lambda n: n[:-1], "malformed_note"),  # no final newline
        (lambda n: n.rsplit(" ", 1)[0] + " AAAA\n", "malformed_note"),  # too short for a key ID
        (lambda n: n.replace("time", "ti\tme"), "malformed_note"),  # a control character
        (lambda n: n.replace(f"{DEFAULT_ORIGIN} ", f"{DEFAULT_ORIGIN}+x ", 1), "malformed_note"),  # '+' in a name
        (lambda n: n.replace("\n1234\n", "\n01234\n"), "bad_signature"),  # checked before the body is read
    ],
    ids=["hyphen", "no blank line", "no final newline", "short signature", "tab", "plus in name", "leading zero"],
)
def test_malformed_notes_are_refused_with_a_code(mangle: Callable[[str], str], code: str) -> None:
    with pytest.raises(CheckpointError) as refused:
        open_checkpoint(mangle(signed()), signer().verifier)
    assert refused.value.code == code


def test_a_checkpoint_body_needs_a_32_byte_root_and_a_plain_decimal_size() -> None:
    with pytest.raises(CheckpointError) as short_root:
        parse_checkpoint(f"o\n3\n{base64.b64encode(bytes(31)).decode()}\n")
    assert short_root.value.code == "malformed_checkpoint"
    with pytest.raises(CheckpointError) as negative:
        parse_checkpoint(f"o\n-3\n{base64.b64encode(ROOT).decode()}\n")
    assert negative.value.code == "malformed_checkpoint"
    assert parse_checkpoint(f"o\n0\n{base64.b64encode(ROOT).decode()}\nfuture extension\n").extensions == (
        "future extension",
    )


def test_the_checkpoint_key_is_derived_from_the_root_key_and_stable() -> None:
    root = RootKey(bytes(range(32)))
    first = NoteSigner.from_root_key(root)
    assert first.verifier == NoteSigner.from_root_key(RootKey(bytes(range(32)))).verifier
    assert first.verifier != NoteSigner.from_root_key(RootKey(bytes(range(1, 33)))).verifier
    assert first.verifier.public_key != root.derive("transparency:checkpoint-signing")  # the seed stays secret
    assert "PRIVATE" not in repr(first) and first.verifier.to_vkey() in repr(first)
