"""Residents' correction requests (table correction_requests, migration 0009)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.registry.correction_requests import CorrectionRequest
from civicard.shared.clock import as_utc

_COLUMNS = (
    "id",
    "person_id",
    "household_id",
    "category",
    "details",
    "status",
    "filed_at",
    "answered_by",
    "answered_at",
    "answer_note",
)


class SqlCorrectionRequests:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def add(self, request: CorrectionRequest) -> None:
        self.conn.execute(sa.insert(t.correction_requests), {c: getattr(request, c) for c in _COLUMNS})

    def get(self, request_id: str) -> CorrectionRequest | None:
        cr = t.correction_requests
        row = self.conn.execute(sa.select(cr).where(cr.c.id == request_id)).first()
        return _request(row) if row else None

    def of_person(self, person_id: str) -> list[CorrectionRequest]:
        cr = t.correction_requests
        rows = self.conn.execute(
            sa.select(cr).where(cr.c.person_id == person_id).order_by(cr.c.filed_at.desc(), cr.c.id)
        )
        return [_request(r) for r in rows]

    def open_count(self, person_id: str) -> int:
        cr = t.correction_requests
        query = sa.select(sa.func.count()).where(cr.c.person_id == person_id, cr.c.status == "open")
        return int(self.conn.execute(query).scalar_one())

    def queue(self, statuses: Sequence[str], limit: int, after: CorrectionRequest | None) -> list[CorrectionRequest]:
        """Oldest first; keyset pagination on (filed_at, id)."""
        c = t.correction_requests.c
        query = sa.select(t.correction_requests).where(c.status.in_(list(statuses)))
        if after is not None:
            query = query.where(
                sa.or_(c.filed_at > after.filed_at, sa.and_(c.filed_at == after.filed_at, c.id > after.id))
            )
        rows = self.conn.execute(query.order_by(c.filed_at, c.id).limit(limit))
        return [_request(r) for r in rows]

    def save_answer(self, request: CorrectionRequest) -> bool:
        """Store the answer if the request is still open; False if someone answered it meanwhile."""
        c = t.correction_requests.c
        result = self.conn.execute(
            sa.update(t.correction_requests)
            .where(c.id == request.id, c.status == "open")
            .values(
                status=request.status,
                answered_by=request.answered_by,
                answered_at=request.answered_at,
                answer_note=request.answer_note,
            )
        )
        return int(result.rowcount) == 1


def _request(row: sa.Row[Any]) -> CorrectionRequest:
    m = dict(row._mapping)
    m["filed_at"] = as_utc(m["filed_at"])
    m["answered_at"] = as_utc(m["answered_at"]) if m["answered_at"] is not None else None
    return CorrectionRequest(**{c: m[c] for c in _COLUMNS})
