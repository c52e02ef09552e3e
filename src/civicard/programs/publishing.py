"""Publishing program rule versions: one program administrator proposes, a second one approves.

What binds is the register (docs/rules.md), not the files: a version is published only when one
program administrator has proposed its exact text (its test cases passing on every engine, with
an impact preview) and another one has approved it within `PROPOSAL_LIFETIME`. Like every
four-eyes request (governance/approvals.py), a proposal nobody decides expires: it is marked
`expired` when someone tries to decide it, and its text is proposed again as a new version. Each
step is logged under the purpose `program_publication` in the same transaction as the change; the
preview reads every household under `impact_preview` (through the reader the adapter passes in)
and shows aggregates only.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import yaml

from civicard.programs.bulk import decide_bulk
from civicard.programs.expressions import InvalidRule
from civicard.programs.projection import RuleInputs
from civicard.programs.rulepack import RulePack, rulepack_from_dict
from civicard.programs.testing import CaseResult, run_tests
from civicard.shared.clock import Clock, as_utc
from civicard.shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from civicard.shared.ids import new_id
from civicard.transparency.access import AccessContext, AccessLog, record_change

PROGRAM_ADMIN = "program_admin"
PURPOSE = "program_publication"
MAX_SOURCE_CHARS = 200_000
MAX_NOTE_CHARS = 2_000
SMALL_CELL = 10  # households: a count under this is shown as "<10", never as the number
SUPPRESSED = f"<{SMALL_CELL}"
# A second administrator decides within two weeks; after that the impact preview is stale anyway.
PROPOSAL_LIFETIME = timedelta(days=14)
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,39}$")

InputsReader = Callable[[date, str], RuleInputs]
"""Rule inputs of every household on a day, each household's read logged (the string is the detail)."""
Connect = Callable[[], Any]
"""Opens a DB-API connection of its own (tests create temporary tables on it); the caller closes it."""


