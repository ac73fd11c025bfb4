"""Recovery by leases, with real processes (the embedded broker, `genreq worker`
processes, a SQLite file): a worker killed whole, a pool process killed, a worker
paused past its lease and resumed. No `requeue`, no other command: the live workers'
expiry scans send the tracks again. Every result write is counted by a trigger in the
database, so "exactly once" is what the database saw, not what the rows look like."""
from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import genreq, wait_until_finished
from test_faults import make_library, pool_pids, query, wait_for_done

from genreq.worker.app import task_batches

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRACKS = 40
BATCH = len(next(task_batches(range(TRACKS))))  # what a killed worker has in its hands
# Short leases, so that each test waits seconds for a lease to run out; long enough that
# a live worker on a busy machine renews in time (a beat every 1.5 s, three missed).
LEASE_S = 6
HEARTBEAT_S = 1.5
# The guarantee: a dead worker's tracks are done within two minutes, with no command.
RECOVERY_LIMIT_S = 120


@pytest.fixture(autouse=True)
def short_leases(monkeypatch):
    monkeypatch.setenv("GENREQ_LEASE_S", str(LEASE_S))
    monkeypatch.setenv("GENREQ_HEARTBEAT_S", str(HEARTBEAT_S))


def count_writes(home: Path) -> None:
    """Record every write of a result (a row set to done, failed or skipped) in a table
    of its own, so that a duplicate write shows even when it wrote the same values."""
    with sqlite3.connect(home / "genreq.db", timeout=30) as db:
        db.executescript("""
            CREATE TABLE result_writes (track_id INTEGER, state TEXT);
            CREATE TRIGGER count_result_writes AFTER UPDATE ON tracks
            WHEN NEW.state IN ('done', 'failed', 'skipped')
            BEGIN INSERT INTO result_writes VALUES (NEW.id, NEW.state); END;
        """)


def assert_written_once(home: Path, n: int) -> None:
    states = dict(query(home, "SELECT state, count(*) FROM tracks GROUP BY state"))
    assert states == {"done": n}, states
    writes = query(home, "SELECT track_id, count(*) FROM result_writes GROUP BY track_id"
                         " HAVING count(*) != 1")
    assert not writes, f"tracks whose result was written other than once: {writes}"
    (total,) = query(home, "SELECT count(*) FROM result_writes")[0]
    assert total == n


def worker_id(worker) -> str:
    return f"{os.uname().nodename}:{worker.process.pid}"


def held_by(home: Path, worker) -> list[int]:
    return [i for (i,) in query(home, "SELECT id FROM tracks WHERE state = 'running'"
                                      f" AND claimed_by = '{worker_id(worker)}'")]


def wait_until_holding(home: Path, worker, timeout_s: float = 60) -> list[int]:
    """The ids `worker` holds, once it holds some (polled: it claims a batch at a time)."""
    deadline = time.monotonic() + timeout_s
    while not (held := held_by(home, worker)):
        assert time.monotonic() < deadline, f"worker held nothing in {timeout_s} s"
        time.sleep(0.01)
    return held


def writable(home: Path) -> bool:
    """Whether the database's write lock is free (no writer inside a transaction)."""
    db = sqlite3.connect(home / "genreq.db", timeout=0.5, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def wait_done(home: Path, ids: list[int], timeout_s: float) -> float:
    """Seconds until every one of `ids` is done."""
    started = time.monotonic()
    marks = ",".join(map(str, ids))
    while query(home, f"SELECT count(*) FROM tracks WHERE id IN ({marks})"
                      " AND state != 'done'")[0][0]:
        assert time.monotonic() - started < timeout_s, f"{ids} not done in {timeout_s} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_kill_9_whole_worker_another_takes_over_with_no_command(tmp_path, genreq_home,
                                                                start_worker):
    make_library(tmp_path / "lib", TRACKS)
    genreq("enqueue", tmp_path / "lib")
    count_writes(genreq_home)
    first = start_worker(concurrency=1)
    wait_for_done(genreq_home, 5)
    wait_until_holding(genreq_home, first)
    os.killpg(first.process.pid, signal.SIGKILL)  # main process and pool, no goodbye
    killed_at = time.monotonic()
    first.process.wait(30)
    held = held_by(genreq_home, first)
    assert held, "the dead worker's claims stay, under its lease"
    second = start_worker(concurrency=1)
    wait_until_finished(TRACKS, timeout_s=RECOVERY_LIMIT_S, worker=second)
    recovery_s = time.monotonic() - killed_at
    assert recovery_s < RECOVERY_LIMIT_S
    assert_written_once(genreq_home, TRACKS)
    # The dead worker's tracks were claimed again by the second one, once each.
    marks = ",".join(map(str, held))
    again = query(genreq_home, f"SELECT claimed_by, attempts FROM tracks WHERE id IN ({marks})")
    assert set(again) == {(worker_id(second), 2)}, again
    assert len(held) <= BATCH
    assert "lease ran out" in second.log()


