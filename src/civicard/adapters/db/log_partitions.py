"""The access log's RANGE partitions on PostgreSQL: fixed runs of seqs, created before writers need them.

access_log is partitioned by its primary key `seq` (migration 0015): `PARTITION_SIZE` entries a
partition, named access_log_s0000, access_log_s0001, … A row whose seq has no partition is refused
("no partition of relation access_log found for row"), and there is deliberately no DEFAULT
partition: once a default held rows of a range, that range's partition could no longer be attached
without moving those rows (referenced by log_leaves) under an exclusive lock. Partitions are made
ahead instead, `PARTITIONS_AHEAD` whole partitions beyond the highest seq taken: by the migration,
by the integrator on every poll (`LogPartitionWatch`: one read when nothing is due), and by a bulk
writer for the entries it is about to write (`make_room_for`, before its long transaction).

A new partition is created on its own and then attached. ATTACH PARTITION takes SHARE UPDATE
EXCLUSIVE on access_log, so requests keep appending (and a transaction already open sees the new
partition at its next insert); CREATE TABLE … PARTITION OF would take ACCESS EXCLUSIVE and queue
behind every open transaction that wrote the log — a bulk import's, for hours — stalling everyone
queued behind it. Attaching also takes SHARE ROW EXCLUSIVE on log_leaves (its foreign key gains
triggers on the new partition), so it waits for a running integrator batch to commit: never call it
inside a transaction that folds leaves. SQLite has no partitioning: everything here does nothing there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

PARTITION_SIZE = 10_000_000  # entries a partition; read at call time, so a test may monkeypatch it
PARTITIONS_AHEAD = 2  # a national cycle logs ~10 M reads: one spare partition would be used up by one run
LOWEST_SEQ = -(2**63)  # the first partition starts at MINVALUE: no explicit seq falls below it
_TABLE = "access_log"
_LOCK_CLASS = 0x70617274  # "part": pg_advisory_xact_lock(class, hashtext(schema)) — one creator per schema
_NAME = re.compile(r"^access_log_s(\d+)$")
_BOUND = re.compile(r"^FOR VALUES FROM \((MINVALUE|'?-?\d+'?)\) TO \('?(-?\d+)'?\)$")


@dataclass(frozen=True)
class LogPartition:
    """One partition: seqs from `low` (inclusive; `LOWEST_SEQ` for the first) to `high` (exclusive)."""

    name: str
    number: int
    low: int
    high: int


def partition_name(number: int) -> str:
    return f"{_TABLE}_s{number:04d}"


def is_partitioned(conn: Connection) -> bool:
    """Whether access_log (in the connection's schema) is a partitioned table."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": _TABLE}).scalar()
    return kind == "p"


def log_partitions(conn: Connection) -> list[LogPartition]:
    """access_log's partitions in seq order; an empty list on SQLite or for an unpartitioned table."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": _TABLE},
    )
    found = []
    for name, bound in rows:
        named, bounds = _NAME.match(name), _BOUND.match(bound or "")
        if named is None or bounds is None:  # made by hand: refuse to guess where the next one starts
            raise RuntimeError(f"Unexpected access_log partition {name} ({bound}).")
        low = LOWEST_SEQ if bounds.group(1) == "MINVALUE" else int(bounds.group(1).strip("'"))
        found.append(LogPartition(name, int(named.group(1)), low, int(bounds.group(2))))
    return sorted(found, key=lambda p: p.low)


def highest_seq_taken(conn: Connection) -> int:
    """The highest seq handed out, including ones held by transactions that have not committed yet
    (the sequence's last value), or stored with an explicit seq above it; 0 for an empty log."""
    query = text(
        "SELECT greatest("
        "coalesce(pg_sequence_last_value(CAST(pg_get_serial_sequence(:t, 'seq') AS regclass)), 0), "
        "coalesce((SELECT max(seq) FROM access_log), 0))"
    )
    return int(conn.execute(query, {"t": _TABLE}).scalar_one())


def ensure_log_partitions(conn: Connection, up_to_seq: int) -> list[str]:
    """Create partitions after the last one until `up_to_seq` has one; returns the names created.

    Idempotent and safe with several processes: creators queue on an advisory lock and read the
    existing partitions after taking it. Runs in the caller's transaction, which should commit
    soon: the locks taken by attaching (see the module's docstring) are held until it ends.
    """
    if not is_partitioned(conn):
        return []
    conn.execute(
        text("SELECT pg_advisory_xact_lock(CAST(:k AS integer), hashtext(current_schema()))"), {"k": _LOCK_CLASS}
    )
    existing = log_partitions(conn)
    size = PARTITION_SIZE
    created = []
    if existing:
        high, number = existing[-1].high, max(p.number for p in existing) + 1
    else:  # the first one also takes any seq written explicitly below the sequence's range
        high, number = size, 1
        _attach_new(conn, partition_name(0), "MINVALUE", high)
        created.append(partition_name(0))
    while high <= up_to_seq:
        _attach_new(conn, partition_name(number), str(high), high + size)
        created.append(partition_name(number))
        high, number = high + size, number + 1
    return created


def _attach_new(conn: Connection, name: str, low: str, high: int) -> None:
    table = conn.dialect.identifier_preparer.quote(name)  # made from an integer: no outside text in the DDL
    conn.execute(text(f"CREATE TABLE {table} (LIKE {_TABLE})"))
    conn.execute(text(f"ALTER TABLE {_TABLE} ATTACH PARTITION {table} FOR VALUES FROM ({low}) TO ({high})"))


def room_wanted(conn: Connection, incoming: int = 0) -> int:
    """The highest seq that should have a partition before `incoming` more entries are written."""
    return highest_seq_taken(conn) + incoming + PARTITIONS_AHEAD * PARTITION_SIZE


def make_room_for(engine: Engine, incoming: int) -> list[str]:
    """Before writing `incoming` entries in one long transaction (a bulk import, a cycle's reads):
    create the partitions they and `PARTITIONS_AHEAD` more need, in a short transaction of its own.
    Returns the names created; costs two small reads when nothing is due."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        wanted = room_wanted(conn, incoming)
        partitions = log_partitions(conn)
        if partitions and wanted < partitions[-1].high:
            return []
        created = ensure_log_partitions(conn, wanted)
        conn.commit()
        return created


class LogPartitionWatch:
    """Keeps `PARTITIONS_AHEAD` partitions beyond the highest seq taken, for a poller (the integrator).

    It remembers where the partitions end, so a poll with nothing due costs one read of the
    sequence; only when the room left falls below the margin does it lock and create.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._end: int | None = None  # the first seq with no partition, as last seen

    def check(self) -> list[str]:
        if self.engine.dialect.name != "postgresql":
            return []
        with self.engine.connect() as conn:
            wanted = room_wanted(conn)
            if self._end is not None and wanted < self._end:
                return []
            created = ensure_log_partitions(conn, wanted)
            partitions = log_partitions(conn)
            conn.commit()
        self._end = partitions[-1].high if partitions else None
        return created
