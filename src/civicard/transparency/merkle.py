"""RFC 9162 Merkle tree hashing, proofs, proof verification and the per-subject hash chain."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from hmac import compare_digest
from typing import Protocol

__all__ = [
    "EMPTY_ROOT",
    "GENESIS",
    "HASH_SIZE",
    "MerkleTree",
    "NodeStore",
    "chain_hash",
    "chain_heads",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "subtree_root",
    "verify_chain",
    "verify_consistency",
    "verify_inclusion",
]

_sha256 = hashlib.sha256

HASH_SIZE = 32
EMPTY_ROOT = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
GENESIS = bytes(HASH_SIZE)

_LEAF = b"\x00"
_NODE = b"\x01"
_CHAIN = b"\x02"


# --------------------------------------------------------------------------- hashing


def leaf_hash(entry: bytes) -> bytes:
    """MTH of a single entry: SHA-256(0x00 || entry)."""
    return _sha256(_LEAF + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node: SHA-256(0x01 || left || right)."""
    return _sha256(_NODE + left + right).digest()


# --------------------------------------------------------------------------- node storage


class NodeStore(Protocol):
    """Read access to the hashes of complete (perfect) subtrees of a log.

    `get(level, index)` returns the hash of the perfect subtree of 2**level leaves
    starting at leaf `index * 2**level`; level 0 holds the leaf hashes. Callers only
    ask for nodes whose leaves all lie within the tree size they were given.
    """

    def get(self, level: int, index: int) -> bytes: ...


def _largest_power_below(width: int) -> int:
    """Largest power of two strictly less than `width` (width >= 2)."""
    return 1 << ((width - 1).bit_length() - 1)


def subtree_root(store: NodeStore, start: int, end: int) -> bytes:
    """MTH of leaves [start, end) where start is aligned as in the RFC tree shape.

    The range is split into descending perfect subtrees read from the store and folded
    right to left: O(log n) reads and hashes.
    """
    if start >= end:
        return EMPTY_ROOT
    nodes: list[bytes] = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append(store.get(level, start >> level))
        start += 1 << level
    result = nodes.pop()
    while nodes:
        result = node_hash(nodes.pop(), result)
    return result


def inclusion_proof(store: NodeStore, index: int, size: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:size]) from stored nodes, leaf-side first; O(log n)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    last = size - 1
    inner = (index ^ last).bit_length()
    path: list[bytes] = []
    for level in range(inner):
        sibling = (index >> level) ^ 1
        first_leaf = sibling << level
        if first_leaf + (1 << level) <= size:
            path.append(store.get(level, sibling))
        else:
            path.append(subtree_root(store, first_leaf, size))
    for level in range(inner, last.bit_length()):
        if (index >> level) & 1:
            path.append(store.get(level, (index >> level) ^ 1))
    return path


