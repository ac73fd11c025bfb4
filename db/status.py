"""How far the work is: counts by state and genre, throughput and ETA while work is
pending, the failures, the last batch. Read by `run`'s progress, `status` and the
report."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from genreq.db import counts, paging
from genreq.db.models import State, Track, as_utc, utcnow

# Throughput is measured over the tracks finished in this last window.
THROUGHPUT_WINDOW_S = 120.0
# Work pending but no track finished for this long: no worker is taken to be running,
# and no throughput or ETA is shown (rather than a rate decaying over the window).
STALLED_AFTER_S = 30.0


@dataclass
class Status:
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0  # not classified on purpose (e.g. shorter than the minimum duration)
    genres: dict[str, int] = field(default_factory=dict)
    # While work is pending: tracks finished per second recently, and time left at that rate.
    throughput_per_s: float | None = None
    eta_s: float | None = None

    @property
    def total(self) -> int:
        return self.queued + self.running + self.done + self.failed + self.skipped

    @property
    def pending(self) -> int:
        return self.queued + self.running

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "queued": self.queued,
            "running": self.running,
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "genres": self.genres,
            "throughput_per_s": self.throughput_per_s,
            "eta_s": self.eta_s,
        }


def status(session: Session, batch_id: str | None = None) -> Status:
    """Counts by state and by genre (all tracks, or one enqueue batch), with throughput."""
    scope = [Track.batch_id == batch_id] if batch_id else []
    result = Status()
    genres: dict[str, int] = {}
    if not scope and counts.kept(session):
        rows = counts.state_genre_counts(session)  # a few rows, kept by triggers
        # PostgreSQL's deltas, folded in once they have grown: whoever watches the
        # counts keeps them short to read (run's progress, status --watch).
        counts.maybe_compact(session)
    else:
        # One aggregate over the (state, genre) index: both counts from one scan of it,
        # without reading a table row (ix_tracks_state_genre).
        rows = session.execute(select(Track.state, Track.genre, func.count()).where(*scope)
                               .group_by(Track.state, Track.genre))
    for state, genre, count in rows:
        state = State(state)
        setattr(result, state.value, getattr(result, state.value) + count)
        if state is State.done:
            genres[genre] = genres.get(genre, 0) + count
    result.genres = dict(sorted(genres.items(), key=lambda kv: (-kv[1], kv[0] or "")))
    if result.pending:
        result.throughput_per_s = throughput(session, scope)
        if result.throughput_per_s:
            result.eta_s = result.pending / result.throughput_per_s
    return result


def throughput(session: Session, scope: Iterable = (), now: datetime | None = None) -> float | None:
    """Tracks finished per second over the last THROUGHPUT_WINDOW_S seconds; None when
    none finished in the last STALLED_AFTER_S."""
    now = now or utcnow()
    since = now - timedelta(seconds=THROUGHPUT_WINDOW_S)
    count, first_start, last_finish = session.execute(
        select(func.count(), func.min(Track.started_at), func.max(Track.finished_at)).where(
            Track.finished_at >= since, *scope
        )
    ).one()
    if not count or first_start is None:
        return None
    if (now - as_utc(last_finish)).total_seconds() > STALLED_AFTER_S:
        return None
    span_s = (now - max(as_utc(first_start), since)).total_seconds()
    return count / span_s if span_s > 0 else None


def unclassified(session: Session, batch_id: str | None = None
                 ) -> Iterator[tuple[State, str, str | None, str | None]]:
    """(state, path, error, reason) of every failed or skipped track, in id order, paged."""
    scope = [Track.batch_id == batch_id] if batch_id else []
    query = select(Track.state, Track.path, Track.error, Track.reason).where(
        Track.state.in_([State.failed, State.skipped]), *scope)
    return paging.rows(session, query, Track.id)


def unclassified_by_reason(session: Session, batch_id: str | None = None, examples: int = 2
                           ) -> list[tuple[State, str, int, list[tuple[int, str, str | None]]]]:
    """(state, stored reason, how many, the first EXAMPLES (id, path, error) in id order)
    of the failed and skipped tracks that have a stored reason, and of the done ones
    that have one (classified with a note, e.g. decoded around damaged packets): one
    GROUP BY, then a short lookup per reason, instead of reading every such track."""
    scope = [Track.batch_id == batch_id] if batch_id else []
    groups = session.execute(
        select(Track.state, Track.reason, func.count())
        .where(Track.state.in_([State.failed, State.skipped, State.done]),
               Track.reason.is_not(None),
               Track.reason != "", *scope)
        .group_by(Track.state, Track.reason)
    ).all()
    result = []
    for state, reason, count in groups:
        first = session.execute(
            select(Track.id, Track.path, Track.error)
            .where(Track.state == state, Track.reason == reason, *scope)
            .order_by(Track.id).limit(examples)
        ).all()
        result.append((State(state), reason, count, [tuple(row) for row in first]))
    return result


def unclassified_without_reason(session: Session, batch_id: str | None = None
                                ) -> Iterator[tuple[int, State, str, str | None]]:
    """(id, state, path, error) of the failed, then the skipped, tracks without a stored
    reason (those failed before reasons were stored), each in id order, paged. One state
    at a time, so that each page is a range of the state index, not a scan of the table
    for the few such tracks."""
    scope = [Track.batch_id == batch_id] if batch_id else []
    for state in (State.failed, State.skipped):
        query = select(Track.id, Track.state, Track.path, Track.error).where(
            Track.state == state, or_(Track.reason.is_(None), Track.reason == ""), *scope)
        yield from paging.rows(session, query, Track.id)


def failures(session: Session, batch_id: str | None = None) -> Iterator[Track]:
    """Failed tracks in id (enqueue) order, paged."""
    scope = [Track.batch_id == batch_id] if batch_id else []
    return paging.rows(session, select(Track).where(Track.state == State.failed, *scope), Track.id)


def last_batch(session: Session) -> dict | None:
    """The most recently queued batch: its size, states and throughput."""
    batch_id = session.scalars(
        select(Track.batch_id).where(Track.batch_id.is_not(None))
        .order_by(Track.queued_at.desc(), Track.id.desc()).limit(1)
    ).first()
    if batch_id is None:
        return None
    total, finished, first_start, last_finish = session.execute(
        select(
            func.count(),
            func.count(Track.finished_at),
            func.min(Track.started_at),
            func.max(Track.finished_at),
        ).where(Track.batch_id == batch_id)
    ).one()
    span_s = None
    if first_start is not None and last_finish is not None:
        span_s = (as_utc(last_finish) - as_utc(first_start)).total_seconds()
    return {
        "batch_id": batch_id,
        "tracks": total,
        "finished": finished,
        "span_s": span_s,
        "per_s": finished / span_s if span_s else None,
    }
