"""Duplicate review: persons' record status and alias link, the candidate queue, merges and their undo.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite adds a column with an inline REFERENCES clause in place (its default is NULL); a batch
    # "create foreign key" would rebuild `persons`, which other tables reference, on a live database.
    if op.get_bind().dialect.name == 'sqlite':
        op.execute("ALTER TABLE persons ADD COLUMN record_status VARCHAR(10) DEFAULT 'active' NOT NULL")
        op.execute('ALTER TABLE persons ADD COLUMN merged_into VARCHAR(32) '
                   'CONSTRAINT fk_persons_merged_into_persons REFERENCES persons (id)')
    else:
        op.add_column('persons', sa.Column('record_status', sa.String(length=10), server_default='active',
                                           nullable=False))
        op.add_column('persons', sa.Column('merged_into', sa.String(length=32), nullable=True))
        op.create_foreign_key(op.f('fk_persons_merged_into_persons'), 'persons', 'persons', ['merged_into'], ['id'])

    op.create_table('duplicate_candidates',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('person_id_l', sa.String(length=32), nullable=False),
    sa.Column('person_id_r', sa.String(length=32), nullable=False),
    sa.Column('match_probability', sa.Float(), nullable=False),
    sa.Column('reasons', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('raised_by', sa.String(length=120), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=120), nullable=True),
    sa.Column('decision_note', sa.Text(), nullable=True),
    sa.CheckConstraint('person_id_l < person_id_r', name='ck_duplicate_candidates_ordered_pair'),
    sa.ForeignKeyConstraint(['person_id_l'], ['persons.id'], name=op.f('fk_duplicate_candidates_person_id_l_persons')),
    sa.ForeignKeyConstraint(['person_id_r'], ['persons.id'], name=op.f('fk_duplicate_candidates_person_id_r_persons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_duplicate_candidates')),
    sa.UniqueConstraint('person_id_l', 'person_id_r', name=op.f('uq_duplicate_candidates_person_id_l_person_id_r'))
    )
    with op.batch_alter_table('duplicate_candidates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_duplicate_candidates_person_id_r'), ['person_id_r'], unique=False)
        batch_op.create_index(batch_op.f('ix_duplicate_candidates_status'), ['status'], unique=False)

    op.create_table('person_merges',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('candidate_id', sa.String(length=32), nullable=True),
    sa.Column('survivor_id', sa.String(length=32), nullable=False),
    sa.Column('merged_id', sa.String(length=32), nullable=False),
    sa.Column('merged_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('merged_by', sa.String(length=120), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('ended_membership_id', sa.String(length=32), nullable=True),
    sa.Column('revoked_card_id', sa.String(length=32), nullable=True),
    sa.Column('replacement_card_id', sa.String(length=32), nullable=True),
    sa.Column('undone_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('undone_by', sa.String(length=120), nullable=True),
    sa.Column('undo_reason', sa.Text(), nullable=True),
    sa.Column('restored_membership_id', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['candidate_id'], ['duplicate_candidates.id'], name=op.f('fk_person_merges_candidate_id_duplicate_candidates')),
    sa.ForeignKeyConstraint(['ended_membership_id'], ['memberships.id'], name=op.f('fk_person_merges_ended_membership_id_memberships')),
    sa.ForeignKeyConstraint(['merged_id'], ['persons.id'], name=op.f('fk_person_merges_merged_id_persons')),
    sa.ForeignKeyConstraint(['replacement_card_id'], ['cards.id'], name=op.f('fk_person_merges_replacement_card_id_cards')),
    sa.ForeignKeyConstraint(['restored_membership_id'], ['memberships.id'], name=op.f('fk_person_merges_restored_membership_id_memberships')),
    sa.ForeignKeyConstraint(['revoked_card_id'], ['cards.id'], name=op.f('fk_person_merges_revoked_card_id_cards')),
    sa.ForeignKeyConstraint(['survivor_id'], ['persons.id'], name=op.f('fk_person_merges_survivor_id_persons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person_merges'))
    )
    with op.batch_alter_table('person_merges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_merges_candidate_id'), ['candidate_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_person_merges_merged_id'), ['merged_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_person_merges_survivor_id'), ['survivor_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('person_merges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_merges_survivor_id'))
        batch_op.drop_index(batch_op.f('ix_person_merges_merged_id'))
        batch_op.drop_index(batch_op.f('ix_person_merges_candidate_id'))

    op.drop_table('person_merges')
    with op.batch_alter_table('duplicate_candidates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_duplicate_candidates_status'))
        batch_op.drop_index(batch_op.f('ix_duplicate_candidates_person_id_r'))

    op.drop_table('duplicate_candidates')
    # SQLite cannot drop a column that carries a foreign key: the batch rebuild does, with its constraint.
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:  # the rebuild drops and re-creates `persons`, which other tables reference (same ids)
        op.execute('PRAGMA foreign_keys = OFF')
    with op.batch_alter_table('persons', schema=None, recreate='always' if sqlite else 'auto') as batch_op:
        if not sqlite:
            batch_op.drop_constraint(batch_op.f('fk_persons_merged_into_persons'), type_='foreignkey')
        batch_op.drop_column('merged_into')
        batch_op.drop_column('record_status')
    if sqlite:
        op.execute('PRAGMA foreign_keys = ON')
