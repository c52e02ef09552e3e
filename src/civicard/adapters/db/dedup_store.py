"""SQL storage for the duplicate review queue and merges; the reviewer's unit of work."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Row, and_, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from civicard.adapters.db import tables as t
from civicard.adapters.db.approval_store import SqlApprovalUnitOfWork
from civicard.dedup.cases import PENDING, Candidate, CandidateStatus, Merge
from civicard.dedup.pairs import Reason
from civicard.registry.model import Membership, RecordStatus
from civicard.shared.clock import as_utc
from civicard.shared.errors import Conflict

CHUNK = 500  # ids per IN list: well under SQLite's and PostgreSQL's bound-parameter limits
_CANDIDATE_FIELDS = [c.name for c in t.duplicate_candidates.columns if c.name != "reasons"]
_MERGE_FIELDS = [c.name for c in t.person_merges.columns]
_MEMBERSHIP_FIELDS = (
    "id",
    "household_id",
    "person_id",
    "relationship",
    "valid_from",
    "valid_to",
    "recorded_by",
    "reason",
)


def _chunks(values: Collection[Any]) -> Iterator[list[Any]]:
    items = iter(sorted(values))
    while chunk := list(islice(items, CHUNK)):
        yield chunk


def _candidate(row: Row[Any]) -> Candidate:
    data = {f: getattr(row, f) for f in _CANDIDATE_FIELDS}
    data["raised_at"] = as_utc(data["raised_at"])
    data["decided_at"] = as_utc(data["decided_at"]) if data["decided_at"] else None
    reasons = tuple(Reason.from_json(r) for r in json.loads(row.reasons))
    return Candidate(reasons=reasons, **data)


def _reasons_json(candidate: Candidate) -> str:
    return json.dumps([r.to_json() for r in candidate.reasons], ensure_ascii=False)


def _merge(row: Row[Any]) -> Merge:
    data = {f: getattr(row, f) for f in _MERGE_FIELDS}
    data["merged_at"] = as_utc(data["merged_at"])
    data["undone_at"] = as_utc(data["undone_at"]) if data["undone_at"] else None
    return Merge(**data)


class SqlDuplicates:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def queued_pairs(self, pairs: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        c = t.duplicate_candidates.c
        found: set[tuple[str, str]] = set()
        for chunk in _chunks(pairs):
            query = select(c.person_id_l, c.person_id_r).where(tuple_(c.person_id_l, c.person_id_r).in_(chunk))
            found |= {(r.person_id_l, r.person_id_r) for r in self.conn.execute(query)}
        return found

    def add_candidates(self, candidates: Sequence[Candidate]) -> None:
        rows = [{f: getattr(c, f) for f in _CANDIDATE_FIELDS} | {"reasons": _reasons_json(c)} for c in candidates]
        # No SAVEPOINT (see SqlCards.add): a concurrent raise of the same pair aborts this unit of work.
        try:
            self.conn.execute(insert(t.duplicate_candidates), rows)
        except IntegrityError:
            raise Conflict("candidate_conflict", "The same pair was queued at the same moment; try again.") from None

    def candidate(self, candidate_id: str, for_update: bool = False) -> Candidate | None:
        query = select(t.duplicate_candidates).where(t.duplicate_candidates.c.id == candidate_id)
        row = self.conn.execute(query.with_for_update() if for_update else query).first()
        return _candidate(row) if row else None

    def queue(self, statuses: Collection[CandidateStatus], limit: int, after: Candidate | None) -> list[Candidate]:
        c = t.duplicate_candidates.c
        query = select(t.duplicate_candidates).where(c.status.in_(sorted(statuses)))
        if after is not None:  # keyset: most probable first, then by id
            p = after.match_probability
            query = query.where(or_(c.match_probability < p, and_(c.match_probability == p, c.id > after.id)))
        query = query.order_by(c.match_probability.desc(), c.id).limit(limit)
        return [_candidate(r) for r in self.conn.execute(query)]

    def save_decision(self, candidate: Candidate) -> None:
        values = {f: getattr(candidate, f) for f in ("status", "decided_at", "decided_by", "decision_note")}
        self.conn.execute(
            update(t.duplicate_candidates).where(t.duplicate_candidates.c.id == candidate.id).values(**values)
        )

    def distinct_pairs(self, person_ids: Collection[str] | None) -> set[tuple[str, str]]:
        c = t.duplicate_candidates.c
        base = select(c.person_id_l, c.person_id_r).where(c.status == "different")
        if person_ids is None:
            return {(r.person_id_l, r.person_id_r) for r in self.conn.execute(base)}
        found: set[tuple[str, str]] = set()
        for chunk in _chunks(person_ids):
            rows = self.conn.execute(base.where(or_(c.person_id_l.in_(chunk), c.person_id_r.in_(chunk))))
            found |= {(r.person_id_l, r.person_id_r) for r in rows}
        return found

    def pending_count(self, person_id: str) -> int:
        c = t.duplicate_candidates.c
        query = select(func.count()).where(
            c.status.in_(PENDING), or_(c.person_id_l == person_id, c.person_id_r == person_id)
        )
        return int(self.conn.execute(query).scalar_one())

    def held_among(self, person_ids: Collection[str]) -> set[str]:
        p = t.persons.c
        held: set[str] = set()
        for chunk in _chunks(person_ids):
            held |= set(self.conn.execute(select(p.id).where(p.id.in_(chunk), p.record_status == "held")).scalars())
        return held

    def record_statuses(self, person_ids: Collection[str]) -> dict[str, RecordStatus]:
        p = t.persons.c
        found: dict[str, RecordStatus] = {}
        for chunk in _chunks(person_ids):
            found |= {
                r.id: r.record_status for r in self.conn.execute(select(p.id, p.record_status).where(p.id.in_(chunk)))
            }
        return found

    def set_record_status(self, person_id: str, status: RecordStatus, merged_into: str | None) -> None:
        self.conn.execute(
            update(t.persons).where(t.persons.c.id == person_id).values(record_status=status, merged_into=merged_into)
        )

    def add_merge(self, merge: Merge) -> None:
        self.conn.execute(insert(t.person_merges).values(**{f: getattr(merge, f) for f in _MERGE_FIELDS}))

    def merge(self, merge_id: str, for_update: bool = False) -> Merge | None:
        query = select(t.person_merges).where(t.person_merges.c.id == merge_id)
        row = self.conn.execute(query.with_for_update() if for_update else query).first()
        return _merge(row) if row else None

    def merges_between(self, person_ids: Collection[str]) -> list[Merge]:
        m = t.person_merges.c
        ids = sorted(person_ids)
        query = select(t.person_merges).where(m.survivor_id.in_(ids), m.merged_id.in_(ids)).order_by(m.merged_at)
        return [_merge(r) for r in self.conn.execute(query)]

    def save_undo(self, merge: Merge) -> None:
        fields = ("undone_at", "undone_by", "undo_reason", "restored_membership_id")
        self.conn.execute(
            update(t.person_merges)
            .where(t.person_merges.c.id == merge.id)
            .values(**{f: getattr(merge, f) for f in fields})
        )

    def membership(self, membership_id: str) -> Membership | None:
        row = self.conn.execute(select(t.memberships).where(t.memberships.c.id == membership_id)).first()
        if row is None:
            return None
        return Membership(**{f: getattr(row, f) for f in _MEMBERSHIP_FIELDS}, recorded_at=as_utc(row.recorded_at))


class SqlReviewUnitOfWork(SqlApprovalUnitOfWork):
    """The approval unit of work (registry, cards, approvals: a 'same' decision files a four-eyes
    merge request) plus the duplicate queue, on the same connection and transaction."""

    def __enter__(self) -> SqlReviewUnitOfWork:
        super().__enter__()
        self.duplicates = SqlDuplicates(self.connection)
        return self
