"""Every query genreq runs. Reads page through the table by id so that a library of
any size streams instead of loading into memory."""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from genreq.db.models import State, Track, utcnow

PAGE_SIZE = 1000
# Throughput is measured over the tracks finished in this last window.
THROUGHPUT_WINDOW_S = 120.0
# Work pending but no track finished for this long: no worker is taken to be running,
# and no throughput or ETA is shown (rather than a rate decaying over the window).
STALLED_AFTER_S = 30.0


@dataclass(frozen=True)
class FileStat:
    """What the walk learns about a file: the idempotency key."""

    path: str
    size_bytes: int
    mtime_ns: int


@dataclass
class UpsertResult:
    queued_ids: list[int] = field(default_factory=list)  # new or changed: send to workers
    pending_ids: list[int] = field(default_factory=list)  # unchanged, still queued/running
    known: int = 0  # unchanged and finished (done or failed)


def upsert_tracks(session: Session, files: Sequence[FileStat], batch_id: str) -> UpsertResult:
    """Record one batch of walked files.

    New files and files whose size or mtime changed are (re)queued; unchanged files keep
    their result. Unchanged files still waiting (queued or running, e.g. from an
    interrupted run) join `batch_id` so that `genreq run` waits for them too.
    """
    result = UpsertResult()
    existing = {
        track.path: track
        for track in session.scalars(select(Track).where(Track.path.in_([f.path for f in files])))
    }
    new_tracks = []
    for stat in files:
        track = existing.get(stat.path)
        if track is None:
            track = Track(path=stat.path, size_bytes=stat.size_bytes, mtime_ns=stat.mtime_ns)
            new_tracks.append(track)
        elif (track.size_bytes, track.mtime_ns) != (stat.size_bytes, stat.mtime_ns):
            _reset(track, stat)
            new_tracks.append(track)
        elif track.state in (State.queued, State.running):
            track.batch_id = batch_id
            result.pending_ids.append(track.id)
            continue
        else:
            result.known += 1
            continue
        track.batch_id = batch_id
    session.add_all(new_tracks)
    session.flush()
    result.queued_ids = [track.id for track in new_tracks]
    return result


def _reset(track: Track, stat: FileStat) -> None:
    track.size_bytes = stat.size_bytes
    track.mtime_ns = stat.mtime_ns
    track.state = State.queued
    track.attempts = 0
    track.error = None
    track.genre = track.confidence = track.probs = track.duration_s = None
    track.model_name = track.model_version = track.elapsed_s = None
    track.queued_at = utcnow()
    track.started_at = track.finished_at = None


# --- the worker's side -------------------------------------------------------------
# Core statements on a plain connection (db.session.transaction): no ORM session or
# identity map for the two small writes every track costs.


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
    db.execute(
        update(Track)
        .where(Track.id == track_id, pending)
        .values(
            state=State.failed,
            error=Track.path + f": gave up after {max_attempts} attempts (worker lost or timed out)",
            finished_at=utcnow(),
        )
    )
    return None


def claim_batch(db: Connection | Session, track_ids: Sequence[int], max_attempts: int) -> dict[int, str]:
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
        )
        .execution_options(synchronize_session=False),
        [
            {"b_id": r.track_id, "b_genre": r.genre, "b_confidence": r.confidence,
             "b_probs": r.probs, "b_duration_s": r.duration_s, "b_elapsed_s": r.elapsed_s,
             "b_finished_at": r.finished_at}
            for r in results
        ],
    )


def record_failure(
    db: Connection | Session,
    track_id: int,
    reason: str,
    elapsed_s: float,
    finished_at: datetime | None = None,
) -> None:
    db.execute(
        update(Track)
        .where(Track.id == track_id)
        .values(state=State.failed, error=reason, elapsed_s=elapsed_s,
                finished_at=finished_at or utcnow())
    )


# --- recovery: the database is the source of truth ---------------------------------


@dataclass
class RequeueResult:
    stale: int = 0  # running tracks whose worker is gone, set back to queued
    failed: int = 0  # failed tracks set back to queued for another try


