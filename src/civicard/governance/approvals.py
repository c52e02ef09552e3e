"""Four-eyes approvals: one account asks, a different account with the right role decides.

A sensitive action (changing a staff account's role, unlocking a card PIN locked after wrong
attempts, …) is not done by whoever wants it. They file an `ApprovalRequest`: the kind of action,
its payload as canonical JSON (ids, roles and codes only — never a name or a PIN), and a reason.
A second account then approves it, which carries the action out in the same unit of work and
stores the request as `executed`, or refuses it with a note. The approver must hold a role the
kind lists, must not be the account that asked, and must not be the account the request is about
(the subject of a role grant). Requests expire: past `expires_at` a request can no longer be
approved, and the next listing or decision marks it `expired`.

Statuses: pending → executed | refused | expired, or pending → approved → executed | expired for
a kind carried out later (`execute_later`, e.g. a bulk export the requester runs once approved):
its approval stores `approved`, and `execute_approved` — by the requester, before `expires_at` —
stores `executed` in the transaction of the work; an approved request never run expires too.
A kind may also react when a request ends unexecuted (`closed`: refused or expired).

Every request, approval, execution, refusal and expiry appends an access-log entry under the
purpose `four_eyes`, in the transaction of the change (a request filed inside another step with
`file_request` — a reviewer's 'same' decision — is logged under that step's purpose). What each
kind means — who may ask, who may approve, how it is checked, executed and described — comes from
the `KindRegistry` the caller passes in (governance/kinds.py holds the real one); this module
knows no kind by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Generic, Literal, Protocol, TypeVar

from civicard.shared.clock import Clock
from civicard.shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from civicard.shared.ids import is_id, new_id
from civicard.shared.text import clean_text
from civicard.transparency.access import AccessContext, AccessLog, Subject, record_change

FOUR_EYES = "four_eyes"
ApprovalStatus = Literal["pending", "approved", "refused", "expired", "executed"]
STATUSES: tuple[ApprovalStatus, ...] = ("pending", "approved", "refused", "expired", "executed")
MAX_REASON, MAX_NOTE = 500, 500
Payload = Mapping[str, str]
# A payload value is an id, a role or a code, or a comma-separated list of codes: no spaces, so
# no name or sentence fits in it.
_CODE = r"[A-Za-z0-9_.:-]{1,64}"
_VALUE = re.compile(rf"{_CODE}(,{_CODE}){{0,31}}")


@dataclass(frozen=True)
class ApprovalRequest:
    id: str
    kind: str
    subject_key: str  # what the request is about ("card:<id>"); one pending request per subject
    payload: str  # canonical JSON: sorted keys, no spaces, ids/roles/codes only
    reason: str
    requested_by: str  # the requesting account's id
    requested_role: str
    requested_at: datetime
    expires_at: datetime
    status: ApprovalStatus = "pending"
    decided_by: str | None = None
    decided_role: str | None = None
    decided_at: datetime | None = None
    decision_note: str | None = None

    @property
    def data(self) -> dict[str, str]:
        loaded = json.loads(self.payload)
        return {str(k): str(v) for k, v in loaded.items()}

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True)
class Approved:
    """An approval and what its execution did (a short code line, as logged)."""

    request: ApprovalRequest
    outcome: str


class ApprovalStore(Protocol):
    def add(self, request: ApprovalRequest) -> None:
        """Refuses (Conflict `approval_already_pending`) a second pending request for the same subject."""
        ...

    def get(self, request_id: str, for_update: bool = False) -> ApprovalRequest | None: ...
    def pending_for_subject(self, subject_key: str) -> ApprovalRequest | None: ...
    def pending(self) -> list[ApprovalRequest]:
        """Every request stored as pending, oldest first (expired ones too, until they are marked)."""
        ...

    def close(self, request: ApprovalRequest, expected: ApprovalStatus = "pending") -> bool:
        """Store the request's new status and decision if it is still `expected`; False if another won."""
        ...

    def approved(self) -> list[ApprovalRequest]:
        """Every request approved and not yet executed (a kind carried out later), oldest first."""
        ...


