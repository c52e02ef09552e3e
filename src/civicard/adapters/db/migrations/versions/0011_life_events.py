"""Life events: death, birth, household split and merge, moves (issue 9, item 1).

Revision ID: 0011_life_events
Revises: 0010_approvals
Create Date: 2026-12-09
"""

from __future__ import annotations

revision = "0011_life_events"
down_revision = "0010_approvals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
