"""Leases, the worker's side: who this worker is, the claims a process is working on,
the heartbeat that renews them, and the expiry scan that sends again the tracks of
workers that stopped renewing theirs (genreq.db.work has the statements).

Each pool process runs one daemon thread (started by worker_process_init, after the
fork, so no thread crosses a fork) that every config.heartbeat_s():

- renews the lease of the tracks it holds (work.renew), so a track takes as long as it
  takes while its process lives. A process that stops (SIGKILL, SIGSTOP, a frozen host)
  stops renewing with it, which is the point: the heartbeat lives in the process that
  does the work, not in a supervisor that would outlive it;
- queues again the running tracks whose lease ran out, in the whole database, and sends
  each as a one-track message (resend_expired). The statement hands each expired track
  to one scanner, however many workers scan;
- on PostgreSQL, folds the count deltas in once more than counts.COMPACT_AFTER_DELTAS
  wait (fold_count_deltas), so that a long run nobody watches with `status` does not
  leave the next `status` a million deltas to fold.

A dead worker's tracks are thus sent again within lease_s + heartbeat_s of its last
renewal, with no command. `genreq run` scans too while it waits.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
from collections.abc import Iterator

from genreq import config
from genreq.db import counts, work
from genreq.db.session import session_scope, transaction

log = logging.getLogger(__name__)

# Tracks queued again per scan statement; a longer backlog of expired leases takes
# more scans.
EXPIRY_SCAN_LIMIT = 1000

_worker_id: str | None = None
_held: set[str] = set()  # claim tokens this process is working under
_held_lock = threading.Lock()
_heartbeat_pid: int | None = None  # the process whose heartbeat thread runs


def set_worker_id(pid: int | None = None) -> str:
    """Name this worker host:pid (`pid` its main process, default this one), before the
    pool forks, so every pool process's claims carry the main process's id."""
    global _worker_id
    _worker_id = f"{socket.gethostname()}:{pid or os.getpid()}"
    return _worker_id


def worker_id() -> str:
    return _worker_id or f"{socket.gethostname()}:{os.getpid()}"


def new_claim() -> work.Claim:
    return work.new_claim(worker_id(), config.lease_s())


@contextlib.contextmanager
def holding(claim: work.Claim) -> Iterator[work.Claim]:
    """Renew `claim`'s lease from this process's heartbeat while the block runs."""
    with _held_lock:
        _held.add(claim.token)
    try:
        yield claim
    finally:
        with _held_lock:
            _held.discard(claim.token)


def renew_held() -> int:
    """One heartbeat: extend the leases of the tracks this process holds."""
    with _held_lock:
        tokens = set(_held)
    if not tokens:
        return 0
    with transaction() as db:
        return work.renew(db, tokens, config.lease_s())


def resend_expired(producer=None) -> list[int]:
    """Queue again the running tracks whose lease ran out and send each to the workers
    in a message of its own (a file that killed its worker is retried alone, so it
    cannot use up the attempts of tracks that shared its batch). Their ids.

    Committed before sent: a scanner that dies in between leaves them queued, which
    `genreq requeue` (or the next enqueue of the library) sends."""
    from genreq.worker.app import CLASSIFY_TASK, app

    resent: list[int] = []
    while True:
        with transaction() as db:
            expired = work.expire_leases(db, limit=EXPIRY_SCAN_LIMIT)
        if not expired:
            break
        log.warning("lease ran out on %d track(s) (worker gone or paused); sending "
                    "them again: %s", len(expired), _ids(expired))
        with app.producer_or_acquire(producer) as pool_producer:
            for track_id in expired:
                app.send_task(CLASSIFY_TASK, args=[track_id], producer=pool_producer)
        resent += expired
        if len(expired) < EXPIRY_SCAN_LIMIT:
            break
    return resent


def fold_count_deltas() -> bool:
    """One heartbeat's compaction (counts.maybe_compact): whether it folded the deltas
    in. Nothing on SQLite, whose triggers keep the counts themselves."""
    with session_scope() as session:
        return counts.maybe_compact(session)


def _ids(track_ids: list[int], most: int = 10) -> str:
    shown = ", ".join(map(str, track_ids[:most]))
    return shown + (f" and {len(track_ids) - most} more" if len(track_ids) > most else "")


def _heartbeat_loop(interval_s: float, stop: threading.Event) -> None:
    # Spread the processes' beats over the interval instead of all at once.
    if stop.wait(random.uniform(0, interval_s)):
        return
    while True:
        for step in (renew_held, resend_expired, fold_count_deltas):
            try:
                step()
            except Exception:  # a database or broker blip: the next beat tries again
                log.warning("lease %s failed; trying again in %.0f s", step.__name__,
                            interval_s, exc_info=True)
        if stop.wait(interval_s):
            return


def start_heartbeat() -> threading.Event | None:
    """Start this process's heartbeat thread (once per process); an event that stops
    it. None when it already runs."""
    global _heartbeat_pid
    if _heartbeat_pid == os.getpid():
        return None
    _heartbeat_pid = os.getpid()
    with _held_lock:
        _held.clear()  # what a parent held is not this process's
    stop = threading.Event()
    threading.Thread(target=_heartbeat_loop, args=(config.heartbeat_s(), stop),
                     name="genreq-heartbeat", daemon=True).start()
    return stop
