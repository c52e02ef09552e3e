"""Benefit cycles: what a decision and its entitlements are, and what changes when one is redone.

A cycle decides every household under the versions in force for a period. A decision is
identified by its household, program and period; it is made on one input snapshot (the
canonical JSON of the household's rule inputs, identified by its SHA-256) under one rule
version (its SHA-256). Redoing a decision with the same snapshot and rules creates nothing;
with a different one, the earlier decision is superseded (kept) and the open period's
entitlements are adjusted — never those of a closed period.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from civicard.programs.decisions import HouseholdFacts
from civicard.programs.engines import Outcome
from civicard.shared.errors import InvalidInput

ORIGINS = ("cycle", "reevaluation", "appeal")


def period_start(period: str) -> date:
    """'2026-12' → 2026-12-01; anything else is a usage error a clerk can fix."""
    try:
        if len(period) != 7 or period[4] != "-":
            raise ValueError(period)
        return date.fromisoformat(f"{period}-01")
    except ValueError:
        raise InvalidInput("invalid_period", f"'{period}' is not a period; write the month as YYYY-MM.") from None


def period_of(day: date) -> str:
    return f"{day:%Y-%m}"


def inputs_json(household: Mapping[str, Any], members: Sequence[Mapping[str, Any]]) -> str:
    """The canonical text of a household's rule inputs: sorted keys, members in canonical order."""
    member_texts = sorted(_canonical(m) for m in members)
    return '{"household":' + _canonical(household) + ',"members":[' + ",".join(member_texts) + "]}"


LEFT_OUT = frozenset({"household_id", "region", "person_id"})  # identify, not decide


def _canonical(values: Mapping[str, Any]) -> str:
    """`json.dumps(values, sort_keys=True, separators=(",", ":"))` of the inputs with every number
    as a float — written out directly, because a cycle encodes millions of these."""
    keys = sorted(k for k in values if k not in LEFT_OUT)
    return "{" + ",".join(f'"{k}":{_token(values[k])}' for k in keys) + "}"


