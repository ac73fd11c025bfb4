"""Counts kept as tracks change: tracks per state and genre, and a stamp of the done
tracks' embeddings, each read in one small SELECT instead of a scan of an index of
every track.

SQLite (migration e41b7d93c5a8): triggers update the base rows (`track_counts`,
`change_stamps`); SQLite has one writer at a time, so that costs a B-tree update.
PostgreSQL (migration 3f8a2c61d9e4): workers write in parallel, and a shared counter row
would make them wait on each other, so triggers only append deltas
(`track_count_deltas`, `change_stamp_deltas`); a reader sums the base rows and the
deltas in one statement, and `compact` folds the deltas into the base rows now and then
(`maybe_compact`, which status calls)."""
from __future__ import annotations

import logging

from sqlalchemy import Connection, func, literal_column, select, text, union_all
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from genreq.db.models import (
    EMBEDDINGS_STAMP,
    ChangeStamp,
    TrackCount,
    change_stamp_deltas,
    track_count_deltas,
)

log = logging.getLogger(__name__)

# Deltas past which a reader folds them in. A delta costs about 0.2 µs to read and 0.9 µs
# to fold in (bench/results/big_library.json, count_deltas): 10,000 add 3 ms to a read.
# A worker adds four a track (claim and result: -1 and +1 each), so a run of 250,000
# tracks that nobody watches leaves a million, which the next reader pays for once
# (0.2 s to read them, 0.9 s to fold them in).
COMPACT_AFTER_DELTAS = 10_000
# pg_try_advisory_xact_lock's key for compaction (any constant unique to genreq's
# database; "genreq" in ASCII).
COMPACT_LOCK_KEY = 0x67656E726571


def kept(session: Session) -> bool:
    """Whether this database keeps the counts (its triggers do: SQLite, PostgreSQL)."""
    return session.get_bind().dialect.name in ("sqlite", "postgresql")


def _deltas(db: Session | Connection) -> bool:
    """Whether DB's counts are base rows plus deltas (PostgreSQL)."""
    dialect = db.dialect if isinstance(db, Connection) else db.get_bind().dialect
    return dialect.name == "postgresql"


def state_genre_counts(session: Session) -> list[tuple[str, str | None, int]]:
    """(state, genre or None, tracks) of every (state, genre) holding tracks."""
    if not _deltas(session):
        rows = session.execute(select(TrackCount.state, TrackCount.genre, TrackCount.tracks)
                               .where(TrackCount.tracks > 0))
        return [(state, genre or None, n) for state, genre, n in rows]
    parts = union_all(
        select(TrackCount.state, TrackCount.genre, TrackCount.tracks),
        select(track_count_deltas.c.state, track_count_deltas.c.genre,
               track_count_deltas.c.tracks))
    part = parts.subquery()
    total = func.sum(part.c.tracks)
    rows = session.execute(select(part.c.state, part.c.genre, total)
                           .group_by(part.c.state, part.c.genre).having(total > 0))
    return [(state, genre or None, int(n)) for state, genre, n in rows]


def embeddings_generation(session: Session) -> int:
    """The embeddings' change stamp: raised by every change of a done track's embedding,
    model, album or artist and by every track becoming done or leaving done."""
    base = (select(ChangeStamp.generation)
            .where(ChangeStamp.name == EMBEDDINGS_STAMP).scalar_subquery())
    if not _deltas(session):
        return session.scalar(select(base)) or 0
    added = (select(func.coalesce(func.sum(change_stamp_deltas.c.generation), 0))
             .where(change_stamp_deltas.c.name == EMBEDDINGS_STAMP).scalar_subquery())
    return int(session.scalar(select(func.coalesce(base, 0) + added)))


def count_deltas(db: Session | Connection, most: int | None = None) -> int:
    """How many count deltas wait to be folded in (0 where the database keeps none),
    counted up to MOST + 1 at most: the question is only whether they passed MOST."""
    if not _deltas(db):
        return 0
    rows = select(literal_column("1")).select_from(track_count_deltas)
    if most is not None:
        rows = rows.limit(most + 1)
    return db.scalar(select(func.count()).select_from(rows.subquery()))


# Each statement deletes the deltas its snapshot sees and adds them to the base rows,
# in the compaction's transaction: a reader sees either the deltas or their sum, never
# both or neither. A delta committed meanwhile is not seen and waits for the next one.
_FOLD_COUNTS = text("""
    WITH gone AS (DELETE FROM track_count_deltas RETURNING state, genre, tracks)
    INSERT INTO track_counts (state, genre, tracks)
    SELECT state, genre, sum(tracks) FROM gone GROUP BY state, genre
    ON CONFLICT (state, genre) DO UPDATE SET tracks = track_counts.tracks + excluded.tracks
""")
_FOLD_STAMPS = text("""
    WITH gone AS (DELETE FROM change_stamp_deltas RETURNING name, generation)
    INSERT INTO change_stamps (name, generation)
    SELECT name, sum(generation) FROM gone GROUP BY name
    ON CONFLICT (name) DO UPDATE
        SET generation = change_stamps.generation + excluded.generation
""")


def compact(connection: Connection) -> bool:
    """Fold the deltas into the base rows, in CONNECTION's transaction (commit it soon:
    the base rows stay locked until then). False, and nothing done, while another
    compaction holds the lock: two at once would only wait on each other's rows. No
    writer waits on a compaction: writers append, and never touch the base rows."""
    if not _deltas(connection):
        return False
    if not connection.scalar(select(func.pg_try_advisory_xact_lock(
            literal_column(str(COMPACT_LOCK_KEY))))):
        return False
    connection.execute(_FOLD_COUNTS)
    connection.execute(_FOLD_STAMPS)
    return True


def maybe_compact(session: Session, most: int = COMPACT_AFTER_DELTAS) -> bool:
    """Compact, in a transaction of its own, when more than MOST count deltas wait (the
    stamp's deltas are fewer: at most one a track's change, against two)."""
    if not _deltas(session) or count_deltas(session, most) <= most:
        return False
    try:
        with session.get_bind().connect() as connection, connection.begin():
            return compact(connection)
    except DBAPIError as exc:
        # A reader that may not write (a read-only role or standby) still reads the
        # counts: the deltas wait for a reader that may.
        log.warning("count deltas not folded in: %s", exc.orig)
        return False
