"""Retention policy as data (retention.yaml): which records are kept how long, and the erasure journal.

The policy names kinds of record (`RECORD_KINDS`) that the database adapter knows how to find;
this module parses and checks it, computes each rule's cut-off date, and defines the erasure
journal's lines. It runs no SQL: adapters/db/retention_store.py applies it.

Erasure by crypto-shredding: an access-log entry's public leaf holds SHA-256(salt ‖ subject id)
and a salted chain commitment, with a random salt per entry. Erasing a person keeps both
commitments (they hold no personal data) so the leaf can still be recomputed and the signed log
verifies, and deletes the salts and the subject id: the entries can no longer be tied to anyone,
not even by someone who knows the person's id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from civicard.shared.errors import InvalidInput
from civicard.shared.ids import is_id
from civicard.shared.vocab import load_yaml
from civicard.transparency.log_entries import format_time, parse_time

RETENTION = "retention"  # the purpose erasures are logged under
FACT_TABLES = ("employment", "incomes", "properties", "health_needs", "benefits_received")
# Kind of record → the fact tables it may name (empty: the rule names none).
RECORD_KINDS: dict[str, tuple[str, ...]] = {
    "replaced_fact_versions": FACT_TABLES,
    "ended_health_needs": (),
    "deceased_persons": (),
    "sessions": (),
    "terminal_nonces": (),
    "idempotency_keys": (),
    "sign_in_throttle": (),
    "access_log": (),
}
FOREVER_ONLY = frozenset({"access_log"})
_UNITS = ("days", "months", "years")
_DIGEST_TAG = b"civicard/erasure\n"


@dataclass(frozen=True)
class Period:
    """How long after its anchor a record is kept; None for the audit trail (kept forever)."""

    days: int = 0
    months: int = 0
    years: int = 0

    def cutoff(self, today: date) -> date:
        """Records anchored on or before this day are due (month ends clamp: 31 Aug − 6 months = 28 Feb)."""
        months = today.year * 12 + today.month - 1 - self.months - 12 * self.years
        year, month = divmod(months, 12)
        day = min(today.day, _month_length(year, month + 1))
        return date(year, month + 1, day) - timedelta(days=self.days)

    def __str__(self) -> str:
        parts = [
            f"{n} {unit}" for n, unit in ((self.years, "years"), (self.months, "months"), (self.days, "days")) if n
        ]
        return ", ".join(parts)


def _month_length(year: int, month: int) -> int:
    following = date(year + month // 12, month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


@dataclass(frozen=True)
class RetentionRule:
    name: str
    records: str  # one of RECORD_KINDS
    keep: Period | None  # None: kept forever
    tables: tuple[str, ...]
    description: str
    description_es: str

    def described(self, locale: str) -> str:
        return self.description_es if locale == "es" and self.description_es else self.description


@dataclass(frozen=True)
class RetentionPolicy:
    rules: tuple[RetentionRule, ...]

    def rule(self, name: str) -> RetentionRule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise InvalidInput("unknown_retention_rule", f"There is no retention rule '{name}'.")


def parse_policy(raw: Any) -> RetentionPolicy:
    """Check a parsed retention.yaml; the first problem is an InvalidInput naming the rule and field."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("rules"), Mapping) or not raw["rules"]:
        raise _bad("The retention policy needs a non-empty 'rules:' mapping.")
    rules = tuple(_rule(str(name), body) for name, body in raw["rules"].items())
    for table in FACT_TABLES:
        owners = [r.name for r in rules if table in r.tables]
        if len(owners) > 1:
            raise _bad(f"The fact table '{table}' is named by more than one rule ({', '.join(owners)}).")
    return RetentionPolicy(rules)


def _rule(name: str, body: Any) -> RetentionRule:
    if not isinstance(body, Mapping):
        raise _bad(f"Rule '{name}': expected a mapping with records, keep and description.")
    records = body.get("records")
    if records not in RECORD_KINDS:
        raise _bad(f"Rule '{name}': records must be one of {', '.join(RECORD_KINDS)} (got {records!r}).")
    keep = _period(name, body.get("keep"))
    if (keep is None) != (records in FOREVER_ONLY):
        wanted = "keep: forever" if records in FOREVER_ONLY else "a period (days, months or years)"
        raise _bad(f"Rule '{name}': {records} needs {wanted}.")
    tables = body.get("tables", [])
    allowed = RECORD_KINDS[records]
    if not isinstance(tables, list) or any(t not in allowed for t in tables) or bool(tables) != bool(allowed):
        shown = ", ".join(allowed) if allowed else "none"
        raise _bad(f"Rule '{name}': tables must list some of: {shown}.")
    description = body.get("description")
    if not isinstance(description, str) or not description.strip():
        raise _bad(f"Rule '{name}': a description is required.")
    description_es = body.get("description_es", "")
    if not isinstance(description_es, str):
        raise _bad(f"Rule '{name}': description_es must be text.")
    return RetentionRule(name, records, keep, tuple(tables), description.strip(), description_es.strip())


def _period(name: str, value: Any) -> Period | None:
    if value == "forever":
        return None
    if not isinstance(value, Mapping) or not value or any(k not in _UNITS for k in value):
        raise _bad(f"Rule '{name}': keep is 'forever' or a mapping of days, months and years.")
    amounts = {k: value[k] for k in value}
    if any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in amounts.values()):
        raise _bad(f"Rule '{name}': keep amounts are whole numbers of at least 0.")
    period = Period(**amounts)
    if period == Period():
        raise _bad(f"Rule '{name}': keep must be longer than zero.")
    return period


def _bad(message: str) -> InvalidInput:
    return InvalidInput("invalid_retention_policy", message)


@cache
def retention_policy() -> RetentionPolicy:
    """The shipped policy, parsed on first use."""
    return parse_policy(load_yaml("civicard.transparency", "retention.yaml"))


# --------------------------------------------------------------------------- erasures


def erasure_digest(person_id: str) -> str:
    """hex SHA-256(tag ‖ person id): names an erased person in the journal without the id itself.

    Person ids are random, so the digest reveals nothing on its own; a restore matches it against
    the ids in the restored database to find whom to erase again.
    """
    return hashlib.sha256(_DIGEST_TAG + person_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class JournalEntry:
    """One erasure, as kept in the journal outside the database (one JSON line each)."""

    erasure_id: str
    erased_at: datetime
    rule: str
    subject_digest: str

    def to_line(self) -> str:
        data = {
            "id": self.erasure_id,
            "at": format_time(self.erased_at),
            "rule": self.rule,
            "subject": self.subject_digest,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"


def parse_journal_line(line: str) -> JournalEntry:
    """The inverse of `JournalEntry.to_line`; ValueError for anything else."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a journal line is a JSON object")
    erasure_id, at, rule, subject = (data.get(k) for k in ("id", "at", "rule", "subject"))
    if not (isinstance(erasure_id, str) and is_id(erasure_id)):
        raise ValueError("id must be an id")
    if not isinstance(at, str) or not isinstance(rule, str):
        raise ValueError("at and rule must be strings")
    if not isinstance(subject, str) or len(subject) != 64 or any(c not in "0123456789abcdef" for c in subject):
        raise ValueError("subject must be a SHA-256 in lowercase hex")
    return JournalEntry(erasure_id, parse_time(at), rule, subject)
