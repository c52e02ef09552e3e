"""SQL storage for cards, card PINs and published status lists; the card unit of work; public reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from civicard.adapters.db import tables as t
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.identity.cards import Card, PublishedStatusList, StoredPin
from civicard.identity.pins import PinCounter
from civicard.shared.clock import as_utc
from civicard.shared.errors import Conflict

_CARD_FIELDS = [c.name for c in t.cards.columns]
_TIMES = ("issued_at", "expires_at", "status_changed_at")


def _card(row: Row[Any]) -> Card:
    data = {f: getattr(row, f) for f in _CARD_FIELDS}
    data |= {f: as_utc(data[f]) for f in _TIMES if data[f] is not None}
    return Card(**data)


def _published(row: Row[Any]) -> PublishedStatusList:
    return PublishedStatusList(
        row.version,
        as_utc(row.published_at),
        bytes(row.signed_list),
        bytes(row.signed_delta) if row.signed_delta is not None else None,
    )


# Built once: on the redemption path, building a statement costs more than running it.
_CARD_BY_HANDLE = select(t.cards).where(t.cards.c.handle == bindparam("handle"))
_CARD_BY_HANDLE_LOCKED = _CARD_BY_HANDLE.with_for_update()
_PIN = select(t.card_pins).where(t.card_pins.c.card_id == bindparam("card_id"))
_PIN_LOCKED = _PIN.with_for_update()


class SqlCards:
    """Row locks (`for_update`) serialise status changes, PIN attempts and publishing on PostgreSQL;
    SQLite serialises all writers anyway."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, card: Card) -> None:
        # No SAVEPOINT here: with pysqlite a savepoint opened before the first write starts and then
        # *commits* its own transaction, so earlier writes of the unit of work would survive a
        # refusal. A unique-index refusal aborts the whole unit of work instead.
        try:
            self.conn.execute(insert(t.cards).values(**{f: getattr(card, f) for f in _CARD_FIELDS}))
        except IntegrityError:
            raise Conflict("card_conflict", "A card took this handle or slot at the same moment; try again.") from None

    def by_handle(self, handle: str, for_update: bool = False) -> Card | None:
        row = self.conn.execute(_CARD_BY_HANDLE_LOCKED if for_update else _CARD_BY_HANDLE, {"handle": handle}).first()
        return _card(row) if row else None

    def by_id(self, card_id: str, for_update: bool = False) -> Card | None:
        query = select(t.cards).where(t.cards.c.id == card_id)
        row = self.conn.execute(query.with_for_update() if for_update else query).first()
        return _card(row) if row else None

    def current_of_person(self, person_id: str) -> Card | None:
        c = t.cards.c
        query = select(t.cards).where(c.person_id == person_id, c.status != "revoked").order_by(c.issued_at.desc())
        row = self.conn.execute(query.limit(1)).first()
        return _card(row) if row else None

    def slot_taken(self, index: int) -> bool:
        return bool(self.conn.execute(select(exists().where(t.cards.c.status_index == index))).scalar())

    def save_status(self, card: Card) -> None:
        values = {f: getattr(card, f) for f in ("status", "status_reason", "status_changed_at", "status_changed_by")}
        self.conn.execute(update(t.cards).where(t.cards.c.id == card.id).values(**values))

    def listed_statuses(self) -> list[tuple[int, str]]:
        c = t.cards.c
        rows = self.conn.execute(select(c.status_index, c.status).where(c.status != "valid"))
        return [(int(r.status_index), str(r.status)) for r in rows]

    def live_signed_by(self, kid: int) -> list[Card]:
        c = t.cards.c
        query = select(t.cards).where(c.kid == kid, c.status != "revoked").order_by(c.id)
        return [_card(row) for row in self.conn.execute(query)]

    def pin(self, card_id: str, for_update: bool = False) -> StoredPin | None:
        row = self.conn.execute(_PIN_LOCKED if for_update else _PIN, {"card_id": card_id}).first()
        if row is None:
            return None
        return StoredPin(row.pin_hash, PinCounter(row.consecutive_failures, bool(row.locked)))

    def save_pin(self, card_id: str, pin_hash: str, at: datetime, by: str) -> None:
        values = {"pin_hash": pin_hash, "set_at": at, "set_by": by, "consecutive_failures": 0, "locked": False}
        done = self.conn.execute(update(t.card_pins).where(t.card_pins.c.card_id == card_id).values(**values))
        if done.rowcount == 0:
            self.conn.execute(insert(t.card_pins).values(card_id=card_id, **values))

    def save_pin_counter(self, card_id: str, counter: PinCounter) -> None:
        self.conn.execute(
            update(t.card_pins)
            .where(t.card_pins.c.card_id == card_id)
            .values(consecutive_failures=counter.consecutive_failures, locked=counter.locked)
        )

    def clear_pin(self, card_id: str) -> None:
        self.conn.execute(delete(t.card_pins).where(t.card_pins.c.card_id == card_id))

    def latest_status_list(self, for_update: bool = False) -> PublishedStatusList | None:
        query = select(t.status_list_versions).order_by(t.status_list_versions.c.version.desc()).limit(1)
        row = self.conn.execute(query.with_for_update() if for_update else query).first()
        return _published(row) if row else None

    def add_status_list(self, published: PublishedStatusList) -> None:
        try:
            self.conn.execute(
                insert(t.status_list_versions).values(
                    version=published.version,
                    published_at=published.published_at,
                    signed_list=published.signed_list,
                    signed_delta=published.signed_delta,
                )
            )
        except IntegrityError:
            raise Conflict("status_list_busy", "The status list was published at the same moment; try again.") from None


class SqlCardUnitOfWork(SqlUnitOfWork):
    """The registry unit of work plus the card store, on the same connection and transaction."""

    def __enter__(self) -> SqlCardUnitOfWork:
        super().__enter__()
        self.cards = SqlCards(self.connection)
        return self


class PublishedCardMaterial:
    """What the public endpoints serve: the latest signed status list and the signed deltas.

    These tables hold no personal data, so they are read without an access context.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def latest(self) -> PublishedStatusList | None:
        with self.engine.connect() as conn:
            return SqlCards(conn).latest_status_list()

    def version(self, version: int) -> PublishedStatusList | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.status_list_versions).where(t.status_list_versions.c.version == version)
            ).first()
            return _published(row) if row else None