class ApprovalUnitOfWork(Protocol):
    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def access_log(self) -> AccessLog: ...
    @property
    def approvals(self) -> ApprovalStore: ...

    def commit(self) -> None: ...


U = TypeVar("U", bound=ApprovalUnitOfWork)


@dataclass(frozen=True)
class ApprovalKind(Generic[U]):
    """One kind of action that needs a second person. Subclasses say what the action does; this
    base is a kind that is registered (so its future command plugs in) but not yet available."""

    code: str
    label: str
    requesters: frozenset[str]
    approvers: frozenset[str]
    fields: tuple[str, ...] = ()
    lifetime: timedelta = timedelta(days=3)
    categories: frozenset[str] = frozenset()  # personal-data categories the action touches
    unavailable: str | None = None  # why it cannot be requested yet
    execute_later: bool = False  # approval stores `approved`; the requester executes it later

    def check(self, uow: U, payload: Payload) -> None:
        """Refuse a payload that makes no sense now; runs when asked and again before approval."""

    def subject_key(self, payload: Payload) -> str:
        return f"{self.code}:" + ",".join(payload[f] for f in self.fields)

    def subjects(self, uow: U, payload: Payload) -> list[Subject]:
        """Whose access log shows the request (none for staff matters)."""
        return []

    def parties(self, payload: Payload) -> frozenset[str]:
        """Accounts the request is about: they may not decide it."""
        return frozenset()

    def describe(self, payload: Payload) -> str:
        return self.label

    def execute(self, uow: U, request: ApprovalRequest) -> str:
        """Carry the action out inside the approver's transaction (no commit); returns a log line."""
        raise Unavailable("kind_not_available", self.unavailable or f"'{self.code}' cannot be executed.")

    def closed(self, uow: U, request: ApprovalRequest) -> None:
        """Inside the transaction that refuses or expires the request (no commit): undo what asking set up."""


class KindRegistry(Generic[U]):
    """The kinds by code; each code is registered once."""

    def __init__(self, kinds: Sequence[ApprovalKind[U]]) -> None:
        self._kinds: dict[str, ApprovalKind[U]] = {}
        for kind in kinds:
            if kind.code in self._kinds:
                raise ValueError(f"approval kind '{kind.code}' registered twice")
            self._kinds[kind.code] = kind

    def get(self, code: str) -> ApprovalKind[U]:
        kind = self._kinds.get(code)
        if kind is None:
            raise InvalidInput("unknown_kind", f"'{code}' is not a kind of approval ({', '.join(self._kinds)}).")
        return kind

    def approvable_by(self, role: str) -> frozenset[str]:
        """The available kinds an account with `role` may approve."""
        return frozenset(k.code for k in self._kinds.values() if role in k.approvers and k.unavailable is None)


