"""Benchmark the in-memory RFC 9162 Merkle tree against raw hashlib.sha256 on the same entries.

Run: python bench/merkle_bench.py [--entries N] [--quick] [--proofs K] [--seed S] [--json PATH]
Prints a markdown table: appends/s, proof generation/s, proof verification/s, and raw
SHA-256 hashes/s of the same entries with the ratio appends : raw hashes; --json writes the same
figures for bench/run_all.py.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from figures import Figures

from civicard.transparency.merkle import (
    MerkleTree,
    verify_consistency,
    verify_inclusion,
)

QUICK_ENTRIES = 50_000
DEFAULT_ENTRIES = 1_000_000
QUICK_PROOFS = 10_000
DEFAULT_PROOFS = 100_000


def make_entries(count: int) -> list[bytes]:
    """Access-log-sized records (about 90 bytes), distinct and deterministic."""
    return [
        b'{"seq":%d,"actor":"clerk-%04d","subject":"R-%08d","purpose":"benefit-review"}' % (i, i % 997, i * 7919)
        for i in range(count)
    ]


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def raw_hashes(entries: list[bytes]) -> None:
    sha256 = hashlib.sha256
    for entry in entries:
        sha256(entry).digest()


def build_tree(entries: list[bytes]) -> MerkleTree:
    tree = MerkleTree()
    append = tree.append
    for entry in entries:
        append(entry)
    return tree


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES, help="leaves to append")
    parser.add_argument("--quick", action="store_true", help=f"use {QUICK_ENTRIES:,} entries")
    parser.add_argument("--proofs", type=int, default=None, help="proofs to generate and verify")
    parser.add_argument("--seed", type=int, default=9162)
    parser.add_argument("--json", type=Path, help="also write the figures here (for bench/run_all.py)")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries = QUICK_ENTRIES
    if args.proofs is None:
        args.proofs = QUICK_PROOFS if args.quick else DEFAULT_PROOFS
    if args.entries < 2 or args.proofs < 1:
        parser.error("need --entries >= 2 and --proofs >= 1")
    return args


def row(name: str, count: int, seconds: float) -> str:
    return f"| {name} | {count:,} | {seconds:.3f} | {count / seconds:,.0f} |"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    entries = make_entries(args.entries)
    rng = random.Random(args.seed)
    size = len(entries)

    raw_seconds = timed(lambda: raw_hashes(entries))
    built: list[MerkleTree] = []
    append_seconds = timed(lambda: built.append(build_tree(entries)))
    tree = built[0]
    root = tree.root()

    indexes = [rng.randrange(size) for _ in range(args.proofs)]
    proofs: list[list[bytes]] = []
    gen_seconds = timed(lambda: proofs.extend(tree.inclusion_proof(i, size) for i in indexes))
    leaves = [tree.leaf(i) for i in indexes]
    results: list[bool] = []
    verify_seconds = timed(
        lambda: results.extend(verify_inclusion(leaves[k], i, size, proofs[k], root) for k, i in enumerate(indexes))
    )
    if not all(results):
        raise SystemExit("an inclusion proof failed to verify")

    olds = [rng.randrange(1, size) for _ in range(args.proofs)]
    cons: list[list[bytes]] = []
    cons_seconds = timed(lambda: cons.extend(tree.consistency_proof(o, size) for o in olds))
    old_roots = [tree.root(o) for o in olds]
    checked: list[bool] = []
    cons_verify_seconds = timed(
        lambda: checked.extend(verify_consistency(o, size, old_roots[k], root, cons[k]) for k, o in enumerate(olds))
    )
    if not all(checked):
        raise SystemExit("a consistency proof failed to verify")

    appends_per_s = size / append_seconds
    raw_per_s = size / raw_seconds
    print(f"Merkle benchmark: {size:,} entries (mean {sum(map(len, entries)) / size:.0f} bytes), ", end="")
    print(f"{args.proofs:,} proofs, Python {platform.python_version()} on {platform.machine()}")
    print()
    print("| operation | count | seconds | per second |")
    print("| --- | ---: | ---: | ---: |")
    print(row("raw hashlib.sha256(entry) (reference)", size, raw_seconds))
    print(row("MerkleTree.append (in memory)", size, append_seconds))
    print(row(f"inclusion proof generation (size {size:,})", args.proofs, gen_seconds))
    print(row("inclusion proof verification", args.proofs, verify_seconds))
    print(row("consistency proof generation", args.proofs, cons_seconds))
    print(row("consistency proof verification", args.proofs, cons_verify_seconds))
    print()
    print(f"appends/s : raw hashes/s = {appends_per_s / raw_per_s:.2f} (each append costs ~2 SHA-256 calls)")
    print(f"root {root.hex()}")
    figures = Figures("merkle", facts={"entries": size, "proofs": args.proofs})
    raw = "raw SHA-256 of the entries"
    figures.add("append", appends_per_s, "/s", raw, raw_per_s)
    figures.add(f"inclusion proof generation (size {size:,})", args.proofs / gen_seconds, "/s")
    figures.add("inclusion proof verification", args.proofs / verify_seconds, "/s")
    figures.add("consistency proof generation", args.proofs / cons_seconds, "/s")
    figures.add("consistency proof verification", args.proofs / cons_verify_seconds, "/s")
    figures.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
