"""An index on (size_bytes, mtime_ns): enqueue looks up each new file's size and mtime
among the known tracks, to recognise a file moved or renamed (genreq.db.queue
upsert_tracks); without it each batch of new files reads the whole table
(bench/moves.py, bench/results/moves.json).

Revision ID: a7d2f9c41b36
Revises: 3f8a2c61d9e4
Create Date: 2026-12-03 13:00:00.000000
"""
from alembic import op

revision = 'a7d2f9c41b36'
down_revision = '3f8a2c61d9e4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_tracks_size_bytes_mtime_ns', 'tracks', ['size_bytes', 'mtime_ns'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_tracks_size_bytes_mtime_ns', table_name='tracks')
