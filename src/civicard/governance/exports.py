"""Bulk exports of personal data: asked for, approved by an oversight account, run once by the asker.

Who is exported: the current members of the households with an `eligible` decision for the
program in its latest benefit period that has decisions (optionally one region): the people a
program's payment or delivery partner works with, so a program administrator can name the scope
with codes alone. What: the person's and household's ids, then the chosen `persons` columns of
the registry allow-list (registry/fields.yaml) — never a derived search key, PIN, password or key.

The request (`bulk_export`, governance/kinds.py) holds the program, region and field codes only.
Its approval stores it `approved`; `run_export` — by the requester, before it expires, once —
marks it `executed` and logs one read per exported person under the purpose `bulk_export` in the
transaction that commits the run. The caller's sink writes the rows (a CSV file, atomically).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from civicard.governance import approvals
from civicard.governance.approvals import ApprovalRequest, ApprovalUnitOfWork, KindRegistry, Payload
from civicard.registry.allowlist import allow_list
from civicard.registry.vocabulary import vocabulary
from civicard.shared.errors import Forbidden, InvalidInput, NotFound
from civicard.transparency.access import Subject, disclose, purpose_policy

BULK_EXPORT = "bulk_export"  # the four-eyes kind, and the purpose each exported person's read is logged under
EXPORT_PAYLOAD = ("fields", "program", "region")
ALL_REGIONS = "all"
ID_COLUMNS = ("person_id", "household_id")
# Derived from other columns for search; nothing a partner needs and not a fact of its own.
NOT_EXPORTABLE = frozenset({"search_key"})
SCOPE_CATEGORIES = frozenset({"household", "decisions"})  # membership and eligibility say who is in it
CHUNK = 1000


class ExportStore(Protocol):
    def latest_period(self, program: str) -> str | None:
        """The latest benefit period with a current decision for `program`."""
        ...

    def eligible_members(self, program: str, period: str, region: str | None) -> list[tuple[str, str]]:
        """(person id, household id) of the current members of the households eligible for
        `program` in `period` (in `region` unless None), by household then person."""
        ...

    def person_values(self, person_ids: Sequence[str], fields: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The `fields` of each person as text (dates ISO, missing values empty)."""
        ...


class ExportUnitOfWork(ApprovalUnitOfWork, Protocol):
    @property
    def exports(self) -> ExportStore: ...


U = TypeVar("U", bound=ExportUnitOfWork)


class ExportSink(Protocol):
    def begin(self, header: Sequence[str], total: int) -> None: ...
    def write(self, rows: Sequence[Sequence[str]]) -> None: ...


@dataclass(frozen=True)
class ExportDone:
    request: ApprovalRequest
    period: str
    people: int


def exportable_fields() -> dict[str, str]:
    """Field name → data category: the personal `persons` columns of the allow-list."""
    columns = allow_list().tables["persons"].columns.values()
    return {c.name: c.category for c in columns if c.personal and c.name not in NOT_EXPORTABLE}


def parse_fields(text: str) -> tuple[str, ...]:
    """A comma-separated list of exportable fields, in the order given, each once."""
    allowed = exportable_fields()
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise InvalidInput("no_fields", "Name at least one field to export.")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise InvalidInput(
            "field_not_exportable", f"'{unknown[0]}' cannot be exported (exportable: {', '.join(sorted(allowed))})."
        )
    return names


def check_export(uow: ExportUnitOfWork, payload: Payload) -> None:
    """Refuse fields outside the allow-list, an unknown region and a program without decisions."""
    parse_fields(payload["fields"])
    if payload["region"] != ALL_REGIONS and payload["region"] not in vocabulary().regions:
        raise InvalidInput("invalid_region", f"'{payload['region']}' is not a region code.")
    if uow.exports.latest_period(payload["program"]) is None:
        raise NotFound("no_decisions", f"The program '{payload['program']}' has no decisions to export from.")


def export_subject(payload: Payload) -> str:
    """One pending request per exact scope and field list (a digest: the field list may be long)."""
    text = "|".join(payload[f] for f in EXPORT_PAYLOAD)
    return "export:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def describe_export(payload: Payload) -> str:
    region = "every region" if payload["region"] == ALL_REGIONS else f"region {payload['region']}"
    return (
        f"Export {payload['fields'].replace(',', ', ')} of the members of households eligible for "
        f"{payload['program']} ({region}) to a CSV file"
    )


def request_export(
    uow: U, kinds: KindRegistry[U], program: str, region: str | None, fields: str, reason: str
) -> ApprovalRequest:
    """Ask for an export (committed); an oversight account other than the asker approves it."""
    payload = {"fields": ",".join(parse_fields(fields)), "program": program, "region": region or ALL_REGIONS}
    return approvals.request(uow, kinds, BULK_EXPORT, payload, reason)


def run_export(uow: U, kinds: KindRegistry[U], request_id: str, sink: ExportSink) -> ExportDone:
    """Carry out an approved export once: every exported person's read is logged under
    `bulk_export`, the rows go to `sink`, and the request is stored `executed`, in one commit. If
    the sink fails nothing is committed and the request stays approved."""
    found = approvals.execute_approved(uow, kinds, request_id, BULK_EXPORT)
    payload = found.data
    fields = parse_fields(payload["fields"])
    period = uow.exports.latest_period(payload["program"])
    if period is None:
        raise NotFound("no_decisions", f"The program '{payload['program']}' has no decisions to export from.")
    region = None if payload["region"] == ALL_REGIONS else payload["region"]
    members = uow.exports.eligible_members(payload["program"], period, region)
    context = replace(uow.context, purpose=BULK_EXPORT)
    categories = SCOPE_CATEGORIES | {exportable_fields()[f] for f in fields}
    withheld = categories - purpose_policy().check(context)
    if withheld:  # disclose would silently withhold them; an export must not write them at all
        raise Forbidden("category_not_allowed", f"A bulk export may not include {', '.join(sorted(withheld))}.")
    detail = f"export.read request={found.id} program={payload['program']} period={period}"
    now = uow.clock.now()
    sink.begin((*ID_COLUMNS, *fields), len(members))
    for start in range(0, len(members), CHUNK):
        chunk = members[start : start + CHUNK]
        person_ids = [person_id for person_id, _ in chunk]
        disclose(uow.access_log, context, [Subject.person(p) for p in person_ids], categories, detail, now)
        values = uow.exports.person_values(person_ids, fields)
        sink.write([(person_id, household_id, *values[person_id]) for person_id, household_id in chunk])
    uow.commit()
    return ExportDone(found, period, len(members))
