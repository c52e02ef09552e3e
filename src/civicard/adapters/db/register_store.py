"""The register of program rule versions and the item catalogue (tables program_versions, items).

A registered version keeps its rule file's exact text; loading it re-checks the text and its
SHA-256, so what a cycle evaluates is byte for byte what was approved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
import yaml

from civicard.adapters.db import tables as t
from civicard.programs.expressions import InvalidRule
from civicard.programs.rulepack import RulePack, rulepack_from_dict

STATUSES = ("proposed", "published", "rejected", "retired", "expired")


@dataclass(frozen=True)
class RegisteredVersion:
    id: str
    program: str
    version: str
    sha256: str
    status: str
    effective_from: date
    title: dict[str, str]
    legal_basis: str
    source: str
    tests_passed: int
    impact: str
    proposed_by: str
    proposed_at: datetime
    proposal_note: str
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    retired_by: str | None
    retired_at: datetime | None

    def pack(self) -> RulePack:
        """The rule pack from the stored text; refuses text whose hash is not the registered one."""
        pack = rulepack_from_dict(yaml.safe_load(self.source), f"{self.program} {self.version}")
        if pack.sha256 != self.sha256:
            raise InvalidRule(
                "hash_mismatch", f"stored text of {self.program} {self.version} does not match its SHA-256"
            )
        return pack


class SqlProgramRegister:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def add(self, row: dict[str, Any]) -> None:
        self.conn.execute(sa.insert(t.program_versions), row)

    def update(self, version_id: str, **values: Any) -> None:
        self.conn.execute(sa.update(t.program_versions).where(t.program_versions.c.id == version_id).values(**values))

    def get(self, version_id: str) -> RegisteredVersion | None:
        row = self.conn.execute(sa.select(t.program_versions).where(t.program_versions.c.id == version_id)).first()
        return _version(row) if row else None

    def find(self, program: str, version: str) -> RegisteredVersion | None:
        pv = t.program_versions
        row = self.conn.execute(sa.select(pv).where(pv.c.program == program, pv.c.version == version)).first()
        return _version(row) if row else None

    def by_hash(self, sha256: str) -> RegisteredVersion | None:
        row = self.conn.execute(sa.select(t.program_versions).where(t.program_versions.c.sha256 == sha256)).first()
        return _version(row) if row else None

    def all(self, program: str | None = None) -> list[RegisteredVersion]:
        pv = t.program_versions
        query = sa.select(pv).order_by(pv.c.program, pv.c.effective_from, pv.c.version)
        if program is not None:
            query = query.where(pv.c.program == program)
        return [_version(r) for r in self.conn.execute(query)]

    def in_force(self, period_start: date, programs: Sequence[str] | None = None) -> list[RegisteredVersion]:
        """Per program, the published version with the latest effective_from on or before the day."""
        best: dict[str, RegisteredVersion] = {}
        for v in self.all():
            if v.status != "published" or v.effective_from > period_start:
                continue
            if programs is not None and v.program not in programs:
                continue
            held = best.get(v.program)
            if held is None or v.effective_from > held.effective_from:
                best[v.program] = v
        return [best[p] for p in sorted(best)]

    def item_codes(self) -> set[str]:
        return set(self.conn.execute(sa.select(t.items.c.code)).scalars())

    def put_items(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or update catalogue entries (code, name_es, name_en, unit, kind, atc_code, updated_at)."""
        existing = self.item_codes()
        for row in rows:
            if row["code"] in existing:
                self.conn.execute(sa.update(t.items).where(t.items.c.code == row["code"]).values(**row))
            else:
                self.conn.execute(sa.insert(t.items), row)

    def items(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(sa.select(t.items).order_by(t.items.c.code))]


def _version(row: sa.Row[Any]) -> RegisteredVersion:
    m = row._mapping
    return RegisteredVersion(
        id=m["id"],
        program=m["program"],
        version=m["version"],
        sha256=m["sha256"],
        status=m["status"],
        effective_from=m["effective_from"],
        title={"es": m["title_es"], "en": m["title_en"]},
        legal_basis=m["legal_basis"],
        source=m["source"],
        tests_passed=m["tests_passed"],
        impact=m["impact"],
        proposed_by=m["proposed_by"],
        proposed_at=m["proposed_at"],
        proposal_note=m["proposal_note"],
        decided_by=m["decided_by"],
        decided_at=m["decided_at"],
        decision_note=m["decision_note"],
        retired_by=m["retired_by"],
        retired_at=m["retired_at"],
    )