def _token(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    return repr(float(v))


def snapshot_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def facts_from_snapshot(text: str) -> HouseholdFacts:
    """The inputs a decision was made on, back from its stored snapshot (for explanations)."""
    raw = json.loads(text)
    return HouseholdFacts(dict(raw["household"]), [dict(m) for m in raw["members"]])


@dataclass(frozen=True)
class EntitlementChange:
    item: str
    granted_before: int
    granted_after: int
    remaining_before: int
    remaining_after: int

    @property
    def over_redeemed(self) -> int:
        """Units already redeemed beyond what is now granted (the vendor is still paid for them)."""
        redeemed = self.granted_before - self.remaining_before
        return max(0, redeemed - self.granted_after)


@dataclass(frozen=True)
class DecisionChange:
    """One household's decision under one program that a cycle or re-evaluation made or replaced."""

    household_id: str
    program: str
    period: str
    before: Outcome | None
    after: Outcome
    entitlements: tuple[EntitlementChange, ...] = field(default_factory=tuple)

    @property
    def kind(self) -> str:
        if self.before is None:
            return "new"
        if self.before.status != self.after.status:
            return (
                "gained"
                if self.after.status == "eligible"
                else "lost"
                if self.before.status == "eligible"
                else "status"
            )
        if self.before.amount_minor != self.after.amount_minor or self.before.items != self.after.items:
            return "amount"
        return "same"

    def summary(self) -> str:
        if self.before is None:
            return f"{self.program}: {self.after.status}, amount {self.after.amount_minor / 100:.2f}"
        parts = [f"{self.program}: {self.before.status} → {self.after.status}"]
        if self.before.amount_minor != self.after.amount_minor:
            parts.append(f"amount {self.before.amount_minor / 100:.2f} → {self.after.amount_minor / 100:.2f}")
        for e in self.entitlements:
            text = f"{e.item} {e.granted_before} → {e.granted_after} (left {e.remaining_before} → {e.remaining_after})"
            if e.over_redeemed:
                text += f", {e.over_redeemed} already redeemed beyond the new grant"
            parts.append(text)
        return "; ".join(parts)


def adjust_entitlements(
    before: Mapping[str, tuple[int, int]], after: Mapping[str, int]
) -> tuple[EntitlementChange, ...]:
    """New (granted, remaining) per item when a grant changes: what was redeemed stays redeemed.

    `before` maps item → (granted, remaining); `after` maps item → newly granted quantity."""
    changes = []
    for item in sorted(set(before) | set(after)):
        granted, remaining = before.get(item, (0, 0))
        new_granted = after.get(item, 0)
        if new_granted == granted:
            continue
        redeemed = granted - remaining
        changes.append(EntitlementChange(item, granted, new_granted, remaining, max(0, new_granted - redeemed)))
    return tuple(changes)


@dataclass(frozen=True)
class Proposed:
    """A decision just computed, before it is compared with what is stored."""

    household_id: str
    program: str
    version_id: str
    rules_sha256: str
    inputs_sha256: str
    outcome: Outcome


@dataclass(frozen=True)
class Stored:
    id: str
    household_id: str
    program: str
    rules_sha256: str
    inputs_sha256: str
    outcome: Outcome


class DecisionStore(Protocol):
    """What applying decisions needs from storage (adapters/db/decision_store.py)."""

    def current(self, period: str, household_ids: Sequence[str] | None = None) -> dict[tuple[str, str], Stored]: ...

    def entitlements(
        self, period: str, household_ids: Sequence[str]
    ) -> dict[tuple[str, str], dict[str, tuple[str, int, int]]]: ...

    def write(self, period: str, changes: WriteSet) -> None: ...


@dataclass
class WriteSet:
    """Rows to write in one go (bulk on PostgreSQL)."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (old id, new id)
    entitlements_new: list[dict[str, Any]] = field(default_factory=list)
    entitlements_changed: list[tuple[str, int, int]] = field(default_factory=list)  # (id, granted, remaining)


def apply(
    store: DecisionStore,
    period: str,
    proposed: Sequence[Proposed],
    origin: str,
    run_id: str | None,
    now: datetime,
    household_ids: Sequence[str] | None = None,
    changes_kept: int | None = None,
) -> tuple[list[DecisionChange], WriteSet]:
    """Compare `proposed` with the stored decisions of `period` and write what is new or changed.

    Same rules and same inputs → nothing. Otherwise a new decision supersedes the stored one and
    the entitlements follow the new grant (what was already redeemed stays redeemed).
    `household_ids` limits the stored decisions read to those households (all of the period when
    None). With `changes_kept`, only decisions that replaced a stored one are returned as changes,
    at most that many: a cycle over millions of households counts the rest from the write set."""
    stored = store.current(period, household_ids)
    # An entitlement belongs to its program's current decision (decisions are superseded, never
    # deleted): only a household whose stored decision changes can hold entitlements to adjust.
    changed_households = sorted(
        {p.household_id for p in proposed if (old := stored.get((p.household_id, p.program))) and _differs(old, p)}
    )
    held = store.entitlements(period, changed_households) if changed_households else {}
    writes = WriteSet()
    changes: list[DecisionChange] = []
    texts: dict[Outcome, tuple[str, str]] = {}  # a cycle's outcomes repeat: encode each one once
    ids = _fresh_ids(min(65_536, 2 * len(proposed) + 8))  # a re-evaluation needs a handful
    for p in proposed:
        old = stored.get((p.household_id, p.program))
        if not _differs(old, p):
            continue
        decision_id = next(ids)
        encoded = texts.get(p.outcome)
        if encoded is None:
            encoded = texts[p.outcome] = (p.outcome.conditions_json(), p.outcome.items_json())
        writes.decisions.append(
            {
                "period": period,
                "id": decision_id,
                "household_id": p.household_id,
                "program": p.program,
                "program_version_id": p.version_id,
                "rules_sha256": p.rules_sha256,
                "inputs_sha256": p.inputs_sha256,
                "status": p.outcome.status,
                "amount_minor": p.outcome.amount_minor,
                "conditions": encoded[0],
                "items": encoded[1],
                "origin": origin,
                "cycle_run_id": run_id,
                "decided_at": now,
                "superseded_at": None,
                "superseded_by": None,
            }
        )
        if old is not None:
            writes.superseded.append((old.id, decision_id))
        slots = held.get((p.household_id, p.program), {})
        granted_now = dict(p.outcome.items)
        adjusted = adjust_entitlements({item: (g, r) for item, (_id, g, r) in slots.items()}, granted_now)
        for change in adjusted:
            if change.item in slots:
                writes.entitlements_changed.append(
                    (slots[change.item][0], change.granted_after, change.remaining_after)
                )
            else:
                writes.entitlements_new.append(
                    {
                        "period": period,
                        "id": next(ids),
                        "household_id": p.household_id,
                        "program": p.program,
                        "item_code": change.item,
                        "granted": change.granted_after,
                        "remaining": change.remaining_after,
                        "decision_id": decision_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        if changes_kept is None or (old is not None and len(changes) < changes_kept):
            changes.append(
                DecisionChange(p.household_id, p.program, period, old.outcome if old else None, p.outcome, adjusted)
            )
    store.write(period, writes)
    return changes, writes


def _fresh_ids(batch: int) -> Iterator[str]:
    """Ids like `shared.ids.new_id()` (16 random bytes, hex), drawn from the OS in batches and
    handed out in ascending order within a batch: rows written in that order go to the end of
    their indexes' pages instead of all over them (a cycle writes millions). An id still tells
    nothing about its household, program or time."""
    while True:
        text = os.urandom(16 * batch).hex()
        yield from sorted(text[start : start + 32] for start in range(0, len(text), 32))


def _differs(old: Stored | None, new: Proposed) -> bool:
    if old is None:
        return True
    return not (old.rules_sha256 == new.rules_sha256 and old.inputs_sha256 == new.inputs_sha256)
