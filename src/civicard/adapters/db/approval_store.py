"""Four-eyes approvals in the database (table approval_requests, migration 0010_approvals), the
staff accounts a role grant changes, and the unit of work that executes approvals (and that a
duplicate reviewer's decision runs in, since 'same' files a merge request)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from civicard.adapters.db import tables as t
from civicard.adapters.db.card_store import SqlCardUnitOfWork
from civicard.adapters.db.export_store import SqlExports
from civicard.adapters.db.key_store import SqlKeyGenerations
from civicard.governance.approvals import ApprovalRequest, ApprovalStatus
from civicard.governance.kinds import StaffRecord
from civicard.identity.cards import DEFAULT_POLICY, CardKeys, CardPolicy
from civicard.identity.staff import normalise_username
from civicard.shared.clock import Clock, as_utc
from civicard.shared.errors import Conflict, Forbidden, NotFound, Unavailable
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Actor

_COLUMNS = tuple(c.name for c in t.approval_requests.columns)
_TIMES = ("requested_at", "expires_at", "decided_at")
_DECISION = ("status", "decided_by", "decided_role", "decided_at", "decision_note")


class SqlApprovals:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def add(self, request: ApprovalRequest) -> None:
        # No SAVEPOINT (see SqlCards.add): a concurrent request about the same subject aborts this unit of work.
        try:
            self.conn.execute(sa.insert(t.approval_requests), {c: getattr(request, c) for c in _COLUMNS})
        except IntegrityError:
            raise Conflict("approval_already_pending", "A request about this was filed at the same moment.") from None

    def get(self, request_id: str, for_update: bool = False) -> ApprovalRequest | None:
        query = sa.select(t.approval_requests).where(t.approval_requests.c.id == request_id)
        row = self.conn.execute(query.with_for_update() if for_update else query).first()
        return _request(row) if row else None

    def pending_for_subject(self, subject_key: str) -> ApprovalRequest | None:
        c = t.approval_requests.c
        query = sa.select(t.approval_requests).where(c.subject_key == subject_key, c.status == "pending")
        row = self.conn.execute(query).first()
        return _request(row) if row else None

    def pending(self) -> list[ApprovalRequest]:
        c = t.approval_requests.c
        query = sa.select(t.approval_requests).where(c.status == "pending").order_by(c.requested_at, c.id)
        return [_request(r) for r in self.conn.execute(query)]

    def approved(self) -> list[ApprovalRequest]:
        c = t.approval_requests.c
        query = sa.select(t.approval_requests).where(c.status == "approved").order_by(c.requested_at, c.id)
        return [_request(r) for r in self.conn.execute(query)]

    def close(self, request: ApprovalRequest, expected: ApprovalStatus = "pending") -> bool:
        c = t.approval_requests.c
        result = self.conn.execute(
            sa.update(t.approval_requests)
            .where(c.id == request.id, c.status == expected)
            .values({f: getattr(request, f) for f in _DECISION})
        )
        return int(result.rowcount) == 1


class SqlStaffDirectory:
    """staff_accounts as a role grant reads and changes them, inside the approver's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def by_username(self, username: str) -> StaffRecord | None:
        query = sa.select(t.staff_accounts).where(t.staff_accounts.c.username == normalise_username(username))
        row = self.conn.execute(query).first()
        return _staff(row) if row else None

    def get(self, account_id: str, for_update: bool = False) -> StaffRecord | None:
        query = sa.select(t.staff_accounts).where(t.staff_accounts.c.id == account_id)
        row = self.conn.execute(query.with_for_update() if for_update else query).first()
        return _staff(row) if row else None

    def change_role(self, account_id: str, role: str, at: datetime) -> None:
        self.conn.execute(sa.update(t.staff_accounts).where(t.staff_accounts.c.id == account_id).values(role=role))
        s = t.sessions.c
        self.conn.execute(
            sa.update(t.sessions)
            .where(s.principal_kind == "staff", s.principal_id == account_id, s.ended_at.is_(None))
            .values(ended_at=at)
        )


class SqlApprovalUnitOfWork(SqlCardUnitOfWork):
    """The card unit of work plus approvals, staff accounts and export rows, on the same connection
    and transaction. `card_keys` is needed only to approve a merge (it may issue a replacement card)."""

    def __init__(
        self,
        engine: sa.Engine,
        context: AccessContext,
        clock: Clock,
        connection: sa.Connection | None = None,
        *,
        card_keys: CardKeys | None = None,
        card_policy: CardPolicy = DEFAULT_POLICY,
        root_key: RootKey | None = None,
    ) -> None:
        super().__init__(engine, context, clock, connection)
        self._card_keys = card_keys
        self.card_policy = card_policy
        self.root_key = root_key  # only a key rotation needs it (governance/key_custody.py)

    def __enter__(self) -> SqlApprovalUnitOfWork:
        super().__enter__()
        self.approvals = SqlApprovals(self.connection)
        self.staff = SqlStaffDirectory(self.connection)
        self.exports = SqlExports(self.connection)
        self.key_generations = SqlKeyGenerations(self.connection)
        return self

    @property
    def card_keys(self) -> CardKeys:
        if self._card_keys is None:
            raise Unavailable(
                "card_keys_missing", "This step cannot issue cards here; approve it where cards are issued."
            )
        return self._card_keys


def staff_actor(engine: sa.Engine, username: str) -> Actor:
    """The active staff account a command line names (`--by`), as the actor of a four-eyes step."""
    with engine.connect() as conn:
        account = SqlStaffDirectory(conn).by_username(username)
    if account is None:
        raise NotFound("account_not_found", f"There is no staff account '{normalise_username(username)}'.")
    if not account.active:
        raise Forbidden("account_disabled", f"The account '{account.username}' is disabled.")
    return Actor(account.id, account.role)


def _request(row: sa.Row[Any]) -> ApprovalRequest:
    data = {c: getattr(row, c) for c in _COLUMNS}
    data |= {c: as_utc(data[c]) for c in _TIMES if data[c] is not None}
    return ApprovalRequest(**data)


def _staff(row: sa.Row[Any]) -> StaffRecord:
    return StaffRecord(row.id, row.username, row.role, row.disabled_at is None, row.totp_secret_enc is not None)
