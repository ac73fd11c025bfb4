"""Fault tests with real processes: a worker killed with SIGKILL, the broker killed and
restarted, Ctrl-C during `genreq run`, concurrent enqueues, several workers and a
locked SQLite file. After each, every track is done exactly once: nothing lost, no
result twice, nothing stuck in `running`."""
from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import GENREQ, genreq, wait_until_finished

from genreq.worker.app import task_batches

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRACKS = 60
# Tracks per message for a library of TRACKS: what a killed worker had in its hands.
BATCH = len(next(task_batches(range(TRACKS))))
RATE = 22050
TIMEOUT_S = 180


def make_library(root: Path, n: int = TRACKS, seconds: float = 30.0) -> list[Path]:
    """n 30-s tracks (copies of one synthesized clip: the model's work is real)."""
    root.mkdir(parents=True)
    t = np.arange(int(seconds * RATE)) / RATE
    clip = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    first = root / "track 000.wav"
    sf.write(first, clip, RATE)
    paths = [first]
    for i in range(1, n):
        paths.append(root / f"track {i:03d}.wav")
        shutil.copyfile(first, paths[-1])
    return paths


def db_path(home: Path) -> Path:
    return home / "genreq.db"


def query(home: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path(home), timeout=30) as connection:
        return connection.execute(sql).fetchall()


