"""Counts kept as tracks change (migration e41b7d93c5a8): tracks per state and genre,
and a stamp of the done tracks' embeddings, each read in one small SELECT. Kept by
triggers on SQLite; on PostgreSQL, where a shared counter row would make parallel
writers wait on each other, the callers count from the indexes instead (`kept`)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from genreq.db.models import EMBEDDINGS_STAMP, ChangeStamp, TrackCount


def kept(session: Session) -> bool:
    """Whether this database keeps the counts (its triggers do: SQLite)."""
    return session.get_bind().dialect.name == "sqlite"


def state_genre_counts(session: Session) -> list[tuple[str, str | None, int]]:
    """(state, genre or None, tracks) of every (state, genre) holding tracks."""
    rows = session.execute(select(TrackCount.state, TrackCount.genre, TrackCount.tracks)
                           .where(TrackCount.tracks > 0))
    return [(state, genre or None, n) for state, genre, n in rows]


def embeddings_generation(session: Session) -> int:
    """The embeddings' change stamp: raised by every change of a done track's embedding,
    model, album or artist and by every track becoming done or leaving done."""
    return session.scalar(select(ChangeStamp.generation)
                          .where(ChangeStamp.name == EMBEDDINGS_STAMP)) or 0
