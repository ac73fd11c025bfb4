"""The counts and the embeddings' stamp of e41b7d93c5a8 kept on PostgreSQL too, as
append-only deltas, so that `genreq status` at a million tracks reads a few rows there
as well instead of counting an index of every track (bench/big_library.py,
bench/results/big_library.json).

e41b7d93c5a8 left PostgreSQL without triggers: there workers write in parallel, and a
counter row updated by every claim and result would make them wait on each other's row
locks until commit (and deadlock across two counters taken in opposite orders). Here
the triggers only INSERT: a track's change of (state, genre) appends (old, -1) and
(new, +1) to `track_count_deltas`, and a change of what the embeddings' stamp follows
appends +1 to `change_stamp_deltas`. No writer updates a row another writer touches,
so none waits. A count is its `track_counts` row plus its deltas, read in one
statement (one snapshot); genreq.db.counts.compact folds the deltas into the base rows
from time to time (`status` does when they have grown), one compaction at a time under
an advisory lock.

Row triggers rather than statement triggers with transition tables: a worker writes its
results as an executemany of one-row UPDATEs, so a statement trigger fires once a row
anyway, with a transition table's cost on top (a result write 329 µs with them, 273 µs
with these, 259 µs with neither; bench/big_library.py's result writes).

On upgrade the triggers are created first: CREATE TRIGGER waits for the writes in
flight and holds writers off until this transaction commits, so the counts taken next
from the rows miss no write and count none twice. SQLite is left as it is: its
triggers update the base rows, and the delta tables (in the models, so both schemas
match them) stay empty there.

Revision ID: 3f8a2c61d9e4
Revises: 195753152286
Create Date: 2026-12-02 12:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '3f8a2c61d9e4'
down_revision = '195753152286'
branch_labels = None
depends_on = None

EMBEDDINGS = 'embeddings'  # genreq.db.models.EMBEDDINGS_STAMP

# A NULL genre is counted under '', as in e41b7d93c5a8.
_OLD = "(OLD.state, coalesce(OLD.genre, ''), -1)"
_NEW = "(NEW.state, coalesce(NEW.genre, ''), 1)"
PG_FUNCTIONS = {
    'tracks_count_deltas': f"""CREATE OR REPLACE FUNCTION tracks_count_deltas()
    RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO track_count_deltas (state, genre, tracks) VALUES {_NEW};
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO track_count_deltas (state, genre, tracks) VALUES {_OLD};
        ELSE
            INSERT INTO track_count_deltas (state, genre, tracks) VALUES {_OLD}, {_NEW};
        END IF;
        RETURN NULL;
    END $$""",
    'tracks_embeddings_delta': f"""CREATE OR REPLACE FUNCTION tracks_embeddings_delta()
    RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        INSERT INTO change_stamp_deltas (name, generation) VALUES ('{EMBEDDINGS}', 1);
        RETURN NULL;
    END $$""",
}
# The same events as e41b7d93c5a8's SQLite triggers.
PG_TRIGGERS = {
    'tracks_counts_insert': """CREATE TRIGGER tracks_counts_insert AFTER INSERT ON tracks
    FOR EACH ROW EXECUTE FUNCTION tracks_count_deltas()""",
    'tracks_counts_delete': """CREATE TRIGGER tracks_counts_delete AFTER DELETE ON tracks
    FOR EACH ROW EXECUTE FUNCTION tracks_count_deltas()""",
    'tracks_counts_update': """CREATE TRIGGER tracks_counts_update
    AFTER UPDATE OF state, genre ON tracks FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.genre IS DISTINCT FROM NEW.genre)
    EXECUTE FUNCTION tracks_count_deltas()""",
    'tracks_embeddings_insert': """CREATE TRIGGER tracks_embeddings_insert
    AFTER INSERT ON tracks FOR EACH ROW WHEN (NEW.state = 'done')
    EXECUTE FUNCTION tracks_embeddings_delta()""",
    'tracks_embeddings_delete': """CREATE TRIGGER tracks_embeddings_delete
    AFTER DELETE ON tracks FOR EACH ROW WHEN (OLD.state = 'done')
    EXECUTE FUNCTION tracks_embeddings_delta()""",
    'tracks_embeddings_update': """CREATE TRIGGER tracks_embeddings_update
    AFTER UPDATE OF state, embedding, embedding_model, album, artist ON tracks FOR EACH ROW
    WHEN ((OLD.state = 'done' OR NEW.state = 'done')
        AND (OLD.state IS DISTINCT FROM NEW.state
             OR OLD.embedding IS DISTINCT FROM NEW.embedding
             OR OLD.embedding_model IS DISTINCT FROM NEW.embedding_model
             OR OLD.album IS DISTINCT FROM NEW.album
             OR OLD.artist IS DISTINCT FROM NEW.artist))
    EXECUTE FUNCTION tracks_embeddings_delta()""",
}


def upgrade() -> None:
    op.create_table(
        'track_count_deltas',
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('genre', sa.String(length=64), nullable=False),
        sa.Column('tracks', sa.Integer(), nullable=False),
    )
    op.create_table(
        'change_stamp_deltas',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
    )
    if op.get_bind().dialect.name != 'postgresql':
        return
    for ddl in PG_FUNCTIONS.values():
        op.execute(ddl)
    for ddl in PG_TRIGGERS.values():
        op.execute(ddl)
    # e41b7d93c5a8 left both tables empty on PostgreSQL.
    op.execute("DELETE FROM track_counts")
    op.execute("INSERT INTO track_counts (state, genre, tracks) "
               "SELECT state, coalesce(genre, ''), count(*) FROM tracks GROUP BY 1, 2")
    op.execute(f"DELETE FROM change_stamps WHERE name = '{EMBEDDINGS}'")
    op.execute(f"INSERT INTO change_stamps (name, generation) VALUES ('{EMBEDDINGS}', 0)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for name in PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON tracks")
        for name in PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
        # As e41b7d93c5a8 has them on PostgreSQL: empty, its readers count the indexes.
        op.execute("DELETE FROM track_counts")
        op.execute("DELETE FROM change_stamps")
    op.drop_table('change_stamp_deltas')
    op.drop_table('track_count_deltas')
