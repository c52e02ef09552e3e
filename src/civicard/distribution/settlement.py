"""Settlement: what each vendor is owed for a period, the statement behind it, and closing the period.

The subsidy owed is recomputed from the ledger, line by line: (reference − subsidized) × quantity,
never trusted from a stored sum. Closing a period fixes, per vendor, the counts, the total and the
SHA-256 of the canonical ledger lines behind it; `verify` recomputes both from the ledger, so a line
edited, added or removed afterwards is found. A statement shows every redemption behind a total
with the vendor's own pseudonym of the card holder — never a name, person or household id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from civicard.distribution.vendors import VendorStore
from civicard.identity.pseudonyms import SectorKey
from civicard.programs.cycles import period_start
from civicard.shared.clock import Clock, as_utc
from civicard.shared.errors import Conflict, NotFound
from civicard.shared.ids import is_id
from civicard.shared.keys import RootKey
from civicard.transparency.access import AccessContext, AccessLog, disclose, record_change

LEDGER_CATEGORIES = ("decisions",)  # quantities and amounts of sales; no identity, income or health


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger line exactly as stored (every column goes into the settlement hash)."""

    period: str
    id: str
    redemption_id: str
    entitlement_id: str
    household_id: str
    program: str
    item_code: str
    quantity: int
    reference_price_minor: int
    subsidized_price_minor: int
    subsidy_minor: int
    vendor_id: str
    outlet_id: str
    created_at: datetime

    @property
    def owed_minor(self) -> int:
        return (self.reference_price_minor - self.subsidized_price_minor) * self.quantity

    def canonical(self) -> str:
        stamp = as_utc(self.created_at).astimezone(UTC).isoformat(timespec="microseconds")
        values = [
            self.period, self.id, self.redemption_id, self.entitlement_id, self.household_id, self.program,
            self.item_code, self.quantity, self.reference_price_minor, self.subsidized_price_minor,
            self.subsidy_minor, self.vendor_id, self.outlet_id, stamp,
        ]  # fmt: skip
        return json.dumps(values, separators=(",", ":"), ensure_ascii=True)


def ledger_sha256(lines: Iterable[LedgerEntry]) -> str:
    """SHA-256 over the canonical lines (JSON arrays) in line-id order, joined by LF."""
    text = "\n".join(line.canonical() for line in sorted(lines, key=lambda x: x.id))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class VendorTotal:
    vendor_id: str
    redemptions: int
    lines: int
    subsidy_minor: int
    ledger_sha256: str

    @classmethod
    def of(cls, vendor_id: str, lines: Sequence[LedgerEntry]) -> VendorTotal:
        return cls(
            vendor_id,
            len({line.redemption_id for line in lines}),
            len(lines),
            sum(line.owed_minor for line in lines),
            ledger_sha256(lines),
        )


@dataclass(frozen=True)
class Settled:
    """A settlements row: the total fixed when the period closed."""

    total: VendorTotal
    settled_at: datetime
    settled_by: str


@dataclass(frozen=True)
class SaleLine:
    """A ledger line with what the statement shows beside it; `holder_id` never leaves this module."""

    entry: LedgerEntry
    sold_at: datetime
    channel: str
    outlet_name: str
    holder_id: str | None  # None if the card is not on record (the line still counts)


@dataclass(frozen=True)
class StatementLine:
    transaction_id: str
    sold_at: datetime
    outlet_id: str
    outlet_name: str
    item_code: str
    quantity: int
    reference_price_minor: int
    subsidized_price_minor: int
    subsidy_minor: int
    channel: str
    holder: str  # the vendor's pseudonym of the card holder


@dataclass(frozen=True)
class Subtotal:
    outlet_id: str
    outlet_name: str
    item_code: str | None  # None: the outlet's total over all items
    redemptions: int
    quantity: int
    subsidy_minor: int


