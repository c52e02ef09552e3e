"""Retention and erasure (issue 9, item 3).

Revision ID: 0013_retention
Revises: 0012_key_custody
Create Date: 2026-12-09
"""

from __future__ import annotations

revision = "0013_retention"
down_revision = "0012_key_custody"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
