"""The exclusion report: per outlet and period, who is being turned away — as counts.

For each outlet: sales, failed PIN attempts (refusals `pin_wrong`), fallback sales (photo check
plus a supervisor's attestation, channel `fallback`) and refusals by reason code. Oversight reads
it to spot an outlet where people are refused or pushed into fallbacks unusually often.

No small-cell suppression: every figure is a count of events at an outlet (a business), not of
people, and nothing about the cards, households or times behind a count is stored or shown; a
count cannot be linked back to a person without the ledger, which this report does not read
beyond counting sales.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from civicard.programs.cycles import period_start
from civicard.shared.clock import Clock
from civicard.shared.errors import NotFound
from civicard.transparency.access import AccessContext, AccessLog, disclose

PIN_FAILURE = "pin_wrong"


@dataclass(frozen=True)
class OutletActivity:
    outlet_id: str
    outlet_name: str
    kind: str
    vendor_id: str
    vendor_name: str
    sales: int
    fallbacks: int
    refusals: Mapping[str, int] = field(default_factory=dict)  # reason code → count

    @property
    def failed_pin_attempts(self) -> int:
        return self.refusals.get(PIN_FAILURE, 0)

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())

    @property
    def refusal_rate(self) -> float:
        """Refusals per attempt (sales + refusals); 0 when there was none."""
        attempts = self.sales + self.refused
        return self.refused / attempts if attempts else 0.0


@dataclass(frozen=True)
class ExclusionReport:
    period: str
    outlets: list[OutletActivity]

    @property
    def codes(self) -> list[str]:
        return sorted({code for o in self.outlets for code in o.refusals})


class ActivityStore(Protocol):
    def period_status(self, period: str) -> str | None: ...
    def outlet_activity(self, period: str) -> list[OutletActivity]: ...


class ExclusionUnitOfWork(Protocol):
    @property
    def settlement(self) -> ActivityStore: ...
    @property
    def access_log(self) -> AccessLog: ...
    @property
    def context(self) -> AccessContext: ...
    @property
    def clock(self) -> Clock: ...

    def commit(self) -> None: ...


def exclusion_report(uow: ExclusionUnitOfWork, period: str) -> ExclusionReport:
    """Counts per outlet for the period, outlets with the highest refusal rate first."""
    period_start(period)
    if uow.settlement.period_status(period) is None:
        raise NotFound("period_not_found", f"Period {period} has not been opened.")
    disclose(uow.access_log, uow.context, [], ["decisions"], f"exclusion report for {period}", uow.clock.now())
    outlets = uow.settlement.outlet_activity(period)
    uow.commit()
    outlets.sort(key=lambda o: (-o.refusal_rate, -o.fallbacks, o.vendor_name, o.outlet_name))
    return ExclusionReport(period, outlets)
