"""Distribution: vendors, outlets, terminals at outlets, prices by period, which outlets serve
which items, redemptions with their ledger lines, idempotency keys, offline receipts, settlements.

On PostgreSQL redemptions and ledger lines are partitioned by period (like decisions and
entitlements); a period's partitions are created when the period opens.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
CODE = sa.String(length=40)
PERIOD = sa.String(length=7)
TS = sa.DateTime(timezone=True)
PARTITIONED = ("redemptions", "ledger_lines")


def upgrade() -> None:
    op.create_table(
        "vendors",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tax_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
    )
    op.create_table(
        "outlets",
        sa.Column("id", ID, primary_key=True),
        sa.Column("vendor_id", ID, sa.ForeignKey("vendors.id"), nullable=False, index=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", CODE, nullable=False),
        sa.Column("region", CODE, nullable=False),
        sa.Column("municipality", CODE, nullable=False),
        sa.Column("address_line", sa.String(length=300), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
    )
    with op.batch_alter_table("terminals") as batch:
        batch.add_column(sa.Column("outlet_id", ID, nullable=True))
        batch.add_column(sa.Column("role", sa.String(length=12), nullable=False, server_default="counter"))
        batch.create_foreign_key("fk_terminals_outlet_id_outlets", "outlets", ["outlet_id"], ["id"])
    op.create_table(
        "item_prices",
        sa.Column("item_code", CODE, sa.ForeignKey("items.code"), nullable=False),
        sa.Column("period", PERIOD, nullable=False),
        sa.Column("reference_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("subsidized_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("set_at", TS, nullable=False),
        sa.Column("set_by", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("item_code", "period", name="pk_item_prices"),
    )
    op.create_table(
        "serving_rules",
        sa.Column("outlet_kind", CODE, nullable=False),
        sa.Column("item_kind", CODE, nullable=False),
        sa.PrimaryKeyConstraint("outlet_kind", "item_kind", name="pk_serving_rules"),
    )
    op.bulk_insert(
        sa.table("serving_rules", sa.column("outlet_kind", CODE), sa.column("item_kind", CODE)),
        [
            {"outlet_kind": "shop", "item_kind": "food"},
            {"outlet_kind": "shop", "item_kind": "hygiene"},
            {"outlet_kind": "pharmacy", "item_kind": "medicine"},
            {"outlet_kind": "pharmacy", "item_kind": "hygiene"},
        ],
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("terminal_id", ID, sa.ForeignKey("terminals.id"), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("terminal_id", "key", name="pk_idempotency_keys"),
    )
    kw = {"postgresql_partition_by": "LIST (period)"}
    op.create_table(
        "redemptions",
        sa.Column("period", PERIOD, nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("household_id", ID, nullable=False),
        sa.Column("card_id", ID, nullable=False),
        sa.Column("terminal_id", ID, nullable=False),
        sa.Column("outlet_id", ID, nullable=False),
        sa.Column("vendor_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("attested_by", ID, nullable=True),
        sa.Column("idempotency_key", sa.String(length=80), nullable=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("subsidy_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("device_time", TS, nullable=True),
        sa.PrimaryKeyConstraint("period", "id", name="pk_redemptions"),
        **kw,
    )
    op.create_index("ix_redemptions_household_id", "redemptions", ["household_id"])
    op.create_index("ix_redemptions_vendor_id", "redemptions", ["vendor_id", "period"])
    op.create_table(
        "ledger_lines",
        sa.Column("period", PERIOD, nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("redemption_id", ID, nullable=False),
        sa.Column("entitlement_id", ID, nullable=False),
        sa.Column("household_id", ID, nullable=False),
        sa.Column("program", CODE, nullable=False),
        sa.Column("item_code", CODE, nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("reference_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("subsidized_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("subsidy_minor", sa.BigInteger(), nullable=False),
        sa.Column("vendor_id", ID, nullable=False),
        sa.Column("outlet_id", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("period", "id", name="pk_ledger_lines"),
        **kw,
    )
    op.create_index("ix_ledger_lines_redemption_id", "ledger_lines", ["redemption_id"])
    op.create_index("ix_ledger_lines_vendor_id", "ledger_lines", ["vendor_id", "period"])
    op.create_table(
        "offline_receipts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("terminal_id", ID, sa.ForeignKey("terminals.id"), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("period", PERIOD, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("redemption_id", ID, nullable=True),
        sa.Column("conflict", sa.Text(), nullable=True),
        sa.Column("reviewed_by", sa.String(length=120), nullable=True),
        sa.Column("reviewed_at", TS, nullable=True),
        sa.UniqueConstraint("terminal_id", "seq", name="uq_offline_receipts_terminal_id_seq"),
    )
    op.create_table(
        "settlements",
        sa.Column("id", ID, primary_key=True),
        sa.Column("vendor_id", ID, sa.ForeignKey("vendors.id"), nullable=False),
        sa.Column("period", PERIOD, nullable=False),
        sa.Column("redemptions", sa.Integer(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("subsidy_minor", sa.BigInteger(), nullable=False),
        sa.Column("ledger_sha256", sa.String(length=64), nullable=False),
        sa.Column("settled_at", TS, nullable=False),
        sa.Column("settled_by", sa.String(length=120), nullable=False),
        sa.UniqueConstraint("vendor_id", "period", name="uq_settlements_vendor_id_period"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in PARTITIONED:
            op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
        # Periods opened before this migration get their partitions now.
        for (period,) in bind.execute(sa.text("SELECT period FROM benefit_periods")):
            suffix = period.replace("-", "_")
            for table in PARTITIONED:
                op.execute(f"CREATE TABLE {table}_p{suffix} PARTITION OF {table} FOR VALUES IN ('{period}')")


def downgrade() -> None:
    op.drop_table("settlements")
    op.drop_table("offline_receipts")
    op.drop_index("ix_ledger_lines_vendor_id", table_name="ledger_lines")
    op.drop_index("ix_ledger_lines_redemption_id", table_name="ledger_lines")
    op.drop_table("ledger_lines")
    op.drop_index("ix_redemptions_vendor_id", table_name="redemptions")
    op.drop_index("ix_redemptions_household_id", table_name="redemptions")
    op.drop_table("redemptions")
    op.drop_table("idempotency_keys")
    op.drop_table("serving_rules")
    op.drop_table("item_prices")
    with op.batch_alter_table("terminals") as batch:
        batch.drop_constraint("fk_terminals_outlet_id_outlets", type_="foreignkey")
        batch.drop_column("role")
        batch.drop_column("outlet_id")
    op.drop_table("outlets")
    op.drop_table("vendors")
