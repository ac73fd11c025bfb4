"""The tracks waiting to be classified, as `enqueue` and `run` keep them: walked files
recorded (new or changed ones queued), and recovery, which queues again what a lost
worker or a failure left behind. The database is the source of truth; the broker only
carries the ids that these functions hand out."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.orm import Session

from genreq.db import paging, work
from genreq.db.models import State, Track, utcnow


class WalkedFile(Protocol):
    """What upsert_tracks reads of a walked file, the idempotency key: the walk's
    genreq.app.walk.FileStat."""

    @property
    def path(self) -> str: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...


@dataclass
class UpsertResult:
    queued_ids: list[int] = field(default_factory=list)  # new or changed: send to workers
    pending_ids: list[int] = field(default_factory=list)  # unchanged, still queued/running
    known: int = 0  # unchanged and finished (done or failed)
    reclassified: int = 0  # of queued_ids: unchanged, done by another model version
    known_other: int = 0  # of known: done by another model version, kept (no reclassify)
    moved: int = 0  # known rows found at a new path (and counted as above): path updated


def file_gone(path: str) -> bool:
    """Whether nothing is at PATH any more (a broken symlink counts as gone)."""
    return not os.path.exists(path)


def upsert_tracks(session: Session, files: Sequence[WalkedFile], batch_id: str,
                  min_duration_s: float | None = None, model_version: str | None = None,
                  reclassify: bool = False,
                  gone: Callable[[str], bool] = file_gone) -> UpsertResult:
    """Record one batch of walked files.

    New files and files whose size or mtime changed are (re)queued; unchanged files keep
    their result. Unchanged files still waiting (queued or running, e.g. from an
    interrupted run) join `batch_id` so that `genreq run` waits for them too. A file
    skipped as too short whose duration reaches `min_duration_s` (the minimum lowered
    since) is queued again. `model_version` is the version the workers will classify
    with, when known: an unchanged done track that another version, or another model,
    classified is counted in `known_other`, or with `reclassify` queued again.

    A new path whose size and mtime (to the nanosecond) are those of a known track
    whose file is `gone` is that track moved or renamed (`mv`, a file manager, `rsync
    -a` keep the mtime): the row takes the new path and keeps its result, as if the
    file had been there all along. Each gone row is taken by one new path at most.
    """
    result = UpsertResult()
    # The comparison reads only the columns it compares: re-enqueueing an unchanged
    # library loads no row whole. The rows to reset are loaded as objects, in one query.
    existing = {
        row.path: row
        for row in session.execute(
            select(Track.id, Track.path, Track.size_bytes, Track.mtime_ns, Track.state,
                   Track.duration_s, Track.model_version)
            .where(Track.path.in_([f.path for f in files])))
    }
    for path, row in _moved_rows(session, [f for f in files if f.path not in existing],
                                 gone).items():
        session.execute(update(Track).where(Track.id == row.id).values(path=path)
                        .execution_options(synchronize_session=False))
        existing[path] = row
        result.moved += 1

    def changed(row, stat: WalkedFile) -> bool:
        return (row.size_bytes, row.mtime_ns) != (stat.size_bytes, stat.mtime_ns)

    def other_model(row) -> bool:
        return (model_version is not None and row.state == State.done
                and row.model_version != model_version)

    def to_reset(row, stat: WalkedFile) -> bool:
        return (changed(row, stat) or (reclassify and other_model(row))
                or (row.state == State.skipped and min_duration_s is not None
                    and row.duration_s is not None and row.duration_s >= min_duration_s))

    reset_ids = [row.id for stat in files
                 if (row := existing.get(stat.path)) is not None and to_reset(row, stat)]
    resets = ({t.id: t for t in session.scalars(select(Track).where(Track.id.in_(reset_ids)))}
              if reset_ids else {})
    new_tracks = []
    for stat in files:
        row = existing.get(stat.path)
        if row is None:
            track = Track(path=stat.path, size_bytes=stat.size_bytes, mtime_ns=stat.mtime_ns)
        elif row.id in resets:
            track = resets[row.id]
            result.reclassified += not changed(row, stat) and other_model(row)
            _reset(track, stat)
        elif row.state in (State.queued, State.running):
            result.pending_ids.append(row.id)
            continue
        else:
            result.known += 1
            result.known_other += other_model(row)
            continue
        track.batch_id = batch_id
        new_tracks.append(track)
    if result.pending_ids:
        session.execute(update(Track).where(Track.id.in_(result.pending_ids))
                        .values(batch_id=batch_id).execution_options(synchronize_session=False))
    session.add_all(new_tracks)
    session.flush()
    result.queued_ids = [track.id for track in new_tracks]
    return result


@functools.lru_cache(maxsize=16)
def _same_size_and_mtime(n_pairs: int):
    """The rows whose (size_bytes, mtime_ns) is one of N_PAIRS pairs (size_0, mtime_0 …).
    One index probe a pair (ix_tracks_size_bytes_mtime_ns), on SQLite and PostgreSQL
    alike, where two IN lists would probe every size with every mtime. Built once per
    N_PAIRS: building 1,000 comparisons costs more than running them."""
    return (select(Track.id, Track.path, Track.size_bytes, Track.mtime_ns, Track.state,
                   Track.duration_s, Track.model_version)
            .where(or_(*(and_(Track.size_bytes == bindparam(f"size_{i}"),
                              Track.mtime_ns == bindparam(f"mtime_{i}"))
                         for i in range(n_pairs))))
            .order_by(Track.id))


def _moved_rows(session: Session, new_files: Sequence[WalkedFile],
                gone: Callable[[str], bool]) -> dict[str, object]:
    """{new path: the row of the gone file it is}, for the NEW_FILES (paths no row has)
    whose size and mtime match a known track's whose file is gone. Several gone rows
    of one size and mtime (copies of a file) go, lowest id first, to the new paths in
    walk order."""
    if not new_files:
        return {}
    keys = sorted({(f.size_bytes, f.mtime_ns) for f in new_files})
    params = {}
    for i, (size, mtime) in enumerate(keys):
        params[f"size_{i}"], params[f"mtime_{i}"] = size, mtime
    rows = session.execute(_same_size_and_mtime(len(keys)), params)
    candidates: dict[tuple[int, int], list] = {}
    for row in rows:
        if gone(row.path):
            candidates.setdefault((row.size_bytes, row.mtime_ns), []).append(row)
    moved = {}
    for stat in new_files:
        if waiting := candidates.get((stat.size_bytes, stat.mtime_ns)):
            moved[stat.path] = waiting.pop(0)
    return moved


def tracks_under(session: Session, roots: Sequence[str] = ()) -> Iterator[tuple[int, str]]:
    """(id, path) of each track under ROOTS (absolute paths of directories or files; no
    ROOTS: every track), root by root in path order, each track once.

    One query per root, streamed rather than paged: keyset pages over a range or a
    LIKE would read the rest of it again for every page."""
    if not roots:
        yield from session.execute(select(Track.id, Track.path)
                                   .execution_options(yield_per=paging.PAGE_SIZE))
        return
    kept: list[str] = []
    for root in sorted(set(roots)):
        if not any(is_under(root, other) for other in kept):  # its tracks come with other's
            kept.append(root)
    for root in kept:
        prefix = root.rstrip(os.sep) + os.sep
        yield from session.execute(select(Track.id, Track.path).where(Track.path == root))
        rows = session.execute(
            select(Track.id, Track.path).where(_starts_with(session, prefix))
            .order_by(Track.path).execution_options(yield_per=paging.PAGE_SIZE))
        for track_id, path in rows:
            if path.startswith(prefix):  # exact, whatever the SQL lets through
                yield track_id, path


def is_under(path: str, root: str) -> bool:
    """Whether PATH is ROOT or inside it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _starts_with(session: Session, prefix: str):
    """The condition `path` starts with PREFIX (which ends in a separator). On SQLite, a
    range of the unique index on path (text compares bytewise there, and the paths after
    PREFIX's own end before its separator's next character), where LIKE, blind to ASCII
    case, would read every row. Elsewhere LIKE: PostgreSQL's index on path orders by
    the database's collation, in which a prefix's paths need not be one range, so it
    reads the table (what that costs: bench/moves.py)."""
    if session.get_bind().dialect.name == "sqlite":
        return and_(Track.path >= prefix, Track.path < prefix[:-1] + chr(ord(prefix[-1]) + 1))
    return like_prefix(prefix)


