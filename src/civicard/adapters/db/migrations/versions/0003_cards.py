"""Cards, card PINs (keyed hashes and attempt counters) and published status-list versions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('status_list_versions',
    sa.Column('version', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('signed_list', sa.LargeBinary(), nullable=False),
    sa.Column('signed_delta', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_status_list_versions'))
    )
    op.create_table('cards',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('handle', sa.String(length=11), nullable=False),
    sa.Column('person_id', sa.String(length=32), nullable=False),
    sa.Column('status_index', sa.BigInteger(), nullable=False),
    sa.Column('kid', sa.SmallInteger(), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('issued_by', sa.String(length=120), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('status_reason', sa.String(length=40), nullable=True),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status_changed_by', sa.String(length=120), nullable=True),
    sa.Column('replaces_card_id', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_cards_person_id_persons')),
    sa.ForeignKeyConstraint(['replaces_card_id'], ['cards.id'], name=op.f('fk_cards_replaces_card_id_cards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cards')),
    sa.UniqueConstraint('handle', name=op.f('uq_cards_handle')),
    sa.UniqueConstraint('status_index', name=op.f('uq_cards_status_index'))
    )
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cards_person_id'), ['person_id'], unique=False)

    op.create_table('card_pins',
    sa.Column('card_id', sa.String(length=32), nullable=False),
    sa.Column('pin_hash', sa.String(length=80), nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('set_by', sa.String(length=120), nullable=False),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_card_pins_card_id_cards')),
    sa.PrimaryKeyConstraint('card_id', name=op.f('pk_card_pins'))
    )


def downgrade() -> None:
    op.drop_table('card_pins')
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cards_person_id'))

    op.drop_table('cards')
    op.drop_table('status_list_versions')
