"""PostgreSQL's counts as append-only deltas (migration 3f8a2c61d9e4, genreq.db.counts):
equal to counting the tracks through inserts, state and genre changes, deletes, requeue
and compaction; parallel writers and a compaction never wait on each other; the
migration counts an existing library and goes down cleanly. Real PostgreSQL
(GENREQ_TEST_POSTGRES_URL); skipped without it."""
from __future__ import annotations

import pytest
from helpers import add_track
from sqlalchemy import delete, insert, text, update
from test_counts import counted, kept, stamp

from genreq.db import counts, migrate, queue, status
from genreq.db.models import State, Track
from genreq.db.session import get_engine, session_scope

pytestmark = pytest.mark.postgres

BEFORE = "195753152286"  # the revision before the deltas
# A writer that had to wait on another's lock fails after this instead of hanging.
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '2s'"


def deltas(url: str) -> int:
    with session_scope(url) as s:
        return counts.count_deltas(s)


def compact(url: str) -> bool:
    with get_engine(url).begin() as connection:
        return counts.compact(connection)


def triggers(url: str) -> set[str]:
    with get_engine(url).connect() as connection:
        return set(connection.scalars(text(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'tracks'::regclass "
            "AND NOT tgisinternal")))


def test_counts_follow_writes_and_compaction(postgres_url):
    url = postgres_url
    assert kept(url) == counted(url) == [] and deltas(url) == 0
    with session_scope(url) as s:
        ids = [add_track(s, f"/{i}.mp3").id for i in range(5)]
        add_track(s, "/done.mp3", state="done", genre="jazz")
    assert kept(url) == counted(url) == [("done", "jazz", 1), ("queued", None, 5)]
    assert deltas(url) == 6 and stamp(url) == 1  # one inserted done

    with session_scope(url) as s:  # state changes, a genre change, a failure
        s.execute(update(Track).where(Track.id.in_(ids[:3])).values(state=State.running))
        s.execute(update(Track).where(Track.id == ids[0])
                  .values(state=State.done, genre="rock"))
        s.execute(update(Track).where(Track.path == "/done.mp3").values(genre="blues"))
        s.execute(update(Track).where(Track.id == ids[1]).values(state=State.failed))
        s.execute(update(Track).where(Track.id == ids[4]).values(title="T"))  # no delta
    assert kept(url) == counted(url)
    assert ("done", "blues", 1) in kept(url) and ("done", "jazz", 1) not in kept(url)
    assert stamp(url) == 2  # ids[0] became done; a genre alone does not change embeddings

    assert compact(url)
    assert deltas(url) == 0
    assert kept(url) == counted(url) and stamp(url) == 2  # folded, not lost nor doubled

    with session_scope(url) as s:  # requeue the failed one, delete a done one
        assert queue.reset_for_requeue(s, failed=True).failed == 1
        s.execute(delete(Track).where(Track.path == "/done.mp3"))
    assert kept(url) == counted(url)
    assert ("done", "blues", 0) not in kept(url)  # a (state, genre) gone empty
    assert stamp(url) == 3

    with session_scope(url) as s:  # a reader folds them in only past its threshold
        assert not counts.maybe_compact(s, most=100)
        assert counts.maybe_compact(s, most=0)
    assert deltas(url) == 0 and kept(url) == counted(url) and stamp(url) == 3
    with session_scope(url) as s:
        result = status.status(s)
    assert (result.queued, result.running, result.done) == (3, 1, 1)
    assert result.genres == {"rock": 1}


def test_parallel_writers_do_not_wait_on_each_other(postgres_url):
    """Two transactions each moving a different track from the same (state, genre) to
    the same other one: with one counter row per (state, genre) the second would wait
    on the first's row lock until it committed (here: fail after LOCK_TIMEOUT)."""
    url = postgres_url
    with session_scope(url) as s:
        first, second = (add_track(s, f"/{i}.mp3").id for i in range(2))
    engine = get_engine(url)
    with engine.connect() as a, engine.connect() as b:
        for connection, track_id in ((a, first), (b, second)):
            connection.execute(text(LOCK_TIMEOUT))
            connection.execute(update(Track).where(Track.id == track_id)
                               .values(state=State.done, genre="jazz"))
        # Both wrote while the other is open; both commit.
        a.commit()
        b.commit()
    assert kept(url) == counted(url) == [("done", "jazz", 2)]
    assert stamp(url) == 2


