"""The actions that need a second person, and how each is asked for, checked, executed and shown.

    role_grant        asked by program_admin or oversight, approved by oversight: the account's
                      role changes and its open sessions end (they act in the old role).
    pin_reset         asked by a registrar, approved by another registrar or a reviewer: the
                      locked PIN is cleared; the holder chooses a new one at the desk.
    person_merge      filed by a reviewer's "same" decision (dedup/review.py), approved by another
                      reviewer or oversight: the two records are merged (dedup/merging.py), the
                      merge's registry writes logged under `person_merge`. A refusal or expiry puts
                      the pair back in the queue as open.
    rule_publication  decided in the program register (programs/publishing.py: one program
                      administrator proposes, another approves or rejects; a proposal expires
                      after 14 days), which keeps the version's text and impact preview with the
                      decision; `civicard approvals list` and GET /v1/approvals show those waiting.
    key_rotation      asked by oversight (`civicard keys rotate`), approved by another oversight
                      account: the next issuer or checkpoint key generation starts; a compromised
                      issuer kid stops verifying and its cards are revoked (governance/key_custody.py).
    bulk_export       asked by program_admin or oversight, approved by oversight; carried out
                      later, once, by the requester (governance/exports.py, `civicard export run`).

A role grant is about a staff account, not a resident, so its log entries have no subject; a PIN
reset is logged for the card holder. Neither touches a registry data category (purpose
`four_eyes` has none): a PIN is a credential, logged like a PIN check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from civicard.dedup.merging import PERSON_MERGE, MergeUnit, merge_approved, mergeable_pair, reopen_pair
from civicard.dedup.ports import ReviewUnitOfWork
from civicard.governance import approvals
from civicard.governance.approvals import (
    ApprovalKind,
    ApprovalRequest,
    ApprovalUnitOfWork,
    KindRegistry,
    Payload,
)
from civicard.governance.exports import EXPORT_PAYLOAD, ExportStore, check_export, describe_export, export_subject
from civicard.governance.key_custody import (
    KeyGenerationStore,
    check_rotation,
    describe_rotation,
    rotate,
    rotation_payload,
)
from civicard.identity.cards import (
    CardKeys,
    CardPolicy,
    CardUnitOfWork,
    card_with_locked_pin,
    clear_locked_pin,
    locked_pin_card,
)
from civicard.identity.staff import check_staff_role, role_needs_totp
from civicard.shared.errors import Conflict, InvalidInput, NotFound
from civicard.shared.ids import is_id
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, Subject

ROLE_GRANT, PIN_RESET = "role_grant", "pin_reset"
RULE_PUBLICATION, KEY_ROTATION, BULK_EXPORT = (
    "rule_publication",
    "key_rotation",
    "bulk_export",
)  # PERSON_MERGE (dedup/merging.py) is both the kind's code and the purpose its merge is logged under


@dataclass(frozen=True)
class StaffRecord:
    """A staff account as a role grant needs it (never its password hash or TOTP secret)."""

    id: str
    username: str
    role: str
    active: bool
    second_factor: bool  # a TOTP secret is enrolled


class StaffDirectory(Protocol):
    def by_username(self, username: str) -> StaffRecord | None: ...
    def get(self, account_id: str, for_update: bool = False) -> StaffRecord | None: ...
    def change_role(self, account_id: str, role: str, at: datetime) -> None:
        """Set the role and end the account's open sessions (they act in the old role)."""
        ...


class GovernedUnitOfWork(ApprovalUnitOfWork, ReviewUnitOfWork, CardUnitOfWork, Protocol):
    """What executing today's kinds needs: approvals, the registry, cards, the duplicate queue and
    staff accounts in one transaction, and the card keys a merge's replacement card is signed with."""

    @property
    def staff(self) -> StaffDirectory: ...
    @property
    def exports(self) -> ExportStore: ...
    @property
    def card_keys(self) -> CardKeys: ...
    @property
    def card_policy(self) -> CardPolicy: ...
    @property
    def key_generations(self) -> KeyGenerationStore: ...
    @property
    def root_key(self) -> RootKey | None:
        """The root key, where it is loaded: a key rotation derives the next generation from it."""
        ...


class KeyRotation(ApprovalKind[GovernedUnitOfWork]):
    """Start the next generation of a signing key (governance/key_custody.py); one request per key."""

    def check(self, uow: GovernedUnitOfWork, payload: Payload) -> None:
        check_rotation(uow, payload)

    def subject_key(self, payload: Payload) -> str:
        return f"keys:{payload['purpose']}"

    def describe(self, payload: Payload) -> str:
        return describe_rotation(payload)

    def execute(self, uow: GovernedUnitOfWork, request: ApprovalRequest) -> str:
        return rotate(uow, request)