@dataclass(frozen=True)
class Statement:
    vendor_id: str
    vendor_name: str
    tax_id: str
    period: str
    period_status: str
    total: VendorTotal
    by_outlet: list[Subtotal]
    by_outlet_item: list[Subtotal]
    lines: list[StatementLine]
    settled: Settled | None


@dataclass(frozen=True)
class SettlementResult:
    period: str
    closed_at: datetime
    totals: list[VendorTotal]
    unapplied_offline_receipts: int  # left for review; they can no longer become sales of this period

    @property
    def subsidy_minor(self) -> int:
        return sum(t.subsidy_minor for t in self.totals)


@dataclass(frozen=True)
class Difference:
    vendor_id: str
    field: str  # redemptions | lines | subsidy_minor | ledger_sha256 | line_subsidy | not_settled
    settled: str
    ledger: str


class SettlementStore(Protocol):
    def period_status(self, period: str) -> str | None: ...
    def close_period(self, period: str, now: datetime) -> bool: ...
    def ledger(self, period: str, vendor_id: str | None = None) -> list[LedgerEntry]: ...
    def sale_lines(self, period: str, vendor_id: str) -> list[SaleLine]: ...
    def settlements(self, period: str, vendor_id: str | None = None) -> list[Settled]: ...
    def add_settlements(self, period: str, totals: Sequence[VendorTotal], by: str, now: datetime) -> None: ...
    def unapplied_offline_receipts(self, period: str) -> int: ...


class SettlementUnitOfWork(Protocol):
    @property
    def settlement(self) -> SettlementStore: ...
    @property
    def vendors(self) -> VendorStore: ...
    @property
    def access_log(self) -> AccessLog: ...
    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...

    def commit(self) -> None: ...


def ensure_period_open(status_of: Callable[[str], str | None], period: str) -> None:
    """What every sale path checks first (`uow.decisions.period_status`): a closed period is settled."""
    if status_of(period) == "closed":
        raise Conflict("period_closed", f"Period {period} is closed (settled); nothing can be redeemed in it.")


def _by_vendor(lines: Iterable[LedgerEntry]) -> dict[str, list[LedgerEntry]]:
    grouped: dict[str, list[LedgerEntry]] = {}
    for line in lines:
        grouped.setdefault(line.vendor_id, []).append(line)
    return grouped


def _read_ledger(uow: SettlementUnitOfWork, detail: str) -> None:
    """The enforcement point: one entry (no subject — households appear only as pseudonyms)."""
    disclose(uow.access_log, uow.context, [], LEDGER_CATEGORIES, detail, uow.clock.now())


# --- statement -------------------------------------------------------------------------------------


def statement(uow: SettlementUnitOfWork, root_key: RootKey, vendor_id: str, period: str) -> Statement:
    """The vendor's statement for the period: totals per outlet and item, and every line behind them."""
    period_start(period)
    vendor = uow.vendors.vendor(vendor_id) if is_id(vendor_id) else None
    if vendor is None:
        raise NotFound("vendor_not_found", "There is no vendor with that id.")
    status = uow.settlement.period_status(period)
    if status is None:
        raise NotFound("period_not_found", f"Period {period} has not been opened.")
    _read_ledger(uow, f"statement of vendor {vendor.id} for {period}")
    sales = uow.settlement.sale_lines(period, vendor.id)
    settled = uow.settlement.settlements(period, vendor.id)
    uow.commit()  # the log entry stays even if rendering fails later
    holders = SectorKey.derive(root_key, f"vendor:{vendor.id}")
    lines = [
        StatementLine(
            transaction_id=s.entry.redemption_id,
            sold_at=as_utc(s.sold_at),
            outlet_id=s.entry.outlet_id,
            outlet_name=s.outlet_name,
            item_code=s.entry.item_code,
            quantity=s.entry.quantity,
            reference_price_minor=s.entry.reference_price_minor,
            subsidized_price_minor=s.entry.subsidized_price_minor,
            subsidy_minor=s.entry.owed_minor,
            channel=s.channel,
            holder=holders.pseudonym(s.holder_id) if s.holder_id else "",
        )
        for s in sorted(sales, key=lambda s: (as_utc(s.sold_at), s.entry.redemption_id, s.entry.item_code))
    ]
    return Statement(
        vendor.id,
        vendor.name,
        vendor.tax_id,
        period,
        status,
        VendorTotal.of(vendor.id, [s.entry for s in sales]),
        _subtotals(lines, by_item=False),
        _subtotals(lines, by_item=True),
        lines,
        settled[0] if settled else None,
    )


