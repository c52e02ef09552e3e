"""A sale against a household's entitlements: which entitlement each basket line draws on.

Online, offline (a synced receipt) and fallback sales all go through `allocate`: every line's item
must be in the catalogue with a price for the period, the outlet's kind must be allowed to serve
the item's kind, and the household's remaining quantities must cover it (drawn from its programs in
name order). Nothing is decremented unless the whole basket fits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from civicard.shared.errors import DomainError, ErrorKind

MAX_LINES = 50
MAX_QUANTITY = 1_000


class Refused(DomainError):
    """A sale the rules do not allow; the terminal shows the code's message (HTTP 422)."""

    kind = ErrorKind.INVALID


@dataclass(frozen=True)
class BasketLine:
    item: str
    quantity: int


@dataclass(frozen=True)
class Slot:
    """One entitlement row: a program's grant of an item to a household for the period."""

    entitlement_id: str
    program: str
    item: str
    granted: int
    remaining: int


@dataclass(frozen=True)
class Price:
    reference_minor: int
    subsidized_minor: int


@dataclass(frozen=True)
class Allocation:
    entitlement_id: str
    program: str
    item: str
    quantity: int
    price: Price

    @property
    def paid_minor(self) -> int:
        return self.price.subsidized_minor * self.quantity

    @property
    def subsidy_minor(self) -> int:
        return (self.price.reference_minor - self.price.subsidized_minor) * self.quantity


def check_basket(lines: Sequence[BasketLine]) -> list[BasketLine]:
    """One line per item (quantities of repeated items added), 1 ≤ quantity ≤ MAX_QUANTITY."""
    if not lines:
        raise Refused("empty_basket", "The basket is empty.")
    if len(lines) > MAX_LINES:
        raise Refused("basket_too_large", f"A basket holds at most {MAX_LINES} lines.")
    merged: dict[str, int] = {}
    for line in lines:
        if line.quantity < 1 or line.quantity > MAX_QUANTITY:
            raise Refused("invalid_quantity", f"Quantities are whole numbers from 1 to {MAX_QUANTITY}.")
        merged[line.item] = merged.get(line.item, 0) + line.quantity
    return [BasketLine(item, quantity) for item, quantity in merged.items()]


def allocate(
    basket: Sequence[BasketLine],
    slots: Sequence[Slot],
    item_kinds: Mapping[str, str],
    prices: Mapping[str, Price],
    serves: frozenset[str],
) -> list[Allocation]:
    """Draw each line from the household's slots, or refuse the whole sale with one code."""
    lines = check_basket(basket)
    for line in lines:
        if line.item not in item_kinds or line.item not in prices:
            raise Refused("unknown_item", f"'{line.item}' is not an item that can be redeemed this period.")
        if item_kinds[line.item] not in serves:
            raise Refused(
                "item_not_allowed_here", f"'{line.item}' ({item_kinds[line.item]}) cannot be served at this outlet."
            )
    by_item: dict[str, list[Slot]] = {}
    for slot in sorted(slots, key=lambda s: (s.program, s.entitlement_id)):
        by_item.setdefault(slot.item, []).append(slot)
    allocations: list[Allocation] = []
    for line in lines:
        held = [s for s in by_item.get(line.item, []) if s.granted > 0]
        if not held:
            raise Refused("not_entitled", f"This card's household is not entitled to '{line.item}' this period.")
        left = sum(s.remaining for s in held)
        if left < line.quantity:
            raise Refused(
                "insufficient_remaining", f"Only {left} of '{line.item}' remain this period ({line.quantity} asked)."
            )
        wanted = line.quantity
        for slot in held:
            take = min(wanted, slot.remaining)
            if take:
                allocations.append(Allocation(slot.entitlement_id, slot.program, slot.item, take, prices[line.item]))
                wanted -= take
            if not wanted:
                break
    return allocations
