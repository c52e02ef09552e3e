"""Request and response models of the offline-redemption API (receipts batches, outcomes, conflicts)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH = 500


class ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payload: str = Field(
        max_length=6000, description="base64url of the receipt's canonical JSON (see distribution/offline.py)."
    )
    signature: str = Field(
        max_length=100, description="base64url of the Ed25519 signature by the terminal's device key."
    )


class ReceiptsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    receipts: list[ReceiptIn] = Field(max_length=MAX_BATCH, description="Any order; applied in seq order.")


class ReceiptOutcomeOut(BaseModel):
    index: int = Field(description="Place of the receipt in the batch as sent.")
    seq: int | None
    status: Literal["applied", "conflict", "refused"]
    reason: str | None = Field(description="Why not applied: a stable code (e.g. insufficient_remaining).")
    transaction_id: str | None = Field(description="The redemption an applied receipt became.")


class ReceiptsOut(BaseModel):
    results: list[ReceiptOutcomeOut]


class ConflictOut(BaseModel):
    id: str
    terminal_id: str
    outlet_id: str | None
    seq: int
    period: str
    items: dict[str, int]
    device_time: datetime
    received_at: datetime
    reason: str


class ConflictsOut(BaseModel):
    conflicts: list[ConflictOut]