def reset_for_requeue(
    session: Session, *, stale_before: datetime | None = None, failed: bool = False
) -> RequeueResult:
    """Set tracks back to queued: those `running` since before `stale_before` (their
    worker died, or their message was lost with the broker) and, with `failed`, the
    failed ones (e.g. after installing ffmpeg), whose attempts start again."""
    result = RequeueResult()
    if stale_before is not None:
        result.stale = session.execute(
            update(Track)
            .where(Track.state == State.running, Track.started_at < stale_before)
            .values(state=State.queued)
        ).rowcount
    if failed:
        result.failed = session.execute(
            update(Track)
            .where(Track.state == State.failed)
            .values(state=State.queued, attempts=0, error=None, finished_at=None)
        ).rowcount
    return result


def queued_ids(session: Session) -> Iterator[list[int]]:
    """Ids of every queued track, a page at a time, in id order."""
    last_id = 0
    while True:
        page = list(session.scalars(
            select(Track.id).where(Track.state == State.queued, Track.id > last_id)
            .order_by(Track.id).limit(PAGE_SIZE)
        ))
        if not page:
            return
        yield page
        last_id = page[-1]


# --- status ------------------------------------------------------------------------


@dataclass
class Status:
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    genres: dict[str, int] = field(default_factory=dict)
    # While work is pending: tracks finished per second recently, and time left at that rate.
    throughput_per_s: float | None = None
    eta_s: float | None = None

    @property
    def total(self) -> int:
        return self.queued + self.running + self.done + self.failed

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
            "genres": self.genres,
            "throughput_per_s": self.throughput_per_s,
            "eta_s": self.eta_s,
        }


def status(session: Session, batch_id: str | None = None) -> Status:
    """Counts by state and by genre (all tracks, or one enqueue batch), with throughput."""
    scope = [Track.batch_id == batch_id] if batch_id else []
    result = Status()
    for state, count in session.execute(
        select(Track.state, func.count()).where(*scope).group_by(Track.state)
    ):
        setattr(result, State(state).value, count)
    result.genres = dict(
        session.execute(
            select(Track.genre, func.count())
            .where(Track.state == State.done, *scope)
            .group_by(Track.genre)
            .order_by(func.count().desc(), Track.genre)
        ).all()
    )
    if result.pending:
        result.throughput_per_s = throughput(session, scope)
        if result.throughput_per_s:
            result.eta_s = result.pending / result.throughput_per_s
    return result


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; genreq stores UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


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
    if (now - _as_utc(last_finish)).total_seconds() > STALLED_AFTER_S:
        return None
    span_s = (now - max(_as_utc(first_start), since)).total_seconds()
    return count / span_s if span_s > 0 else None


def failures(session: Session, batch_id: str | None = None) -> Iterator[Track]:
    """Failed tracks in id (enqueue) order, paged."""
    scope = [Track.batch_id == batch_id] if batch_id else []
    yield from _paged(session, select(Track).where(Track.state == State.failed, *scope))


# --- export ------------------------------------------------------------------------


def known_genres(session: Session) -> list[str]:
    """Every genre the models that classified this library can predict."""
    genres: set[str] = set()
    # One done track per model version is enough: probs holds its full genre vector.
    sample_ids = select(func.min(Track.id)).where(Track.state == State.done).group_by(
        Track.model_version
    )
    for probs in session.scalars(select(Track.probs).where(Track.id.in_(sample_ids))):
        genres.update(probs or {})
    return sorted(genres)


def _done_where(
    genres: Sequence[str] = (),
    min_confidence: float | None = None,
    since: datetime | None = None,
    model: str | None = None,
    path_glob: str | None = None,
) -> list:
    """The SQL conditions of done_tracks and count_done_tracks. A glob only narrows
    here: LIKE portably (SQLite's GLOB is not PostgreSQL's), and fnmatchcase decides
    exactly afterwards, since LIKE ignores case on SQLite and has no [...] classes."""
    where = [Track.state == State.done]
    if genres:
        where.append(Track.genre.in_(genres))
    if min_confidence is not None:
        where.append(Track.confidence >= min_confidence)
    if since is not None:
        where.append(Track.finished_at >= _to_utc(since))
    if model is not None:
        where.append(Track.model_name == model)
    if path_glob is not None:
        where.append(Track.path.like(glob_to_like(path_glob), escape="\\"))
    return where


def done_tracks(
    session: Session,
    genres: Sequence[str] = (),
    min_confidence: float | None = None,
    *,
    path_glob: str | None = None,
    since: datetime | None = None,
    model: str | None = None,
    sort: str = "id",
) -> Iterator[Track]:
    """Done tracks, paged: optionally of some genres, above a confidence, with a path
    matching a glob (`*` also matches `/`), finished at or after `since`, classified by
    the model named `model`. `sort` is one of SORTS: enqueue order (id), most confident
    first (confidence), or path."""
    query = select(Track).where(*_done_where(genres, min_confidence, since, model, path_glob))
    for track in _paged_sorted(session, query, sort):
        if path_glob is None or fnmatch.fnmatchcase(track.path, path_glob):
            yield track


