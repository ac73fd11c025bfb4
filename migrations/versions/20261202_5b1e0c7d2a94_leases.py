"""Leases: who claimed a running track, the claim's token, and when the claim runs out.

Revision ID: 5b1e0c7d2a94
Revises: ca7c6c02de8c
Create Date: 2026-12-02 00:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '5b1e0c7d2a94'
down_revision = 'ca7c6c02de8c'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tracks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('claim_token', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index('ix_tracks_state_lease_expires_at',
                              ['state', 'lease_expires_at'], unique=False)
    # Tracks left running by a worker of the previous version have no lease: expired
    # (NULL counts as such), so the first expiry scan queues them again.


def downgrade() -> None:
    with op.batch_alter_table('tracks', schema=None) as batch_op:
        batch_op.drop_index('ix_tracks_state_lease_expires_at')
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('claim_token')
        batch_op.drop_column('claimed_by')