def canonical_payload(kind: ApprovalKind[U], payload: Payload) -> str:
    """Exactly the kind's fields, each an id, role or code, as sorted compact JSON."""
    if set(payload) != set(kind.fields):
        raise InvalidInput("invalid_payload", f"A {kind.code} request names exactly: {', '.join(kind.fields)}.")
    for name, value in payload.items():
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise InvalidInput("invalid_payload", f"'{name}' must be an id, a role or a code.")
    return json.dumps(dict(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def request(uow: U, kinds: KindRegistry[U], kind: str, payload: Payload, reason: str) -> ApprovalRequest:
    """File a request for a second account's approval; nothing else changes until it is approved."""
    _require_four_eyes(uow)
    created = file_request(uow, kinds, kind, payload, reason)
    uow.commit()
    return created


def file_request(uow: U, kinds: KindRegistry[U], kind: str, payload: Payload, reason: str) -> ApprovalRequest:
    """Inside the caller's transaction (no commit) and under its purpose: file a request, as part
    of the step that needs it (a reviewer's 'same' decision files the merge it asks for)."""
    spec = kinds.get(kind)
    if spec.unavailable is not None:
        raise Unavailable("kind_not_available", spec.unavailable)
    actor = uow.context.actor
    if actor.role not in spec.requesters:
        allowed = ", ".join(sorted(spec.requesters))
        raise Forbidden("requester_role_not_allowed", f"A {actor.role} may not ask for '{kind}' (only: {allowed}).")
    text = clean_text(reason, "reason", MAX_REASON)
    body = canonical_payload(spec, payload)
    data = json.loads(body)
    spec.check(uow, data)
    now = uow.clock.now()
    key = spec.subject_key(data)
    waiting = uow.approvals.pending_for_subject(key)
    if waiting is not None and not waiting.expired(now):
        refusal = Conflict("approval_already_pending", "A request about this is already waiting for approval.")
        refusal.public = {"request_id": waiting.id}
        raise refusal
    if waiting is not None:
        _expire(uow, kinds.get(waiting.kind), waiting, now)
    created = ApprovalRequest(new_id(), kind, key, body, text, actor.id, actor.role, now, now + spec.lifetime)
    uow.approvals.add(created)
    _log(uow, spec, created, "requested", now)
    return created


def approve(uow: U, kinds: KindRegistry[U], request_id: str, note: str | None = None) -> Approved:
    """Approve and execute in one transaction; of two approvers at once, exactly one wins. A kind
    executed later is only stored `approved` (outcome `awaiting_execution`)."""
    _require_four_eyes(uow)
    text = clean_text(note or "", "note", MAX_NOTE, required=False) or None
    found, spec = _decidable(uow, kinds, request_id)
    _require_approver(uow, spec, found)
    now, actor = uow.clock.now(), uow.context.actor
    status: ApprovalStatus = "approved" if spec.execute_later else "executed"
    decided = replace(
        found, status=status, decided_by=actor.id, decided_role=actor.role, decided_at=now, decision_note=text
    )
    # The conditional update is the transaction's first write: a second approver waits for it and
    # then finds the request no longer pending (PostgreSQL also locks the row when it is read).
    if not uow.approvals.close(decided):
        raise Conflict("approval_already_decided", "Someone decided this request at the same moment.")
    # Checked after the close, under its lock: checked before, a second approver could read the state
    # the first had just changed (a granted role) and be refused for that instead. A failed check
    # rolls the close back with the rest of the transaction.
    spec.check(uow, found.data)
    _log(uow, spec, decided, "approved", now)
    if spec.execute_later:
        uow.commit()
        return Approved(decided, "awaiting_execution")
    outcome = spec.execute(uow, decided)
    _log(uow, spec, decided, "executed", now, outcome)
    uow.commit()
    return Approved(decided, outcome)


def refuse(uow: U, kinds: KindRegistry[U], request_id: str, note: str) -> ApprovalRequest:
    """Turn a request down with a note; the requester may also withdraw their own."""
    _require_four_eyes(uow)
    text = clean_text(note, "note", MAX_NOTE)
    found, spec = _decidable(uow, kinds, request_id)
    actor = uow.context.actor
    withdrawn = actor.id == found.requested_by
    if not withdrawn:
        _require_approver(uow, spec, found)
    now = uow.clock.now()
    decided = replace(
        found, status="refused", decided_by=actor.id, decided_role=actor.role, decided_at=now, decision_note=text
    )
    if not uow.approvals.close(decided):
        raise Conflict("approval_already_decided", "Someone decided this request at the same moment.")
    _log(uow, spec, decided, "refused", now, "withdrawn" if withdrawn else "")
    spec.closed(uow, decided)
    uow.commit()
    return decided


def execute_approved(uow: U, kinds: KindRegistry[U], request_id: str, kind: str) -> ApprovalRequest:
    """Inside the caller's transaction (no commit; the caller commits with the work it does): mark
    an approved `kind` request executed. Only the requester runs it, once, before it expires; an
    expired one is marked (committed) and refused."""
    found = uow.approvals.get(request_id, for_update=True) if is_id(request_id) else None
    if found is None or found.kind != kind:
        raise NotFound("unknown_request", f"There is no {kind} request with this id.")
    spec = kinds.get(found.kind)
    if uow.context.actor.id != found.requested_by:
        raise Forbidden("not_the_requester", "Only the account that asked may carry out this request.")
    now = uow.clock.now()
    if found.status == "approved" and found.expired(now):
        _expire(uow, spec, found, now)
        uow.commit()
    if found.status == "expired" or (found.status == "approved" and found.expired(now)):
        raise Conflict("approval_expired", "This request has expired; ask again if it is still needed.")
    if found.status == "pending":
        raise Conflict("approval_not_approved", "This request is still waiting for a second account's approval.")
    if found.status != "approved":
        raise Conflict("approval_already_decided", f"This request is {found.status}; it cannot be carried out.")
    executed = replace(found, status="executed")
    if not uow.approvals.close(executed, expected="approved"):
        raise Conflict("approval_already_decided", "This request was carried out at the same moment.")
    _log(uow, spec, executed, "executed", now)
    return executed


def pending(uow: U, kinds: KindRegistry[U], *, everything: bool = False) -> list[ApprovalRequest]:
    """Requests still waiting, oldest first: those the actor's role may approve and the actor's own
    (all of them with `everything`). Requests past their expiry are marked expired on the way."""
    _require_four_eyes(uow)
    now, actor = uow.clock.now(), uow.context.actor
    expire_due(uow, kinds)
    live = [found for found in uow.approvals.pending() if not found.expired(now)]
    uow.commit()
    if everything:
        return live
    allowed = kinds.approvable_by(actor.role)
    return [r for r in live if r.kind in allowed or r.requested_by == actor.id]


def expire_due(uow: U, kinds: KindRegistry[U], kind: str | None = None) -> None:
    """Inside the caller's transaction (no commit): mark pending or approved requests (of `kind`)
    past their expiry expired, so what their kind set up is undone (a merge's pair reopens)."""
    now = uow.clock.now()
    for found in [*uow.approvals.pending(), *uow.approvals.approved()]:
        if found.expired(now) and kind in (None, found.kind):
            _expire(uow, kinds.get(found.kind), found, now)


def _decidable(uow: U, kinds: KindRegistry[U], request_id: str) -> tuple[ApprovalRequest, ApprovalKind[U]]:
    """The request, locked and still pending; an expired one is marked (committed) and refused."""
    found = uow.approvals.get(request_id, for_update=True) if is_id(request_id) else None
    if found is None:
        raise NotFound("unknown_request", "There is no approval request with this id.")
    spec = kinds.get(found.kind)
    now = uow.clock.now()
    if found.status == "pending" and found.expired(now):
        _expire(uow, spec, found, now)
        uow.commit()
        raise Conflict("approval_expired", "This request has expired; ask again if it is still needed.")
    if found.status == "expired":
        raise Conflict("approval_expired", "This request has expired; ask again if it is still needed.")
    if found.status != "pending":
        raise Conflict("approval_already_decided", f"This request is already {found.status}.")
    return found, spec


def _require_approver(uow: U, spec: ApprovalKind[U], found: ApprovalRequest) -> None:
    actor = uow.context.actor
    if actor.id == found.requested_by:
        raise Forbidden("same_account", "A different account than the one that asked must approve this.")
    if actor.id in spec.parties(found.data):
        raise Forbidden("approver_is_subject", "The account this request is about cannot decide it.")
    if actor.role not in spec.approvers:
        allowed = ", ".join(sorted(spec.approvers))
        raise Forbidden(
            "approver_role_not_allowed", f"A {actor.role} may not decide '{spec.code}' requests (only: {allowed})."
        )


def _expire(uow: U, spec: ApprovalKind[U], found: ApprovalRequest, now: datetime) -> None:
    expired = replace(found, status="expired")
    if uow.approvals.close(expired, expected=found.status):
        _log(uow, spec, found, "expired", now)
        spec.closed(uow, expired)


def _log(uow: U, spec: ApprovalKind[U], found: ApprovalRequest, step: str, now: datetime, outcome: str = "") -> None:
    detail = f"approval.{step} request={found.id} kind={found.kind}" + (f" {outcome}" if outcome else "")
    subjects = spec.subjects(uow, found.data)
    record_change(uow.access_log, uow.context, subjects, spec.categories, detail, now)


def _require_four_eyes(uow: ApprovalUnitOfWork) -> None:
    if uow.context.purpose != FOUR_EYES:
        raise Forbidden("purpose_not_allowed", f"Approvals are asked for and decided under the '{FOUR_EYES}' purpose.")