def count_done_tracks(
    session: Session,
    genres: Sequence[str] = (),
    min_confidence: float | None = None,
    *,
    path_glob: str | None = None,
    since: datetime | None = None,
    model: str | None = None,
) -> int:
    """How many tracks done_tracks yields for the same filters: one COUNT, or with a
    glob one pass over the candidate paths (not the rows)."""
    where = _done_where(genres, min_confidence, since, model, path_glob)
    if path_glob is None:
        return session.scalar(select(func.count()).select_from(Track).where(*where))
    paths = session.scalars(select(Track.path).where(*where)
                            .execution_options(yield_per=PAGE_SIZE))
    return sum(fnmatch.fnmatchcase(path, path_glob) for path in paths)


def _paged(session: Session, query) -> Iterator[Track]:
    """Keyset pagination by id: constant memory, stable under concurrent inserts."""
    last_id = 0
    while True:
        page = session.scalars(
            query.where(Track.id > last_id).order_by(Track.id).limit(PAGE_SIZE)
        ).all()
        if not page:
            return
        yield from page
        last_id = page[-1].id
        session.expunge_all()


# --- library features: sorted paging, show, tag bookkeeping, report --------------------

SORTS = ("id", "confidence", "path")


def _to_utc(value: datetime) -> datetime:
    # Naive datetimes are taken as UTC, as genreq stores them; SQLite keeps no offset, so
    # an aware value is converted before it is compared.
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def glob_to_like(pattern: str) -> str:
    """A LIKE pattern (escape character backslash) matching at least what the fnmatch
    glob matches: `*` -> `%`, `?` and each [...] class -> `_`."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c == "[":
            # fnmatch's class syntax: [!...] negates; a ] right after [ or [! is literal
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            end = pattern.find("]", j)
            if end == -1:
                out.append("[")
            else:
                out.append("_")
                i = end
        elif c in "%_\\":
            out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _paged_sorted(session: Session, query, sort: str = "id") -> Iterator[Track]:
    """Keyset pagination in `sort` order: constant memory whatever the order. Confidence
    pages on (confidence descending, id), path on the unique path."""
    if sort == "id":
        yield from _paged(session, query)
        return
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {SORTS}, not {sort!r}")
    last: Track | None = None
    while True:
        page_query = query
        if sort == "path":
            if last is not None:
                page_query = page_query.where(Track.path > last.path)
            page_query = page_query.order_by(Track.path)
        else:
            if last is not None:
                page_query = page_query.where(or_(
                    Track.confidence < last.confidence,
                    and_(Track.confidence == last.confidence, Track.id > last.id),
                ))
            page_query = page_query.order_by(Track.confidence.desc(), Track.id)
        page = session.scalars(page_query.limit(PAGE_SIZE)).all()
        if not page:
            return
        yield from page
        last = page[-1]
        session.expunge_all()


def track_by_path(session: Session, path: str) -> Track | None:
    return session.scalars(select(Track).where(Track.path == path)).one_or_none()


def done_probs(session: Session) -> Iterator[dict[str, float]]:
    """The probability vector of every done track, paged by id."""
    last_id = 0
    while True:
        page = session.execute(
            select(Track.id, Track.probs)
            .where(Track.state == State.done, Track.id > last_id)
            .order_by(Track.id)
            .limit(PAGE_SIZE)
        ).all()
        if not page:
            return
        for _id, probs in page:
            yield probs or {}
        last_id = page[-1][0]


def record_file_stat(session: Session, track_id: int, size_bytes: int, mtime_ns: int) -> None:
    """Remember a file's new size and mtime after genreq itself changed it (tag writes),
    so that the next enqueue does not take the file for a changed one."""
    session.execute(
        update(Track).where(Track.id == track_id).values(size_bytes=size_bytes, mtime_ns=mtime_ns)
    )


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
        span_s = (_as_utc(last_finish) - _as_utc(first_start)).total_seconds()
    return {
        "batch_id": batch_id,
        "tracks": total,
        "finished": finished,
        "span_s": span_s,
        "per_s": finished / span_s if span_s else None,
    }
