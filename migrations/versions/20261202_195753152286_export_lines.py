"""Export's lines kept with the tracks, for a library of a million tracks:
`tracks.export_line`, a done track's `export --format ndjson` line at the default top K
(genreq.app.library.json_lines), so that export streams one text column instead of
decoding and rounding every track's genre and tag scores again (bench/big_library.py,
bench/results/big_library.json).

Existing rows are left NULL: export serves a NULL line as before (computed from the
row) and writes it back, so the first export after the upgrade fills them, at about the
cost that export had before, and the migration adds a column without rewriting a row.

A trigger sets the line back to NULL whenever a column it is made of changes (path,
probs, tags, duration_s, model_name, model_version, file_genres), whatever writes it: the
worker's result, a reset, a test's UPDATE. On SQLite an AFTER trigger clears it (SQLite
triggers cannot assign NEW); on PostgreSQL a BEFORE row trigger, which touches only the
row being written (no shared row, so parallel writers do not wait on each other, unlike
the counters of e41b7d93c5a8). Both fire only when a line is stored, so classifying a
new track costs one comparison. JSON columns compare as their stored text.

A change to what a line holds (genreq.app.library's EXPORT_LINE_FORMAT) needs a
migration that sets every export_line to NULL.

A later migration that rebuilds `tracks` on SQLite (batch_alter_table) drops its
triggers and must create them again (TRIGGERS here and in e41b7d93c5a8).

Revision ID: 195753152286
Revises: e41b7d93c5a8
Create Date: 2026-12-02 07:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '195753152286'
down_revision = 'e41b7d93c5a8'
branch_labels = None
depends_on = None

# The columns a line is made of; the JSON ones compare as text.
COLUMNS = ('path', 'duration_s', 'model_name', 'model_version')
JSON_COLUMNS = ('probs', 'tags', 'file_genres')

_SQLITE_CHANGED = " OR ".join(
    [f"old.{c} IS NOT new.{c}" for c in COLUMNS + JSON_COLUMNS])
TRIGGERS = {
    'tracks_export_line_stale': f"""CREATE TRIGGER tracks_export_line_stale
    AFTER UPDATE OF {', '.join(COLUMNS + JSON_COLUMNS)} ON tracks
    WHEN old.export_line IS NOT NULL AND new.export_line IS old.export_line
        AND ({_SQLITE_CHANGED})
    BEGIN UPDATE tracks SET export_line = NULL WHERE id = new.id; END""",
}

_PG_CHANGED = " OR ".join(
    [f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in COLUMNS]
    + [f"OLD.{c}::text IS DISTINCT FROM NEW.{c}::text" for c in JSON_COLUMNS])
PG_FUNCTION = """CREATE OR REPLACE FUNCTION tracks_export_line_stale() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN NEW.export_line := NULL; RETURN NEW; END $$"""
PG_TRIGGER = f"""CREATE TRIGGER tracks_export_line_stale
    BEFORE UPDATE OF {', '.join(COLUMNS + JSON_COLUMNS)} ON tracks FOR EACH ROW
    WHEN (OLD.export_line IS NOT NULL
          AND NEW.export_line IS NOT DISTINCT FROM OLD.export_line
          AND ({_PG_CHANGED}))
    EXECUTE FUNCTION tracks_export_line_stale()"""


def upgrade() -> None:
    op.add_column('tracks', sa.Column('export_line', sa.Text(), nullable=True))
    if op.get_bind().dialect.name == 'sqlite':
        for ddl in TRIGGERS.values():
            op.execute(ddl)
    else:
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS tracks_export_line_stale ON tracks")
        op.execute("DROP FUNCTION IF EXISTS tracks_export_line_stale()")
    op.drop_column('tracks', 'export_line')