def test_compaction_blocks_no_writer_and_runs_one_at_a_time(postgres_url):
    url = postgres_url
    with session_scope(url) as s:
        add_track(s, "/a.mp3")
    engine = get_engine(url)
    with engine.connect() as compacting:
        assert counts.compact(compacting)  # open: holds the lock and the base rows
        with engine.connect() as writer:  # a write meanwhile appends and commits
            writer.execute(text(LOCK_TIMEOUT))
            add = Track.__table__.insert().values(path="/b.mp3", size_bytes=1, mtime_ns=1,
                                                  state=State.queued, attempts=0)
            writer.execute(add)
            writer.commit()
        with engine.connect() as other:  # a second compaction gives way at once
            other.execute(text(LOCK_TIMEOUT))
            assert not counts.compact(other)
            other.rollback()
        compacting.commit()
    assert deltas(url) == 1  # the write the compaction did not see
    assert kept(url) == counted(url) == [("queued", None, 2)]
    assert compact(url) and deltas(url) == 0 and kept(url) == counted(url)


def test_migration_counts_an_existing_library_and_goes_down(postgres_url):
    url = postgres_url
    migrate.downgrade(url, BEFORE)  # the counts untracked: rows written meanwhile
    assert not {"tracks_counts_insert", "tracks_embeddings_update"} & triggers(url)
    with session_scope(url) as s:
        add_track(s, "/a.mp3", state="done", genre="jazz")
        add_track(s, "/b.mp3", state="done", genre="jazz")
        add_track(s, "/c.mp3")
    migrate.upgrade(url)
    assert kept(url) == counted(url) == [("done", "jazz", 2), ("queued", None, 1)]
    assert deltas(url) == 0
    first = stamp(url)
    with session_scope(url) as s:
        s.execute(update(Track).where(Track.path == "/c.mp3")
                  .values(state=State.done, genre="rock"))
    assert kept(url) == counted(url) and stamp(url) == first + 1

    migrate.downgrade(url, BEFORE)
    assert not {"tracks_counts_insert", "tracks_counts_update", "tracks_counts_delete",
                "tracks_embeddings_insert", "tracks_embeddings_update",
                "tracks_embeddings_delete"} & triggers(url)
    with get_engine(url).begin() as connection:
        # The tables gone, their functions too; the base rows empty as before.
        assert connection.scalar(text(
            "SELECT count(*) FROM pg_proc WHERE proname IN "
            "('tracks_count_deltas', 'tracks_embeddings_delta')")) == 0
        assert connection.scalar(text("SELECT to_regclass('track_count_deltas')")) is None
        assert connection.scalar(text("SELECT count(*) FROM track_counts")) == 0
    with session_scope(url) as s:  # writes go on without triggers naming what is gone
        add_track(s, "/d.mp3")
        s.execute(delete(Track).where(Track.path == "/a.mp3"))
    migrate.upgrade(url)
    assert kept(url) == counted(url)


def test_a_reader_that_may_not_write_still_reads(postgres_url, caplog):
    url = postgres_url
    with session_scope(url) as s:
        for i in range(3):
            add_track(s, f"/{i}.mp3")
    # Every transaction of this URL's connections read-only, as on a standby.
    read_only = f"{url}?options=-c%20default_transaction_read_only%3Don"
    with session_scope(read_only) as s:
        assert not counts.maybe_compact(s, most=0)
        assert status.status(s).queued == 3
    assert "not folded in" in caplog.text
    assert deltas(url) == 3  # left for a reader that may write



def test_the_worker_heartbeat_folds_the_deltas_in(postgres_url):
    """A run that nobody watches with `status` leaves no backlog of deltas: the pool
    processes' heartbeat folds them in once more than COMPACT_AFTER_DELTAS wait."""
    from genreq.worker import leases

    url = postgres_url
    assert not leases.fold_count_deltas()  # nothing waiting
    with session_scope(url) as s:
        s.execute(insert(Track), [
            {"path": f"/{i}.mp3", "size_bytes": 1, "mtime_ns": 1, "state": State.queued}
            for i in range(counts.COMPACT_AFTER_DELTAS + 1)])
    assert deltas(url) == counts.COMPACT_AFTER_DELTAS + 1
    assert leases.fold_count_deltas()
    assert deltas(url) == 0 and kept(url) == counted(url)
