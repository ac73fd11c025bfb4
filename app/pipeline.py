"""The pipeline: what `genreq enqueue`, `requeue`, `run` and `stop` do, callable from a
script. Nothing here prints; progress goes through callbacks and logging. The worker
processes themselves are genreq.app.workers.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from genreq import config
from genreq.app import workers as worker_processes
from genreq.app.walk import LibraryWalk
from genreq.db import queue
from genreq.db import status as db_status
from genreq.db.migrate import ensure_schema
from genreq.db.session import session_scope
from genreq.worker import broker

log = logging.getLogger(__name__)

# Rows written per transaction while enqueueing; their ids are sent once it commits,
# so a worker never receives an id it cannot see yet.
ENQUEUE_BATCH = 500
# Tries of one batch when a concurrent enqueue of the same files wins the insert.
UPSERT_ATTEMPTS = 3


def prepare(*, start_broker: bool = True) -> bool:
    """Bring up what the embedded default needs: the broker (unless GENREQ_BROKER_URL
    is set) and the database schema. True when this call started the broker."""
    started = False
    if start_broker and config.broker_url() is None:
        started = broker.ensure_running()
    ensure_schema()
    return started


def upgrade_database(revision: str = "head") -> str | None:
    """Migrate the configured database (GENREQ_DATABASE_URL) to `revision` (default: the
    latest); returns the revision it is at now."""
    from genreq.db import migrate

    migrate.upgrade(revision=revision)
    return migrate.current_revision()


@dataclass
class EnqueueSummary:
    batch_id: str
    queued: int = 0  # new or changed files sent to the workers
    pending: int = 0  # already known, still waiting for a worker: sent again
    known: int = 0  # already known with the same size and mtime, finished
    reclassified: int = 0  # of queued: unchanged, done by another model version
    known_other: int = 0  # of known: done by another model version (no reclassify)
    moved: int = 0  # known tracks found at a new path (moved or renamed): rows follow
    gone: int = 0  # known tracks under the walked paths whose file is gone: see prune
    ignored: int = 0  # not audio
    ignored_kinds: dict[str, int] = field(default_factory=dict)  # ignored, by extension
    warnings: int = 0  # paths skipped with a warning

    @property
    def sent(self) -> int:
        return self.queued + self.pending


def existing_paths(paths: Iterable[str | Path], consequence: str) -> list[Path]:
    """PATHS made absolute (`~` expanded), once each is known to exist. Raises GenreqError
    naming the first that does not, with CONSEQUENCE ("nothing queued"): a mistyped
    library is an error before anything starts, not a walk that finds nothing. (A file
    or folder that vanishes during the walk is a warning: LibraryWalk.)"""
    from genreq.errors import GenreqError

    absolute = [Path(os.path.abspath(os.path.expanduser(os.fspath(p)))) for p in paths]
    for path in absolute:
        if not os.path.exists(path):
            raise GenreqError(f"{path}: no such file or directory; {consequence}")
    return absolute


def enqueue(
    paths: Iterable[str | Path],
    batch_id: str | None = None,
    on_batch: Callable[[EnqueueSummary], None] | None = None,
    model_version: str | None = None,
    reclassify: bool = False,
) -> EnqueueSummary:
    """Walk `paths`, record every audio file, and send the ids of those to classify
    (to workers started by `genreq worker` or `run`). Starts the embedded broker when no
    GENREQ_BROKER_URL is set, and leaves it running for the workers.

    Streams: ENQUEUE_BATCH files at a time; `on_batch(summary)` after each. Pending
    tracks (queued or running from an earlier call whose work may have been lost) are
    sent again; the task makes a duplicate a no-op once the track is done.
    `model_version` (model_files.file_digest of the workers' checkpoint, when known):
    done tracks of unchanged files that another version classified are counted, or with
    `reclassify` queued again.

    A file moved or renamed since keeps its track and result (db.queue.upsert_tracks
    says how it is recognised: `moved`). Known tracks under `paths` whose file is gone
    are counted (`gone`) and kept: `prune` forgets them.
    """
    from genreq.worker.app import app, send_classify

    paths = existing_paths(paths, "nothing queued")
    prepare()

    summary = EnqueueSummary(batch_id=batch_id or uuid.uuid4().hex)
    walk = LibraryWalk(paths)
    files = iter(walk)
    with app.producer_or_acquire() as producer:
        while batch := list(itertools.islice(files, ENQUEUE_BATCH)):
            result = _upsert(batch, summary.batch_id, model_version, reclassify)
            send_classify([*result.queued_ids, *result.pending_ids], producer)
            summary.queued += len(result.queued_ids)
            summary.reclassified += result.reclassified
            summary.known_other += result.known_other
            summary.pending += len(result.pending_ids)
            summary.known += result.known
            summary.moved += result.moved
            summary.ignored = walk.ignored
            if on_batch:
                on_batch(summary)
    summary.ignored, summary.warnings = walk.ignored, walk.warnings
    summary.ignored_kinds = dict(walk.ignored_kinds.most_common())
    # Each known track under the paths is looked up on disk again (its entry was just
    # walked, so the lookup is cached): a set of the walked paths would hold the whole
    # library in memory.
    with session_scope() as session:
        summary.gone = sum(1 for _ in queue.gone_tracks(
            session, [os.fspath(root) for root in walk.paths]))
    return summary


@dataclass
class PruneResult:
    paths: list[str]  # of the tracks forgotten (or, with dry_run, to forget)
    kept: int = 0  # tracks under the paths whose files are there

    @property
    def forgotten(self) -> int:
        return len(self.paths)


def prune(paths: Iterable[str | Path], dry_run: bool = False,
          force: bool = False) -> PruneResult:
    """Forget the tracks under `paths` (directories or files) whose file is gone:
    deleted or moved away, not found at a new path by a later run or enqueue. Their
    rows go, results and embeddings with them; what is still on disk is not touched.

    Refuses (GenreqError) when a path does not exist, or when every track known under
    it is gone, unless `force`: that is what an unmounted drive or share looks like,
    not a library emptied on purpose. With `dry_run`, says what it would forget.
    """
    from genreq.errors import GenreqError

    ensure_schema()
    roots = [os.fspath(root) for root in
             existing_paths(paths, "nothing forgotten (is its drive mounted?)")]
    with session_scope() as session:
        known = {root: 0 for root in roots}
        lost = {root: 0 for root in roots}
        gone, kept = [], 0
        for track_id, path in queue.tracks_under(session, roots):
            is_gone = queue.file_gone(path)
            for root in roots:
                if queue.is_under(path, root):
                    known[root] += 1
                    lost[root] += is_gone
            if is_gone:
                gone.append((track_id, path))
            else:
                kept += 1
        for root in roots:
            if not force and known[root] and lost[root] == known[root]:
                raise GenreqError(
                    f"{root}: every track genreq knows there ({known[root]}) is gone; "
                    "nothing forgotten (is its drive mounted? --force forgets them)")
        if not dry_run:
            queue.forget_tracks(session, [track_id for track_id, _ in gone])
    return PruneResult(paths=[path for _, path in gone], kept=kept)


def model_version(model: str | None) -> str:
    """The version (file digest) of the checkpoint `model` names (None: $GENREQ_MODEL or
    the default), as workers record it; ModelError when it cannot be read."""
    from genreq import model_files
    from genreq.errors import ModelError

    path = model_files.resolve_model(model)
    try:
        return model_files.file_digest(path)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the checkpoint ({exc.strerror})") from None


def _upsert(batch: list, batch_id: str, model_version: str | None,
            reclassify: bool) -> queue.UpsertResult:
    """Record one batch; when another enqueue of the same files committed them first
    (a unique-path conflict), read the batch again, now as known rows."""
    from sqlalchemy.exc import IntegrityError

    attempt = 1
    while True:
        try:
            with session_scope() as session:
                return queue.upsert_tracks(session, batch, batch_id, config.min_duration_s(),
                                           model_version, reclassify)
        except IntegrityError:
            if attempt == UPSERT_ATTEMPTS:
                raise
            attempt += 1
            log.info("another enqueue recorded some of these files first; reading them again")


@dataclass
class RequeueSummary:
    stale: int = 0  # running tracks whose worker is gone, queued again
    failed: int = 0  # failed tracks queued for another try
    sent: int = 0  # ids sent to the workers: every queued track


def requeue(stale: bool = False, failed: bool = False,
            older_than_s: float | None = None) -> RequeueSummary:
    """Send every queued track to the workers again, from the database.

    For messages lost with a broker. With `stale`, tracks `running` under a lease that
    ran out (their worker died or froze; live workers and `genreq run` do this by
    themselves within a minute) are queued again first; with `older_than_s` as well,
    those `running` for longer than that whatever their lease (a fallback for when you
    know their worker is gone and would not wait for the lease). With `failed`, failed
    tracks are queued too. A track sent twice is classified once: the second message
    finds it done or held and does nothing.
    """
    from datetime import timedelta

    from genreq.db.models import utcnow
    from genreq.worker.app import app, send_classify

    prepare()
    stale_before = None
    if stale and older_than_s is not None:
        stale_before = utcnow() - timedelta(seconds=older_than_s)
    with session_scope() as session:
        reset = queue.reset_for_requeue(session, expired=stale, stale_before=stale_before,
                                        failed=failed)
    summary = RequeueSummary(stale=reset.stale, failed=reset.failed)
    with session_scope() as session, app.producer_or_acquire() as producer:
        for page in queue.queued_ids(session):
            send_classify(page, producer)
            summary.sent += len(page)
    return summary


# --- the one-shot job --------------------------------------------------------------

POLL_INTERVAL_S = 0.5
# on_progress(finished, total, tracks per second or None, still walking)
ProgressCallback = Callable[[int, int, float | None, bool], None]


@dataclass
class RunResult:
    enqueued: EnqueueSummary  # what the walk found and sent
    status: db_status.Status  # of this run's tracks, at the end: done and failed by now
    elapsed_s: float  # walk, classification and shutdown

    @property
    def batch_id(self) -> str:
        """This run's tracks, for status(batch_id=...) and failures(batch_id)."""
        return self.enqueued.batch_id


def run(
    paths: Iterable[str | Path],
    workers: int | None = None,
    model: str | None = None,
    on_progress: ProgressCallback | None = None,
    on_enqueued: Callable[[EnqueueSummary], None] | None = None,
    reclassify: bool = False,
) -> RunResult:
    """What `genreq run` does: start `workers` local worker processes (default: one per
    CPU) on `model` (a checkpoint path or a shipped model's name; None: $GENREQ_MODEL
    or the default), enqueue the audio files under `paths`, wait until every one of
    them is done or failed, stop the workers (and the embedded broker if this call
    started it). A file that cannot be classified is a failed track, not an error;
    raises GenreqError when the workers stop (e.g. the model cannot be loaded). With
    `reclassify`, unchanged files that another model, or another version of `model`,
    classified are classified again (after upgrading genreq, or to switch models)."""
    from genreq.worker import leases

    # Checked before the workers start: a path or a model that does not exist is an
    # error here, not a run of nothing.
    paths = existing_paths(paths, "nothing queued")
    version = model_version(model)

    started = time.monotonic()
    on_progress = on_progress or (lambda *_: None)
    started_broker = prepare()
    log_path = config.logs_dir() / "run-workers.log"
    # Workers first: they load the model while the walk goes on. The model is resolved
    # here and handed down on their command line.
    process = worker_processes.spawn(workers or os.cpu_count() or 1, log_path,
                            model or config.model())
    try:
        def batch_status(batch_id: str) -> db_status.Status:
            worker_processes.check_alive(process, log_path)
            with session_scope() as session:
                return db_status.status(session, batch_id)

        def on_batch(summary: EnqueueSummary) -> None:
            batch = batch_status(summary.batch_id)
            finished = batch.done + batch.failed + batch.skipped
            on_progress(finished, summary.sent, batch.throughput_per_s, True)

        summary = enqueue(paths, on_batch=on_batch, model_version=version, reclassify=reclassify)
        if on_enqueued:
            on_enqueued(summary)
        rate = None
        next_scan = time.monotonic()
        while True:
            batch = batch_status(summary.batch_id)
            rate = batch.throughput_per_s or rate  # keep the last rate once nothing is pending
            on_progress(batch.done + batch.failed + batch.skipped, batch.total, rate, False)
            if batch.pending == 0:
                break
            if time.monotonic() >= next_scan:
                # As the workers do: a worker of this run killed whole, or one elsewhere
                # that held tracks of this library, leaves them to the lease.
                leases.resend_expired()
                next_scan = time.monotonic() + config.heartbeat_s()
            time.sleep(POLL_INTERVAL_S)
    finally:
        worker_processes.stop_process(process)
        if started_broker:
            broker.stop()
    from genreq.app.library import learned_batch_genres

    batch.genres = learned_batch_genres(summary.batch_id) or batch.genres  # after learn
    return RunResult(summary, batch, time.monotonic() - started)


def stop() -> tuple[int, bool]:
    """Stop the workers and the embedded broker of GENREQ_HOME: (workers, broker)."""
    return worker_processes.stop_all(), broker.stop()