class StaffMember(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def role(self) -> str: ...


class RegisteredView(Protocol):
    """A registered version as the register returns it."""

    @property
    def id(self) -> str: ...
    @property
    def program(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def effective_from(self) -> date: ...
    @property
    def proposed_by(self) -> str: ...
    @property
    def proposed_at(self) -> datetime: ...
    @property
    def impact(self) -> str: ...

    def pack(self) -> RulePack: ...


class ProgramRegister(Protocol):
    def add(self, row: dict[str, Any]) -> None: ...
    def update(self, version_id: str, **values: Any) -> None: ...
    def get(self, version_id: str) -> RegisteredView | None: ...
    def find(self, program: str, version: str) -> RegisteredView | None: ...
    def by_hash(self, sha256: str) -> RegisteredView | None: ...
    def all(self, program: str | None = None) -> Sequence[RegisteredView]: ...
    def in_force(self, period_start: date, programs: Sequence[str] | None = None) -> Sequence[RegisteredView]: ...
    def item_codes(self) -> set[str]: ...
    def put_items(self, rows: Sequence[dict[str, Any]]) -> None: ...


class PublishingUnitOfWork(Protocol):
    """One transaction over the register and the access log; nothing is stored until `commit`."""

    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def register(self) -> ProgramRegister: ...
    @property
    def access_log(self) -> AccessLog: ...

    def commit(self) -> None: ...


# --- the impact preview ----------------------------------------------------------------------------

COUNTS = (
    "households",
    "gain",
    "lose",
    "amount_up",
    "amount_down",
    "items_change",
    "unchanged",
    "eligible_before",
    "eligible_after",
)
SUMS = {"amount_before": "eligible_before", "amount_after": "eligible_after"}  # sum → the count it is over
METRICS = (*COUNTS, *SUMS)
# Cells tied by an identity (a partition of the households; eligible after = before + gain − lose):
# if only one of them were hidden it could be worked out from the others, so a second one is hidden too.
_ROW_GROUPS = (
    ("households", "gain", "lose", "amount_up", "amount_down", "items_change", "unchanged"),
    ("eligible_before", "eligible_after", "gain", "lose"),
)
Cell = int | str


@dataclass(frozen=True)
class ImpactPreview:
    """A proposed version against the one in force, per region and in total; small cells suppressed."""

    program: str
    version: str
    against: str | None  # the version in force on `period`, None for a program's first version
    period: date
    regions: tuple[tuple[str, dict[str, Cell]], ...]
    total: dict[str, Cell]

    def as_dict(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "version": self.version,
            "against": self.against,
            "period": f"{self.period:%Y-%m}",
            "small_cell": SMALL_CELL,
            "regions": [{"region": region, **cells} for region, cells in self.regions],
            "total": dict(self.total),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, ensure_ascii=False)


def preview_period(pack: RulePack, today: date) -> date:
    """The first period the version would apply to: its effective date, or this month if later."""
    return max(pack.effective_from, today.replace(day=1))


def count_impact(
    before: RulePack | None, after: RulePack, period: date, inputs: RuleInputs
) -> dict[str, dict[str, int]]:
    """Raw counts per region (no suppression: never show these; `preview_impact` does the showing).

    Each household falls in exactly one of gain (→ eligible), lose (eligible →), amount_up,
    amount_down, items_change (both eligible, same amount, other items) and unchanged.
    """
    con = duckdb.connect()
    try:
        con.register("after_d", _outcomes(after, period, inputs))
        if before is None:
            con.execute(
                "CREATE TEMP TABLE before_d AS SELECT household_id, 'none' AS status, "
                "CAST(0 AS BIGINT) AS amount, '' AS items FROM after_d"
            )
        else:
            con.register("before_d", _outcomes(before, period, inputs))
        rows = con.execute(_IMPACT_SQL).fetchall()
    finally:
        con.close()
    return {region: dict(zip(METRICS, (int(v or 0) for v in values), strict=True)) for region, *values in rows}


_IMPACT_SQL = """
    WITH j AS (
        SELECT coalesce(a.region, '(none)') AS region,
               b.status = 'eligible' AS was, a.status = 'eligible' AS is_now,
               b.amount AS amount_b, a.amount AS amount_a, b.items AS items_b, a.items AS items_a
        FROM after_d a JOIN before_d b USING (household_id)
    ), k AS (
        SELECT *, CASE
            WHEN is_now AND NOT was THEN 'gain'
            WHEN was AND NOT is_now THEN 'lose'
            WHEN was AND is_now AND amount_a > amount_b THEN 'amount_up'
            WHEN was AND is_now AND amount_a < amount_b THEN 'amount_down'
            WHEN was AND is_now AND items_a <> items_b THEN 'items_change'
            ELSE 'unchanged' END AS change
        FROM j
    )
    SELECT region, count(*),
           count(*) FILTER (WHERE change = 'gain'), count(*) FILTER (WHERE change = 'lose'),
           count(*) FILTER (WHERE change = 'amount_up'), count(*) FILTER (WHERE change = 'amount_down'),
           count(*) FILTER (WHERE change = 'items_change'), count(*) FILTER (WHERE change = 'unchanged'),
           count(*) FILTER (WHERE was), count(*) FILTER (WHERE is_now),
           sum(CASE WHEN was THEN amount_b ELSE 0 END), sum(CASE WHEN is_now THEN amount_a ELSE 0 END)
    FROM k GROUP BY region ORDER BY region
"""


def _outcomes(pack: RulePack, period: date, inputs: RuleInputs) -> pa.Table:
    """household_id, region, status, amount, items ("CODE:qty,…" sorted, same code summed) of one pack."""
    table, columns = decide_bulk([pack], period, inputs)
    quantities: dict[str, list[pa.ChunkedArray]] = {}
    status = amount = None
    for index, column in enumerate(columns, start=1):  # column 0 is household_id; region comes last
        if column.part == "status":
            status = table.column(index)
        elif column.part == "amount":
            amount = table.column(index)
        elif column.part.startswith("item:"):
            quantities.setdefault(column.part.split(":", 1)[1], []).append(table.column(index))
    return pa.table(
        {
            "household_id": table.column("household_id"),
            "region": table.column("region"),
            "status": status,
            "amount": amount,
            "items": pa.array(_item_texts(quantities, table.num_rows), pa.string()),
        }
    )


def _item_texts(quantities: dict[str, list[pa.ChunkedArray]], rows: int) -> list[str]:
    """Per household "CODE:qty,…" of the items granted (codes sorted; two grants of one code summed)."""
    totals = {code: [0] * rows for code in quantities}
    for code, arrays in quantities.items():
        for array in arrays:
            for row, value in enumerate(array.to_pylist()):
                totals[code][row] += int(value or 0)
    codes = sorted(totals)
    return [",".join(f"{c}:{totals[c][row]}" for c in codes if totals[c][row] > 0) for row in range(rows)]


def suppress(
    counts: Mapping[str, Mapping[str, int]],
) -> tuple[tuple[tuple[str, dict[str, Cell]], ...], dict[str, Cell]]:
    """Regions and total with every cell under SMALL_CELL households hidden, plus the cells that
    would let a hidden one be worked out (the total minus the other regions, a row's identities)."""
    total = {m: sum(row[m] for row in counts.values()) for m in METRICS}
    grid: dict[str, dict[str, int]] = {**{r: dict(v) for r, v in counts.items()}, "": total}
    hidden = {(r, m) for r, row in grid.items() for m in METRICS if row[SUMS.get(m, m)] < SMALL_CELL}
    groups = [[(r, m) for r in grid] for m in METRICS]
    groups += [[(r, m) for m in group] for r in grid for group in _ROW_GROUPS]
    changed = True
    while changed:
        changed = False
        for group in groups:
            shown = [cell for cell in group if cell not in hidden]
            if len(group) - len(shown) == 1 and shown:
                hidden.add(min(shown, key=lambda cell: (grid[cell[0]][cell[1]], cell)))
                changed = True

    def cells(region: str) -> dict[str, Cell]:
        return {m: SUPPRESSED if (region, m) in hidden else grid[region][m] for m in METRICS}

    return tuple((r, cells(r)) for r in sorted(counts)), cells("")


def preview_impact(before: RulePack | None, after: RulePack, period: date, inputs: RuleInputs) -> ImpactPreview:
    regions, total = suppress(count_impact(before, after, period, inputs))
    return ImpactPreview(after.program, after.version, before.version if before else None, period, regions, total)


# --- proposing, deciding, retiring -----------------------------------------------------------------


@dataclass(frozen=True)
class TestSummary:
    cases: int
    engines: tuple[str, ...]
    passed: int
    failures: tuple[CaseResult, ...]


@dataclass(frozen=True)
class Proposal:
    version: RegisteredView
    tests: TestSummary
    impact: ImpactPreview


def parse_source(source: str) -> RulePack:
    """A rule file's text as a checked pack; anything wrong is an InvalidRule naming the part."""
    if len(source) > MAX_SOURCE_CHARS:
        raise InvalidRule("source_too_long", f"a rule file may have at most {MAX_SOURCE_CHARS:,} characters")
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(source, Loader=yaml.SafeLoader)):
            raise InvalidRule("invalid_yaml", "anchors and aliases (&, *) are not allowed in a rule file")
        pack = rulepack_from_dict(yaml.safe_load(source))
    except yaml.YAMLError as exc:
        raise InvalidRule("invalid_yaml", f"not valid YAML: {str(exc).splitlines()[0]}") from None
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError):
        raise InvalidRule(
            "invalid_rule_file", "the file does not have the shape of a rule file (docs/rules.md)"
        ) from None
    if not _VERSION.match(pack.version):
        raise InvalidRule("invalid_version", "a version is 1–40 letters, digits, '.', '_' or '-', e.g. 2026.2")
    if any(len(text) > 300 for text in pack.title.values()):
        raise InvalidRule("invalid_title", "a title has at most 300 characters")
    return pack


