"""SQL side of the resident portal: who recorded a resident's data, their household's ledger, and
the unit of work the portal and the correction queue run in.

Runs on the unit of work's connection and transaction; it never commits.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from civicard.adapters.db import tables as t
from civicard.adapters.db.correction_store import SqlCorrectionRequests
from civicard.adapters.db.uow import SqlUnitOfWork
from civicard.distribution.household_ledger import EntitlementLine, HouseholdRedemption, RedeemedItem
from civicard.registry.self_service import IdentityChange, Recorder
from civicard.shared.clock import as_utc
from civicard.shared.ids import is_id

_IN = 500  # ids per IN (...) list


class SqlResidentRecords:
    """The ResidentRecords port: identity corrections and who recorded what."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def identity_changes(self, person_id: str) -> list[IdentityChange]:
        pc = t.person_corrections
        rows = self.conn.execute(
            sa.select(pc.c.field, pc.c.corrected_at, pc.c.corrected_by)
            .where(pc.c.person_id == person_id)
            .order_by(pc.c.corrected_at, pc.c.id)
        )
        return [IdentityChange(r.field, as_utc(r.corrected_at), r.corrected_by) for r in rows]

    def recorders(self, actor_ids: Sequence[str], person_id: str, household_id: str | None) -> dict[str, Recorder]:
        """Staff by their name and role; anyone else (a process, an import) by the role the access
        log recorded when they wrote this resident's or household's data."""
        wanted = sorted({a for a in actor_ids if a})[:_IN]
        if not wanted:
            return {}
        s, a = t.staff_accounts, t.access_log
        staff = {
            r.id: (r.display_name, r.role)
            for r in self.conn.execute(sa.select(s.c.id, s.c.display_name, s.c.role).where(s.c.id.in_(wanted)))
        }
        about = a.c.subject_person_id == person_id
        if household_id is not None:
            about = sa.or_(about, a.c.subject_household_id == household_id)
        others = [w for w in wanted if w not in staff]
        logged: dict[str, str] = {}
        if others:
            query = sa.select(a.c.actor, a.c.role).where(a.c.action == "write", a.c.actor.in_(others), about).distinct()
            logged = {r.actor: r.role for r in self.conn.execute(query)}
        return {w: Recorder(w, *staff[w]) if w in staff else Recorder(w, w, logged.get(w, "")) for w in wanted}


class SqlHouseholdLedger:
    """The HouseholdLedger port: entitlements, redemptions and their lines, item and program names."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def periods(self, household_id: str) -> list[str]:
        e, r = t.entitlements, t.redemptions
        query = sa.union(
            sa.select(e.c.period).where(e.c.household_id == household_id),
            sa.select(r.c.period).where(r.c.household_id == household_id),
        )
        return sorted(set(self.conn.execute(query).scalars()), reverse=True)

    def entitlements(self, household_id: str, period: str) -> list[EntitlementLine]:
        e = t.entitlements
        rows = self.conn.execute(
            sa.select(e.c.program, e.c.item_code, e.c.granted, e.c.remaining)
            .where(e.c.period == period, e.c.household_id == household_id)
            .order_by(e.c.program, e.c.item_code)
        )
        return [EntitlementLine(r.program, r.item_code, int(r.granted), int(r.remaining)) for r in rows]

    def redemptions(self, household_id: str, period: str, person_id: str) -> list[HouseholdRedemption]:
        r, o, c = t.redemptions, t.outlets, t.cards
        rows = self.conn.execute(
            sa.select(
                r.c.id,
                r.c.created_at,
                r.c.device_time,
                r.c.channel,
                r.c.total_minor,
                o.c.name.label("outlet_name"),
                c.c.person_id,
            )
            .select_from(r.outerjoin(o, o.c.id == r.c.outlet_id).outerjoin(c, c.c.id == r.c.card_id))
            .where(r.c.period == period, r.c.household_id == household_id)
            .order_by(r.c.created_at.desc(), r.c.id)
        ).all()
        items = self._items_of(period, [row.id for row in rows])
        return [
            HouseholdRedemption(
                row.id,
                period,
                as_utc(row.device_time if row.channel == "offline" and row.device_time else row.created_at),
                row.outlet_name or "",
                row.channel,
                int(row.total_minor),
                tuple(items.get(row.id, ())),
                row.person_id == person_id,
            )
            for row in rows
        ]

    def _items_of(self, period: str, redemption_ids: Sequence[str]) -> dict[str, list[RedeemedItem]]:
        ll = t.ledger_lines
        found: dict[str, list[RedeemedItem]] = {}
        ids = [i for i in redemption_ids if is_id(i)]
        for start in range(0, len(ids), _IN):
            rows = self.conn.execute(
                sa.select(ll.c.redemption_id, ll.c.item_code, sa.func.sum(ll.c.quantity).label("quantity"))
                .where(ll.c.period == period, ll.c.redemption_id.in_(ids[start : start + _IN]))
                .group_by(ll.c.redemption_id, ll.c.item_code)
                .order_by(ll.c.redemption_id, ll.c.item_code)
            )
            for row in rows:
                found.setdefault(row.redemption_id, []).append(RedeemedItem(row.item_code, int(row.quantity)))
        return found

    def item_names(self) -> dict[str, dict[str, str]]:
        i = t.items
        rows = self.conn.execute(sa.select(i.c.code, i.c.name_es, i.c.name_en, i.c.unit))
        return {r.code: {"es": r.name_es, "en": r.name_en, "unit": r.unit} for r in rows}

    def program_titles(self) -> dict[str, dict[str, str]]:
        """Each program's title from its latest published (or retired) rule version."""
        pv = t.program_versions
        rows = self.conn.execute(
            sa.select(pv.c.program, pv.c.title_es, pv.c.title_en)
            .where(pv.c.status.in_(["published", "retired"]))
            .order_by(pv.c.effective_from, pv.c.proposed_at)
        )
        return {r.program: {"es": r.title_es, "en": r.title_en} for r in rows}


class SqlResidentUnitOfWork(SqlUnitOfWork):
    """The registry unit of work plus the portal's stores, on the same connection and transaction."""

    def __enter__(self) -> SqlResidentUnitOfWork:
        super().__enter__()
        conn = self.connection
        self.residents = SqlResidentRecords(conn)
        self.ledger = SqlHouseholdLedger(conn)
        self.correction_requests = SqlCorrectionRequests(conn)
        return self


__all__ = ["SqlHouseholdLedger", "SqlResidentRecords", "SqlResidentUnitOfWork"]