def like_prefix(prefix: str):
    """The condition `path` LIKE 'PREFIX%', PREFIX's own % and _ escaped."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return Track.path.like(escaped + "%", escape="\\")


def gone_tracks(session: Session, roots: Sequence[str] = (),
                gone: Callable[[str], bool] = file_gone) -> Iterator[tuple[int, str]]:
    """tracks_under(ROOTS) whose file is gone."""
    return ((track_id, path) for track_id, path in tracks_under(session, roots)
            if gone(path))


def forget_tracks(session: Session, ids: Sequence[int]) -> int:
    """Delete the rows IDS (what `genreq prune` forgets); how many there were."""
    deleted = 0
    for start in range(0, len(ids), paging.PAGE_SIZE):
        deleted += session.execute(
            delete(Track).where(Track.id.in_(ids[start:start + paging.PAGE_SIZE]))
            .execution_options(synchronize_session=False)).rowcount
    return deleted


def _reset(track: Track, stat: WalkedFile) -> None:
    track.size_bytes = stat.size_bytes
    track.mtime_ns = stat.mtime_ns
    track.state = State.queued
    track.attempts = 0
    track.error = track.reason = None
    track.genre = track.confidence = track.probs = track.duration_s = None
    track.model_name = track.model_version = track.elapsed_s = None
    track.tags = track.embedding = track.embedding_model = None
    track.artist = track.album = track.title = track.file_genres = None
    track.queued_at = utcnow()
    track.started_at = track.finished_at = None


@dataclass
class RequeueResult:
    stale: int = 0  # running tracks whose worker is gone, set back to queued
    failed: int = 0  # failed tracks set back to queued for another try


def reset_for_requeue(
    session: Session, *, expired: bool = False, stale_before: datetime | None = None,
    failed: bool = False,
) -> RequeueResult:
    """Set tracks back to queued: with `expired`, those `running` under a lease that ran
    out (their worker stopped renewing it: see genreq.db.work); those `running` since
    before `stale_before` whatever their lease (the operator knows their worker is
    gone); and, with `failed`, the failed ones (e.g. after installing ffmpeg), whose
    attempts start again. A worker still holding a track queued here writes no result
    for it (its claim token is cleared)."""
    result = RequeueResult()
    if expired:
        result.stale += len(work.expire_leases(session))
    if stale_before is not None:
        result.stale += session.execute(
            update(Track)
            .where(Track.state == State.running, Track.started_at < stale_before)
            .values(state=State.queued, claim_token=None, lease_expires_at=None)
        ).rowcount
    if failed:
        result.failed = session.execute(
            update(Track)
            .where(Track.state == State.failed)
            .values(state=State.queued, attempts=0, error=None, reason=None,
                    finished_at=None)
        ).rowcount
    return result


def queued_ids(session: Session) -> Iterator[list[int]]:
    """Ids of every queued track, a page at a time, in id order."""
    return paging.pages(session, select(Track.id).where(Track.state == State.queued), Track.id)
