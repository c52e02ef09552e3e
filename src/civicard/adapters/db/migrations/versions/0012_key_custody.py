"""Key custody: key generations and rotations (issue 9, item 5).

Revision ID: 0012_key_custody
Revises: 0011_life_events
Create Date: 2026-12-09
"""

from __future__ import annotations

revision = "0012_key_custody"
down_revision = "0011_life_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
