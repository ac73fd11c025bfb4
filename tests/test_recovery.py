"""Recovery by leases, with real processes (the embedded broker, `genreq worker`
processes, a SQLite file): a worker killed whole, a pool process killed, a worker
paused past its lease and resumed. No `requeue`, no other command: the live workers'
expiry scans send the tracks again. Every result write is counted by a trigger in the
database, so "exactly once" is what the database saw, not what the rows look like."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from helpers import genreq, wait_until_finished
from test_faults import make_library, pool_pids

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


class Database:
    """The test's database, read with SQLAlchemy (SQLite file or PostgreSQL alike)."""

    def __init__(self, url: str):
        from sqlalchemy import create_engine

        from genreq.db.session import normalize_url

        self.url = url
        self.engine = create_engine(normalize_url(url))
        self.postgres = self.engine.dialect.name == "postgresql"

    def rows(self, sql: str) -> list[tuple]:
        from sqlalchemy import text

        with self.engine.begin() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]

    def count_writes(self) -> None:
        """Record every write of a result (a row set to done, failed or skipped) in a
        table of its own, so that a duplicate write shows even when it wrote the same
        values."""
        from sqlalchemy import text

        if self.postgres:
            statements = [
                "CREATE TABLE result_writes (track_id INTEGER, state TEXT)",
                "CREATE FUNCTION count_result_write() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN INSERT INTO result_writes VALUES (NEW.id, NEW.state);"
                " RETURN NULL; END $$",
                "CREATE TRIGGER count_result_writes AFTER UPDATE ON tracks FOR EACH ROW"
                " WHEN (NEW.state IN ('done', 'failed', 'skipped'))"
                " EXECUTE FUNCTION count_result_write()",
            ]
        else:
            statements = [
                "CREATE TABLE result_writes (track_id INTEGER, state TEXT)",
                "CREATE TRIGGER count_result_writes AFTER UPDATE ON tracks"
                " WHEN NEW.state IN ('done', 'failed', 'skipped')"
                " BEGIN INSERT INTO result_writes VALUES (NEW.id, NEW.state); END",
            ]
        with self.engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))

    def close(self) -> None:
        """Drop what count_writes made (a shared PostgreSQL database outlives the test,
        and `alembic check` there would take it for drift)."""
        from sqlalchemy import text

        if self.postgres:
            with self.engine.begin() as connection:
                connection.execute(text("DROP TRIGGER IF EXISTS count_result_writes ON tracks"))
                connection.execute(text("DROP FUNCTION IF EXISTS count_result_write()"))
                connection.execute(text("DROP TABLE IF EXISTS result_writes"))
        self.engine.dispose()


@pytest.fixture
def sqlite_db(genreq_home):
    """The embedded SQLite file, its result writes counted."""
    from genreq import config

    genreq("db", "upgrade")
    db = Database(config.database_url())
    db.count_writes()
    yield db
    db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request) -> Database:
    """The embedded SQLite file, and PostgreSQL where GENREQ_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_db")
        return
    db = Database(request.getfixturevalue("postgres_url"))  # migrated, set for the workers
    db.count_writes()
    yield db
    db.close()


def assert_written_once(db: Database, n: int) -> None:
    states = dict(db.rows("SELECT state, count(*) FROM tracks GROUP BY state"))
    assert states == {"done": n}, states
    writes = db.rows("SELECT track_id, count(*) FROM result_writes GROUP BY track_id"
                     " HAVING count(*) != 1")
    assert not writes, f"tracks whose result was written other than once: {writes}"
    assert db.rows("SELECT count(*) FROM result_writes") == [(n,)]


def worker_id(worker) -> str:
    return f"{os.uname().nodename}:{worker.process.pid}"


def held_by(db: Database, worker) -> list[int]:
    return [i for (i,) in db.rows("SELECT id FROM tracks WHERE state = 'running'"
                                  f" AND claimed_by = '{worker_id(worker)}' ORDER BY id")]


def wait_until_holding(db: Database, worker, timeout_s: float = 60) -> list[int]:
    """The ids `worker` holds, once it holds some (polled: it claims a batch at a time)."""
    deadline = time.monotonic() + timeout_s
    while not (held := held_by(db, worker)):
        assert time.monotonic() < deadline, f"worker held nothing in {timeout_s} s"
        time.sleep(0.01)
    return held


def wait_for_done(db: Database, at_least: int, timeout_s: float = RECOVERY_LIMIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while db.rows("SELECT count(*) FROM tracks WHERE state = 'done'")[0][0] < at_least:
        assert time.monotonic() < deadline, f"not {at_least} done in {timeout_s} s"
        time.sleep(0.05)


def writable(db: Database) -> bool:
    """Whether SQLite's write lock is free (no writer inside a transaction)."""
    connection = sqlite3.connect(db.engine.url.database, timeout=0.5, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


def wait_done(db: Database, ids: list[int], timeout_s: float) -> float:
    """Seconds until every one of `ids` is done."""
    started = time.monotonic()
    marks = ",".join(map(str, ids))
    while db.rows(f"SELECT count(*) FROM tracks WHERE id IN ({marks}) AND state != 'done'")[0][0]:
        assert time.monotonic() - started < timeout_s, f"{ids} not done in {timeout_s} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_kill_9_whole_worker_another_takes_over_with_no_command(tmp_path, database,
                                                                start_worker):
    db = database
    make_library(tmp_path / "lib", TRACKS)
    genreq("enqueue", tmp_path / "lib")
    first = start_worker(concurrency=1)
    wait_for_done(db, 5)
    wait_until_holding(db, first)
    os.killpg(first.process.pid, signal.SIGKILL)  # main process and pool, no goodbye
    killed_at = time.monotonic()
    first.process.wait(30)
    held = held_by(db, first)
    assert held, "the dead worker's claims stay, under its lease"
    second = start_worker(concurrency=1)
    wait_until_finished(TRACKS, timeout_s=RECOVERY_LIMIT_S, worker=second)
    recovery_s = time.monotonic() - killed_at
    assert recovery_s < RECOVERY_LIMIT_S
    assert_written_once(db, TRACKS)
    # The dead worker's tracks were claimed again by the second one, once each.
    marks = ",".join(map(str, held))
    again = db.rows(f"SELECT claimed_by, attempts FROM tracks WHERE id IN ({marks})")
    assert set(again) == {(worker_id(second), 2)}, again
    assert len(held) <= BATCH
    assert "lease ran out" in second.log()


