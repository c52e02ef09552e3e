"""access_log partitioned by seq on PostgreSQL (migration 0015, adapters/db/log_partitions.py): the
migration keeps every row and the log's proofs, partitions are made ahead of writers (integrator,
bulk import), seq-range reads touch only their partitions; on SQLite nothing changes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from civicard.adapters.bulk.importer import import_population
from civicard.adapters.db import log_partitions
from civicard.adapters.db import tables as t
from civicard.adapters.db.engine import make_engine
from civicard.adapters.db.log_partitions import (
    LOWEST_SEQ,
    LogPartitionWatch,
    ensure_log_partitions,
    highest_seq_taken,
    make_room_for,
)
from civicard.adapters.db.log_store import Integrator, verify_stored_log
from civicard.adapters.db.migrate import current_revision, downgrade, head_revision, upgrade
from civicard.adapters.db.repositories import SqlAccessLog
from civicard.registry.population import PopulationSpec, generate_population
from civicard.shared.clock import Clock
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, AccessEntry, Actor, Subject
from civicard.transparency.checkpoints import NoteSigner
from tests.conftest import FIXED_NOW, Database, fresh_postgres_schema

BEFORE = "0014_cycle_jobs"
SMALL = 100  # entries a partition in the tests that cross boundaries
SIGNER = NoteSigner.from_root_key(RootKey(bytes(range(32))))
_A = t.access_log


@pytest.fixture
def pg_db() -> Iterator[Database]:
    """An empty PostgreSQL schema (not migrated yet)."""
    yield from fresh_postgres_schema()


@pytest.fixture
def small_partitions(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(log_partitions, "PARTITION_SIZE", SMALL)
    return SMALL


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


def _engine(engines: list[Engine], db: Database) -> Engine:
    engine = make_engine(db.url)
    engines.append(engine)
    return engine


def _entries(n: int, start: int = 0) -> list[AccessEntry]:
    """`n` reads, spread over five persons and a household, a second apart."""
    return [
        AccessEntry(
            FIXED_NOW + timedelta(seconds=start + i),
            "registrar-ana",
            "registrar",
            "enrollment",
            "read",
            Subject.household("h-1") if i % 6 == 5 else Subject.person(f"p-{i % 6}"),
            ("identity",),
            f"read {start + i}",
        )
        for i in range(n)
    ]


def _append(engine: Engine, entries: list[AccessEntry]) -> None:
    with engine.begin() as conn:
        SqlAccessLog(conn).append(entries)


def _rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(_A).order_by(_A.c.seq))]


def _kind(conn: Connection) -> str | None:
    return conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('access_log')")).scalar()


def _per_partition(conn: Connection) -> dict[str, int]:
    counts = conn.execute(text("SELECT tableoid::regclass::text, count(*) FROM access_log GROUP BY 1"))
    return {name: int(n) for name, n in counts}


def _bounds(conn: Connection) -> list[tuple[str, int, int]]:
    return [(p.name, p.low, p.high) for p in log_partitions.log_partitions(conn)]


def _sequence_value(conn: Connection) -> int:
    return int(conn.execute(text("SELECT last_value FROM access_log_seq_seq")).scalar_one())


def _scanned(conn: Connection, sql: str, params: dict[str, int] | None = None) -> set[str]:
    """The relations an EXPLAIN (FORMAT JSON) plan reads."""
    plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"), params or {}).scalar_one()
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node:
            found.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


# --------------------------------------------------------------------------- the migration


def test_upgrade_makes_access_log_range_partitioned_with_partitions_ahead(
    pg_db: Database, engines: list[Engine]
) -> None:
    upgrade(pg_db.url)
    size = log_partitions.PARTITION_SIZE
    with _engine(engines, pg_db).connect() as conn:
        strategy = conn.execute(
            text("SELECT partstrat FROM pg_partitioned_table WHERE partrelid = to_regclass('access_log')")
        ).scalar()
        assert strategy == "r"
        assert _bounds(conn) == [
            ("access_log_s0000", LOWEST_SEQ, size),
            ("access_log_s0001", size, 2 * size),
            ("access_log_s0002", 2 * size, 3 * size),
        ]
        assert highest_seq_taken(conn) == 0
        # The foreign key from log_leaves points at the partitioned table.
        references = conn.execute(
            text(
                "SELECT conname, confrelid = to_regclass('access_log') FROM pg_constraint "
                "WHERE contype = 'f' AND conparentid = 0 AND conrelid = to_regclass('log_leaves')"
            )
        ).all()
        assert [tuple(r) for r in references] == [("fk_log_leaves_entry_seq_access_log", True)]


def test_upgrading_a_log_with_entries_keeps_every_row_seq_and_proof(empty_db: Database, engines: list[Engine]) -> None:
    upgrade(empty_db.url, BEFORE)
    engine = _engine(engines, empty_db)
    integrator = Integrator(engine, SIGNER, Clock.fixed(FIXED_NOW))
    _append(engine, _entries(40))
    assert integrator.run_once() == 40
    if empty_db.backend == "postgresql":  # a rolled-back append leaves a gap the sequence remembers
        with engine.connect() as conn:
            SqlAccessLog(conn).append(_entries(3, start=40))
            conn.rollback()
    _append(engine, _entries(10, start=50))  # pending: not folded before the upgrade
    before = _rows(engine)
    with engine.connect() as conn:
        taken = _sequence_value(conn) if empty_db.backend == "postgresql" else before[-1][0]

    upgrade(empty_db.url)
    engine.dispose()  # pooled connections cached the old table's plans

    assert current_revision(empty_db.url) == head_revision()
    assert _rows(engine) == before
    with engine.connect() as conn:
        checked = verify_stored_log(conn, SIGNER.verifier)
        assert (checked.ok, checked.entries, checked.pending) == (True, 40, 10)
        if empty_db.backend == "postgresql":
            assert _kind(conn) == "p"
            assert _per_partition(conn) == {"access_log_s0000": 50}
    _append(engine, _entries(1, start=60))
    assert _rows(engine)[-1][0] == taken + 1  # the sequence went on where it was
    assert integrator.run_once() == 11
    with engine.connect() as conn:
        checked = verify_stored_log(conn, SIGNER.verifier)
        assert (checked.ok, checked.entries, checked.pending) == (True, 51, 0)


def test_downgrade_to_0014_and_upgrade_again_keeps_the_rows(empty_db: Database, engines: list[Engine]) -> None:
    upgrade(empty_db.url)
    engine = _engine(engines, empty_db)
    integrator = Integrator(engine, SIGNER, Clock.fixed(FIXED_NOW))
    _append(engine, _entries(25))
    assert integrator.run_once() == 25
    before = _rows(engine)

    downgrade(empty_db.url, BEFORE)
    engine.dispose()
    assert _rows(engine) == before
    with engine.connect() as conn:
        if empty_db.backend == "postgresql":
            assert _kind(conn) == "r"
            assert log_partitions.log_partitions(conn) == []
            assert conn.execute(text("SELECT to_regclass('access_log_s0000')")).scalar() is None
        assert verify_stored_log(conn, SIGNER.verifier).ok
    _append(engine, _entries(1, start=25))
    assert integrator.run_once() == 1

    upgrade(empty_db.url)
    engine.dispose()
    after = _rows(engine)
    assert after[:-1] == before and after[-1][0] == before[-1][0] + 1
    with engine.connect() as conn:
        if empty_db.backend == "postgresql":
            assert _kind(conn) == "p"
        checked = verify_stored_log(conn, SIGNER.verifier)
        assert (checked.ok, checked.entries) == (True, 26)


def test_on_sqlite_access_log_stays_one_table_and_the_partition_helpers_do_nothing(
    tmp_path: Path, engines: list[Engine]
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'civicard.db'}", "sqlite")
    upgrade(db.url)
    engine = _engine(engines, db)
    _append(engine, _entries(5))
    assert make_room_for(engine, 1_000_000_000) == []
    assert LogPartitionWatch(engine).check() == []
    with engine.begin() as conn:
        assert ensure_log_partitions(conn, 1_000_000_000) == []
        assert log_partitions.log_partitions(conn) == []
        names = conn.execute(text("SELECT name FROM sqlite_master WHERE name LIKE 'access_log%'")).scalars().all()
    assert sorted(names) == ["access_log"]


# --------------------------------------------------------------------------- partitions ahead of writers


def test_writes_cross_partition_boundaries_and_the_integrator_keeps_partitions_ahead(
    pg_db: Database, small_partitions: int, engines: list[Engine]
) -> None:
    upgrade(pg_db.url)
    engine = _engine(engines, pg_db)
    integrator = Integrator(engine, SIGNER, Clock.fixed(FIXED_NOW))
    with engine.connect() as conn:
        assert [b[1:] for b in _bounds(conn)] == [(LOWEST_SEQ, 100), (100, 200), (200, 300)]

    _append(engine, _entries(250))  # seqs 1..250: over two boundaries
    assert integrator.run_once() == 250  # ...and room for 2 more partitions past seq 250
    with engine.connect() as conn:
        assert [b[0] for b in _bounds(conn)][-2:] == ["access_log_s0003", "access_log_s0004"]
        assert _bounds(conn)[-1][1:] == (400, 500)
    assert integrator.run_once() == 0  # nothing due: no new partition
    with engine.connect() as conn:
        assert len(_bounds(conn)) == 5

    _append(engine, _entries(200, start=250))  # seqs 251..450
    assert integrator.run_once() == 200
    with engine.connect() as conn:
        assert _per_partition(conn) == {
            "access_log_s0000": 99,
            "access_log_s0001": 100,
            "access_log_s0002": 100,
            "access_log_s0003": 100,
            "access_log_s0004": 51,
        }
        assert _bounds(conn)[-1] == ("access_log_s0006", 600, 700)
        checked = verify_stored_log(conn, SIGNER.verifier)
        assert (checked.ok, checked.entries) == (True, 450)


def test_a_write_beyond_the_last_partition_is_refused_until_room_is_made(
    pg_db: Database, small_partitions: int, engines: list[Engine]
) -> None:
    upgrade(pg_db.url)
    engine = _engine(engines, pg_db)
    with pytest.raises(DBAPIError, match="no partition of relation"):
        _append(engine, _entries(300))  # seq 300 has no partition yet: the whole write rolls back
    with engine.connect() as conn:
        assert _per_partition(conn) == {}
        taken = highest_seq_taken(conn)
    assert taken == 300  # the failed write used up its seqs
    assert make_room_for(engine, 300) == [f"access_log_s{n:04d}" for n in range(3, 9)]  # up to seq 800
    assert make_room_for(engine, 300) == []
    _append(engine, _entries(300))
    with engine.connect() as conn:
        assert sum(_per_partition(conn).values()) == 300


def test_room_is_made_while_a_long_transaction_writes_the_log_and_it_uses_the_new_partitions(
    pg_db: Database, small_partitions: int, engines: list[Engine]
) -> None:
    """What a cycle's or a dedup extract's reads do page by page inside their one transaction."""
    upgrade(pg_db.url)
    # Every connection gives up on a lock after 5 s: a conflict with the open transaction fails, not hangs.
    url = make_url(pg_db.url).update_query_dict({"options": f"-csearch_path={pg_db.schema} -clock_timeout=5s"})
    engine = _engine(engines, Database(url.render_as_string(hide_password=False), "postgresql", pg_db.schema))
    with engine.connect() as long_running:
        assert long_running.execute(text("SHOW lock_timeout")).scalar() == "5s"
        for page in range(4):  # 4 × 150 entries: twice the room the upgrade left
            created = make_room_for(engine, 150)  # its own connection and transaction
            assert created or page == 0
            SqlAccessLog(long_running).append(_entries(150, start=150 * page))
        long_running.commit()
    with engine.connect() as conn:
        counts = _per_partition(conn)
        assert sum(counts.values()) == 600 and len(counts) == 7  # seqs 1..600 over s0000..s0006


def test_two_creators_at_once_make_each_partition_once(
    pg_db: Database, small_partitions: int, engines: list[Engine]
) -> None:
    upgrade(pg_db.url)
    engine = _engine(engines, pg_db)
    results: dict[str, list[str]] = {}
    first = engine.connect()
    results["first"] = ensure_log_partitions(first, 550)  # holds the creators' lock until it commits
    second_done = threading.Event()

    def second() -> None:
        with engine.connect() as conn:
            results["second"] = ensure_log_partitions(conn, 550)
            conn.commit()
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not second_done.wait(0.5)  # waiting for the first creator
    first.commit()
    first.close()
    thread.join(10)
    assert results == {"first": ["access_log_s0003", "access_log_s0004", "access_log_s0005"], "second": []}
    with engine.connect() as conn:
        assert [b[1:] for b in _bounds(conn)][1:] == [(n, n + SMALL) for n in range(100, 600, SMALL)]


def test_a_bulk_import_larger_than_the_room_left_makes_its_partitions_first(
    pg_db: Database, small_partitions: int, engines: list[Engine], tmp_path: Path
) -> None:
    upgrade(pg_db.url)
    engine = _engine(engines, pg_db)
    extract = tmp_path / "extract"
    generate_population(PopulationSpec(households=100, seed=11), extract)
    importer = AccessContext(Actor("importer", "system"), "bulk_import")
    report = import_population(engine, extract, importer, Clock.fixed(FIXED_NOW))
    assert report.access_entries > 3 * SMALL  # more than the partitions made at upgrade hold
    with engine.connect() as conn:
        assert sum(_per_partition(conn).values()) == report.access_entries
        assert _bounds(conn)[-1][2] > report.access_entries + 2 * SMALL
    integrator = Integrator(engine, SIGNER, Clock.fixed(FIXED_NOW))
    assert integrator.run_once(full=True) == report.access_entries
    with engine.connect() as conn:
        assert verify_stored_log(conn, SIGNER.verifier).ok


# --------------------------------------------------------------------------- partition pruning


def test_a_seq_range_read_touches_only_the_partitions_of_that_range(
    pg_db: Database, small_partitions: int, engines: list[Engine]
) -> None:
    upgrade(pg_db.url)
    engine = _engine(engines, pg_db)
    make_room_for(engine, 400)
    _append(engine, _entries(400))
    with engine.connect() as conn:
        conn.execute(text("ANALYZE access_log"))
        assert _scanned(conn, "SELECT * FROM access_log WHERE seq > 210 AND seq <= 290") == {"access_log_s0002"}
        assert _scanned(conn, "SELECT * FROM access_log WHERE seq BETWEEN 150 AND 250") == {
            "access_log_s0001",
            "access_log_s0002",
        }
        assert _scanned(conn, "SELECT * FROM access_log WHERE seq = 333") == {"access_log_s0003"}
        # A prepared statement's generic plan (psycopg prepares a query run five times) prunes at
        # executor start instead: the other partitions are listed as removed subplans.
        conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        conn.exec_driver_sql(
            "PREPARE by_range(bigint, bigint) AS SELECT * FROM access_log WHERE seq > $1 AND seq <= $2"
        )
        plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE by_range(210, 290)").scalar_one()
        top = plan[0]["Plan"]
        assert top["Node Type"] == "Append"
        assert [p["Relation Name"] for p in top["Plans"]] == ["access_log_s0002"]
        assert top["Subplans Removed"] == len(_bounds(conn)) - 1


# --------------------------------------------------------------------------- large appends


def test_a_large_append_goes_by_copy_and_stores_what_a_small_one_stores(
    pg_db: Database, engines: list[Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    from civicard.adapters.db import repositories

    upgrade(pg_db.url)
    engine = _engine(engines, pg_db)
    entries = _entries(12)
    _append(engine, entries)  # 12 < COPY_FROM_ENTRIES: executemany
    monkeypatch.setattr(repositories, "COPY_FROM_ENTRIES", 10)
    copied: list[int] = []
    real_write = repositories.BulkAccessLog.append

    def counted(log: Any, batch: list[AccessEntry]) -> None:
        copied.append(len(batch))
        real_write(log, batch)

    monkeypatch.setattr(repositories.BulkAccessLog, "append", counted)
    _append(engine, entries)  # the same 12 entries again, now by COPY
    assert copied == [12]
    rows = _rows(engine)
    # Everything but seq and the per-entry random salt is stored alike, timestamps to the microsecond.
    plain, by_copy = ([r[1:10] for r in rows[:12]], [r[1:10] for r in rows[12:]])
    assert by_copy == plain and len(rows) == 24
    assert all(len(r[10]) == 32 for r in rows) and len({r[10] for r in rows}) == 24
    integrator = Integrator(engine, SIGNER, Clock.fixed(FIXED_NOW))
    assert integrator.run_once(full=True) == 24
    with engine.connect() as conn:
        assert verify_stored_log(conn, SIGNER.verifier).ok
