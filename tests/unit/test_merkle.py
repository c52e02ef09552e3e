"""RFC 9162 Merkle tree, proofs, verification and hash chain: known answers, oracles, properties."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from civicard.transparency.merkle import (
    EMPTY_ROOT,
    GENESIS,
    MerkleTree,
    chain_hash,
    chain_heads,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    subtree_root,
    verify_chain,
    verify_consistency,
    verify_inclusion,
)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, database=None)


def h(hex_digest: str) -> bytes:
    return bytes.fromhex(hex_digest)


# RFC 6962 reference data, as used by transparency-dev/merkle and certificate-transparency-go.
LEAVES = [
    h(x)
    for x in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = {
    0: h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    1: h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    2: h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    3: h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    4: h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    5: h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    6: h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    7: h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    8: h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
}
# (leaf index counting from zero, tree size) -> audit path, leaf side first.
INCLUSION_VECTORS = {
    (0, 8): [
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    (5, 8): [
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ],
    (2, 3): [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    ],
    (1, 5): [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    ],
}
# (old size, new size) -> consistency proof.
CONSISTENCY_VECTORS = {
    (1, 8): [
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    (6, 8): [
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ],
    (2, 5): [
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    ],
    (6, 7): [
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ],
}
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def reference_tree() -> MerkleTree:
    tree = MerkleTree()
    for entry in LEAVES:
        tree.append(entry)
    return tree


def entry_for(i: int) -> bytes:
    return b"entry-%d" % i


@cache
def big_tree(size: int = 2048) -> MerkleTree:
    tree = MerkleTree()
    for i in range(size):
        tree.append(entry_for(i))
    return tree


def flip(value: bytes, position: int) -> bytes:
    changed = bytearray(value)
    changed[position % len(changed)] ^= 0x01
    return bytes(changed)


# ---- RFC 6962 section 2.1 written literally over a list of leaf hashes (a second oracle).


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def spec_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _split(len(d))
    return node_hash(spec_mth(d[:k]), spec_mth(d[k:]))


def spec_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _split(len(d))
    if m < k:
        return [*spec_path(m, d[:k]), spec_mth(d[k:])]
    return [*spec_path(m - k, d[k:]), spec_mth(d[:k])]


def spec_subproof(m: int, d: Sequence[bytes], complete: bool) -> list[bytes]:
    if m == len(d):
        return [] if complete else [spec_mth(d)]
    k = _split(len(d))
    if m <= k:
        return [*spec_subproof(m, d[:k], complete), spec_mth(d[k:])]
    return [*spec_subproof(m - k, d[k:], False), spec_mth(d[:k])]


# ---------------------------------------------------------------- hashing known answers


def test_leaf_hash_of_empty_entry_matches_rfc6962_reference() -> None:
    assert leaf_hash(b"") == ROOTS[1]


def test_node_hash_of_first_two_reference_leaves_matches_rfc6962_reference() -> None:
    assert node_hash(leaf_hash(LEAVES[0]), leaf_hash(LEAVES[1])) == ROOTS[2]


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    left, right = bytes(32), bytes([1]) * 32
    assert leaf_hash(left + right) != node_hash(left, right)
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


# ---------------------------------------------------------------- roots


def test_empty_tree_root_is_sha256_of_empty_string() -> None:
    assert MerkleTree().root() == ROOTS[0]
    assert ROOTS[0] == EMPTY_ROOT
    assert MerkleTree().size == 0


def test_one_leaf_root_matches_rfc6962_reference() -> None:
    tree = MerkleTree()
    tree.append(LEAVES[0])
    assert tree.root() == ROOTS[1]


@pytest.mark.parametrize("size", range(2, 8))
def test_intermediate_roots_match_rfc6962_reference(size: int) -> None:
    tree = MerkleTree()
    for entry in LEAVES[:size]:
        tree.append(entry)
    assert tree.size == size
    assert tree.root() == ROOTS[size]


def test_eight_leaf_root_matches_rfc6962_reference() -> None:
    assert reference_tree().root() == ROOTS[8]


def test_historical_roots_stay_available_after_later_appends() -> None:
    tree = reference_tree()
    assert [tree.root(size) for size in range(9)] == [ROOTS[size] for size in range(9)]


def test_append_returns_consecutive_leaf_indexes() -> None:
    tree = MerkleTree()
    assert [tree.append(entry) for entry in LEAVES] == list(range(8))
    assert tree.leaf(5) == leaf_hash(LEAVES[5])


def test_append_leaf_hash_builds_the_same_tree_as_append() -> None:
    tree = MerkleTree()
    for entry in LEAVES:
        tree.append_leaf_hash(leaf_hash(entry))
    assert tree.root() == ROOTS[8]


def test_append_leaf_hash_rejects_a_hash_of_the_wrong_length() -> None:
    with pytest.raises(ValueError):
        MerkleTree().append_leaf_hash(b"\x00" * 31)


@pytest.mark.parametrize("size", [-1, 9])
def test_root_of_a_size_outside_the_tree_is_refused(size: int) -> None:
    with pytest.raises(ValueError):
        reference_tree().root(size)


def test_leaf_outside_the_tree_is_refused() -> None:
    with pytest.raises(ValueError):
        reference_tree().leaf(8)


def test_roots_match_the_rfc_definition_for_every_size_up_to_130() -> None:
    tree = big_tree()
    leaves = [tree.leaf(i) for i in range(130)]
    for size in range(131):
        assert tree.root(size) == spec_mth(leaves[:size]), size


# ---------------------------------------------------------------- proofs: known answers


@pytest.mark.parametrize(("index", "size"), list(INCLUSION_VECTORS))
def test_inclusion_proof_matches_rfc6962_reference(index: int, size: int) -> None:
    tree = reference_tree()
    proof = tree.inclusion_proof(index, size)
    assert proof == INCLUSION_VECTORS[(index, size)]
    assert verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size])
    assert root_from_inclusion_proof(leaf_hash(LEAVES[index]), index, size, proof) == ROOTS[size]


@pytest.mark.parametrize(("old_size", "new_size"), list(CONSISTENCY_VECTORS))
def test_consistency_proof_matches_rfc6962_reference(old_size: int, new_size: int) -> None:
    tree = reference_tree()
    proof = tree.consistency_proof(old_size, new_size)
    assert proof == CONSISTENCY_VECTORS[(old_size, new_size)]
    assert verify_consistency(old_size, new_size, ROOTS[old_size], ROOTS[new_size], proof)


def test_proofs_match_the_rfc_definition_for_every_index_and_pair_up_to_40() -> None:
    tree = big_tree()
    leaves = [tree.leaf(i) for i in range(40)]
    for size in range(1, 41):
        for index in range(size):
            assert tree.inclusion_proof(index, size) == spec_path(index, leaves[:size])
        for old in range(1, size):
            expected = spec_subproof(old, leaves[:size], True)
            assert tree.consistency_proof(old, size) == expected, (old, size)


def test_single_leaf_tree_has_an_empty_inclusion_proof() -> None:
    tree = MerkleTree()
    tree.append(b"data")
    assert tree.inclusion_proof(0, 1) == []
    assert verify_inclusion(leaf_hash(b"data"), 0, 1, [], tree.root())


def test_consistency_proof_for_equal_or_empty_old_tree_is_empty() -> None:
    tree = reference_tree()
    assert tree.consistency_proof(8, 8) == []
    assert tree.consistency_proof(0, 8) == []
    assert tree.consistency_proof(3) == tree.consistency_proof(3, 8)


@pytest.mark.parametrize(("index", "size"), [(8, 8), (-1, 8), (0, 0), (0, 9), (3, 2)])
def test_inclusion_proof_outside_the_tree_is_refused(index: int, size: int) -> None:
    with pytest.raises(ValueError):
        reference_tree().inclusion_proof(index, size)


@pytest.mark.parametrize(("old_size", "new_size"), [(5, 4), (-1, 4), (3, 9)])
def test_consistency_proof_for_a_shrinking_or_unknown_tree_is_refused(old_size: int, new_size: int) -> None:
    with pytest.raises(ValueError):
        reference_tree().consistency_proof(old_size, new_size)


# ---------------------------------------------------------------- verification rejects


def corrupted_inclusion_cases(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> dict[str, tuple[bytes, int, int, list[bytes], bytes]]:
    cases = {
        "index - 1": (leaf, index - 1, size, proof, root),
        "index + 1": (leaf, index + 1, size, proof, root),
        "index ^ 2": (leaf, index ^ 2, size, proof, root),
        "size * 2": (leaf, index, size * 2, proof, root),
        "size // 2": (leaf, index, size // 2, proof, root),
        "wrong leaf": (leaf_hash(b"WrongLeaf"), index, size, proof, root),
        "short leaf": (b"WrongLeaf", index, size, proof, root),
        "empty root": (leaf, index, size, proof, EMPTY_ROOT),
        "random root": (leaf, index, size, proof, SOME_HASH),
        "trailing empty": (leaf, index, size, [*proof, b""], root),
        "trailing root": (leaf, index, size, [*proof, root], root),
        "preceding empty": (leaf, index, size, [b"", *proof], root),
        "preceding root": (leaf, index, size, [root, *proof], root),
        "removed component": (leaf, index, size, proof[:-1], root),
        "inserted component": (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root),
    }
    for i in range(len(proof)):
        changed = list(proof)
        changed[i] = flip(changed[i], 0)
        cases[f"flipped proof[{i}]"] = (leaf, index, size, changed, root)
    return cases


@pytest.mark.parametrize(("index", "size"), list(INCLUSION_VECTORS))
def test_corrupted_inclusion_proofs_are_rejected(index: int, size: int) -> None:
    leaf = leaf_hash(LEAVES[index])
    cases = corrupted_inclusion_cases(index, size, INCLUSION_VECTORS[(index, size)], ROOTS[size], leaf)
    accepted = [name for name, args in cases.items() if verify_inclusion(*args)]
    assert accepted == []


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (1, 1), (-1, 4), (4, 4), (1 << 65, 1 << 64)])
def test_inclusion_with_an_index_outside_the_size_is_rejected(index: int, size: int) -> None:
    assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    assert not verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)
    assert root_from_inclusion_proof(SOME_HASH, index, size, []) is None


def test_single_entry_inclusion_rejects_hashes_of_the_wrong_length() -> None:
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], leaf)
    assert not verify_inclusion(b"", 0, 1, [], b"")


def test_root_from_inclusion_proof_is_none_for_a_proof_of_the_wrong_length() -> None:
    leaf = leaf_hash(LEAVES[0])
    proof = INCLUSION_VECTORS[(0, 8)]
    assert root_from_inclusion_proof(leaf, 0, 8, proof[:2]) is None
    assert root_from_inclusion_proof(leaf, 0, 8, [*proof, SOME_HASH]) is None


def test_tree_size_is_bound_by_the_signed_root_not_by_the_inclusion_proof() -> None:
    # RFC 9162 proofs carry no size: leaf 0 has the same path shape in trees of 5 and 6,
    # so callers must take the size from the signed checkpoint that carries the root.
    tree = reference_tree()
    proof = tree.inclusion_proof(0, 5)
    assert verify_inclusion(tree.leaf(0), 0, 6, proof, tree.root(5))
    assert not verify_inclusion(tree.leaf(0), 0, 6, proof, tree.root(6))


def corrupted_consistency_cases(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> dict[str, tuple[int, int, bytes, bytes, list[bytes]]]:
    cases = {
        "old - 1": (old - 1, new, old_root, new_root, proof),
        "old + 1": (old + 1, new, old_root, new_root, proof),
        "old ^ 2": (old ^ 2, new, old_root, new_root, proof),
        "new * 2": (old, new * 2, old_root, new_root, proof),
        "new // 2": (old, new // 2, old_root, new_root, proof),
        "wrong old root": (old, new, SOME_HASH, new_root, proof),
        "wrong new root": (old, new, old_root, SOME_HASH, proof),
        "short old root": (old, new, b"WrongRoot", new_root, proof),
        "swapped roots": (old, new, new_root, old_root, proof),
        "swapped sizes": (new, old, old_root, new_root, proof),
        "empty proof": (old, new, old_root, new_root, []),
        "truncated proof": (old, new, old_root, new_root, proof[:-1]),
        "trailing empty": (old, new, old_root, new_root, [*proof, b""]),
        "trailing old root": (old, new, old_root, new_root, [*proof, old_root]),
        "trailing new root": (old, new, old_root, new_root, [*proof, new_root]),
        "preceding empty": (old, new, old_root, new_root, [b"", *proof]),
        "preceding old root": (old, new, old_root, new_root, [old_root, *proof]),
        "preceding new root": (old, new, old_root, new_root, [new_root, *proof]),
        "preceding proof[0]": (old, new, old_root, new_root, [proof[0], *proof]),
    }
    for i in range(len(proof)):
        changed = list(proof)
        changed[i] = flip(changed[i], 0)
        cases[f"flipped proof[{i}]"] = (old, new, old_root, new_root, changed)
    return cases


@pytest.mark.parametrize(("old_size", "new_size"), list(CONSISTENCY_VECTORS))
def test_corrupted_consistency_proofs_are_rejected(old_size: int, new_size: int) -> None:
    cases = corrupted_consistency_cases(
        old_size, new_size, ROOTS[old_size], ROOTS[new_size], CONSISTENCY_VECTORS[(old_size, new_size)]
    )
    accepted = [name for name, args in cases.items() if verify_consistency(*args)]
    assert accepted == []


ROOT_A, ROOT_B = ROOTS[3], ROOTS[4]


@pytest.mark.parametrize(
    ("old_size", "new_size", "old_root", "new_root", "proof", "expected"),
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 4, EMPTY_ROOT, ROOT_B, [], True),
        (0, 4, ROOT_A, ROOT_B, [], False),  # a non-empty root claimed for the empty tree
        (0, 4, EMPTY_ROOT, ROOT_B, [EMPTY_ROOT], False),
        (4, 4, ROOT_B, ROOT_B, [], True),
        (4, 4, ROOT_A, ROOT_B, [], False),
        (4, 4, ROOT_B, ROOT_B, [EMPTY_ROOT], False),
        (1, 0, ROOT_A, ROOT_B, [], False),  # time travel to the past
        (4, 3, ROOT_B, ROOT_A, [], False),
        (3, 4, ROOT_A, ROOT_B, [], False),  # a growing tree needs a proof
        (-1, 4, ROOT_A, ROOT_B, [], False),
        (3, 4, b"short", ROOT_B, [SOME_HASH], False),
    ],
)
def test_consistency_edge_cases_are_judged_exactly(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes], expected: bool
) -> None:
    assert verify_consistency(old_size, new_size, old_root, new_root, proof) is expected


# ---------------------------------------------------------------- node store protocol


class CountingStore:
    """A stand-in for a database table of complete nodes of a huge tree."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reads = 0

    def get(self, level: int, index: int) -> bytes:
        assert (index + 1) << level <= self.size, "asked for an incomplete node"
        self.reads += 1
        return hashlib.sha256(b"%d/%d" % (level, index)).digest()


