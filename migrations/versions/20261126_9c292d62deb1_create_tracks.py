"""Create the tracks table: one row per audio file and its prediction.

Revision ID: 9c292d62deb1
Revises:
Create Date: 2026-11-26 17:26:25.669509
"""
import sqlalchemy as sa
from alembic import op

revision = '9c292d62deb1'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tracks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.Enum('queued', 'running', 'done', 'failed', name='track_state',
                               native_enum=False, create_constraint=True, length=16),
              nullable=False),
    sa.Column('batch_id', sa.String(length=32), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('genre', sa.String(length=64), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('probs', sa.JSON(), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('model_name', sa.String(length=64), nullable=True),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('elapsed_s', sa.Float(), nullable=True),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tracks')),
    sa.UniqueConstraint('path', name=op.f('uq_tracks_path'))
    )
    with op.batch_alter_table('tracks', schema=None) as batch_op:
        batch_op.create_index('ix_tracks_batch_id_state', ['batch_id', 'state'], unique=False)
        batch_op.create_index('ix_tracks_finished_at', ['finished_at'], unique=False)
        batch_op.create_index('ix_tracks_genre_confidence', ['genre', 'confidence'], unique=False)
        batch_op.create_index('ix_tracks_state', ['state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tracks', schema=None) as batch_op:
        batch_op.drop_index('ix_tracks_state')
        batch_op.drop_index('ix_tracks_genre_confidence')
        batch_op.drop_index('ix_tracks_finished_at')
        batch_op.drop_index('ix_tracks_batch_id_state')

    op.drop_table('tracks')