class RoleGrant(ApprovalKind[GovernedUnitOfWork]):
    """Give an existing staff account another role (each account has exactly one)."""

    def check(self, uow: GovernedUnitOfWork, payload: Payload) -> None:
        account_id = payload["account_id"]
        _grantable(uow.staff.get(account_id) if is_id(account_id) else None, payload)

    def subject_key(self, payload: Payload) -> str:
        return f"account:{payload['account_id']}"

    def parties(self, payload: Payload) -> frozenset[str]:
        return frozenset({payload["account_id"]})

    def describe(self, payload: Payload) -> str:
        return f"Change staff account {payload['account_id']} from {payload['from_role']} to {payload['to_role']}"

    def execute(self, uow: GovernedUnitOfWork, request: ApprovalRequest) -> str:
        payload = request.data
        account = _grantable(uow.staff.get(payload["account_id"], for_update=True), payload)
        uow.staff.change_role(account.id, payload["to_role"], uow.clock.now())
        return f"account={account.id} role={payload['from_role']}->{payload['to_role']}"


class PinReset(ApprovalKind[GovernedUnitOfWork]):
    """Unlock a card PIN locked after five wrong attempts, by clearing it (identity/cards.py)."""

    def check(self, uow: GovernedUnitOfWork, payload: Payload) -> None:
        card_with_locked_pin(uow, payload["card_id"])

    def subject_key(self, payload: Payload) -> str:
        return pin_reset_subject(payload["card_id"])

    def subjects(self, uow: GovernedUnitOfWork, payload: Payload) -> list[Subject]:
        card = uow.cards.by_id(payload["card_id"])
        return [Subject.person(card.person_id)] if card else []

    def describe(self, payload: Payload) -> str:
        return f"Unlock the locked PIN of card {payload['card_id']}: it is cleared and the holder chooses a new one"

    def execute(self, uow: GovernedUnitOfWork, request: ApprovalRequest) -> str:
        clear_locked_pin(uow, request.data["card_id"], request.id)
        return "pin_cleared"


class PersonMerge(ApprovalKind[GovernedUnitOfWork]):
    """Merge the two records of a pair a reviewer decided 'same' (dedup/merging.py)."""

    def check(self, uow: GovernedUnitOfWork, payload: Payload) -> None:
        mergeable_pair(uow, payload["candidate_id"], payload["survivor_id"])

    def subject_key(self, payload: Payload) -> str:
        return merge_subject(payload["candidate_id"])

    def subjects(self, uow: GovernedUnitOfWork, payload: Payload) -> list[Subject]:
        candidate = uow.duplicates.candidate(payload["candidate_id"])
        return [Subject.person(p) for p in candidate.person_ids] if candidate else []

    def describe(self, payload: Payload) -> str:
        return (
            f"Merge the pair {payload['candidate_id']} decided 'same': "
            f"the other record becomes an alias of {payload['survivor_id']}"
        )

    def execute(self, uow: GovernedUnitOfWork, request: ApprovalRequest) -> str:
        context = AccessContext(uow.context.actor, PERSON_MERGE)
        merge, needs_pin = merge_approved(MergeUnit(uow, context), uow.card_keys, request.data, uow.card_policy)
        outcome = f"merge={merge.id} survivor={merge.survivor_id} merged={merge.merged_id}"
        return outcome + (" survivor_needs_pin" if needs_pin else "")

    def closed(self, uow: GovernedUnitOfWork, request: ApprovalRequest) -> None:
        reopen_pair(uow, request.data["candidate_id"], request.id)


class BulkExport(ApprovalKind[GovernedUnitOfWork]):
    """Export chosen registry fields of the members of a program's eligible households (exports.py)."""

    def check(self, uow: GovernedUnitOfWork, payload: Payload) -> None:
        check_export(uow, payload)

    def subject_key(self, payload: Payload) -> str:
        return export_subject(payload)

    def describe(self, payload: Payload) -> str:
        return describe_export(payload)


