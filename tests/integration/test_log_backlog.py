"""Folding a backlog into the stored log (`civicard audit integrate`): what large batches store.

The expected leaves, chains and root are recomputed here from the access_log rows alone, in leaf
order, with the transparency functions, independently of the integrator's caches and lookups.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, String, cast, func, insert, select, update

from civicard.adapters.db import tables as t
from civicard.adapters.db.log_store import Integrator, latest_checkpoint, verify_stored_log
from civicard.shared.clock import Clock
from civicard.transparency.checkpoints import NoteSigner
from civicard.transparency.log_entries import LogEntry, categories_from_column, entry_leaf_hash, next_chain_head
from civicard.transparency.merkle import MerkleTree
from tests.conftest import FIXED_NOW

_A, _L, _N, _C = t.access_log, t.log_leaves, t.log_nodes, t.log_checkpoints
SIGNER = NoteSigner.from_seed("civicard.example/log", hashlib.sha256(b"backlog test").digest())

HISTORY = [*range(1, 21), *range(31, 50)]  # folded first; 21..30 are left as a gap; 49 is about p1
STRAGGLERS = list(range(21, 31))  # committed late, below every folded seq
BACKLOG = STRAGGLERS + list(range(50, 151))


def _row(seq: int) -> dict[str, Any]:
    """Old persons (p0..p5) appear before and in the backlog, new ones (p6..p11) only in it; some
    entries are about a household only, some about nobody, and one has no salt yet."""
    person = f"p{seq % 6 if seq < 100 else 6 + seq % 6}" if seq % 5 else None
    household = f"h{seq % 2}" if person is None and seq % 10 == 5 else None
    salted = person is not None or household is not None
    return {
        "seq": seq,
        "occurred_at": FIXED_NOW + timedelta(seconds=seq),
        "actor": f"terminal-{seq % 3}",
        "role": "vendor",
        "purpose": "redemption",
        "action": "read",
        "subject_person_id": person,
        "subject_household_id": household,
        "categories": "identity food" if seq % 2 else "",
        "detail": f"entry {seq}",
        "subject_salt": f"{seq:032x}" if salted and seq != 77 else "",
    }


def _append(engine: Engine, seqs: list[int]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(_A), [_row(seq) for seq in seqs])


def _recomputed(engine: Engine) -> tuple[list[tuple[bytes | None, bytes | None]], MerkleTree]:
    """(chain_prev, chain_head) per leaf and the tree, from the rows in leaf order."""
    with engine.connect() as conn:
        rows = conn.execute(select(_A).join(_L, _L.c.entry_seq == _A.c.seq).order_by(_L.c.leaf_index)).all()
    heads: dict[str, bytes] = {}
    chains: list[tuple[bytes | None, bytes | None]] = []
    tree = MerkleTree()
    for row in rows:
        entry = LogEntry(
            row.seq,
            row.occurred_at,
            row.actor,
            row.role,
            row.purpose,
            row.action,
            categories_from_column(row.categories),
            row.detail,
            row.subject_person_id,
            row.subject_household_id,
            row.subject_salt,
        )
        subject = entry.subject_id
        prev = None if subject is None else heads.get(subject)
        digest = entry_leaf_hash(entry, prev)
        head = None if subject is None else next_chain_head(prev, digest)
        if subject is not None and head is not None:
            heads[subject] = head
        chains.append((prev, head))
        tree.append_leaf_hash(digest)
    return chains, tree


def _stored(engine: Engine) -> tuple[list[tuple[bytes | None, bytes | None]], list[bytes], int]:
    with engine.connect() as conn:
        leaves = conn.execute(select(_L.c.chain_prev, _L.c.chain_head).order_by(_L.c.leaf_index)).all()
        hashes = conn.execute(select(_N.c.hash).where(_N.c.level == 0).order_by(_N.c.node_index)).scalars().all()
        checkpoints = int(conn.execute(select(func.count()).select_from(_C)).scalar_one())
    chains = [(None if p is None else bytes(p), None if h is None else bytes(h)) for p, h in leaves]
    return chains, [bytes(h) for h in hashes], checkpoints


def test_a_backlog_folded_in_large_batches_continues_every_subjects_chain(engine: Engine) -> None:
    _append(engine, HISTORY)
    assert Integrator(engine, SIGNER, Clock.fixed(FIXED_NOW), batch_size=8).run_once() == len(HISTORY)
    _append(engine, BACKLOG)

    # A new integrator (empty head cache), as `civicard audit integrate` runs one.
    backlog = Integrator(engine, SIGNER, Clock.fixed(FIXED_NOW), batch_size=4, backlog_batch_size=16)
    assert backlog.run_once(full=True) == len(BACKLOG)

    chains, tree = _recomputed(engine)
    stored_chains, leaf_hashes, checkpoints = _stored(engine)
    assert tree.size == len(HISTORY) + len(BACKLOG)
    assert stored_chains == chains
    assert leaf_hashes == [tree.leaf(i) for i in range(tree.size)]
    assert sum(prev is not None for prev, _ in chains[len(HISTORY) :]) > 50  # most backlog entries continue a chain
    assert checkpoints == -(-len(HISTORY) // 8) + -(-len(BACKLOG) // 16)  # the backlog went 16 a transaction, not 4
    with engine.connect() as conn:
        latest = latest_checkpoint(conn)
        assert latest is not None and (latest.tree_size, latest.root_hash) == (tree.size, tree.root())
        report = verify_stored_log(conn, SIGNER.verifier)
        # The leaves' time is stored exactly as SQLAlchemy stores the checkpoint's (same clock, same type).
        as_text = {
            str(text)
            for (text,) in conn.execute(
                select(cast(_L.c.integrated_at, String)).union(select(cast(_C.c.signed_at, String)))
            )
        }
    assert (report.ok, report.entries, report.pending) == (True, tree.size, 0), report.message
    assert len(as_text) == 1


def test_one_integrator_folding_history_then_a_backlog_stores_the_same_chains(engine: Engine) -> None:
    """The same integrator keeps its head cache across runs: the backlog continues from it."""
    integrator = Integrator(engine, SIGNER, Clock.fixed(FIXED_NOW), batch_size=8, backlog_batch_size=32)
    _append(engine, HISTORY)
    assert integrator.run_once(full=True) == len(HISTORY)
    _append(engine, BACKLOG)
    assert integrator.run_once(full=True) == len(BACKLOG)

    chains, tree = _recomputed(engine)
    stored_chains, leaf_hashes, checkpoints = _stored(engine)
    assert stored_chains == chains
    assert leaf_hashes == [tree.leaf(i) for i in range(tree.size)]
    assert checkpoints == -(-len(HISTORY) // 32) + -(-len(BACKLOG) // 32)
    with engine.connect() as conn:
        report = verify_stored_log(conn, SIGNER.verifier)
    assert report.ok, report.message


@pytest.mark.parametrize("cache", [2, 10_000])
def test_a_head_cache_that_overflows_looks_heads_up_and_stores_the_same_chains(
    engine: Engine, cache: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for 2 subjects the cache starts afresh every batch, and the heads of subjects
    dropped from it are read back from the log: the chains are those of a cache that never fills."""
    from civicard.adapters.db import log_store

    monkeypatch.setattr(log_store, "HEAD_CACHE_SUBJECTS", cache)
    monkeypatch.setattr(log_store, "BACKLOG_HEAD_CACHE_SUBJECTS", cache)
    integrator = Integrator(engine, SIGNER, Clock.fixed(FIXED_NOW), batch_size=8, backlog_batch_size=32)
    _append(engine, HISTORY)
    assert integrator.run_once(full=True) == len(HISTORY)
    _append(engine, BACKLOG)
    assert integrator.run_once() + integrator.run_once(full=True) == len(BACKLOG)
    assert len(integrator._heads) <= cache + 32  # a full fold's cache is not kept beyond the poll limit
    chains, _tree = _recomputed(engine)
    assert _stored(engine)[0] == chains
    with engine.connect() as conn:
        report = verify_stored_log(conn, SIGNER.verifier)
    assert report.ok, report.message


def test_a_batch_that_fails_while_streaming_its_leaves_stores_nothing(engine: Engine) -> None:
    """A bad entry late in a batch (a salt that is not lowercase hex) stops the fold with the
    entry's own error, after the batch's earlier leaves were sent (600 leaves: beyond one 32 kB
    COPY buffer on PostgreSQL); none of them is kept."""
    _append(engine, HISTORY)
    with engine.begin() as conn:
        conn.execute(insert(_A), [_row(seq) for seq in range(50, 649)] + [_row(649) | {"subject_salt": "AB" * 16}])
    integrator = Integrator(engine, SIGNER, Clock.fixed(FIXED_NOW), backlog_batch_size=1_000)
    with pytest.raises(ValueError, match="lowercase hex"):
        integrator.run_once(full=True)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(_L)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(_N)).scalar_one() == 0
        assert latest_checkpoint(conn) is None
    with engine.begin() as conn:  # once the entry is fixed, the same integrator folds everything
        conn.execute(update(_A).where(_A.c.seq == 649).values(subject_salt="ab" * 16))
    assert integrator.run_once(full=True) == len(HISTORY) + 600
    with engine.connect() as conn:
        report = verify_stored_log(conn, SIGNER.verifier)
    assert report.ok, report.message