@pytest.mark.parametrize("size", [10**12 + 12345, (1 << 40) - 1, 1 << 40, 3])
def test_proofs_over_a_stored_tree_read_a_logarithmic_number_of_complete_nodes(size: int) -> None:
    limit = 2 * size.bit_length()
    for index in (0, size // 3, size - 1):
        store = CountingStore(size)
        assert len(inclusion_proof(store, index, size)) <= size.bit_length()
        assert store.reads <= limit
    for old in (1, size // 2 + 1, size - 1):
        store = CountingStore(size)
        consistency_proof(store, old, size)
        assert store.reads <= limit
    store = CountingStore(size)
    subtree_root(store, 0, size)
    assert store.reads <= size.bit_length()


class DictStore:
    """Complete nodes keyed by (level, index), built independently of MerkleTree."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        row = [leaf_hash(e) for e in entries]
        level = 0
        while row:
            for i, value in enumerate(row):
                self.nodes[(level, i)] = value
            row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
            level += 1

    def get(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]


def test_proof_code_gives_the_same_answers_over_another_node_store() -> None:
    store = DictStore([entry_for(i) for i in range(37)])
    tree = big_tree()
    assert subtree_root(store, 0, 37) == tree.root(37)
    for index in range(37):
        assert inclusion_proof(store, index, 37) == tree.inclusion_proof(index, 37)
    for old in range(38):
        assert consistency_proof(store, old, 37) == tree.consistency_proof(old, 37)


# ---------------------------------------------------------------- pymerkle oracle

ORACLE_SIZE = 1000


@cache
def oracle_trees() -> tuple[Any, MerkleTree]:
    pymerkle = pytest.importorskip("pymerkle")
    theirs = pymerkle.InmemoryTree()  # sha256 with RFC 9162 0x00 / 0x01 prefixes
    ours = MerkleTree()
    for i in range(ORACLE_SIZE):
        theirs.append_entry(entry_for(i))
        ours.append(entry_for(i))
    return theirs, ours


def test_roots_match_pymerkle_for_every_size_up_to_1000() -> None:
    theirs, ours = oracle_trees()
    mismatched = [n for n in range(ORACLE_SIZE + 1) if theirs.get_root(n) != ours.root(n)]
    assert mismatched == []
    assert ours.root(1) == leaf_hash(entry_for(0))


def test_inclusion_proofs_match_pymerkle_for_sampled_indexes_up_to_1000() -> None:
    pymerkle = pytest.importorskip("pymerkle")
    theirs, ours = oracle_trees()
    rng = random.Random(9162)
    for size in range(1, ORACLE_SIZE + 1):
        for index in {0, size - 1, rng.randrange(size)}:
            proof = theirs.prove_inclusion(index + 1, size)
            # pymerkle's path is [leaf hash, *audit path]; indexes count from one.
            assert proof.path == [ours.leaf(index), *ours.inclusion_proof(index, size)]
            pymerkle.verify_inclusion(ours.leaf(index), ours.root(size), proof)
            assert verify_inclusion(ours.leaf(index), index, size, proof.path[1:], theirs.get_root(size))


def test_consistency_proofs_cross_verify_with_pymerkle_for_sampled_sizes_up_to_1000() -> None:
    pymerkle = pytest.importorskip("pymerkle")
    theirs, ours = oracle_trees()
    rng = random.Random(6962)
    for new in range(2, ORACLE_SIZE + 1):
        for old in {1, new - 1, rng.randrange(1, new)}:
            # pymerkle encodes consistency paths differently (leaf-level pieces of the old
            # tree), so each side's proof is checked against the other side's roots.
            their_proof = theirs.prove_consistency(old, new)
            pymerkle.verify_consistency(ours.root(old), ours.root(new), their_proof)
            our_proof = ours.consistency_proof(old, new)
            old_root, new_root = theirs.get_root(old), theirs.get_root(new)
            assert verify_consistency(old, new, old_root, new_root, our_proof), (old, new)


# ---------------------------------------------------------------- properties

sizes = st.integers(min_value=1, max_value=2048)


@st.composite
def size_and_index(draw: Callable[..., int]) -> tuple[int, int]:
    size = draw(sizes)
    return size, draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def old_and_new_sizes(draw: Callable[..., int]) -> tuple[int, int]:
    new = draw(st.integers(min_value=2, max_value=2048))
    return draw(st.integers(min_value=1, max_value=new - 1)), new


@PROPERTY_SETTINGS
@given(size_and_index())
def test_every_inclusion_proof_verifies(case: tuple[int, int]) -> None:
    size, index = case
    tree = big_tree()
    proof = tree.inclusion_proof(index, size)
    assert verify_inclusion(leaf_hash(entry_for(index)), index, size, proof, tree.root(size))


@PROPERTY_SETTINGS
@given(size_and_index(), st.data())
def test_flipping_any_byte_of_an_inclusion_proof_or_leaf_fails(case: tuple[int, int], data: st.DataObject) -> None:
    size, index = case
    tree = big_tree()
    proof, root, leaf = tree.inclusion_proof(index, size), tree.root(size), tree.leaf(index)
    position = data.draw(st.integers(min_value=0, max_value=31))
    assert not verify_inclusion(flip(leaf, position), index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, flip(root, position))
    if proof:
        element = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        changed = list(proof)
        changed[element] = flip(changed[element], position)
        assert not verify_inclusion(leaf, index, size, changed, root)


@PROPERTY_SETTINGS
@given(size_and_index(), st.integers(min_value=0, max_value=2047))
def test_an_inclusion_proof_fails_for_any_other_index(case: tuple[int, int], other: int) -> None:
    size, index = case
    assume(other != index)
    tree = big_tree()
    proof = tree.inclusion_proof(index, size)
    assert not verify_inclusion(tree.leaf(index), other, size, proof, tree.root(size))


@PROPERTY_SETTINGS
@given(size_and_index(), sizes)
def test_an_inclusion_proof_fails_against_any_other_tree_size_and_its_root(case: tuple[int, int], other: int) -> None:
    size, index = case
    assume(other != size)
    tree = big_tree()
    proof = tree.inclusion_proof(index, size)
    assert not verify_inclusion(tree.leaf(index), index, other, proof, tree.root(other))


@PROPERTY_SETTINGS
@given(old_and_new_sizes())
def test_every_consistency_proof_verifies(case: tuple[int, int]) -> None:
    old, new = case
    tree = big_tree()
    proof = tree.consistency_proof(old, new)
    assert verify_consistency(old, new, tree.root(old), tree.root(new), proof)


@PROPERTY_SETTINGS
@given(old_and_new_sizes(), st.data())
def test_flipping_any_byte_of_a_consistency_proof_or_root_fails(case: tuple[int, int], data: st.DataObject) -> None:
    old, new = case
    tree = big_tree()
    proof, old_root, new_root = tree.consistency_proof(old, new), tree.root(old), tree.root(new)
    position = data.draw(st.integers(min_value=0, max_value=31))
    element = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    changed = list(proof)
    changed[element] = flip(changed[element], position)
    assert not verify_consistency(old, new, old_root, new_root, changed)
    assert not verify_consistency(old, new, flip(old_root, position), new_root, proof)
    assert not verify_consistency(old, new, old_root, flip(new_root, position), proof)


@PROPERTY_SETTINGS
@given(old_and_new_sizes())
def test_a_shrinking_tree_is_never_consistent(case: tuple[int, int]) -> None:
    old, new = case
    tree = big_tree()
    proof = tree.consistency_proof(old, new)
    assert not verify_consistency(new, old, tree.root(new), tree.root(old), proof)
    assert not verify_consistency(new, old, tree.root(old), tree.root(new), proof)
    assert not verify_consistency(new, old, tree.root(new), tree.root(old), [])


@PROPERTY_SETTINGS
@given(old_and_new_sizes(), sizes)
def test_a_consistency_proof_fails_for_any_other_old_size(case: tuple[int, int], other: int) -> None:
    old, new = case
    assume(other != old)
    tree = big_tree()
    proof = tree.consistency_proof(old, new)
    assert not verify_consistency(other, new, tree.root(other), tree.root(new), proof)
    assert not verify_consistency(other, new, tree.root(old), tree.root(new), proof)


# ---------------------------------------------------------------- hash chain

CHAIN = [b"first", b"second", b"third", b"fourth"]


def test_chain_starts_from_32_zero_bytes_and_matches_known_heads() -> None:
    assert bytes(32) == GENESIS
    heads = chain_heads(CHAIN[:2])
    assert heads == [
        h("0299abe2e886d563829b53211cecc14df75bde8d9a71758cffa2bd06c48dcf63"),
        h("49c91d2721f2bed497f812c371dcd9ebfcb14e2ceda4d2536c02d4ac4ac5cac7"),
    ]
    assert chain_hash(GENESIS, b"first") == heads[0]


def test_intact_chain_verifies_against_its_receipts_and_its_final_head() -> None:
    heads = chain_heads(CHAIN)
    assert verify_chain(CHAIN, heads) is None
    assert verify_chain(CHAIN, heads[-1]) is None
    assert verify_chain([], GENESIS) is None
    assert verify_chain([], []) is None


def test_chain_pinpoints_a_deleted_entry() -> None:
    heads = chain_heads(CHAIN)
    assert verify_chain([CHAIN[0], CHAIN[2], CHAIN[3]], heads) == 1
    assert verify_chain(CHAIN[:3], heads) == 3  # the newest entry went missing


def test_chain_pinpoints_an_edited_entry() -> None:
    heads = chain_heads(CHAIN)
    assert verify_chain([CHAIN[0], CHAIN[1], b"thirds", CHAIN[3]], heads) == 2


def test_chain_pinpoints_reordered_entries() -> None:
    heads = chain_heads(CHAIN)
    assert verify_chain([CHAIN[1], CHAIN[0], CHAIN[2], CHAIN[3]], heads) == 0


def test_chain_reports_an_entry_that_no_receipt_vouches_for() -> None:
    heads = chain_heads(CHAIN)
    assert verify_chain([*CHAIN, b"fifth"], heads) == 4


def test_a_final_head_alone_detects_but_cannot_locate_a_break() -> None:
    head = chain_heads(CHAIN)[-1]
    assert verify_chain(CHAIN[:3], head) == 0
    assert verify_chain([CHAIN[0], CHAIN[2], CHAIN[3]], head) == 0
    assert verify_chain([b"other"], GENESIS) == 0


chains = st.lists(st.binary(max_size=16), min_size=1, max_size=40, unique=True)


@PROPERTY_SETTINGS
@given(chains, st.data())
def test_chain_returns_the_index_of_a_deleted_entry(entries: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(min_value=0, max_value=len(entries) - 1))
    assert verify_chain(entries[:i] + entries[i + 1 :], chain_heads(entries)) == i


@PROPERTY_SETTINGS
@given(chains, st.data())
def test_chain_returns_the_index_of_an_edited_entry(entries: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(min_value=0, max_value=len(entries) - 1))
    replacement = data.draw(st.binary(max_size=16).filter(lambda b: b != entries[i]))
    edited = [*entries[:i], replacement, *entries[i + 1 :]]
    assert verify_chain(edited, chain_heads(entries)) == i


@PROPERTY_SETTINGS
@given(chains.filter(lambda e: len(e) >= 2), st.data())
def test_chain_returns_the_first_index_of_a_reordering(entries: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(min_value=0, max_value=len(entries) - 2))
    j = data.draw(st.integers(min_value=i + 1, max_value=len(entries) - 1))
    swapped = list(entries)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    assert verify_chain(swapped, chain_heads(entries)) == i