def done_count(home: Path) -> int:
    if not db_path(home).exists():
        return 0
    try:
        return query(home, "SELECT count(*) FROM tracks WHERE state = 'done'")[0][0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def wait_for_done(home: Path, at_least: int, timeout_s: float = TIMEOUT_S) -> int:
    deadline = time.monotonic() + timeout_s
    while (done := done_count(home)) < at_least:
        assert time.monotonic() < deadline, f"only {done} done after {timeout_s} s"
        time.sleep(0.05)
    return done


def assert_each_done_once(home: Path, n: int, retried_at_most: int) -> None:
    """Every track done, one row each, none running; at most `retried_at_most` tracks
    were claimed twice (the batch in a killed worker's hands), none more than twice."""
    states = dict(query(home, "SELECT state, count(*) FROM tracks GROUP BY state"))
    assert states == {"done": n}, states
    # each done track has its one result: claimed first, then the model's full vector
    incomplete = query(home, "SELECT path FROM tracks WHERE attempts < 1 OR genre IS NULL"
                             " OR probs IS NULL OR started_at IS NULL OR finished_at IS NULL")
    assert not incomplete, f"done without a complete result: {incomplete}"
    attempts = [a for (a,) in query(home, "SELECT attempts FROM tracks")]
    assert max(attempts) <= 2, attempts
    assert sum(a > 1 for a in attempts) <= retried_at_most, attempts


def pool_pids(worker_pid: int) -> list[int]:
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def test_kill_9_pool_process_mid_run(tmp_path, genreq_home, start_worker):
    make_library(tmp_path / "lib")
    genreq("enqueue", tmp_path / "lib")
    worker = start_worker(concurrency=1)
    wait_for_done(genreq_home, 10)
    (pool,) = pool_pids(worker.process.pid)
    os.kill(pool, signal.SIGKILL)
    # Celery replaces the pool process. The redelivered message finds its tracks still
    # leased by the dead process, so they come back through the heartbeat's lease scan
    # once the lease runs out, and are claimed again under a new token.
    wait_until_finished(TRACKS, timeout_s=TIMEOUT_S, worker=worker)
    assert_each_done_once(genreq_home, TRACKS, retried_at_most=BATCH)
    assert pool_pids(worker.process.pid) != [pool]


def test_kill_9_whole_worker_then_requeue_stale(tmp_path, genreq_home, start_worker):
    make_library(tmp_path / "lib")
    genreq("enqueue", tmp_path / "lib")
    first = start_worker(concurrency=1)
    wait_for_done(genreq_home, 10)
    os.killpg(first.process.pid, signal.SIGKILL)  # main process and pool, no goodbye
    first.process.wait(30)
    # The track in the dead worker's hands stays `running` and its message unacked:
    # the database says what is owed.
    (running,) = query(genreq_home, "SELECT count(*) FROM tracks WHERE state = 'running'")[0]
    assert running <= BATCH
    queued = TRACKS - done_count(genreq_home) - running
    result = genreq("requeue", "--stale", "--older-than", "0")
    assert result.stderr.strip() == (
        f"sent {queued + running} · stale running requeued {running} · failed requeued 0")
    second = start_worker(concurrency=1)
    wait_until_finished(TRACKS, timeout_s=TIMEOUT_S, worker=second)
    assert_each_done_once(genreq_home, TRACKS, retried_at_most=BATCH)


def test_broker_killed_and_restarted_mid_run(tmp_path, genreq_home, start_worker):
    from genreq.worker import broker

    make_library(tmp_path / "lib")
    genreq("enqueue", tmp_path / "lib")
    worker = start_worker(concurrency=1)
    wait_for_done(genreq_home, 10)
    pid = int((genreq_home / "broker" / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # a crash, not a clean shutdown: up to 1 s of the AOF lost
    while broker.is_running(genreq_home):
        time.sleep(0.05)
    time.sleep(1.0)
    assert broker.ensure_running(genreq_home)
    # Whatever the broker lost, the database still has as queued: send it again.
    genreq("requeue", "--stale")
    wait_until_finished(TRACKS, timeout_s=TIMEOUT_S, worker=worker)
    assert_each_done_once(genreq_home, TRACKS, retried_at_most=BATCH)
    assert worker.process.poll() is None, "the worker must reconnect, not exit"


def test_ctrl_c_during_run_then_run_again(tmp_path, genreq_home):
    make_library(tmp_path / "lib")
    run = subprocess.Popen([*GENREQ, "run", str(tmp_path / "lib"), "--workers", "1"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        done_before = wait_for_done(genreq_home, 10)
        run.send_signal(signal.SIGINT)
        _out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0
    assert "Traceback" not in err, err
    assert not list((genreq_home / "workers").glob("*.json")), "workers left behind"
    finished = dict(query(genreq_home, "SELECT path, finished_at FROM tracks WHERE state = 'done'"))
    assert done_before <= len(finished) < TRACKS

    result = genreq("run", tmp_path / "lib", "--workers", "1", timeout=TIMEOUT_S)
    assert f"already known {len(finished)}" in result.stderr
    assert_each_done_once(genreq_home, TRACKS, retried_at_most=0)
    # Finished tracks were not done again.
    again = dict(query(genreq_home, "SELECT path, finished_at FROM tracks"))
    assert {p: again[p] for p in finished} == finished


def test_concurrent_enqueues_make_no_duplicates(tmp_path, genreq_home):
    lib = tmp_path / "lib"
    lib.mkdir()
    n = 3000  # several batches each, so the two walks overlap
    for i in range(n):
        (lib / f"{i:05d}.wav").write_bytes(b"")
    genreq("db", "upgrade")
    env = {**os.environ}
    procs = [subprocess.Popen([*GENREQ, "enqueue", str(lib)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    # every file got its row, and each row was inserted by one enqueue only: the loser of
    # an insert race must count those files as known, not queue them a second time
    stored = sorted(path for (path,) in query(genreq_home, "SELECT path FROM tracks"))
    assert stored == sorted(str(p) for p in lib.iterdir())
    queued = [int(re.findall(r"^queued (\d+)", err, re.M)[-1]) for _out, err in outputs]
    assert sum(queued) == n, [err.splitlines()[-1] for _out, err in outputs]


def test_several_workers_and_a_locked_database(tmp_path, genreq_home, start_worker):
    make_library(tmp_path / "lib")
    genreq("enqueue", tmp_path / "lib")
    workers = [start_worker(concurrency=2), start_worker(concurrency=2)]
    wait_for_done(genreq_home, 5)
    # Another program holds the write lock for 3 s mid-run: writers wait (busy_timeout),
    # and a task that still cannot write retries; none fails a track.
    locker = sqlite3.connect(db_path(genreq_home), timeout=30)
    locker.execute("BEGIN EXCLUSIVE")
    time.sleep(3.0)
    locker.rollback()
    locker.close()
    wait_until_finished(TRACKS, timeout_s=TIMEOUT_S, worker=workers[0])
    assert_each_done_once(genreq_home, TRACKS, retried_at_most=0)
    for worker in workers:
        assert "database is locked" not in worker.log()
