"""Request and response bodies of redemptions and card checks: vendor-safe by construction.

The response models hold only what a vendor may see (no name, income, health fact or internal id
of a person, household or card); a test seeds canary names and incomes and reads every byte.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from civicard.adapters.api.schemas import Body
from civicard.distribution.redemption import CardCheck, Receipt
from civicard.distribution.sales import MAX_LINES, MAX_QUANTITY, BasketLine

IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_-]{1,80}$"


class BasketLineIn(Body):
    item: str = Field(min_length=1, max_length=40, examples=["RICE-1KG"])
    quantity: int = Field(ge=1, le=MAX_QUANTITY, description="Whole item units.", examples=[2])


class RedemptionIn(Body):
    card_token: str = Field(min_length=1, max_length=400, description="The card's QR text exactly as scanned.")
    pin: str = Field(min_length=1, max_length=6, description="The holder's PIN (4–6 digits); never stored or logged.")
    basket: list[BasketLineIn] = Field(min_length=1, max_length=MAX_LINES)

    def lines(self) -> tuple[BasketLine, ...]:
        return tuple(BasketLine(line.item, line.quantity) for line in self.basket)


class CardCheckIn(Body):
    card_token: str = Field(min_length=1, max_length=400, description="The card's QR text exactly as scanned.")


class ReceiptLineOut(BaseModel):
    item: str
    granted: int = Field(description="Units handed over in this sale.")
    remaining: int = Field(description="Units of this item the household has left this period.")
    unit: str
    unit_price_minor: int = Field(description="Subsidized price of one unit (minor units).")
    amount_minor: int = Field(description="What the holder pays for this line.")


class ReceiptOut(BaseModel):
    decision: Literal["approved"]
    code: Literal["redeemed"]
    period: str = Field(description="The benefit cycle, YYYY-MM.")
    transaction_id: str = Field(description="The redemption's id: quote it to settle or dispute.")
    holder: str = Field(description="This vendor's own pseudonym for the card holder.")
    items: list[ReceiptLineOut]
    total_minor: int = Field(description="What the holder pays in all.")

    @classmethod
    def of(cls, receipt: Receipt) -> ReceiptOut:
        return cls(
            decision="approved",
            code="redeemed",
            period=receipt.period,
            transaction_id=receipt.transaction_id,
            holder=receipt.holder,
            items=receipt_lines(receipt),
            total_minor=receipt.total_minor,
        )


def receipt_lines(receipt: Receipt) -> list[ReceiptLineOut]:
    """A receipt's lines as the vendor sees them (online and fallback sales alike)."""
    return [
        ReceiptLineOut(
            item=line.item,
            granted=line.quantity,
            remaining=line.remaining,
            unit=line.unit,
            unit_price_minor=line.unit_price_minor,
            amount_minor=line.amount_minor,
        )
        for line in receipt.lines
    ]


class CheckedItemOut(BaseModel):
    item: str
    unit: str
    remaining: int
    unit_price_minor: int | None = Field(description="Subsidized price this period (null: not priced yet).")


class CardCheckOut(BaseModel):
    card_valid: bool = Field(description="Signature, expiry and status are good.")
    code: str = Field(
        description="card_valid, or the refusal a redemption would meet now (card_revoked, not_entitled…)."
    )
    period: str
    pin_locked: bool = Field(description="PIN use is locked: the holder must see a registrar (or use the fallback).")
    items: list[CheckedItemOut] = Field(description="What this outlet can serve and how much is left (no medicines).")

    @classmethod
    def of(cls, check: CardCheck) -> CardCheckOut:
        return cls(
            card_valid=check.card_valid,
            code=check.code,
            period=check.period,
            pin_locked=check.pin_locked,
            items=[
                CheckedItemOut(item=i.item, unit=i.unit, remaining=i.remaining, unit_price_minor=i.unit_price_minor)
                for i in check.items
            ],
        )
