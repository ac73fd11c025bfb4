"""Indexes for following moved files and counting gone ones (genreq.db.queue): on
(size_bytes, mtime_ns), where enqueue looks up each new file's size and mtime among the
known tracks, to recognise a file moved or renamed (without it each batch of new files
reads the whole table); and on PostgreSQL, path with text_pattern_ops, for the tracks
under a folder (LIKE 'folder/%'; SQLite reads a range of the unique index on path).

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
    if op.get_bind().dialect.name == 'postgresql':
        op.create_index('ix_tracks_path_pattern', 'tracks', ['path'], unique=False,
                        postgresql_ops={'path': 'text_pattern_ops'})


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_tracks_path_pattern', table_name='tracks')
    op.drop_index('ix_tracks_size_bytes_mtime_ns', table_name='tracks')