def run_all_tests(pack: RulePack, connect_postgres: Connect | None) -> TestSummary:
    """The pack's cases on Python, DuckDB, SQLite and, when given, PostgreSQL (temporary tables)."""
    with _engines(connect_postgres) as engines:
        results = run_tests([pack], engines)
    failures = tuple(r for r in results if not r.passed)
    return TestSummary(len(pack.tests), ("python", *engines), len(results) - len(failures), failures)


@contextmanager
def _engines(connect_postgres: Connect | None) -> Iterator[dict[str, Any]]:
    engines: dict[str, Any] = {"duckdb": duckdb.connect(), "sqlite": sqlite3.connect(":memory:")}
    try:
        if connect_postgres is not None:
            engines["postgres"] = connect_postgres()
        yield engines
    finally:
        for connection in engines.values():
            connection.close()


def propose(
    uow: PublishingUnitOfWork,
    source: str,
    proposer: StaffMember,
    note: str,
    *,
    read_inputs: InputsReader,
    connect_postgres: Connect | None = None,
) -> Proposal:
    """Check, test and register a rule file's exact text as `proposed`, with its impact preview.

    Refuses a file that does not parse (its InvalidRule code), has no test cases (`no_tests`), a
    (program, version) or text already registered (`version_exists`, `hash_exists`), items not in
    the catalogue (`unknown_item`) or a failing case on any engine (`tests_failed`).
    """
    require_program_admin(proposer)
    note = _note(note)
    pack = parse_source(source)
    if not pack.tests:
        raise InvalidInput("no_tests", f"{pack.program} {pack.version} has no test cases; add some (docs/rules.md)")
    register = uow.register
    if register.find(pack.program, pack.version) is not None:
        raise Conflict("version_exists", f"{pack.program} {pack.version} is already in the register")
    same = register.by_hash(pack.sha256)
    if same is not None:
        raise Conflict("hash_exists", f"this text is already registered as {same.program} {same.version}")
    unknown = sorted({g.item for g in pack.items} - register.item_codes())
    if unknown:
        raise InvalidInput(
            "unknown_item",
            f"item(s) not in the catalogue: {', '.join(unknown)} (load it with `civicard programs items`)",
        )
    tests = run_all_tests(pack, connect_postgres)
    if tests.failures:
        shown = "; ".join(f"«{f.case}» on {f.engine}: {', '.join(f.problems)}" for f in tests.failures[:3])
        more = f" (and {len(tests.failures) - 3} more)" if len(tests.failures) > 3 else ""
        raise InvalidInput("tests_failed", f"{len(tests.failures)} test check(s) failed: {shown}{more}")
    period = preview_period(pack, uow.clock.today())
    in_force = register.in_force(period, [pack.program])
    before = in_force[0].pack() if in_force else None
    inputs = read_inputs(period, f"impact preview of {pack.program} {pack.version}")
    impact = preview_impact(before, pack, period, inputs)
    now = uow.clock.now()
    version_id = new_id()
    register.add(
        {
            "id": version_id,
            "program": pack.program,
            "version": pack.version,
            "sha256": pack.sha256,
            "title_es": pack.title["es"],
            "title_en": pack.title["en"],
            "legal_basis": pack.legal_basis,
            "effective_from": pack.effective_from,
            "source": source,
            "status": "proposed",
            "tests_passed": tests.passed,
            "impact": impact.to_json(),
            "proposed_by": proposer.username,
            "proposed_at": now,
            "proposal_note": note,
        }
    )
    _log(uow, f"proposed {pack.program} {pack.version} sha256 {pack.sha256}", now)
    uow.commit()
    registered = register.get(version_id)
    assert registered is not None  # just written in this transaction
    return Proposal(registered, tests, impact)


