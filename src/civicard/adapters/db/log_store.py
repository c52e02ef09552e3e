"""The stored verifiable log: the integrator, stored proofs, the resident's view and full verification.

Request transactions only append access_log rows (cheap, no global lock). One `Integrator` at a
time (a PostgreSQL advisory lock / SQLite's write lock) folds rows that have no leaf yet into the
tree: it assigns the next leaf indexes in its own order, chains each subject's entries, stores every
newly completed subtree hash (level 0 = leaf hashes) and signs a checkpoint — all in one
transaction per batch, so a checkpoint never names leaves that are not stored. Proofs read the
O(log n) stored nodes they need in one query; only `verify_stored_log` recomputes everything.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any, Protocol, cast

from sqlalchemy import (
    Connection,
    Engine,
    LargeBinary,
    Row,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError

from civicard.adapters.db import tables as t
from civicard.adapters.db.log_partitions import LogPartitionWatch
from civicard.shared.clock import Clock, as_utc
from civicard.shared.errors import Conflict, InvalidInput, NotFound
from civicard.transparency.checkpoints import (
    DEFAULT_ORIGIN,
    Checkpoint,
    CheckpointError,
    NoteSigner,
    VerifierKey,
    open_checkpoint,
    sign_checkpoint,
)
from civicard.transparency.log_entries import (
    SALT_BYTES,
    LogEntry,
    categories_from_column,
    entry_leaf_hash,
    erased_leaf,
    next_chain_head,
)
from civicard.transparency.merkle import EMPTY_ROOT, NodeStore, consistency_proof, inclusion_proof, leaf_hash, node_hash
from civicard.transparency.proofs import ConsistencyProof, ProofBundle, ResidentEntry, ResidentLog, chain_checks

log = logging.getLogger("civicard.log")

_A, _L, _N, _C = t.access_log, t.log_leaves, t.log_nodes, t.log_checkpoints
_LOCK_CLASS = 0x63697669  # "civi": pg_advisory_xact_lock(class, hashtext(schema)) — one integrator per log
_IN_CHUNK = 400
_SCAN_CHUNK = 10_000
_HEADS_CHUNK = 2_000
_SQLITE_BUSY_MS = 30000  # as set by adapters/db/engine.py


class _HasConnection(Protocol):
    @property
    def connection(self) -> Connection: ...


ConnectionSource = Connection | _HasConnection


def _conn(source: ConnectionSource) -> Connection:
    return source if isinstance(source, Connection) else source.connection


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _corrupted(message: str) -> Conflict:
    return Conflict("log_corrupted", message)


# --------------------------------------------------------------------------- stored nodes


class SqlNodeStore:
    """`merkle.NodeStore` over log_nodes, with a cache filled by one query per `prefetch`."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._nodes: dict[tuple[int, int], bytes] = {}

    def get(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._nodes:
            self.prefetch([key])
        found = self._nodes.get(key)
        if found is None:
            raise _corrupted(f"The stored node ({level}, {index}) is missing.")
        return found

    def prefetch(self, keys: Iterable[tuple[int, int]]) -> None:
        wanted = sorted({k for k in keys if k not in self._nodes})
        for chunk in _chunks(wanted, _IN_CHUNK):
            by_level: dict[int, list[int]] = {}
            for level, index in chunk:
                by_level.setdefault(level, []).append(index)
            # One primary-key probe per node; SQLite would scan the table for a row-value IN list.
            where = or_(*(and_(_N.c.level == lv, _N.c.node_index.in_(ix)) for lv, ix in by_level.items()))
            for level, index, digest in self.conn.execute(select(_N.c.level, _N.c.node_index, _N.c.hash).where(where)):
                self._nodes[(level, index)] = bytes(digest)


class _Recorder:
    """A NodeStore that records which nodes a proof reads (the reads depend only on the sizes)."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def get(self, level: int, index: int) -> bytes:
        self.keys.append((level, index))
        return EMPTY_ROOT


def _with_nodes(conn: Connection, plans: Sequence[Callable[[NodeStore], list[bytes]]]) -> list[list[bytes]]:
    """Run proof computations against stored nodes after fetching all their nodes in one go."""
    recorder = _Recorder()
    for plan in plans:
        plan(recorder)
    store = SqlNodeStore(conn)
    store.prefetch(recorder.keys)
    return [plan(store) for plan in plans]


def stored_inclusion_proof(source: ConnectionSource, leaf_index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 inclusion proof from stored nodes: O(log n) nodes, one query."""
    return _with_nodes(_conn(source), [lambda s: inclusion_proof(s, leaf_index, tree_size)])[0]


def stored_consistency_proof(source: ConnectionSource, old_size: int, new_size: int) -> list[bytes]:
    return _with_nodes(_conn(source), [lambda s: consistency_proof(s, old_size, new_size)])[0]


def _frontier_keys(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees that cover leaves [0, size), left to right (largest first)."""
    keys, start = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            keys.append((level, start >> level))
            start += 1 << level
    return keys


def stored_root(source: ConnectionSource, size: int) -> bytes:
    store = SqlNodeStore(_conn(source))
    return _Frontier.load(store, size).root()


class _Frontier:
    """The right edge of the tree (one hash per set bit of the size): enough to append and to root."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []

    @classmethod
    def load(cls, store: SqlNodeStore, size: int) -> _Frontier:
        keys = _frontier_keys(size)
        store.prefetch(keys)
        frontier = cls()
        frontier.size = size
        frontier._stack = [(level, store.get(level, index)) for level, index in keys]
        return frontier

    def append(self, digest: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; returns every node it completes as (level, index, hash), leaf first."""
        index = self.size
        done = [(0, index, digest)]
        level = 0
        while self._stack and self._stack[-1][0] == level:
            digest = node_hash(self._stack.pop()[1], digest)
            level += 1
            done.append((level, index >> level, digest))
        self._stack.append((level, digest))
        self.size += 1
        return done

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        result = self._stack[-1][1]
        for _, digest in reversed(self._stack[:-1]):
            result = node_hash(digest, result)
        return result


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    signed_at: datetime
    key_id: str
    note: str


def _stored(row: Row[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(row.tree_size, bytes(row.root_hash), as_utc(row.signed_at), row.key_id, row.note)


def latest_checkpoint(source: ConnectionSource) -> StoredCheckpoint | None:
    """The largest signed tree head (public: the note is what a resident or monitor keeps)."""
    row = _conn(source).execute(select(_C).order_by(_C.c.tree_size.desc()).limit(1)).first()
    return _stored(row) if row else None


def record_checkpoint(conn: Connection, note: str, key: VerifierKey, origin: str) -> Checkpoint:
    """Store a signed checkpoint after checking it: signature, root against the stored nodes, and
    consistency with the latest stored checkpoint. A smaller tree is refused (`checkpoint_shrinks`)."""
    checkpoint = open_checkpoint(note, key, origin)
    latest = latest_checkpoint(conn)
    if latest is not None and checkpoint.tree_size < latest.tree_size:
        raise Conflict(
            "checkpoint_shrinks", f"A checkpoint of size {checkpoint.tree_size} is smaller than {latest.tree_size}."
        )
    store = SqlNodeStore(conn)
    if _Frontier.load(store, checkpoint.tree_size).root() != checkpoint.root_hash:
        raise Conflict("root_mismatch", "The checkpoint's root is not the root of the stored tree.")
    if latest is not None:
        if _Frontier.load(store, latest.tree_size).root() != latest.root_hash:
            raise _corrupted(f"The stored tree no longer matches the checkpoint of size {latest.tree_size}.")
        if checkpoint.tree_size == latest.tree_size:
            return checkpoint  # nothing new to sign
    conn.execute(
        insert(_C).values(
            tree_size=checkpoint.tree_size,
            root_hash=checkpoint.root_hash,
            signed_at=checkpoint.signed_at,
            key_id=key.key_id.hex(),
            note=note,
        )
    )
    return checkpoint


def consistency_between(source: ConnectionSource, old_size: int, new_size: int | None = None) -> ConsistencyProof:
    """Consistency proof from `old_size` to `new_size` (default: the latest checkpoint).

    Codes: invalid_tree_size (negative or beyond the latest checkpoint), checkpoint_shrinks (old > new).
    """
    conn = _conn(source)
    latest = latest_checkpoint(conn)
    top = latest.tree_size if latest else 0
    new = top if new_size is None else new_size
    if old_size < 0 or new < 0 or new > top:
        raise InvalidInput("invalid_tree_size", f"Tree sizes run from 0 to the latest checkpoint's {top}.")
    if old_size > new:
        raise InvalidInput("checkpoint_shrinks", f"A tree of {old_size} entries cannot become one of {new}.")
    return ConsistencyProof(old_size, new, tuple(stored_consistency_proof(conn, old_size, new)))


# --------------------------------------------------------------------------- entries


# Where LogEntry's fields sit among access_log's columns: rows are read by position, which is
# cheaper than reading eleven attributes by name (it shows when folding a backlog).
_ENTRY_FIELDS = (
    "seq",
    "occurred_at",
    "actor",
    "role",
    "purpose",
    "action",
    "categories",
    "detail",
    "subject_person_id",
    "subject_household_id",
    "subject_salt",
)
_ENTRY_POSITIONS = tuple(_A.c.keys().index(name) for name in _ENTRY_FIELDS)


@cache
def _entry_fields(start: int) -> itemgetter[tuple[Any, ...]]:
    return itemgetter(*(start + i for i in _ENTRY_POSITIONS))


def _entry(row: Row[Any], start: int = 0) -> LogEntry:
    """The entry in a row holding all of access_log's columns (`select(_A)`) from position `start`."""
    seq, at, actor, role, purpose, action, categories, detail, person, household, salt = _entry_fields(start)(row)
    return LogEntry(
        seq, at, actor, role, purpose, action, categories_from_column(categories), detail, person, household, salt
    )


def _optional_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _erased(row: Row[Any]) -> bool:
    return row.erasure_id is not None and row.erased_subject is not None


def _erased_leaf_hash(entry: LogEntry, row: Row[Any]) -> bytes:
    """The leaf of an entry whose subject was erased (retention_store): recomputed from the row with
    the subject and chain commitments stored at erasure instead of the shredded salt and id."""
    return leaf_hash(erased_leaf(entry, row.erased_subject, row.erased_chain))


def _leaf_rows(conn: Connection, where: Any) -> list[Row[Any]]:
    query = (
        select(_A, _L.c.leaf_index, _L.c.chain_prev, _L.c.chain_head)
        .select_from(_A.outerjoin(_L, _L.c.entry_seq == _A.c.seq))
        .where(where)
    )
    return list(conn.execute(query))


def prove_entry(source: ConnectionSource, leaf_index: int, key: VerifierKey) -> ProofBundle:
    """The offline proof bundle for one leaf against the latest checkpoint.

    The leaf hash is the stored one, so an entry changed after integration shows as leaf_mismatch.
    Codes: unknown_entry, entry_pending (not yet in a signed checkpoint).
    """
    conn = _conn(source)
    rows = _leaf_rows(conn, _L.c.leaf_index == leaf_index)
    if not rows:
        raise NotFound("unknown_entry", f"There is no entry at leaf {leaf_index}.")
    latest = latest_checkpoint(conn)
    if latest is None or leaf_index >= latest.tree_size:
        raise Conflict("entry_pending", f"Leaf {leaf_index} is not yet in a signed checkpoint.")
    checkpoint = open_checkpoint(latest.note, key, origin=None)
    leaf_hash = SqlNodeStore(conn).get(0, leaf_index)
    row = rows[0]
    if _erased(row):
        raise Conflict("entry_erased", f"Leaf {leaf_index}'s subject was erased; the entry can no longer be proved.")
    return ProofBundle(
        origin=checkpoint.origin,
        leaf_index=leaf_index,
        tree_size=latest.tree_size,
        entry=_entry(row),
        chain_prev=_optional_bytes(row.chain_prev),
        leaf_hash=leaf_hash,
        inclusion_proof=tuple(stored_inclusion_proof(conn, leaf_index, latest.tree_size)),
        checkpoint=latest.note,
        key=key,
    )


def resident_log(source: ConnectionSource, person_id: str, since_tree_size: int | None = None) -> ResidentLog:
    """Every entry about `person_id`, with proofs against the latest checkpoint.

    Integrated entries come in leaf order with their inclusion proof and chain; entries not yet
    in a signed checkpoint are listed as pending (no proof). With `since_tree_size` (the size of
    the checkpoint the resident saw last) a consistency proof to the latest size is included.
    The caller authenticates the resident; this only reads the log.
    """
    conn = _conn(source)
    latest = latest_checkpoint(conn)
    size = latest.tree_size if latest else 0
    consistency = consistency_between(conn, since_tree_size, size) if since_tree_size is not None else None
    rows = _leaf_rows(conn, _A.c.subject_person_id == person_id)
    done = sorted((r for r in rows if r.leaf_index is not None and r.leaf_index < size), key=lambda r: r.leaf_index)
    waiting = sorted((r for r in rows if r.leaf_index is None or r.leaf_index >= size), key=lambda r: r.seq)
    entries = [_entry(r) for r in done]
    chained = chain_checks(
        [(e, _optional_bytes(r.chain_prev), _optional_bytes(r.chain_head)) for e, r in zip(entries, done, strict=True)]
    )
    proofs = _with_nodes(conn, [_inclusion_plan(r.leaf_index, size) for r in done])
    listed = [
        ResidentEntry(e, r.leaf_index, _optional_bytes(r.chain_prev), _optional_bytes(r.chain_head), tuple(p), ok)
        for e, r, p, ok in zip(entries, done, proofs, chained, strict=True)
    ]
    listed += [ResidentEntry(_entry(r), r.leaf_index) for r in waiting]
    return ResidentLog(person_id, latest.note if latest else None, size, tuple(listed), consistency)


def _inclusion_plan(index: int, size: int) -> Callable[[NodeStore], list[bytes]]:
    return lambda store: inclusion_proof(store, index, size)


# --------------------------------------------------------------------------- the integrator


HEAD_CACHE_SUBJECTS = 500_000
"""Chain heads a poll keeps in memory (about 250 bytes a subject) before starting afresh."""
BACKLOG_HEAD_CACHE_SUBJECTS = 8_000_000
"""The same for a full fold (`civicard audit integrate`, after a bulk import, dedup or cycle): a head
dropped from the cache must be looked up again in the log, about 0.3 ms a subject on PostgreSQL
(3,300 entries/s instead of 20,000/s when 4.5 M subjects overflowed 500,000), so a backlog keeps up
to 8 M (about 2 GB) for its run. Beyond that, national size needs the heads stored per subject."""


class Integrator:
    """Folds new access_log rows into the tree and signs a checkpoint per batch.

    Only one integrator may fold at a time: each batch transaction first takes
    pg_advisory_xact_lock (PostgreSQL) or BEGIN IMMEDIATE (SQLite), then reads the tree size,
    so two integrators never assign the same leaf index (the primary key would refuse it anyway).

    Finding new rows: an anti-join (rows with no leaf, in seq order), looked up first without the
    lock, which is only taken when there is work. A request that took a seq and commits late
    simply gets a later leaf index. Each poll looks at seq > (highest integrated seq − `lookback`)
    and at one window of `sweep_window` older seqs, cycling through the whole table, so a
    straggler far behind (a bulk import committing long after it took its seqs) is folded within
    one pass and no poll costs more than two bounded index scans, however long the log.
    (A pending-entries queue table would make this O(new rows); the schema has none.)

    A full run (`civicard audit integrate`, a backlog) folds `backlog_batch_size` rows a
    transaction instead of `batch_size`: fewer, larger checkpoints, the same leaves and nodes.
    """

    def __init__(
        self,
        engine: Engine,
        signer: NoteSigner,
        clock: Clock,
        *,
        origin: str = DEFAULT_ORIGIN,
        batch_size: int = 10_000,
        backlog_batch_size: int = 50_000,
        lookback: int = 1_000,
        sweep_window: int = 5_000,
    ) -> None:
        self.engine, self.signer, self.clock, self.origin = engine, signer, clock, origin
        self.batch_size, self.lookback, self.sweep_window = batch_size, lookback, sweep_window
        self.backlog_batch_size = backlog_batch_size
        self.last_error: BaseException | None = None
        self._run_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sweep_from: int | None = None  # the next older window starts after this seq
        self._folded_since_analyze = 0
        # subject id → chain head (None: no entry yet), valid only while the tree size is _heads_size.
        self._heads: dict[str, bytes | None] = {}
        self._heads_size = -1
        # The highest entry_seq with a leaf when _heads was emptied: a subject missing from _heads
        # can only have leaves at or below it (every later leaf is ours, and its subject is cached).
        self._heads_bound: int | None = None
        self._erasures_seen = -1  # an erasure unlinks a person's entries: their cached head is void
        self._head_cache_limit = HEAD_CACHE_SUBJECTS
        self._partitions = LogPartitionWatch(engine)

    def run_once(self, full: bool = False) -> int:
        """Fold every pending row found by this poll (batch by batch); returns how many.

        `full` scans the whole table instead of the recent rows and one sweep window: for
        `civicard audit integrate` after a bulk import, whose rows may sit far behind the newest.
        Each poll also keeps access_log's partitions ahead of the writers (PostgreSQL), after the
        batches (attaching one waits for a batch's lock on log_leaves) and even when folding fails.
        """
        with self._run_lock:
            self._head_cache_limit = BACKLOG_HEAD_CACHE_SUBJECTS if full else HEAD_CACHE_SUBJECTS
            try:
                total = 0
                if full:
                    # A backlog's rows may be newer than the log's statistics: with them stale, PostgreSQL
                    # scanned a 10 M-entry partition for each chain-head lookup (1.1 s instead of 6 ms).
                    self._analyze()
                ranges = self._oldest_pending() if full else self._pending_ranges()
                limit = self.backlog_batch_size if full else self.batch_size
                for floor, ceiling in ranges:
                    while True:
                        folded, last_seq = self._fold_batch(floor, ceiling, limit)
                        total += folded
                        self._refresh_statistics(folded)
                        if folded < limit:
                            break
                        floor = last_seq  # a backlog: continue after this batch instead of rescanning it
                return total
            finally:
                if len(self._heads) > HEAD_CACHE_SUBJECTS:  # a full fold's cache is not kept between polls
                    self._heads, self._heads_size = {}, -1
                self._partitions.check()

    def _refresh_statistics(self, folded: int) -> None:
        """ANALYZE the log tables on PostgreSQL once they have grown by a tenth (50,000 rows at least).

        Autovacuum normally does this, but after a bulk load (or where it is off) the planner has
        no statistics and turns the integrator's indexed lookups into whole-table scans.
        """
        self._folded_since_analyze += folded
        if self._folded_since_analyze >= max(50_000, self._heads_size // 10):
            self._analyze()

    def _analyze(self) -> None:
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.begin() as conn:
            conn.execute(text(f"ANALYZE {_A.name}, {_L.name}, {_N.name}"))
        self._folded_since_analyze = 0

    def _pending_ranges(self) -> list[tuple[int, int | None]]:
        """(floor, ceiling) seq ranges holding rows with no leaf, found *without* the log lock, so
        an empty poll never holds up request transactions (on SQLite the lock is the one writer)."""
        with self.engine.connect() as conn:
            newest = conn.execute(select(func.max(_L.c.entry_seq))).scalar()
            recent = (newest or 0) - self.lookback
            ranges: list[tuple[int, int | None]] = []
            start = self._sweep_from
            if start is None or start >= recent:  # wrap around to the oldest seq
                self._sweep_from = int(conn.execute(select(func.coalesce(func.min(_A.c.seq), 1))).scalar_one()) - 1
            else:
                ceiling = min(start + self.sweep_window, recent)
                if _pending_seqs(conn, start, ceiling, 1):
                    ranges.append((start, ceiling))
                self._sweep_from = ceiling
            if _pending_seqs(conn, recent, None, 1):
                ranges.append((recent, None))
            return ranges

    def _oldest_pending(self) -> list[tuple[int, int | None]]:
        with self.engine.connect() as conn:
            first = conn.execute(select(func.min(_A.c.seq))).scalar()
            low = [] if first is None else _pending_seqs(conn, first - 1, None, 1)
        return [(low[0] - 1, None)] if low else []

    def start(self, interval: float = 0.2) -> None:
        """Fold and sign in a background thread every `interval` seconds until `stop()`."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("The integrator is already running.")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="civicard-integrator", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
                self.last_error = None
            except Exception as exc:  # keep folding after a transient database error; never silently
                self.last_error = exc
                # The type and code only: a driver message could quote an entry's values.
                log.error("log integration failed: %s %s", type(exc).__name__, getattr(exc, "code", ""))
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def _fold_batch(self, floor: int, ceiling: int | None, limit: int) -> tuple[int, int]:
        with self.engine.connect() as conn:
            _lock_log(conn)
            size = int(conn.execute(select(func.coalesce(func.max(_L.c.leaf_index) + 1, 0))).scalar_one())
            rows = _rows_by_seq(conn, _pending_seqs(conn, floor, ceiling, limit))
            if not rows:
                conn.rollback()
                return 0, 0
            try:
                self._fold(conn, size, rows)
                conn.commit()
            except BaseException:
                self._heads, self._heads_size = {}, -1
                raise
            return len(rows), rows[-1].seq

    def _fold(self, conn: Connection, size: int, rows: list[Row[Any]]) -> None:
        entries = _salted(conn, [_entry(r) for r in rows])
        heads = self._known_heads(conn, size, entries)
        store = SqlNodeStore(conn)
        frontier = _Frontier.load(store, size)
        now = as_utc(self.clock.now())
        nodes: list[tuple[int, int, bytes]] = []
        # The leaves stream to the database while the next ones are hashed (COPY on PostgreSQL,
        # where checking each leaf's foreign key costs about as much as hashing it); the nodes,
        # cheap to insert, follow in one go.
        with _appending(conn, _L, _LEAF_COLUMNS) as add_leaf:
            for entry in entries:
                subject = entry.subject_id
                prev = heads.get(subject) if subject is not None else None
                digest = entry_leaf_hash(entry, prev)
                head = next_chain_head(prev, digest) if subject is not None else None
                if subject is not None:
                    heads[subject] = head
                add_leaf((frontier.size, entry.seq, prev, head, now))
                nodes.extend(frontier.append(digest))
        with _appending(conn, _N, _NODE_COLUMNS) as add_node:
            for node in nodes:
                add_node(node)
        # Signed times never go backwards (a clock step must not look like a shrinking log).
        latest = latest_checkpoint(conn)
        signed_at = now if latest is None else max(now, latest.signed_at)
        checkpoint = Checkpoint(self.origin, frontier.size, frontier.root(), signed_at)
        record_checkpoint(conn, sign_checkpoint(checkpoint, self.signer), self.signer.verifier, self.origin)
        self._heads_size = frontier.size

    def _known_heads(self, conn: Connection, size: int, entries: list[LogEntry]) -> dict[str, bytes | None]:
        erasures = int(conn.execute(select(func.count()).select_from(t.erasures)).scalar_one())
        if size != self._heads_size or len(self._heads) > self._head_cache_limit or erasures != self._erasures_seen:
            self._heads = {}
            self._erasures_seen = erasures
            self._heads_bound = conn.execute(select(func.max(_L.c.entry_seq))).scalar()
        persons = {e.subject_person_id for e in entries if e.subject_person_id is not None} - self._heads.keys()
        households = {
            e.subject_household_id
            for e in entries
            if e.subject_person_id is None and e.subject_household_id is not None
        } - self._heads.keys()
        self._heads.update(dict.fromkeys(persons | households))
        if self._heads_bound is not None:  # else no entry has a leaf yet: every new subject starts a chain
            self._heads.update(_chain_heads(conn, persons, households, self._heads_bound))
        return self._heads


def _unlogged() -> Any:
    """access_log rows with no leaf yet, as an anti-join: for whole-table counts only."""
    return ~exists().where(_L.c.entry_seq == _A.c.seq)


def _pending_seqs(conn: Connection, floor: int, ceiling: int | None, limit: int) -> list[int]:
    """Up to `limit` seqs in (floor, ceiling] with no leaf, lowest first.

    Closed seq windows read through both indexes and a set difference, rather than an anti-join:
    PostgreSQL plans an anti-join (and even an open `seq > x` range while the table has no
    statistics yet) as scans of whole tables — 250 ms a poll at 1 M leaves — while this stays
    proportional to the window on either database.
    """
    top = ceiling if ceiling is not None else conn.execute(select(func.max(_A.c.seq))).scalar()
    found: list[int] = []
    low = floor
    while top is not None and low < top and len(found) < limit:
        high = min(low + _SCAN_CHUNK, top)
        seqs = list(conn.execute(select(_A.c.seq).where(_A.c.seq > low, _A.c.seq <= high).order_by(_A.c.seq)).scalars())
        if seqs:
            logged = set(
                conn.execute(select(_L.c.entry_seq).where(_L.c.entry_seq > low, _L.c.entry_seq <= high)).scalars()
            )
            found.extend(seq for seq in seqs if seq not in logged)
            low = high
        else:  # a gap in the sequence: jump to the next seq that exists
            following = conn.execute(select(func.min(_A.c.seq)).where(_A.c.seq > high)).scalar()
            low = high if following is None else following - 1
    return found[:limit]


def _rows_by_seq(conn: Connection, seqs: list[int]) -> list[Row[Any]]:
    """The access_log rows of ascending `seqs`: one range read if they are dense, else IN lists."""
    if not seqs:
        return []
    if seqs[-1] - seqs[0] < 2 * len(seqs):
        wanted = set(seqs)
        query = select(_A).where(_A.c.seq.between(seqs[0], seqs[-1])).order_by(_A.c.seq)
        return [row for row in conn.execute(query) if row[0] in wanted]  # row[0]: seq, the first column
    rows: list[Row[Any]] = []
    for chunk in _chunks(seqs, _IN_CHUNK):
        rows.extend(conn.execute(select(_A).where(_A.c.seq.in_(chunk)).order_by(_A.c.seq)))
    return rows


def _lock_log(conn: Connection) -> None:
    """Begin the batch transaction holding the log's write lock."""
    if conn.dialect.name == "postgresql":
        lock = text("SELECT pg_advisory_xact_lock(CAST(:k AS integer), hashtext(current_schema()))")
        conn.execute(lock, {"k": _LOCK_CLASS})
    elif conn.dialect.name == "sqlite":
        _begin_immediate(conn)
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"No integrator lock for {conn.dialect.name}.")


def hold_log_lock(conn: Connection) -> None:
    """Inside a transaction that changes integrated access_log rows (an erasure): wait for the
    integrator's lock on PostgreSQL; on SQLite take the write lock now with a write that changes
    nothing, so the rows read next cannot be folded by an integrator before this commits."""
    if conn.dialect.name == "postgresql":
        lock = text("SELECT pg_advisory_xact_lock(CAST(:k AS integer), hashtext(current_schema()))")
        conn.execute(lock, {"k": _LOCK_CLASS})
    else:
        conn.execute(update(_C).where(_C.c.tree_size < 0).values(note=_C.c.note))


def _begin_immediate(conn: Connection, patience: float = 30.0) -> None:
    """SQLite's write lock, taken before reading the tree size.

    SQLite's own busy handler backs off up to 100 ms between tries, so under a stream of short
    request transactions the integrator could wait for seconds; it polls every millisecond
    instead, which keeps commit-to-checkpoint under a second while writers queue normally.
    """
    conn.exec_driver_sql("PRAGMA busy_timeout=0")
    deadline = time.monotonic() + patience
    try:
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if "locked" not in str(exc.orig) or time.monotonic() > deadline:
                    raise
                time.sleep(0.001)
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")


# The columns the integrator appends, with their PostgreSQL types for a binary COPY.
_LEAF_COLUMNS = {
    "leaf_index": "int8",
    "entry_seq": "int8",
    "chain_prev": "bytea",
    "chain_head": "bytea",
    "integrated_at": "timestamptz",
}
_NODE_COLUMNS = {"level": "int2", "node_index": "int8", "hash": "bytea"}


@contextmanager
def _appending(conn: Connection, table: Table, columns: Mapping[str, str]) -> Iterator[Callable[[Sequence[Any]], None]]:
    """Append rows (values in `columns` order) in the current transaction until the block ends.

    PostgreSQL: one binary COPY (~10× executemany), sent 32 kB at a time while the caller makes
    the next rows, so the server inserts them meanwhile; the connection runs nothing else until
    the block ends. SQLite: one executemany at the end, of the rows as they are, but for columns
    whose type converts values (a timestamp to SQLAlchemy's text form); SQLAlchemy's own
    per-value processing would take longer than the hashing.
    """
    names = [table.c[name].name for name in columns]  # identifiers from the table definition only
    if conn.dialect.name != "postgresql":
        rows: list[Sequence[Any]] = []
        yield rows.append
        if rows:
            places = ", ".join("?" * len(names))
            statement = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({places})"  # noqa: S608 (identifiers)
            conn.exec_driver_sql(statement, _bound(conn, table, names, rows))
        return
    import psycopg  # only with PostgreSQL

    dbapi = cast(psycopg.Connection[Any], conn.connection.dbapi_connection)
    statement = f"COPY {table.name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
    with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(list(columns.values()))
        yield copy.write_row


def _bound(conn: Connection, table: Table, names: Sequence[str], rows: list[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """`rows` as the driver takes them: through the bind processors of columns that have one,
    except binary ones (sqlite3 stores bytes as a BLOB itself)."""
    converting = []
    for position, name in enumerate(names):
        column_type = table.c[name].type
        dialect_type = column_type.dialect_impl(conn.dialect)
        process = None if isinstance(column_type, LargeBinary) else dialect_type.bind_processor(conn.dialect)
        if process is not None:
            converting.append((position, process))
    if not converting:
        return [tuple(row) for row in rows]
    bound = []
    for row in rows:
        values = list(row)
        for position, process in converting:
            values[position] = process(values[position])
        bound.append(tuple(values))
    return bound


def _salted(conn: Connection, entries: list[LogEntry]) -> list[LogEntry]:
    """Give a salt to any entry about someone that has none (a bulk import writes none), before it
    becomes public: an unsalted subject hash would link all of that subject's leaves."""
    fixes = {e.seq: secrets.token_hex(SALT_BYTES) for e in entries if e.subject_id is not None and not e.subject_salt}
    if not fixes:
        return entries
    conn.execute(
        update(_A).where(_A.c.seq == bindparam("b_seq")).values(subject_salt=bindparam("b_salt")),
        [{"b_seq": seq, "b_salt": salt} for seq, salt in fixes.items()],
    )
    return [replace(e, subject_salt=fixes[e.seq]) if e.seq in fixes else e for e in entries]


def _chain_heads(conn: Connection, persons: set[str], households: set[str], bound: int) -> dict[str, bytes]:
    """The current chain head of each subject that has integrated entries (its highest leaf),
    given that none of their leaves is for an entry above seq `bound`.

    Two indexed lookups (the subjects' seqs, then those seqs' leaves) instead of a join, which
    PostgreSQL would run as a hash join over all of log_leaves. The bound keeps the seqs of a
    backlog being folded out of the second lookup.
    """
    subject_of: dict[int, str] = {}
    lookups = (
        (_A.c.subject_person_id, persons, None),
        (_A.c.subject_household_id, households, _A.c.subject_person_id.is_(None)),
    )
    for column, ids, extra in lookups:
        for chunk in _chunks(sorted(ids), _HEADS_CHUNK):
            found = select(_A.c.seq, column).where(
                column.in_(chunk), _A.c.seq <= bound, *([] if extra is None else [extra])
            )
            subject_of.update({row.seq: row[1] for row in conn.execute(found)})
    best: dict[str, tuple[int, bytes]] = {}
    for seqs in _chunks(sorted(subject_of), _HEADS_CHUNK):
        leaves = select(_L.c.entry_seq, _L.c.leaf_index, _L.c.chain_head).where(_L.c.entry_seq.in_(seqs))
        for row in conn.execute(leaves):
            seq, index, head = row.entry_seq, row.leaf_index, row.chain_head
            subject = subject_of[seq]
            if head is not None and (subject not in best or index > best[subject][0]):
                best[subject] = (index, bytes(head))
    return {subject: head for subject, (_, head) in best.items()}


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class LogVerification:
    """The result of checking the whole stored log; `first_bad_leaf` names where it breaks."""

    ok: bool
    code: str
    message: str
    first_bad_leaf: int | None
    entries: int
    checkpoint_size: int | None
    root_hash: bytes | None
    pending: int


@dataclass(frozen=True)
class _Problem:
    leaf: int
    rank: int
    code: str
    message: str


_VERIFY_CHUNK = 4096
_ROOT_RANK = 4


def verify_stored_log(
    source: ConnectionSource, key: VerifierKey, origin: str | None = None, against: str | None = None
) -> LogVerification:
    """Recompute every leaf, chain, stored node and checkpoint root; report the first problem.

    `against` is a checkpoint note kept from earlier (by a monitor or resident): the stored log must
    still extend it, which catches a rebuilt or truncated log that re-signed itself.
    Codes: verified, entry_deleted, entry_edited, entries_reordered, chain_broken, node_missing,
    node_mismatch, root_mismatch, bad_signature, wrong_origin, checkpoint_mismatch,
    checkpoint_shrinks, leaves_missing, unsigned_leaves, extra_nodes, no_checkpoint.
    """
    conn = _conn(source)
    pending = int(conn.execute(select(func.count()).select_from(_A).where(_unlogged())).scalar_one())
    checkpoints, checkpoint_problems = _checked_checkpoints(conn, key, origin)
    expected_roots = {c.tree_size: c.root_hash for c in checkpoints}
    held: Checkpoint | None = None
    if against is not None:
        try:
            held = open_checkpoint(against, key, origin)
        except CheckpointError as exc:
            return _failed(_Problem(-1, 0, exc.code, f"The checkpoint you hold: {exc.message}"), 0, pending)
    walk = _LeafWalk(conn, expected_roots, held)
    problem = walk.run()
    size = walk.frontier.size
    latest = checkpoints[-1] if checkpoints else None
    if problem is None and checkpoint_problems:
        problem = checkpoint_problems[0]
    if problem is None:
        problem = _end_problems(conn, size, latest, held)
    if problem is not None:
        return _failed(problem, size, pending)
    if latest is None:
        return LogVerification(True, "verified", "verified 0 entries (no checkpoint yet)", None, 0, None, None, pending)
    message = f"verified {size} entries against checkpoint size {latest.tree_size} (root {latest.root_hash.hex()})"
    return LogVerification(True, "verified", message, None, size, latest.tree_size, latest.root_hash, pending)


def _failed(problem: _Problem, size: int, pending: int) -> LogVerification:
    leaf = problem.leaf if problem.leaf >= 0 else None
    return LogVerification(False, problem.code, problem.message, leaf, size, None, None, pending)


def _checked_checkpoints(
    conn: Connection, key: VerifierKey, origin: str | None
) -> tuple[list[Checkpoint], list[_Problem]]:
    checkpoints: list[Checkpoint] = []
    problems: list[_Problem] = []
    for row in conn.execute(select(_C).order_by(_C.c.tree_size)):
        stored = _stored(row)
        try:
            checkpoint = open_checkpoint(stored.note, key, origin)
        except CheckpointError as exc:
            problems.append(_Problem(-1, 0, exc.code, f"The checkpoint of size {stored.tree_size}: {exc.message}"))
            continue
        if (checkpoint.tree_size, checkpoint.root_hash) != (stored.tree_size, stored.root_hash):
            problems.append(
                _Problem(
                    -1,
                    0,
                    "checkpoint_mismatch",
                    f"The checkpoint row of size {stored.tree_size} differs from its signed note.",
                )
            )
            continue
        earlier = checkpoints[-1] if checkpoints else None
        if earlier and earlier.signed_at and checkpoint.signed_at and earlier.signed_at > checkpoint.signed_at:
            problems.append(
                _Problem(
                    -1,
                    0,
                    "checkpoint_shrinks",
                    f"The checkpoint of size {earlier.tree_size} was signed after "
                    f"the larger one of size {checkpoint.tree_size}: the tree shrank.",
                )
            )
        checkpoints.append(checkpoint)
    return checkpoints, problems


def _end_problems(conn: Connection, size: int, latest: Checkpoint | None, held: Checkpoint | None) -> _Problem | None:
    if held is not None and held.tree_size > size:
        return _Problem(
            size,
            0,
            "leaves_missing",
            f"The log holds {size} leaves; a checkpoint you hold has "
            f"{held.tree_size}: it was truncated (first missing leaf {size}).",
        )
    if latest is None:
        if size:
            return _Problem(0, 0, "unsigned_leaves", f"{size} leaves but no signed checkpoint.")
        return None
    if latest.tree_size > size:
        return _Problem(
            size,
            0,
            "leaves_missing",
            f"The checkpoint signs {latest.tree_size} leaves but only {size} are stored (first missing leaf {size}).",
        )
    if latest.tree_size < size:
        return _Problem(
            latest.tree_size,
            0,
            "unsigned_leaves",
            f"Leaves {latest.tree_size}..{size - 1} are in no signed checkpoint.",
        )
    nodes = int(conn.execute(select(func.count()).select_from(_N)).scalar_one())
    expected = sum(size >> level for level in range(size.bit_length()))
    if nodes != expected:
        return _Problem(size, 0, "extra_nodes", f"log_nodes holds {nodes} nodes; a tree of {size} has {expected}.")
    return None


class _LeafWalk:
    """Streams leaves in index order, recomputing leaf hashes, chains, nodes and roots."""

    def __init__(self, conn: Connection, roots: dict[int, bytes], held: Checkpoint | None) -> None:
        self.conn = conn
        self.roots = dict(roots)
        self.held = held
        self.frontier = _Frontier()
        self.heads: dict[str, bytes] = {}
        self.last_good_size = 0

    def run(self) -> _Problem | None:
        query = (
            select(_L.c.leaf_index, _L.c.chain_prev, _L.c.chain_head, _A)
            .select_from(_L.outerjoin(_A, _A.c.seq == _L.c.entry_seq))
            .order_by(_L.c.leaf_index)
        )
        result = self.conn.execution_options(yield_per=_VERIFY_CHUNK).execute(query)
        for chunk in result.partitions():
            problems: list[_Problem] = []
            completed: list[tuple[int, int, bytes]] = []
            for row in chunk:
                problem = self._leaf(row, completed)
                if problem is not None:
                    problems.append(problem)
                    break
            problems += self._compare_nodes(completed)
            if problems:
                result.close()
                # A leaf-level finding names the bad leaf exactly; a root mismatch only bounds it.
                return min(problems, key=lambda p: (p.rank == _ROOT_RANK, p.leaf, p.rank))
        return None

    def _leaf(self, row: Row[Any], completed: list[tuple[int, int, bytes]]) -> _Problem | None:
        index = self.frontier.size
        if row.leaf_index != index:
            return _Problem(
                index,
                0,
                "entry_deleted",
                f"Leaf {index} is missing (the next stored leaf is {row.leaf_index}): an entry was deleted.",
            )
        if row.seq is None:
            return _Problem(index, 0, "entry_deleted", f"The entry of leaf {index} is gone from access_log.")
        prev, head = _optional_bytes(row.chain_prev), _optional_bytes(row.chain_head)
        try:
            entry = _entry(row, start=3)  # after leaf_index, chain_prev and chain_head
            digest = _erased_leaf_hash(entry, row) if _erased(row) else entry_leaf_hash(entry, prev)
        except ValueError:
            return _Problem(index, 1, "entry_edited", f"The entry of leaf {index} was changed (it no longer parses).")
        problem = None
        # An erased subject's chain is still checked, keyed by the erasure instead of the person.
        subject = f"erasure:{row.erasure_id}" if _erased(row) else entry.subject_id
        if subject is None:
            if prev is not None or head is not None:
                problem = _Problem(index, 2, "chain_broken", f"Leaf {index} is about nobody but carries a chain.")
        else:
            expected = self.heads.get(subject)
            computed = next_chain_head(prev, digest)
            if prev != expected or head != computed:
                problem = _Problem(
                    index,
                    2,
                    "chain_broken",
                    f"The subject's chain breaks at leaf {index}: an entry "
                    "of theirs before it is missing, moved or changed.",
                )
            self.heads[subject] = computed
        completed.extend(self.frontier.append(digest))
        return problem or self._root_problem()

    def _root_problem(self) -> _Problem | None:
        size = self.frontier.size
        expected = self.roots.get(size)
        if self.held is not None and self.held.tree_size == size and self.held.root_hash != self.frontier.root():
            return _Problem(
                self.last_good_size,
                4,
                "root_mismatch",
                f"The log no longer extends the checkpoint you "
                f"hold at size {size}: a leaf in {self.last_good_size}..{size - 1} was changed or removed "
                "and the tree rebuilt.",
            )
        if expected is None:
            return None
        if expected != self.frontier.root():
            return _Problem(
                self.last_good_size,
                4,
                "root_mismatch",
                f"The tree at size {size} does not match its "
                f"signed checkpoint: a leaf in {self.last_good_size}..{size - 1} was changed.",
            )
        self.last_good_size = size
        return None

    def _compare_nodes(self, completed: list[tuple[int, int, bytes]]) -> list[_Problem]:
        if not completed:
            return []
        spans: dict[int, tuple[int, int]] = {}
        for level, index, _ in completed:
            low, high = spans.get(level, (index, index))
            spans[level] = (min(low, index), max(high, index))
        where = or_(*(and_(_N.c.level == lv, _N.c.node_index.between(lo, hi)) for lv, (lo, hi) in spans.items()))
        stored = {
            (lv, i): bytes(h)
            for lv, i, h in self.conn.execute(select(_N.c.level, _N.c.node_index, _N.c.hash).where(where))
        }
        for level, index, digest in completed:
            found = stored.get((level, index))
            first_leaf = index << level
            if found == digest:
                continue
            if found is None:
                return [_Problem(first_leaf, 3, "node_missing", f"The stored node ({level}, {index}) is missing.")]
            if level > 0:
                return [
                    _Problem(
                        first_leaf,
                        3,
                        "node_mismatch",
                        f"The stored node ({level}, {index}) over leaves "
                        f"{first_leaf}..{first_leaf + (1 << level) - 1} was changed.",
                    )
                ]
            moved = self.conn.execute(
                select(_N.c.node_index).where(_N.c.level == 0, _N.c.hash == digest, _N.c.node_index != index).limit(1)
            ).scalar()
            if moved is not None:
                return [
                    _Problem(
                        index,
                        1,
                        "entries_reordered",
                        f"Leaf {index} holds the entry logged at leaf {moved}: entries were reordered.",
                    )
                ]
            return [_Problem(index, 1, "entry_edited", f"The entry of leaf {index} was changed after it was logged.")]
        return []