KINDS: KindRegistry[GovernedUnitOfWork] = KindRegistry(
    [
        RoleGrant(
            ROLE_GRANT,
            "Grant or change a staff account's role",
            requesters=frozenset({"program_admin", "oversight"}),
            approvers=frozenset({"oversight"}),
            fields=("account_id", "from_role", "to_role"),
            lifetime=timedelta(days=3),
        ),
        PinReset(
            PIN_RESET,
            "Unlock a card PIN locked after wrong attempts",
            requesters=frozenset({"registrar"}),
            approvers=frozenset({"registrar", "reviewer"}),
            fields=("card_id",),
            lifetime=timedelta(days=2),
        ),
        PersonMerge(
            PERSON_MERGE,
            "Merge two records of one person",
            requesters=frozenset({"reviewer"}),
            approvers=frozenset({"reviewer", "oversight"}),
            fields=("candidate_id", "survivor_id"),
            lifetime=timedelta(days=7),
        ),
        ApprovalKind(
            RULE_PUBLICATION,
            "Publish a program rule version",
            requesters=frozenset({"program_admin"}),
            approvers=frozenset({"program_admin"}),
            unavailable="Rule versions are approved in the program register: one program administrator proposes, "
            "another approves (civicard programs propose / approve); `civicard approvals list` shows those waiting.",
        ),
        KeyRotation(
            KEY_ROTATION,
            "Rotate a signing key",
            requesters=frozenset({"oversight"}),
            approvers=frozenset({"oversight"}),
            fields=("purpose", "generation", "compromised"),
            lifetime=timedelta(days=2),
        ),
        BulkExport(
            BULK_EXPORT,
            "Export personal data in bulk",
            requesters=frozenset({"program_admin", "oversight"}),
            approvers=frozenset({"oversight"}),
            fields=EXPORT_PAYLOAD,
            lifetime=timedelta(days=3),
            execute_later=True,
        ),
    ]
)


def request_role_grant(uow: GovernedUnitOfWork, username: str, role: str, reason: str) -> ApprovalRequest:
    """Ask for an existing account to get `role`; an oversight account other than the two approves."""
    account = uow.staff.by_username(username)
    if account is None:
        raise NotFound("account_not_found", f"There is no staff account '{username}'.")
    payload = {"account_id": account.id, "from_role": account.role, "to_role": role}
    return approvals.request(uow, KINDS, ROLE_GRANT, payload, reason)


def request_pin_unlock(uow: GovernedUnitOfWork, handle: str, reason: str) -> ApprovalRequest:
    """Ask for the locked PIN of the card `handle` to be cleared; a second registrar or reviewer approves."""
    card = locked_pin_card(uow, handle)
    return approvals.request(uow, KINDS, PIN_RESET, {"card_id": card.id}, reason)


def file_person_merge(uow: GovernedUnitOfWork, candidate_id: str, survivor_id: str, reason: str) -> ApprovalRequest:
    """Inside the reviewer's 'same' decision (no commit): ask a second account to carry out the merge."""
    payload = {"candidate_id": candidate_id, "survivor_id": survivor_id}
    return approvals.file_request(uow, KINDS, PERSON_MERGE, payload, reason)


def merge_subject(candidate_id: str) -> str:
    """The subject key of a pair's `person_merge` request (to find the one pending, if any)."""
    return f"merge:{candidate_id}"


def request_key_rotation(uow: GovernedUnitOfWork, purpose: str, reason: str, compromised: bool) -> ApprovalRequest:
    """Ask for the next generation of the issuer or checkpoint key; another oversight account approves."""
    return approvals.request(uow, KINDS, KEY_ROTATION, rotation_payload(uow, purpose, compromised), reason)


def pin_reset_subject(card_id: str) -> str:
    """The subject key of a card's `pin_reset` request (to find the one pending, if any)."""
    return f"card:{card_id}"


def _grantable(account: StaffRecord | None, payload: Payload) -> StaffRecord:
    if account is None:
        raise NotFound("account_not_found", "There is no such staff account.")
    if not account.active:
        raise Conflict("account_disabled", f"The account '{account.username}' is disabled.")
    role = check_staff_role(payload["to_role"])
    if account.role != payload["from_role"]:
        raise Conflict("role_changed", f"The account '{account.username}' is now a {account.role}; ask again.")
    if role == account.role:
        raise InvalidInput("same_role", f"The account '{account.username}' already has the role {role}.")
    if role_needs_totp(role) and not account.second_factor:
        raise Conflict(
            "second_factor_missing",
            f"A {role} signs in with a second factor, which '{account.username}' has not enrolled; "
            "create a new account for this role (civicard users create), which enrols one.",
        )
    return account