def approve(uow: PublishingUnitOfWork, version_id: str, approver: StaffMember, note: str) -> RegisteredView:
    """A second program administrator publishes a proposed version (its stored text re-checked)."""
    version = _decidable(uow, version_id, approver)
    pack = version.pack()  # refuses text whose hash is not the registered one
    clash = [
        v
        for v in uow.register.all(pack.program)
        if v.status == "published" and v.effective_from == pack.effective_from and v.id != version.id
    ]
    if clash:
        raise Conflict(
            "effective_date_taken",
            f"{pack.program} {clash[0].version} is already published from {pack.effective_from}; retire it first",
        )
    return _decide(uow, version, approver, note, "published", "approved")


def reject(uow: PublishingUnitOfWork, version_id: str, approver: StaffMember, note: str) -> RegisteredView:
    """A second program administrator turns a proposal down; it stays in the register as rejected."""
    return _decide(uow, _decidable(uow, version_id, approver), approver, note, "rejected", "rejected")


def retire(uow: PublishingUnitOfWork, version_id: str, by: StaffMember, note: str) -> RegisteredView:
    """A published version stops binding (cycles no longer find it in force)."""
    require_program_admin(by)
    note = _note(note)
    version = _get(uow, version_id)
    if version.status != "published":
        raise Conflict("not_published", f"{version.program} {version.version} is {version.status}, not published")
    now = uow.clock.now()
    uow.register.update(version.id, status="retired", retired_by=by.username, retired_at=now)
    reason = f" ({note})" if note else ""  # the register has no retirement note: the log keeps it
    _log(uow, f"retired {version.program} {version.version} sha256 {version.sha256}{reason}", now)
    uow.commit()
    return _get(uow, version.id)


