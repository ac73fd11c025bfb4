"""The pipeline as a Python API: what `genreq enqueue`, `worker`, `run` and `stop` do,
callable from a script. Nothing here prints; progress goes through callbacks and logging.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from genreq import config
from genreq.app.walk import LibraryWalk
from genreq.db import queries
from genreq.db.migrate import ensure_schema
from genreq.db.session import session_scope
from genreq.errors import GenreqError, ModelError
from genreq.worker import broker

log = logging.getLogger(__name__)

# Rows written per transaction while enqueueing; their ids are sent once it commits,
# so a worker never receives an id it cannot see yet.
ENQUEUE_BATCH = 500
# Tries of one batch when a concurrent enqueue of the same files wins the insert.
UPSERT_ATTEMPTS = 3
WORKER_STOP_TIMEOUT_S = 60.0


def prepare(*, start_broker: bool = True) -> bool:
    """Bring up what the embedded default needs: the broker (unless GENREQ_BROKER_URL
    is set) and the database schema. True when this call started the broker."""
    started = False
    if start_broker and config.broker_url() is None:
        started = broker.ensure_running()
    ensure_schema()
    return started


@dataclass
class EnqueueSummary:
    batch_id: str
    queued: int = 0  # new or changed files sent to the workers
    pending: int = 0  # already known, still waiting for a worker: sent again
    known: int = 0  # already known with the same size and mtime, finished
    ignored: int = 0  # not audio
    warnings: int = 0  # paths skipped with a warning

    @property
    def sent(self) -> int:
        return self.queued + self.pending


def enqueue(
    paths: Iterable[str | Path],
    batch_id: str | None = None,
    on_batch: Callable[[EnqueueSummary], None] | None = None,
) -> EnqueueSummary:
    """Walk `paths`, record every audio file, and send the ids of those to classify.

    Streams: ENQUEUE_BATCH files at a time. Pending tracks (queued or running from an
    earlier call whose work may have been lost) are sent again; the task makes a
    duplicate a no-op once the track is done.
    """
    from genreq.worker.app import app, send_classify

    summary = EnqueueSummary(batch_id=batch_id or uuid.uuid4().hex)
    walk = LibraryWalk(paths)
    files = iter(walk)
    with app.producer_or_acquire() as producer:
        while batch := list(itertools.islice(files, ENQUEUE_BATCH)):
            result = _upsert(batch, summary.batch_id)
            send_classify([*result.queued_ids, *result.pending_ids], producer)
            summary.queued += len(result.queued_ids)
            summary.pending += len(result.pending_ids)
            summary.known += result.known
            summary.ignored = walk.ignored
            if on_batch:
                on_batch(summary)
    summary.ignored, summary.warnings = walk.ignored, walk.warnings
    return summary


def _upsert(batch: list, batch_id: str) -> queries.UpsertResult:
    """Record one batch; when another enqueue of the same files committed them first
    (a unique-path conflict), read the batch again, now as known rows."""
    from sqlalchemy.exc import IntegrityError

    attempt = 1
    while True:
        try:
            with session_scope() as session:
                return queries.upsert_tracks(session, batch, batch_id)
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


def requeue(stale_after_s: float | None = None, failed: bool = False) -> RequeueSummary:
    """Send every queued track to the workers again, from the database.

    For messages lost with a broker, or left unacknowledged by a worker that was killed
    whole. With `stale_after_s`, tracks `running` for longer than that are queued again
    first (no healthy task runs past the hard time limit, the default); with `failed`,
    failed tracks are too. A track sent twice is classified once: the second message
    finds it done and does nothing.
    """
    from datetime import timedelta

    from genreq.db.models import utcnow
    from genreq.worker.app import app, send_classify

    stale_before = None if stale_after_s is None else utcnow() - timedelta(seconds=stale_after_s)
    with session_scope() as session:
        reset = queries.reset_for_requeue(session, stale_before=stale_before, failed=failed)
    summary = RequeueSummary(stale=reset.stale, failed=reset.failed)
    with session_scope() as session, app.producer_or_acquire() as producer:
        for page in queries.queued_ids(session):
            send_classify(page, producer)
            summary.sent += len(page)
    return summary


# --- the one-shot job --------------------------------------------------------------

POLL_INTERVAL_S = 0.5
# on_progress(finished, total, tracks per second or None, still walking)
ProgressCallback = Callable[[int, int, float | None, bool], None]


def run(
    paths: Iterable[str | Path],
    workers: int | None = None,
    on_progress: ProgressCallback | None = None,
    on_enqueued: Callable[[EnqueueSummary], None] | None = None,
) -> tuple[EnqueueSummary, queries.Status, float]:
    """What `genreq run` does: start local workers, enqueue, wait until every track of
    this batch is done or failed, stop the workers (and the embedded broker if this
    call started it). Returns the enqueue summary, the batch's status and the seconds
    it all took. Raises GenreqError when the workers die."""
    started = time.monotonic()
    on_progress = on_progress or (lambda *_: None)
    started_broker = prepare()
    log_path = config.logs_dir() / "run-workers.log"
    # Workers first: they load the model while the walk goes on.
    process = spawn_worker(workers or os.cpu_count() or 1, log_path)
    try:
        def batch_status(batch_id: str) -> queries.Status:
            check_alive(process, log_path)
            with session_scope() as session:
                return queries.status(session, batch_id)

        def on_batch(summary: EnqueueSummary) -> None:
            batch = batch_status(summary.batch_id)
            on_progress(batch.done + batch.failed, summary.sent, batch.throughput_per_s, True)

        summary = enqueue(paths, on_batch=on_batch)
        if on_enqueued:
            on_enqueued(summary)
        rate = None
        while True:
            batch = batch_status(summary.batch_id)
            rate = batch.throughput_per_s or rate  # keep the last rate once nothing is pending
            on_progress(batch.done + batch.failed, batch.total, rate, False)
            if batch.pending == 0:
                break
            time.sleep(POLL_INTERVAL_S)
    finally:
        stop_process(process)
        if started_broker:
            broker.stop()
    return summary, batch, time.monotonic() - started


# --- worker processes --------------------------------------------------------------


def _workers_dir() -> Path:
    path = config.home() / "workers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def serve_worker(concurrency: int | None = None, loglevel: str = "INFO") -> int:
    """Run a Celery worker (prefork) in this process until it is told to stop.

    Registers its pid under GENREQ_HOME so that `genreq stop` finds it. Raises
    ModelError when the pool processes could not load the model.
    """
    prepare()
    from genreq.worker import tasks
    from genreq.worker.app import QUEUE, app

    pid = os.getpid()
    pidfile = _workers_dir() / f"{pid}.pid"
    error_file = _workers_dir() / f"{pid}.error"
    error_file.unlink(missing_ok=True)
    tasks.fatal_error_file = str(error_file)
    pidfile.write_text(str(pid))
    try:
        worker = app.Worker(
            concurrency=concurrency or os.cpu_count() or 1,
            pool="prefork",
            queues=[QUEUE],
            hostname=f"genreq-{pid}@{socket.gethostname()}",
            loglevel=loglevel,
            quiet=True,  # no banner on stdout: stdout is for data
            without_mingle=True,
            without_gossip=True,
        )
        worker.start()
    finally:
        pidfile.unlink(missing_ok=True)
    if error_file.exists():
        message = error_file.read_text()
        error_file.unlink()
        raise ModelError(message)
    return worker.exitcode or 0


def spawn_worker(concurrency: int, log_path: Path) -> subprocess.Popen:
    """Start `genreq worker` as a child process, its log going to `log_path` (replaced)."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "genreq.cli", "worker", "--concurrency", str(concurrency)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches `genreq run`, which then
            # shuts the worker down in order instead of it dying mid-task.
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen, timeout_s: float = WORKER_STOP_TIMEOUT_S) -> None:
    """Warm shutdown (running tasks finish), then kill the process group if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop in %.0f s; killing it", process.pid, timeout_s)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # pool processes left behind, if any
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _is_genreq_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"genreq" in cmdline


def stop_workers(timeout_s: float = WORKER_STOP_TIMEOUT_S) -> int:
    """Stop the workers registered under GENREQ_HOME. Returns how many were running."""
    stopped = []
    for pidfile in sorted(_workers_dir().glob("*.pid")):
        pid = int(pidfile.stem)
        if _is_genreq_worker(pid):  # not a stale file whose pid was reused
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        else:
            pidfile.unlink(missing_ok=True)
    deadline = time.monotonic() + timeout_s
    for pid in stopped:
        while _is_genreq_worker(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_genreq_worker(pid):
            log.warning("worker %d did not stop in %.0f s; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
        (_workers_dir() / f"{pid}.pid").unlink(missing_ok=True)
    return len(stopped)


def stop() -> tuple[int, bool]:
    """Stop the workers and the embedded broker of GENREQ_HOME: (workers, broker)."""
    workers = stop_workers()
    return workers, broker.stop()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def check_alive(process: subprocess.Popen, log_path: Path) -> None:
    """Raise when the worker process has exited, with its own error when it gave one."""
    if process.poll() is None:
        return
    last_lines = tail(log_path)
    # The worker's error boundary said why (e.g. the model cannot be loaded); Celery may
    # have prefixed its line with a log header.
    errors = re.findall(r"^(?:\[.*?\] )?Error: (.*)$", last_lines, flags=re.MULTILINE)
    if errors:
        raise GenreqError(f"the workers stopped: {errors[-1]} (log: {log_path})")
    raise GenreqError(
        f"the workers stopped (exit status {process.returncode}); "
        f"last lines of {log_path}:\n{last_lines}"
    )