def consistency_proof(store: NodeStore, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 PROOF(old_size, D[0:new_size]) from stored nodes; O(log n).

    An empty proof is returned when old_size is 0 or equals new_size.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"cannot prove consistency from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    path: list[bytes] = []
    start, old, new, complete = 0, old_size, new_size, True
    while old != new:
        k = _largest_power_below(new)
        if old <= k:
            path.append(subtree_root(store, start + k, start + new))
            new = k
        else:
            path.append(subtree_root(store, start, start + k))
            start, old, new, complete = start + k, old - k, new - k, False
    if not complete:
        path.append(subtree_root(store, start, start + old))
    path.reverse()
    return path


# --------------------------------------------------------------------------- in-memory tree


class MerkleTree:
    """In-memory append-only RFC 9162 tree.

    `_levels[level][i]` is the hash of the i-th perfect subtree of 2**level leaves; each
    complete node is stored once, as soon as its last leaf arrives (amortised 2 hashes
    per append). The tree is its own `NodeStore`, so the proof code is shared with
    stored logs.
    """

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def get(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def leaf(self, index: int) -> bytes:
        """The leaf hash at `index`."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf index {index} is not in a tree of size {self.size}")
        return self._levels[0][index]

    def append(self, entry: bytes) -> int:
        """Append an entry; returns its leaf index."""
        return self.append_leaf_hash(_sha256(_LEAF + entry).digest())

    def append_leaf_hash(self, h: bytes) -> int:
        """Append an already computed leaf hash; returns its leaf index."""
        if len(h) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(h)}")
        levels = self._levels
        row = levels[0]
        index = len(row)
        row.append(h)
        position, level = index, 0
        while position & 1:
            h = _sha256(_NODE + row[position - 1] + h).digest()
            level += 1
            if level == len(levels):
                levels.append([])
            row = levels[level]
            row.append(h)
            position >>= 1
        return index

    def root(self, size: int | None = None) -> bytes:
        """Root of the first `size` leaves (default: all); the empty tree hashes b''."""
        size = self._checked_size(size)
        return subtree_root(self, 0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path for leaf `index` in the tree of the first `size` leaves."""
        return inclusion_proof(self, index, self._checked_size(size))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Proof that the tree of `old_size` leaves is a prefix of that of `new_size`."""
        return consistency_proof(self, old_size, self._checked_size(new_size))

    def _checked_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} is outside a tree of size {self.size}")
        return size


# --------------------------------------------------------------------------- verification


def _is_hash(value: bytes) -> bool:
    return len(value) == HASH_SIZE


def _all_hashes(proof: Sequence[bytes]) -> bool:
    return all(len(p) == HASH_SIZE for p in proof)


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2: the root an inclusion proof leads to, or None if it is malformed."""
    if not 0 <= index < size or not _is_hash(leaf_hash) or not _all_hashes(proof):
        return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True iff `proof` puts `leaf_hash` at `index` in the tree of `size` leaves with `root`."""
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    return computed is not None and compare_digest(computed, root)


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: True iff the tree (old_size, old_root) is a prefix of (new_size, new_root).

    A shrinking tree, mismatched roots for equal sizes, a non-empty proof where none is
    needed, wrong lengths and malformed hashes all give False.
    """
    if not 0 <= old_size <= new_size or not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    if old_size in (0, new_size):
        expected = new_root if old_size == new_size else EMPTY_ROOT
        return not proof and compare_digest(old_root, expected)
    if not proof or not _all_hashes(proof):
        return False
    return _check_consistency_path(old_size, new_size, old_root, new_root, proof)


def _check_consistency_path(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and compare_digest(fr, old_root) and compare_digest(sr, new_root)


# --------------------------------------------------------------------------- hash chain


def chain_hash(previous: bytes, entry: bytes) -> bytes:
    """Next head of a per-subject chain: SHA-256(0x02 || previous || entry)."""
    return _sha256(_CHAIN + previous + entry).digest()


def chain_heads(entries: Sequence[bytes]) -> list[bytes]:
    """The head after each entry, starting from GENESIS (a receipt per entry)."""
    heads: list[bytes] = []
    head = GENESIS
    for entry in entries:
        head = chain_hash(head, entry)
        heads.append(head)
    return heads


def verify_chain(entries: Sequence[bytes], expected_head: bytes | Sequence[bytes]) -> int | None:
    """Index of the first entry the expected head(s) do not vouch for, or None if all match.

    With per-entry heads (the receipts from `chain_heads`) the answer pinpoints the first
    deleted, edited or reordered entry; a missing tail gives len(entries) and extra
    entries give len(expected). A single final head only says whether the whole chain
    matches, so a mismatch there gives 0 (nothing is vouched for).
    """
    if isinstance(expected_head, bytes):
        heads = chain_heads(entries)
        final = heads[-1] if heads else GENESIS
        return None if compare_digest(final, expected_head) else 0
    head = GENESIS
    for i, (entry, expected) in enumerate(zip(entries, expected_head, strict=False)):
        head = chain_hash(head, entry)
        if not compare_digest(head, expected):
            return i
    if len(entries) != len(expected_head):
        return min(len(entries), len(expected_head))
    return None
