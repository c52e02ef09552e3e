"""Applying the retention policy (transparency/retention.py) to the database, and erasing a person.

One run is one transaction under the `retention` purpose: every rule's deletions, every erasure
and their access-log entries commit together or not at all. The run first takes the log's write
lock (the integrator's advisory lock on PostgreSQL, SQLite's write lock), so no integrator folds
an entry while its subject is being shredded.

Logging an erasure without undoing it: an entry naming the erased person as its subject would
carry their id in clear (and a fresh salted link) right next to the shredded entries, so the
erasure is logged as an entry about nobody — which rule, the erasure's random id and how many
rows — and the `erasures` row holds the person only as a tagged SHA-256 of their id. Deleting
old fact versions of living people is logged with them as subject, as any change to their record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from civicard.adapters.db import tables as t
from civicard.adapters.db.log_store import hold_log_lock
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.registry.facts import FACT_KINDS
from civicard.shared.clock import Clock
from civicard.shared.ids import new_id
from civicard.transparency.access import AccessContext, Actor, Subject, disclose, record_change
from civicard.transparency.log_entries import chain_commitment, subject_hash
from civicard.transparency.retention import (
    RETENTION,
    JournalEntry,
    RetentionPolicy,
    RetentionRule,
    erasure_digest,
)

ERASED = "[borrado]"  # what an erased person's names read as; the row stays for foreign keys
ERASED_BIRTH_DATE = date(1900, 1, 1)
_IN = 500
_ALL_CATEGORIES = ("identity", "household", "income", "property", "health", "benefits", "decisions")
Journal = Callable[[Sequence[JournalEntry]], None]


@dataclass(frozen=True)
class RuleOutcome:
    rule: str
    records: str
    count: int  # rows deleted (or persons erased); what is due, in a dry run
    kept_forever: bool = False


@dataclass(frozen=True)
class RetentionReport:
    as_of: datetime
    dry_run: bool
    outcomes: tuple[RuleOutcome, ...]
    erasures: tuple[JournalEntry, ...]


def apply_retention(
    engine: Engine, clock: Clock, policy: RetentionPolicy, actor: Actor, journal: Journal, dry_run: bool = False
) -> RetentionReport:
    """Apply every rule as of now in one transaction; a dry run counts what is due and changes nothing.

    Erasures are written to `journal` (outside the database) before the transaction commits: a
    journalled erasure that then failed to commit is re-applied by a restore, which errs on the
    side of erasing a person the policy already says is due; the reverse order could lose one.
    """
    now = clock.now()
    with SqlUnitOfWork(engine, AccessContext(actor, RETENTION), clock) as uow:
        conn = uow.connection
        hold_log_lock(conn)
        outcomes: list[RuleOutcome] = []
        erasures: list[JournalEntry] = []
        for rule in policy.rules:
            if rule.keep is None:
                outcomes.append(RuleOutcome(rule.name, rule.records, 0, kept_forever=True))
                continue
            cutoff = rule.keep.cutoff(now.date())
            cutoff_at = datetime.combine(cutoff, now.timetz())
            if rule.records == "deceased_persons":
                due = _deceased(conn, cutoff)
                if not dry_run:
                    erasures += [erase_person(uow, p, rule.name, now) for p in due]
                outcomes.append(RuleOutcome(rule.name, rule.records, len(due)))
            else:
                count = _apply_deletion(uow, rule, cutoff, cutoff_at, now, dry_run)
                outcomes.append(RuleOutcome(rule.name, rule.records, count))
        summary = " ".join(f"{o.rule}={o.count}" for o in outcomes if not o.kept_forever)
        if dry_run:
            disclose(uow.access_log, uow.context, [], [], f"retention.dry_run {summary}", now)
        else:
            record_change(uow.access_log, uow.context, [], [], f"retention.run {summary}", now)
            if erasures:
                journal(erasures)
        uow.commit()
    return RetentionReport(now, dry_run, tuple(outcomes), tuple(erasures))


def _deceased(conn: Connection, cutoff: date) -> list[str]:
    p = t.persons
    query = sa.select(p.c.id).where(p.c.record_status == "deceased", p.c.deceased_on <= cutoff).order_by(p.c.id)
    return list(conn.execute(query).scalars())


# --------------------------------------------------------------------------- deletions by rule


def _apply_deletion(
    uow: SqlUnitOfWork, rule: RetentionRule, cutoff: date, cutoff_at: datetime, now: datetime, dry_run: bool
) -> int:
    conn = uow.connection
    if rule.records in ("replaced_fact_versions", "ended_health_needs"):
        tables = rule.tables if rule.records == "replaced_fact_versions" else ("health_needs",)
        total = 0
        for name in tables:
            table = t.FACT_TABLES[name]
            due = _replaced_versions(table, cutoff, cutoff_at) if rule.tables else _ended_health_needs(cutoff)
            found = list(conn.execute(due))
            total += len(found)
            if found and not dry_run:
                _delete_versions(uow, table, rule, found, now)
        return total
    table, where = _housekeeping(rule.records, cutoff_at)
    count = int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one())
    if count and not dry_run:
        conn.execute(sa.delete(table).where(where))
        record_change(uow.access_log, uow.context, [], [], f"retention.deleted rule={rule.name} rows={count}", now)
    return count


def _housekeeping(records: str, cutoff_at: datetime) -> tuple[sa.Table, sa.ColumnElement[bool]]:
    if records == "sessions":
        s = t.sessions
        return s, sa.func.coalesce(s.c.ended_at, s.c.last_seen_at) < cutoff_at
    if records == "terminal_nonces":
        return t.terminal_nonces, t.terminal_nonces.c.seen_at < cutoff_at
    if records == "idempotency_keys":
        k = t.idempotency_keys
        return k, sa.and_(k.c.state != "pending", k.c.created_at < cutoff_at)
    if records == "sign_in_throttle":
        return t.sign_in_throttle, t.sign_in_throttle.c.window_start < cutoff_at
    raise ValueError(f"no deletion for records {records!r}")  # parse_policy allows only the kinds above


def _slot(table: sa.Table, a: Any, b: Any) -> sa.ColumnElement[bool]:
    """Two aliases of a fact table hold versions of the same fact (subject and key columns)."""
    kind = FACT_KINDS[table.name]
    same = [b.c[kind.subject_column] == a.c[kind.subject_column], *(b.c[k] == a.c[k] for k in kind.keys)]
    return sa.and_(*same)


def _replaced_versions(table: sa.Table, cutoff: date, cutoff_at: datetime) -> sa.Select[Any]:
    """Versions a later version replaced on or before `cutoff`, or a correction replaced before `cutoff_at`."""
    subject = FACT_KINDS[table.name].subject_column
    v, w = table.alias("v"), table.alias("w")
    later = sa.and_(w.c.valid_from > v.c.valid_from, w.c.valid_from <= cutoff)
    corrected = sa.and_(w.c.supersedes_id == v.c.id, w.c.recorded_at < cutoff_at)
    replaced = sa.exists().where(_slot(table, v, w), w.c.id != v.c.id, sa.or_(later, corrected))
    return sa.select(v.c.id, v.c[subject].label("subject")).where(replaced)


def _ended_health_needs(cutoff: date) -> sa.Select[Any]:
    """Every version of a health need whose latest version (not corrected) says it ended on or before `cutoff`."""
    h = t.health_needs
    v, e, x = h.alias("v"), h.alias("e"), h.alias("x")
    newer = sa.exists().where(_slot(h, e, x), sa.or_(x.c.valid_from > e.c.valid_from, x.c.supersedes_id == e.c.id))
    ended = sa.exists().where(_slot(h, v, e), e.c.present.is_(False), e.c.valid_from <= cutoff, ~newer)
    return sa.select(v.c.id, v.c.person_id.label("subject")).where(ended)


def _delete_versions(
    uow: SqlUnitOfWork, table: sa.Table, rule: RetentionRule, found: Sequence[sa.Row[Any]], now: datetime
) -> None:
    """Delete the versions (a kept correction stops pointing at a deleted one) and log per subject."""
    conn = uow.connection
    ids = sorted({row.id for row in found})
    for start in range(0, len(ids), _IN):
        chunk = ids[start : start + _IN]
        conn.execute(sa.update(table).where(table.c.supersedes_id.in_(chunk)).values(supersedes_id=None))
        conn.execute(sa.delete(table).where(table.c.id.in_(chunk)))
    kind = FACT_KINDS[table.name]
    per_subject: dict[str, int] = {}
    for row in found:
        per_subject[row.subject] = per_subject.get(row.subject, 0) + 1
    for subject_id, count in sorted(per_subject.items()):
        subject = Subject.person(subject_id) if kind.subject == "person" else Subject.household(subject_id)
        detail = f"retention.deleted rule={rule.name} table={table.name} versions={count}"
        record_change(uow.access_log, uow.context, [subject], [kind.category], detail, now)


# --------------------------------------------------------------------------- erasing a person


def erase_person(
    uow: SqlUnitOfWork, person_id: str, rule: str, now: datetime, erasure_id: str | None = None
) -> JournalEntry:
    """Erase one person in the unit of work's transaction (the caller holds the log lock and commits).

    Their access-log entries keep the public leaf's subject and chain commitments and lose the
    subject ids and salts; facts, corrections, match keys, PINs and sessions are deleted; free
    text they wrote (appeals, correction requests) and duplicate-review reasons are blanked; the
    persons row stays, its details replaced by an erased marker, status `erased`.
    """
    conn = uow.connection
    erasure = erasure_id or new_id()
    entries = _shred_log_links(conn, person_id, erasure)
    records = _blank_registry(conn, person_id)
    digest = erasure_digest(person_id)
    conn.execute(
        sa.insert(t.erasures).values(
            id=erasure,
            erased_at=now,
            rule=rule,
            erased_by=uow.context.actor.id,
            subject_digest=digest,
            log_entries=entries,
            records=records,
        )
    )
    detail = f"retention.erased rule={rule} erasure={erasure} log_entries={entries} records={records}"
    record_change(uow.access_log, uow.context, [], _ALL_CATEGORIES, detail, now)
    return JournalEntry(erasure, now, rule, digest)


def _shred_log_links(conn: Connection, person_id: str, erasure_id: str) -> int:
    a, leaves = t.access_log, t.log_leaves
    rows = conn.execute(
        sa.select(a.c.seq, a.c.subject_salt, leaves.c.leaf_index, leaves.c.chain_prev)
        .select_from(a.outerjoin(leaves, leaves.c.entry_seq == a.c.seq))
        .where(a.c.subject_person_id == person_id)
    ).all()
    unlinked = {"p_id": None, "h_id": None, "salt": ""}
    integrated = [
        unlinked
        | {
            "b_seq": r.seq,
            "erasure": erasure_id,
            "subject": subject_hash(r.subject_salt, person_id),
            "chain": chain_commitment(r.subject_salt, None if r.chain_prev is None else bytes(r.chain_prev)),
        }
        for r in rows
        if r.leaf_index is not None
    ]
    # Not yet in the tree: nothing public commits to them, so they simply become entries about nobody.
    pending = [
        unlinked | {"b_seq": r.seq, "erasure": None, "subject": None, "chain": None}
        for r in rows
        if r.leaf_index is None
    ]
    if integrated or pending:
        conn.execute(
            sa.update(a)
            .where(a.c.seq == sa.bindparam("b_seq"))
            .values(
                subject_person_id=sa.bindparam("p_id"),
                subject_household_id=sa.bindparam("h_id"),
                subject_salt=sa.bindparam("salt"),
                erasure_id=sa.bindparam("erasure"),
                erased_subject=sa.bindparam("subject"),
                erased_chain=sa.bindparam("chain"),
            ),
            integrated + pending,
        )
    return len(rows)


def _blank_registry(conn: Connection, person_id: str) -> int:
    """Delete or blank what the registry holds about the person; returns how many rows changed."""
    changed = 0
    for kind in FACT_KINDS.values():
        if kind.subject == "person":
            table = t.FACT_TABLES[kind.name]
            changed += conn.execute(sa.delete(table).where(table.c.person_id == person_id)).rowcount
    cards = sa.select(t.cards.c.id).where(t.cards.c.person_id == person_id).scalar_subquery()
    deletions: list[tuple[sa.Table, sa.ColumnElement[bool]]] = [
        (t.person_corrections, t.person_corrections.c.person_id == person_id),
        (t.person_match_keys, t.person_match_keys.c.person_id == person_id),
        (t.card_pins, t.card_pins.c.card_id.in_(cards)),
        (t.sessions, sa.and_(t.sessions.c.principal_kind == "resident", t.sessions.c.principal_id == person_id)),
    ]
    for table, where in deletions:
        changed += conn.execute(sa.delete(table).where(where)).rowcount
    dc, cr, ap = t.duplicate_candidates, t.correction_requests, t.appeals
    blanks: list[tuple[sa.Table, sa.ColumnElement[bool], dict[str, Any]]] = [
        (cr, cr.c.person_id == person_id, {"details": ""}),
        (ap, ap.c.person_id == person_id, {"reason": ""}),
        (dc, sa.or_(dc.c.person_id_l == person_id, dc.c.person_id_r == person_id), {"reasons": ""}),
    ]
    life_events = t.metadata.tables.get("life_events")
    if life_events is not None:
        blanks.append((life_events, life_events.c.person_id == person_id, {"document_ref": None}))
    for table, where, values in blanks:
        changed += conn.execute(sa.update(table).where(where).values(**values)).rowcount
    changed += conn.execute(sa.update(t.persons).where(t.persons.c.id == person_id).values(**_erased_person())).rowcount
    return changed


def _erased_person() -> dict[str, Any]:
    values: dict[str, Any] = {
        "given_names": ERASED,
        "first_surname": ERASED,
        "second_surname": "",
        "birth_date": ERASED_BIRTH_DATE,
        "birth_place": "",
        "sex": "X",
        "address_line": "",
        "municipality": "",
        "region": "",
        "postcode": "",
        "phone": None,
        "national_id": None,
        "photo_ref": None,
        "search_key": "",
        "record_status": "erased",
    }
    if "deceased_on" in t.persons.c:
        values["deceased_on"] = None
    return values


# --------------------------------------------------------------------------- after a restore


def reapply_erasures(engine: Engine, clock: Clock, actor: Actor, journalled: Sequence[JournalEntry]) -> int:
    """Erase again every journalled person a restored database still holds; returns how many.

    The journal names persons by digest, so the restored persons' ids are hashed to find them
    (only those not already erased, and only if some journalled erasure is not in `erasures`).
    """
    now = clock.now()
    with SqlUnitOfWork(engine, AccessContext(actor, RETENTION), clock) as uow:
        conn = uow.connection
        hold_log_lock(conn)
        done = set(conn.execute(sa.select(t.erasures.c.subject_digest)).scalars())
        wanted = {e.subject_digest: e for e in journalled if e.subject_digest not in done}
        if not wanted:
            return 0
        p = t.persons
        living = conn.execute(sa.select(p.c.id).where(p.c.record_status != "erased")).scalars()
        found = [(pid, wanted[d]) for pid in living if (d := erasure_digest(pid)) in wanted]
        for person_id, entry in found:
            erase_person(uow, person_id, entry.rule, now, erasure_id=entry.erasure_id)
        record_change(
            uow.access_log, uow.context, [], [], f"retention.reapplied_after_restore erasures={len(found)}", now
        )
        uow.commit()
    return len(found)
