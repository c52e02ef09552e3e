"""A household's entitlements and redemptions as one of its members reads them (purpose self_access).

The figures come from the ledger the sales wrote (entitlements, redemptions, ledger lines), so the
resident sees what the vendors are reimbursed for: where, when, which items and how many, and
whether the sale went through online, from an offline receipt, or by the photo-and-supervisor
fallback, and what the holder paid — never the subsidy the vendor is owed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from civicard.programs.cycles import period_of
from civicard.registry.ports import RegistryUnitOfWork
from civicard.shared.errors import Forbidden, InvalidInput
from civicard.transparency.access import Subject, disclose

SELF_ACCESS = "self_access"
CHANNELS = ("online", "offline", "fallback")
_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


@dataclass(frozen=True)
class EntitlementLine:
    program: str
    item_code: str
    granted: int
    remaining: int


@dataclass(frozen=True)
class RedeemedItem:
    item_code: str
    quantity: int


@dataclass(frozen=True)
class HouseholdRedemption:
    id: str  # the transaction id printed on the receipt
    period: str
    sold_at: datetime  # when the server recorded it (an offline sale: its receipt's device time)
    outlet_name: str
    channel: str  # online, offline or fallback
    total_minor: int  # what the holder paid
    items: tuple[RedeemedItem, ...]
    with_my_card: bool  # the reader's own card, or another member's


@dataclass(frozen=True)
class MyBenefits:
    household_id: str | None
    period: str
    periods: tuple[str, ...]  # periods with entitlements or redemptions, newest first
    entitlements: tuple[EntitlementLine, ...]
    redemptions: tuple[HouseholdRedemption, ...]  # newest first
    items: dict[str, dict[str, str]]  # item code → {"es": name, "en": name, "unit": unit}
    programs: dict[str, dict[str, str]]  # program → {"es": title, "en": title}


class HouseholdLedger(Protocol):
    def periods(self, household_id: str) -> list[str]: ...
    def entitlements(self, household_id: str, period: str) -> list[EntitlementLine]: ...
    def redemptions(self, household_id: str, period: str, person_id: str) -> list[HouseholdRedemption]: ...
    def item_names(self) -> dict[str, dict[str, str]]: ...
    def program_titles(self) -> dict[str, dict[str, str]]: ...


class LedgerUnitOfWork(RegistryUnitOfWork, Protocol):
    @property
    def ledger(self) -> HouseholdLedger: ...


def my_benefits(uow: LedgerUnitOfWork, person_id: str, period: str | None = None) -> MyBenefits:
    """The period's entitlements (granted, remaining) per program and the household's redemptions
    in it. Without `period`: this month if the household has anything in it, else its latest."""
    if uow.context.purpose != SELF_ACCESS:
        raise Forbidden("purpose_not_allowed", f"This is done under the '{SELF_ACCESS}' purpose.")
    if period is not None and not _PERIOD.fullmatch(period):
        raise InvalidInput("invalid_period", "The period is a month, YYYY-MM.")
    disclose(
        uow.access_log,
        uow.context,
        [Subject.person(person_id)],
        ["decisions"],
        f"benefits.read period={period or 'current'}",
        uow.clock.now(),
    )
    this_month = period_of(uow.clock.today())
    membership = uow.memberships.current_of_person(person_id)
    if membership is None:
        uow.commit()
        return MyBenefits(None, period or this_month, (), (), (), {}, {})
    household_id = membership.household_id
    periods = tuple(uow.ledger.periods(household_id))
    chosen = period or (this_month if this_month in periods or not periods else periods[0])
    found = MyBenefits(
        household_id,
        chosen,
        periods,
        tuple(uow.ledger.entitlements(household_id, chosen)),
        tuple(uow.ledger.redemptions(household_id, chosen, person_id)),
        uow.ledger.item_names(),
        uow.ledger.program_titles(),
    )
    uow.commit()
    return found
