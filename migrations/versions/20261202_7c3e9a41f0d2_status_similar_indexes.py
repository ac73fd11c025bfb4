"""Indexes for a library of a million tracks: status counts states and genres from one
index (state, genre) without reading a row, and similar's check of whether the stored
embeddings changed (count, largest id, latest finish of one embedding model's done
tracks) reads an index instead of the table
(bench/big_library.py, bench/results/big_library.json).

Revision ID: 7c3e9a41f0d2
Revises: 5b1e0c7d2a94
Create Date: 2026-12-02 01:00:00.000000
"""
from alembic import op

revision = '7c3e9a41f0d2'
down_revision = '5b1e0c7d2a94'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_tracks_state_genre', 'tracks', ['state', 'genre'], unique=False)
    op.create_index('ix_tracks_embedding_model_state_finished_at', 'tracks',
                    ['embedding_model', 'state', 'finished_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tracks_embedding_model_state_finished_at', table_name='tracks')
    op.drop_index('ix_tracks_state_genre', table_name='tracks')