def test_kill_9_pool_process_its_worker_sends_the_tracks_again(tmp_path, genreq_home,
                                                               start_worker):
    make_library(tmp_path / "lib", TRACKS)
    genreq("enqueue", tmp_path / "lib")
    count_writes(genreq_home)
    worker = start_worker(concurrency=1)
    wait_for_done(genreq_home, 5)
    wait_until_holding(genreq_home, worker)
    (pool,) = pool_pids(worker.process.pid)
    os.kill(pool, signal.SIGKILL)
    held = held_by(genreq_home, worker)  # before the new pool process claims anything
    assert held
    # Celery replaces the pool process and redelivers the lost message, which finds
    # its tracks under the dead process's live lease and leaves them; the lease runs
    # out and the new pool process's expiry scan sends them again.
    recovery_s = wait_done(genreq_home, held, RECOVERY_LIMIT_S)
    assert recovery_s < RECOVERY_LIMIT_S
    wait_until_finished(TRACKS, timeout_s=RECOVERY_LIMIT_S, worker=worker)
    assert_written_once(genreq_home, TRACKS)
    attempts = dict(query(genreq_home, "SELECT id, attempts FROM tracks WHERE attempts > 1"))
    assert set(attempts) <= set(held) and set(attempts.values()) <= {2}, attempts
    assert pool_pids(worker.process.pid) != [pool]


def test_a_worker_paused_past_its_lease_writes_nothing_when_resumed(tmp_path, genreq_home,
                                                                    start_worker):
    """SIGSTOP a worker (all its processes) while it holds tracks, until the other
    worker has taken them over and finished them; SIGCONT: the paused one finishes its
    classification, finds its claim taken over, and writes nothing."""
    make_library(tmp_path / "lib", TRACKS)
    genreq("enqueue", tmp_path / "lib")
    count_writes(genreq_home)
    paused, other = start_worker(concurrency=1), start_worker(concurrency=1)
    wait_for_done(genreq_home, 5)
    # Stop it while it holds claims (it holds none between two messages), and not inside
    # a transaction: a writer frozen there holds SQLite's write lock, and every other
    # writer would wait for it (docs/architecture.md, Reliability).
    while True:
        wait_until_holding(genreq_home, paused)
        os.killpg(paused.process.pid, signal.SIGSTOP)
        if (held := held_by(genreq_home, paused)) and writable(genreq_home):
            break
        os.killpg(paused.process.pid, signal.SIGCONT)
    try:
        taken_over_s = wait_done(genreq_home, held, RECOVERY_LIMIT_S)
        assert taken_over_s > LEASE_S  # not before the lease ran out
        taken = query(genreq_home, "SELECT DISTINCT claimed_by FROM tracks WHERE id IN "
                                   f"({','.join(map(str, held))})")
        assert taken == [(worker_id(other),)]
    finally:
        os.killpg(paused.process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while "result not written" not in paused.log():
        assert time.monotonic() < deadline, f"no lease-lost write in:\n{paused.log()}"
        time.sleep(0.2)
    wait_until_finished(TRACKS, timeout_s=RECOVERY_LIMIT_S, worker=other)
    assert_written_once(genreq_home, TRACKS)
    assert paused.process.poll() is None, "the resumed worker lives on"
