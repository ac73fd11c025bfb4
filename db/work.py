"""What a worker writes: claims before a track is classified, its result or its
failure after.

Core statements on a plain connection (db.session.transaction): no ORM session or
identity map for the two small writes every track costs. Each also accepts a Session.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from genreq.db.models import State, Track, utcnow


def claim(db: Connection | Session, track_id: int, max_attempts: int) -> str | None:
    """Mark a queued (or orphaned running) track as running and return its path.

    None when there is nothing to do: unknown id, or already done/failed, which makes
    a repeated task a no-op. A track that has used up `max_attempts` (its worker kept
    dying, e.g. on the hard time limit) is failed here instead of being tried again.
    One statement in the common case: the worker pays for it on every track.
    """
    # A write, not a read then a write: on SQLite a read that later upgrades to a write
    # can fail at once with "database is locked", while a leading write waits for
    # busy_timeout.
    pending = Track.state.in_([State.queued, State.running])
    path = db.execute(
        update(Track)
        .where(Track.id == track_id, pending, Track.attempts < max_attempts)
        .values(state=State.running, attempts=Track.attempts + 1, started_at=utcnow())
        .returning(Track.path)
    ).scalar()
    if path is not None:
        return path
    gave_up = f": gave up after {max_attempts} attempts (worker lost or timed out)"
    db.execute(
        update(Track)
        .where(Track.id == track_id, pending)
        .values(state=State.failed, error=Track.path + gave_up, reason=gave_up[2:],
                finished_at=utcnow())
    )
    return None


def claim_batch(
    db: Connection | Session, track_ids: Sequence[int], max_attempts: int
) -> dict[int, str]:
    """Mark the queued tracks among `track_ids` as running, in one statement; their
    paths by id, in the order given.

    Only queued ones: a track already running (its batch's worker died, or another
    message for it is being worked on) or out of attempts is left to `claim`, one
    track per task, so that a file that kills its worker cannot use up the attempts of
    the tracks that shared its batch.
    """
    rows = db.execute(
        update(Track)
        .where(Track.id.in_(track_ids), Track.state == State.queued, Track.attempts < max_attempts)
        .values(state=State.running, attempts=Track.attempts + 1, started_at=utcnow())
        .returning(Track.id, Track.path)
    ).all()
    paths = dict(rows)
    return {track_id: paths[track_id] for track_id in track_ids if track_id in paths}


def pending_among(db: Connection | Session, track_ids: Iterable[int]) -> list[int]:
    """Those of `track_ids` still queued or running, in id order."""
    return list(db.scalars(
        select(Track.id)
        .where(Track.id.in_(list(track_ids)), Track.state.in_([State.queued, State.running]))
        .order_by(Track.id)
    ))


@dataclass(frozen=True)
class Result:
    """One classified track, as the worker writes it."""

    track_id: int
    genre: str
    confidence: float
    probs: dict[str, float]
    duration_s: float
    elapsed_s: float
    finished_at: datetime
    tags: dict[str, float] | None = None  # None: the model has no tag outputs
    embedding: bytes | None = None  # genreq.similarity.embedding_bytes
    embedding_model: str | None = None
    # What the file's own tags say (genreq.filetags)
    artist: str | None = None
    album: str | None = None
    title: str | None = None
    file_genres: list[str] = field(default_factory=list)


def record_results(
    db: Connection, results: Sequence[Result], model_name: str, model_version: str
) -> None:
    """Write a batch's results: one executemany UPDATE, whatever the batch's size."""
    if not results:
        return
    # b_-prefixed names: a bound parameter may not share its name with a SET column.
    db.execute(
        update(Track)
        .where(Track.id == bindparam("b_id"))
        .values(
            state=State.done,
            error=None,
            genre=bindparam("b_genre"),
            confidence=bindparam("b_confidence"),
            probs=bindparam("b_probs"),
            duration_s=bindparam("b_duration_s"),
            model_name=model_name,
            model_version=model_version,
            elapsed_s=bindparam("b_elapsed_s"),
            finished_at=bindparam("b_finished_at"),
            reason=None,
            tags=bindparam("b_tags"),
            embedding=bindparam("b_embedding"),
            embedding_model=bindparam("b_embedding_model"),
            artist=bindparam("b_artist"),
            album=bindparam("b_album"),
            title=bindparam("b_title"),
            file_genres=bindparam("b_file_genres"),
        )
        .execution_options(synchronize_session=False),
        [
            {"b_id": r.track_id, "b_genre": r.genre, "b_confidence": r.confidence,
             "b_probs": r.probs, "b_duration_s": r.duration_s, "b_elapsed_s": r.elapsed_s,
             "b_finished_at": r.finished_at, "b_tags": r.tags, "b_embedding": r.embedding,
             "b_embedding_model": r.embedding_model, "b_artist": r.artist,
             "b_album": r.album, "b_title": r.title, "b_file_genres": r.file_genres}
            for r in results
        ],
    )


def record_failure(
    db: Connection | Session,
    track_id: int,
    reason: str,
    elapsed_s: float,
    finished_at: datetime | None = None,
    short_reason: str | None = None,
) -> None:
    """`reason` is the message with the path (the `error` column); `short_reason` the
    same without it, by which status counts failures (None: `reason` as it is)."""
    db.execute(
        update(Track)
        .where(Track.id == track_id)
        .values(state=State.failed, error=reason, reason=short_reason or reason,
                elapsed_s=elapsed_s, finished_at=finished_at or utcnow())
    )


def record_skip(
    db: Connection | Session,
    track_id: int,
    reason: str,
    duration_s: float | None,
    elapsed_s: float,
    finished_at: datetime | None = None,
) -> None:
    """A track not classified on purpose (e.g. too short): state skipped, its reason."""
    db.execute(
        update(Track)
        .where(Track.id == track_id)
        .values(state=State.skipped, error=None, reason=reason, duration_s=duration_s,
                elapsed_s=elapsed_s, finished_at=finished_at or utcnow())
    )
