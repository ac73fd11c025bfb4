"""Counts kept as tracks change, for a library of a million tracks: `track_counts` (tracks
per state and genre, what status shows) and `change_stamps` (a counter raised whenever
the done tracks' embeddings change, what similar's cache and the learned head's counts
are checked against), each kept by triggers on `tracks` in the transaction that writes
the track, so that reading them is one small SELECT instead of a scan of an index of
every track; and an index (state, reason) from which status counts the failed and
skipped tracks by reason (bench/big_library.py, bench/results/big_library.json).

Triggers on SQLite only. SQLite has one writer at a time, so a counter row updated by
every write costs a B-tree update and nothing else. On PostgreSQL the workers write in
parallel: every claim and result would update the same few counter rows and wait on
each other's locks until commit, and two transactions taking them in different orders
(a claim: queued then running; a lease expiry: running then queued) would deadlock. There
the tables stay empty and the readers count from the indexes (genreq.db.counts).

A later migration that rebuilds `tracks` on SQLite (batch_alter_table) drops its
triggers and must create them again (TRIGGERS): tests/test_counts.py fails otherwise.

Revision ID: e41b7d93c5a8
Revises: 7c3e9a41f0d2
Create Date: 2026-12-02 04:10:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = 'e41b7d93c5a8'
down_revision = '7c3e9a41f0d2'
branch_labels = None
depends_on = None

EMBEDDINGS = 'embeddings'  # genreq.db.models.EMBEDDINGS_STAMP

# A NULL genre is counted under ''.
_ADD_NEW = """INSERT INTO track_counts (state, genre, tracks)
        VALUES (new.state, coalesce(new.genre, ''), 1)
        ON CONFLICT (state, genre) DO UPDATE SET tracks = tracks + 1;"""
_REMOVE_OLD = """UPDATE track_counts SET tracks = tracks - 1
        WHERE state = old.state AND genre = coalesce(old.genre, '');"""
_BUMP = f"""UPDATE change_stamps SET generation = generation + 1
        WHERE name = '{EMBEDDINGS}';"""

TRIGGERS = {
    'tracks_counts_insert': f"""CREATE TRIGGER tracks_counts_insert AFTER INSERT ON tracks
    BEGIN {_ADD_NEW} END""",
    'tracks_counts_delete': f"""CREATE TRIGGER tracks_counts_delete AFTER DELETE ON tracks
    BEGIN {_REMOVE_OLD} END""",
    'tracks_counts_update': f"""CREATE TRIGGER tracks_counts_update
    AFTER UPDATE OF state, genre ON tracks
    WHEN old.state IS NOT new.state OR old.genre IS NOT new.genre
    BEGIN {_REMOVE_OLD} {_ADD_NEW} END""",
    # What similar caches of a done track: its embedding and model, and its album and
    # artist (the album it leaves out). A claim (queued to running) changes none of it.
    'tracks_embeddings_insert': f"""CREATE TRIGGER tracks_embeddings_insert
    AFTER INSERT ON tracks WHEN new.state = 'done'
    BEGIN {_BUMP} END""",
    'tracks_embeddings_delete': f"""CREATE TRIGGER tracks_embeddings_delete
    AFTER DELETE ON tracks WHEN old.state = 'done'
    BEGIN {_BUMP} END""",
    'tracks_embeddings_update': f"""CREATE TRIGGER tracks_embeddings_update
    AFTER UPDATE OF state, embedding, embedding_model, album, artist ON tracks
    WHEN (old.state = 'done' OR new.state = 'done')
        AND (old.state IS NOT new.state OR old.embedding IS NOT new.embedding
             OR old.embedding_model IS NOT new.embedding_model
             OR old.album IS NOT new.album OR old.artist IS NOT new.artist)
    BEGIN {_BUMP} END""",
}


def upgrade() -> None:
    op.create_table(
        'track_counts',
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('genre', sa.String(length=64), nullable=False),
        sa.Column('tracks', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('state', 'genre', name=op.f('pk_track_counts')),
    )
    op.create_table(
        'change_stamps',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('generation', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_change_stamps')),
    )
    op.create_index('ix_tracks_state_reason', 'tracks', ['state', 'reason'], unique=False)
    if op.get_bind().dialect.name != 'sqlite':
        return
    # Counted and the triggers created in one transaction: no write falls in between.
    op.execute("INSERT INTO track_counts (state, genre, tracks) "
               "SELECT state, coalesce(genre, ''), count(*) FROM tracks GROUP BY 1, 2")
    op.execute(f"INSERT INTO change_stamps (name, generation) VALUES ('{EMBEDDINGS}', 0)")
    for ddl in TRIGGERS.values():
        op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_index('ix_tracks_state_reason', table_name='tracks')
    op.drop_table('change_stamps')
    op.drop_table('track_counts')
