"""What a worker writes: claims before a track is classified, its result or its
failure after, and the leases in between.

A claim is a lease: the track is the claiming worker's until `lease_expires_at`, which
the worker's heartbeat keeps pushing back (renew). When it runs out unrenewed, any
worker's expiry scan queues the track again (expire_leases) and sends it. Every result
is written only under the claim's token, so of two claims of one track, one result
counts: exactly once, however late the other worker wakes up.

Core statements on a plain connection (db.session.transaction): no ORM session or
identity map for the two small writes every track costs. Each also accepts a Session.
"""
from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from genreq.db.models import State, Track, utcnow


@dataclass(frozen=True)
class Claim:
    """Who claims tracks, and for how long: `worker_id` names the worker (host:pid of its
    main process), `token` this one claim (new_claim makes a fresh one). A result is
    written only while the track is still running under the token it was claimed with,
    so a worker whose lease was taken over cannot write over the new holder's result."""

    worker_id: str
    token: str
    lease_s: float

    def expires_at(self, now: datetime | None = None) -> datetime:
        return (now or utcnow()) + timedelta(seconds=self.lease_s)


def new_claim(worker_id: str, lease_s: float) -> Claim:
    return Claim(worker_id, uuid.uuid4().hex, lease_s)


def _lease_expired(now: datetime):
    # NULL: running under a worker of a version without leases.
    return or_(Track.lease_expires_at.is_(None), Track.lease_expires_at < now)


def _claimable(now: datetime):
    """Queued, or running under a lease that has run out: its worker stopped renewing."""
    return or_(Track.state == State.queued,
               and_(Track.state == State.running, _lease_expired(now)))


def _held(token: str):
    return and_(Track.claim_token == token, Track.state == State.running)


def _taken(claim: Claim, now: datetime) -> dict:
    return {"state": State.running, "attempts": Track.attempts + 1, "started_at": now,
            "claimed_by": claim.worker_id, "claim_token": claim.token,
            "lease_expires_at": claim.expires_at(now)}


def _released() -> dict:
    return {"claim_token": None, "lease_expires_at": None}


def claim(db: Connection | Session, track_id: int, max_attempts: int,
          claim: Claim) -> str | None:
    """Mark a queued track, or a running one whose lease ran out, as running under
    `claim` and return its path.

    None when there is nothing to do: unknown id, already done/failed/skipped, or running
    under a live lease (another worker has it; if that worker dies, its lease runs out
    and the track is sent again), which makes a repeated task a no-op. A track that has
    used up `max_attempts` (its worker kept dying, e.g. on the hard time limit) is failed
    here instead of being tried again. One statement in the common case: the worker pays
    for it on every track.
    """
    # A write, not a read then a write: on SQLite a read that later upgrades to a write
    # can fail at once with "database is locked", while a leading write waits for
    # busy_timeout.
    now = utcnow()
    path = db.execute(
        update(Track)
        .where(Track.id == track_id, _claimable(now), Track.attempts < max_attempts)
        .values(**_taken(claim, now))
        .returning(Track.path)
    ).scalar()
    if path is not None:
        return path
    gave_up = f": gave up after {max_attempts} attempts (worker lost or timed out)"
    db.execute(
        update(Track)
        .where(Track.id == track_id, _claimable(now))
        .values(state=State.failed, error=Track.path + gave_up, reason=gave_up[2:],
                finished_at=now, **_released())
    )
    return None


def claim_batch(
    db: Connection | Session, track_ids: Sequence[int], max_attempts: int, claim: Claim
) -> dict[int, str]:
    """Mark the queued tracks among `track_ids` as running under `claim`, in one
    statement; their paths by id, in the order given.

    Only queued ones: a track running under an expired lease (its worker died with it)
    or out of attempts is left to `claim`, one track per task, so that a file that kills
    its worker cannot use up the attempts of the tracks that shared its batch.
    """
    now = utcnow()
    rows = db.execute(
        update(Track)
        .where(Track.id.in_(track_ids), Track.state == State.queued, Track.attempts < max_attempts)
        .values(**_taken(claim, now))
        .returning(Track.id, Track.path)
    ).all()
    paths = dict(rows)
    return {track_id: paths[track_id] for track_id in track_ids if track_id in paths}


def claimable_among(db: Connection | Session, track_ids: Iterable[int]) -> list[int]:
    """Those of `track_ids` that a one-track task may claim (queued, or running under an
    expired lease), in id order. Not those running under a live lease: their worker has
    them."""
    return list(db.scalars(
        select(Track.id)
        .where(Track.id.in_(list(track_ids)), _claimable(utcnow()))
        .order_by(Track.id)
    ))


def renew(db: Connection | Session, claim_tokens: Collection[str], lease_s: float) -> int:
    """Extend the leases of the tracks still running under `claim_tokens` to `lease_s`
    from now (the heartbeat); returns how many. A track whose lease was taken over is
    not touched: it is no longer held under these tokens."""
    if not claim_tokens:
        return 0
    return db.execute(
        update(Track)
        .where(Track.claim_token.in_(list(claim_tokens)), Track.state == State.running)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    ).rowcount


