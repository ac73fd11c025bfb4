"""Export's lines carry what the file's own tags say: `artist`, `album` and `title`
(genreq.app.library's EXPORT_LINE_FORMAT 2), so that a playlist's `#EXTINF` titles and a
CSV of the library come from the database, not from opening every file again.

The lines stored in format 1 lack those keys: every export_line is set to NULL, and the
next export makes and keeps them again (195753152286 says at what cost). The trigger
that clears a line when a column it is made of changes now watches the three columns too.

Revision ID: b3e81f5a7c20
Revises: a7d2f9c41b36
Create Date: 2026-12-03 16:00:00.000000
"""
from alembic import op

revision = 'b3e81f5a7c20'
down_revision = 'a7d2f9c41b36'
branch_labels = None
depends_on = None

# The columns a line is made of, in format 2 and in format 1; the JSON ones compare as text.
COLUMNS = ('path', 'duration_s', 'model_name', 'model_version', 'artist', 'album', 'title')
FORMAT_1_COLUMNS = ('path', 'duration_s', 'model_name', 'model_version')
JSON_COLUMNS = ('probs', 'tags', 'file_genres')


def _sqlite_trigger(columns: tuple[str, ...]) -> str:
    changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in columns + JSON_COLUMNS)
    return f"""CREATE TRIGGER tracks_export_line_stale
    AFTER UPDATE OF {', '.join(columns + JSON_COLUMNS)} ON tracks
    WHEN old.export_line IS NOT NULL AND new.export_line IS old.export_line
        AND ({changed})
    BEGIN UPDATE tracks SET export_line = NULL WHERE id = new.id; END"""


def _pg_trigger(columns: tuple[str, ...]) -> str:
    # The function, tracks_export_line_stale(), is 195753152286's, unchanged.
    changed = " OR ".join(
        [f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns]
        + [f"OLD.{c}::text IS DISTINCT FROM NEW.{c}::text" for c in JSON_COLUMNS])
    return f"""CREATE TRIGGER tracks_export_line_stale
    BEFORE UPDATE OF {', '.join(columns + JSON_COLUMNS)} ON tracks FOR EACH ROW
    WHEN (OLD.export_line IS NOT NULL
          AND NEW.export_line IS NOT DISTINCT FROM OLD.export_line
          AND ({changed}))
    EXECUTE FUNCTION tracks_export_line_stale()"""


def _switch(columns: tuple[str, ...]) -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.execute("DROP TRIGGER IF EXISTS tracks_export_line_stale"
               + ("" if sqlite else " ON tracks"))
    op.execute("UPDATE tracks SET export_line = NULL WHERE export_line IS NOT NULL")
    op.execute(_sqlite_trigger(columns) if sqlite else _pg_trigger(columns))


def upgrade() -> None:
    _switch(COLUMNS)


def downgrade() -> None:
    _switch(FORMAT_1_COLUMNS)