def _subtotals(lines: Sequence[StatementLine], by_item: bool) -> list[Subtotal]:
    groups: dict[tuple[str, str | None], list[StatementLine]] = {}
    for line in lines:
        groups.setdefault((line.outlet_id, line.item_code if by_item else None), []).append(line)
    return [
        Subtotal(
            outlet,
            group[0].outlet_name,
            item,
            len({g.transaction_id for g in group}),
            sum(g.quantity for g in group),
            sum(g.subsidy_minor for g in group),
        )
        for (outlet, item), group in sorted(groups.items(), key=lambda kv: (kv[1][0].outlet_name, kv[0]))
    ]


# --- closing and verifying ---------------------------------------------------------------------------


def settle(uow: SettlementUnitOfWork, period: str, by: str) -> SettlementResult:
    """Close the period and fix every vendor's total and ledger hash, in one transaction.

    The period row is set to closed *before* the ledger is read: on PostgreSQL that row lock makes
    a sale that checks the period with FOR SHARE wait or see it closed; on SQLite the UPDATE takes
    the write lock, so no sale can commit between the read and the settlements rows.
    """
    period_start(period)
    status = uow.settlement.period_status(period)
    if status is None:
        raise NotFound("period_not_found", f"Period {period} has not been opened.")
    now = uow.clock.now()
    if status == "closed" or not uow.settlement.close_period(period, now):
        raise Conflict("period_closed", f"Period {period} is already closed and settled.")
    grouped = _by_vendor(uow.settlement.ledger(period))
    vendor_ids = sorted({v.id for v in uow.vendors.vendors()} | set(grouped))
    totals = [VendorTotal.of(v, grouped.get(v, [])) for v in vendor_ids]
    uow.settlement.add_settlements(period, totals, by, now)
    unapplied = uow.settlement.unapplied_offline_receipts(period)
    owed = sum(t.subsidy_minor for t in totals)
    record_change(
        uow.access_log,
        uow.context,
        [],
        [],
        f"closed period {period}: {len(totals)} vendor(s) settled, subsidy {owed} minor units",
        now,
    )
    uow.commit()
    return SettlementResult(period, now, totals, unapplied)


def verify(uow: SettlementUnitOfWork, period: str) -> list[Difference]:
    """Recompute each settled vendor's counts, total and hash from the ledger; [] when all agree."""
    period_start(period)
    settled = {s.total.vendor_id: s.total for s in uow.settlement.settlements(period)}
    if not settled:
        raise Conflict("period_not_settled", f"Period {period} has not been settled yet.")
    _read_ledger(uow, f"verified the settlement of {period}")
    grouped = _by_vendor(uow.settlement.ledger(period))
    uow.commit()
    differences: list[Difference] = []
    for vendor_id in sorted(set(settled) | set(grouped)):
        lines = grouped.get(vendor_id, [])
        recomputed = VendorTotal.of(vendor_id, lines)
        fixed = settled.get(vendor_id)
        if fixed is None:
            differences.append(Difference(vendor_id, "not_settled", "-", f"{len(lines)} line(s)"))
            continue
        for name in ("redemptions", "lines", "subsidy_minor", "ledger_sha256"):
            was, now = getattr(fixed, name), getattr(recomputed, name)
            if was != now:
                differences.append(Difference(vendor_id, name, str(was), str(now)))
        for line in lines:
            if line.subsidy_minor != line.owed_minor:
                differences.append(
                    Difference(vendor_id, "line_subsidy", str(line.owed_minor), f"{line.id}: {line.subsidy_minor}")
                )
    return differences