def expire_leases(db: Connection | Session, limit: int | None = None) -> list[int]:
    """Queue again the running tracks whose lease ran out (their worker stopped renewing
    it: killed, paused, cut off), at most `limit`; their ids, for the caller to send. One
    statement: of two workers scanning at once, each track goes to one. A result the old
    holder may still try to write is dropped (its token is cleared here)."""
    now = utcnow()
    expired = and_(Track.state == State.running, _lease_expired(now))
    if limit is not None:
        expired = Track.id.in_(
            select(Track.id).where(expired).order_by(Track.id).limit(limit).scalar_subquery())
        expired = and_(expired, Track.state == State.running, _lease_expired(now))
    return sorted(db.scalars(
        update(Track)
        .where(expired)
        .values(state=State.queued, **_released())
        .returning(Track.id)
        .execution_options(synchronize_session=False)
    ))


def release(db: Connection | Session, claim: Claim, track_ids: Collection[int]) -> list[int]:
    """Give back tracks claimed under `claim` but not worked on (a batch stopped at a
    time limit): queued again, the attempt not counted. Their ids."""
    if not track_ids:
        return []
    return sorted(db.scalars(
        update(Track)
        .where(Track.id.in_(list(track_ids)), _held(claim.token))
        .values(state=State.queued, attempts=Track.attempts - 1, **_released())
        .returning(Track.id)
        .execution_options(synchronize_session=False)
    ))


def still_held(db: Connection | Session, claim_token: str,
               track_ids: Collection[int]) -> set[int]:
    """Those of `track_ids` still running under `claim_token`: the results that may be
    written. A write, not a read (see claim), that also renews nothing: it takes the
    database's write lock before the results are written in the same transaction."""
    if not track_ids:
        return set()
    return set(db.scalars(
        update(Track)
        .where(Track.id.in_(list(track_ids)), _held(claim_token))
        .values(claim_token=Track.claim_token)
        .returning(Track.id)
        .execution_options(synchronize_session=False)
    ))


def path_of(db: Connection | Session, track_id: int) -> str | None:
    """The track's path now (None: no such track): an enqueue may have moved it since
    it was claimed (db.queue.upsert_tracks follows a moved file)."""
    return db.scalar(select(Track.path).where(Track.id == track_id))


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
    # Classified, with something worth telling about how (audio.DAMAGED): the reason
    # status counts by, and the message with the path, as a failure stores them.
    reason: str | None = None
    error: str | None = None


def record_results(
    db: Connection, results: Sequence[Result], model_name: str, model_version: str,
    claim_token: str,
) -> int:
    """Write a batch's results, claimed under `claim_token`: one executemany UPDATE,
    whatever the batch's size. A track no longer running under that token (its lease was
    taken over) is left as it is. Returns how many were written."""
    if not results:
        return 0
    # b_-prefixed names: a bound parameter may not share its name with a SET column.
    return db.execute(
        update(Track)
        .where(Track.id == bindparam("b_id"), _held(claim_token))
        .values(
            state=State.done,
            error=bindparam("b_error"),
            genre=bindparam("b_genre"),
            confidence=bindparam("b_confidence"),
            probs=bindparam("b_probs"),
            duration_s=bindparam("b_duration_s"),
            model_name=model_name,
            model_version=model_version,
            elapsed_s=bindparam("b_elapsed_s"),
            finished_at=bindparam("b_finished_at"),
            reason=bindparam("b_reason"),
            tags=bindparam("b_tags"),
            embedding=bindparam("b_embedding"),
            embedding_model=bindparam("b_embedding_model"),
            artist=bindparam("b_artist"),
            album=bindparam("b_album"),
            title=bindparam("b_title"),
            file_genres=bindparam("b_file_genres"),
            **_released(),
        )
        .execution_options(synchronize_session=False),
        [
            {"b_id": r.track_id, "b_genre": r.genre, "b_confidence": r.confidence,
             "b_probs": r.probs, "b_duration_s": r.duration_s, "b_elapsed_s": r.elapsed_s,
             "b_finished_at": r.finished_at, "b_tags": r.tags, "b_embedding": r.embedding,
             "b_embedding_model": r.embedding_model, "b_artist": r.artist,
             "b_album": r.album, "b_title": r.title, "b_file_genres": r.file_genres,
             "b_reason": r.reason, "b_error": r.error}
            for r in results
        ],
    ).rowcount


def record_failure(
    db: Connection | Session,
    track_id: int,
    reason: str,
    elapsed_s: float,
    finished_at: datetime | None = None,
    short_reason: str | None = None,
    *,
    claim_token: str,
) -> bool:
    """`reason` is the message with the path (the `error` column); `short_reason` the
    same without it, by which status counts failures (None: `reason` as it is). Written
    only while the track is running under `claim_token`; False when it was not."""
    return db.execute(
        update(Track)
        .where(Track.id == track_id, _held(claim_token))
        .values(state=State.failed, error=reason, reason=short_reason or reason,
                elapsed_s=elapsed_s, finished_at=finished_at or utcnow(), **_released())
    ).rowcount == 1


def record_skip(
    db: Connection | Session,
    track_id: int,
    reason: str,
    duration_s: float | None,
    elapsed_s: float,
    finished_at: datetime | None = None,
    *,
    claim_token: str,
) -> bool:
    """A track not classified on purpose (e.g. too short): state skipped, its reason.
    Written only while the track is running under `claim_token`; False when it was not."""
    return db.execute(
        update(Track)
        .where(Track.id == track_id, _held(claim_token))
        .values(state=State.skipped, error=None, reason=reason, duration_s=duration_s,
                elapsed_s=elapsed_s, finished_at=finished_at or utcnow(), **_released())
    ).rowcount == 1
