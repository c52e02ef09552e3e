"""The terminal's local SQLite file: its settings, the bundle and keys it holds, and the receipt queue.

Durability: WAL with synchronous=FULL, and a receipt is committed before the sale is confirmed to
the clerk, so a crash or power cut after "OK" never loses it. Writes take the write lock first
(BEGIN IMMEDIATE), so the next seq and the check against what was already sold are decided on the
same state the receipt is added to, even with two processes on one device.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    seq INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    card_key BLOB NOT NULL,
    payload BLOB NOT NULL,
    signature BLOB NOT NULL,
    created_at TEXT NOT NULL,
    outcome TEXT,
    reason TEXT,
    transaction_id TEXT,
    synced_at TEXT
);
CREATE INDEX IF NOT EXISTS ix_receipts_card ON receipts (period, card_key);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


@dataclass(frozen=True)
class QueuedReceipt:
    seq: int
    period: str
    card_key: bytes
    payload: bytes
    signature: bytes
    created_at: datetime
    outcome: str | None
    reason: str | None
    transaction_id: str | None

    @property
    def items(self) -> dict[str, int]:
        items: dict[str, int] = json.loads(self.payload)["items"]
        return items


class LocalStore:
    """One SQLite file per terminal; open it, use it, close it (or use it as a context manager)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the lock from its start; committed when the block ends."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- state ---------------------------------------------------------------------------------

    def get(self, name: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def get_text(self, name: str) -> str | None:
        raw = self.get(name)
        return raw.decode() if raw is not None else None

    def put(self, values: dict[str, bytes | str]) -> None:
        with self.writing() as db:
            put_state(db, values)

    # --- receipts ------------------------------------------------------------------------------

    def receipts(self, unsynced_only: bool = False) -> list[QueuedReceipt]:
        where = " WHERE outcome IS NULL" if unsynced_only else ""
        rows = self.db.execute(f"SELECT * FROM receipts{where} ORDER BY seq").fetchall()  # noqa: S608 (fixed text)
        return [_receipt(r) for r in rows]

    def unsynced_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM receipts WHERE outcome IS NULL").fetchone()[0])

    def record_outcomes(self, outcomes: Iterable[tuple[int, str, str | None, str | None]], at: datetime) -> None:
        """(seq, outcome, reason, transaction id) as the server answered; kept with the receipt."""
        with self.writing() as db:
            db.executemany(
                "UPDATE receipts SET outcome = ?, reason = ?, transaction_id = ?, synced_at = ? WHERE seq = ?",
                [(o, r, tx, _iso(at), seq) for seq, o, r, tx in outcomes],
            )


def put_state(db: sqlite3.Connection, values: dict[str, bytes | str]) -> None:
    db.executemany(
        "INSERT INTO state (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [(k, v.encode() if isinstance(v, str) else v) for k, v in values.items()],
    )


def next_seq(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT coalesce(max(seq), 0) + 1 FROM receipts").fetchone()[0])


def sold(db: sqlite3.Connection, period: str, card_keys: Iterable[bytes], after_seq: int = 0) -> dict[str, int]:
    """Items this terminal sold offline to these cards in the period (receipts after `after_seq`)."""
    totals: dict[str, int] = {}
    for key in set(card_keys):
        rows = db.execute(
            "SELECT payload FROM receipts WHERE period = ? AND card_key = ? AND seq > ?", (period, key, after_seq)
        )
        for (payload,) in rows:
            for item, qty in json.loads(payload)["items"].items():
                totals[item] = totals.get(item, 0) + int(qty)
    return totals


def add_receipt(
    db: sqlite3.Connection, seq: int, period: str, card_key: bytes, payload: bytes, signature: bytes, at: datetime
) -> None:
    db.execute(
        "INSERT INTO receipts (seq, period, card_key, payload, signature, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (seq, period, card_key, payload, signature, _iso(at)),
    )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _receipt(row: tuple[object, ...]) -> QueuedReceipt:
    seq, period, card_key, payload, signature, created_at, outcome, reason, transaction_id, _ = row
    return QueuedReceipt(
        int(str(seq)),
        str(period),
        bytes(card_key),  # type: ignore[call-overload]
        bytes(payload),  # type: ignore[call-overload]
        bytes(signature),  # type: ignore[call-overload]
        datetime.fromisoformat(str(created_at)),
        None if outcome is None else str(outcome),
        None if reason is None else str(reason),
        None if transaction_id is None else str(transaction_id),
    )