def _decidable(uow: PublishingUnitOfWork, version_id: str, approver: StaffMember) -> RegisteredView:
    require_program_admin(approver)
    version = _get(uow, version_id)
    if version.proposed_by == approver.username:
        raise Forbidden("same_person", "a version must be approved or rejected by another program administrator")
    if version.status != "proposed":
        raise Conflict("not_proposed", f"{version.program} {version.version} is {version.status}, not proposed")
    now = uow.clock.now()
    if now >= proposal_expires_at(version):
        uow.register.update(version.id, status="expired", decided_at=now)
        _log(uow, f"expired {version.program} {version.version} sha256 {version.sha256}", now)
        uow.commit()
        raise Conflict(
            "proposal_expired",
            f"{version.program} {version.version} was proposed on {as_utc(version.proposed_at):%Y-%m-%d} and expired "
            f"after {PROPOSAL_LIFETIME.days} days without a decision; propose the text again as a new version",
        )
    return version


def proposal_expires_at(version: RegisteredView) -> datetime:
    """When a proposal can no longer be approved or rejected."""
    return as_utc(version.proposed_at) + PROPOSAL_LIFETIME


def awaiting_decision(versions: Sequence[RegisteredView], now: datetime) -> list[RegisteredView]:
    """The proposals a second program administrator can still decide (for the approvals lists)."""
    return [v for v in versions if v.status == "proposed" and now < proposal_expires_at(v)]


def _decide(
    uow: PublishingUnitOfWork, version: RegisteredView, by: StaffMember, note: str, status: str, verb: str
) -> RegisteredView:
    note = _note(note)
    now = uow.clock.now()
    uow.register.update(version.id, status=status, decided_by=by.username, decided_at=now, decision_note=note)
    _log(uow, f"{verb} {version.program} {version.version} sha256 {version.sha256}", now)
    uow.commit()
    return _get(uow, version.id)


def _get(uow: PublishingUnitOfWork, version_id: str) -> RegisteredView:
    version = uow.register.get(version_id) if len(version_id) <= 64 else None
    if version is None:
        raise NotFound("version_not_found", "there is no registered program version with this id")
    return version


def require_program_admin(who: StaffMember) -> None:
    if who.role != PROGRAM_ADMIN:
        raise Forbidden("not_program_admin", "only a program administrator may propose, decide or retire rules")


def _note(note: str) -> str:
    cleaned = " ".join(note.split())
    if len(cleaned) > MAX_NOTE_CHARS:
        raise InvalidInput("note_too_long", f"a note has at most {MAX_NOTE_CHARS:,} characters")
    return cleaned


def _log(uow: PublishingUnitOfWork, detail: str, at: datetime) -> None:
    record_change(uow.access_log, uow.context, [], [], detail, at)


# --- the item catalogue ----------------------------------------------------------------------------

ITEM_KINDS = ("food", "medicine", "hygiene")


def load_catalogue(uow: PublishingUnitOfWork, text: str, by: StaffMember) -> int:
    """Insert or update the items of an items.yaml text (rulepacks/items.yaml); returns how many."""
    require_program_admin(by)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput("invalid_catalogue", f"not valid YAML: {str(exc).splitlines()[0]}") from None
    entries = raw.get("items") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise InvalidInput("invalid_catalogue", "an item catalogue is a mapping `items:` of code → name, unit, kind")
    now = uow.clock.now()
    rows = [_item_row(str(code), spec, now) for code, spec in entries.items()]
    uow.register.put_items(rows)
    _log(uow, f"loaded the item catalogue: {len(rows)} items", now)
    uow.commit()
    return len(rows)


def _item_row(code: str, spec: Any, now: datetime) -> dict[str, Any]:
    name = spec.get("name") if isinstance(spec, dict) else None
    if (
        not re.fullmatch(r"[A-Z0-9][A-Z0-9_.-]{1,40}", code)
        or not isinstance(name, dict)
        or not all(isinstance(name.get(k), str) and name[k] for k in ("es", "en"))
        or not isinstance(spec.get("unit"), str)
        or spec.get("kind") not in ITEM_KINDS
    ):
        raise InvalidInput("invalid_catalogue", f"item {code} needs a code, name (es, en), unit and kind")
    atc = spec.get("atc")
    return {
        "code": code,
        "name_es": name["es"],
        "name_en": name["en"],
        "unit": spec["unit"],
        "kind": spec["kind"],
        "atc_code": str(atc) if atc else None,
        "updated_at": now,
    }