def test_kill_9_pool_process_its_worker_sends_the_tracks_again(tmp_path, sqlite_db,
                                                               start_worker):
    db = sqlite_db
    make_library(tmp_path / "lib", TRACKS)
    genreq("enqueue", tmp_path / "lib")
    worker = start_worker(concurrency=1)
    wait_for_done(db, 5)
    wait_until_holding(db, worker)
    (pool,) = pool_pids(worker.process.pid)
    os.kill(pool, signal.SIGKILL)
    held = held_by(db, worker)  # before the new pool process claims anything
    assert held
    # Celery replaces the pool process and redelivers the lost message, which finds
    # its tracks under the dead process's live lease and leaves them; the lease runs
    # out and the new pool process's expiry scan sends them again.
    recovery_s = wait_done(db, held, RECOVERY_LIMIT_S)
    assert recovery_s < RECOVERY_LIMIT_S
    wait_until_finished(TRACKS, timeout_s=RECOVERY_LIMIT_S, worker=worker)
    assert_written_once(db, TRACKS)
    attempts = dict(db.rows("SELECT id, attempts FROM tracks WHERE attempts > 1"))
    assert set(attempts) <= set(held) and set(attempts.values()) <= {2}, attempts
    assert pool_pids(worker.process.pid) != [pool]


def test_a_worker_paused_past_its_lease_writes_nothing_when_resumed(tmp_path, sqlite_db,
                                                                    start_worker):
    """SIGSTOP a worker (all its processes) while it holds tracks, until the other
    worker has taken them over and finished them; SIGCONT: the paused one finishes its
    classification, finds its claim taken over, and writes nothing."""
    db = sqlite_db
    make_library(tmp_path / "lib", TRACKS)
    genreq("enqueue", tmp_path / "lib")
    paused, other = start_worker(concurrency=1), start_worker(concurrency=1)
    wait_for_done(db, 5)
    # Stop it while it holds claims (it holds none between two messages), and not inside
    # a transaction: a writer frozen there holds SQLite's write lock, and every other
    # writer would wait for it (docs/architecture.md, Reliability).
    while True:
        wait_until_holding(db, paused)
        os.killpg(paused.process.pid, signal.SIGSTOP)
        if (held := held_by(db, paused)) and writable(db):
            break
        os.killpg(paused.process.pid, signal.SIGCONT)
    try:
        taken_over_s = wait_done(db, held, RECOVERY_LIMIT_S)
        assert taken_over_s > LEASE_S - HEARTBEAT_S  # not before the lease ran out
        taken = db.rows("SELECT DISTINCT claimed_by FROM tracks WHERE id IN "
                        f"({','.join(map(str, held))})")
        assert taken == [(worker_id(other),)]
    finally:
        os.killpg(paused.process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while "result not written" not in paused.log():
        assert time.monotonic() < deadline, f"no lease-lost write in:\n{paused.log()}"
        time.sleep(0.2)
    wait_until_finished(TRACKS, timeout_s=RECOVERY_LIMIT_S, worker=other)
    assert_written_once(db, TRACKS)
    assert paused.process.poll() is None, "the resumed worker lives on"


# A process that takes one message off genreq's queue as a worker's consumer does (late
# ack: the message waits in the broker's unacknowledged set) and is then killed before
# it claims anything.
FETCH_AND_HANG = """
import time
from genreq.worker.app import QUEUE, app
with app.connection_for_read() as connection:
    queue = connection.SimpleQueue(QUEUE, no_ack=False)
    message = queue.get(timeout=60)
    print(message.headers.get("argsrepr"), flush=True)
    time.sleep(600)
"""


def test_a_message_fetched_by_a_worker_killed_before_its_claim_comes_back(tmp_path, sqlite_db,
                                                                          start_worker):
    """Its tracks are still queued, with no lease to run out: the broker hands the
    message out again after its (short) visibility timeout."""
    from genreq.worker.app import RESTORE_INTERVAL_S, VISIBILITY_TIMEOUT_S

    db = sqlite_db
    make_library(tmp_path / "lib", 20)
    genreq("enqueue", tmp_path / "lib")
    thief = subprocess.Popen([sys.executable, "-c", FETCH_AND_HANG], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
    fetched = thief.stdout.readline()
    assert fetched, "no message fetched"
    thief.kill()
    thief.wait(30)
    killed_at = time.monotonic()
    worker = start_worker(concurrency=1)
    wait_until_finished(20, timeout_s=RECOVERY_LIMIT_S, worker=worker)
    recovery_s = time.monotonic() - killed_at
    assert_written_once(db, 20)
    # not by chance: only the visibility timeout can have brought it back
    assert VISIBILITY_TIMEOUT_S - 5 < recovery_s < VISIBILITY_TIMEOUT_S + 3 * RESTORE_INTERVAL_S
