"""Database queries on SQLite and PostgreSQL: idempotent upsert, claims, status, paging."""
from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import add_track

from genreq.db import queries
from genreq.db.models import State, Track, utcnow
from genreq.db.queries import FileStat
from genreq.db.session import session_scope, transaction


def stats(*specs) -> list[FileStat]:
    return [FileStat(path=p, size_bytes=s, mtime_ns=m) for p, s, m in specs]


def test_upsert_is_idempotent_on_size_and_mtime(db_url):
    with session_scope(db_url) as s:
        first = queries.upsert_tracks(s, stats(("/a.mp3", 1, 1), ("/b.mp3", 2, 2)), "batch1")
    assert len(first.queued_ids) == 2
    with session_scope(db_url) as s:
        s.execute(Track.__table__.update().values(state=State.done, genre="rock",
                                                  confidence=0.9, probs={"rock": 0.9}))
    with session_scope(db_url) as s:
        again = queries.upsert_tracks(s, stats(("/a.mp3", 1, 1), ("/b.mp3", 2, 3)), "batch2")
    assert (again.queued_ids, again.pending_ids, again.known) == ([first.queued_ids[1]], [], 1)
    with session_scope(db_url) as s:
        changed = s.get(Track, first.queued_ids[1])
        assert (changed.state, changed.genre, changed.probs, changed.mtime_ns) == (
            State.queued, None, None, 3)
        assert changed.batch_id == "batch2"
        assert s.get(Track, first.queued_ids[0]).batch_id == "batch1"


def test_upsert_sends_pending_tracks_again(db_url):
    with session_scope(db_url) as s:
        first = queries.upsert_tracks(s, stats(("/a.mp3", 1, 1)), "batch1")
    with session_scope(db_url) as s:
        again = queries.upsert_tracks(s, stats(("/a.mp3", 1, 1)), "batch2")
        assert (again.queued_ids, again.pending_ids, again.known) == ([], first.queued_ids, 0)
        assert s.get(Track, first.queued_ids[0]).batch_id == "batch2"


def test_claim_then_repeat_is_a_noop(db_url):
    with session_scope(db_url) as s:
        track_id = add_track(s, "/a.mp3").id
    with session_scope(db_url) as s:
        assert queries.claim(s, track_id, max_attempts=3) == "/a.mp3"
        track = s.get(Track, track_id)
        assert (track.state, track.attempts) == (State.running, 1)
    with transaction(db_url) as db:
        queries.record_results(db, [result(track_id, "jazz", 0.8)], "crnn", "v1")
    with session_scope(db_url) as s:
        assert queries.claim(s, track_id, max_attempts=3) is None
        assert queries.claim(s, 999_999, max_attempts=3) is None
        track = s.get(Track, track_id)
        assert (track.state, track.genre, track.attempts) == (State.done, "jazz", 1)
        assert track.top(1) == [("jazz", 0.8)]


def result(track_id: int, genre: str, confidence: float) -> queries.Result:
    return queries.Result(track_id=track_id, genre=genre, confidence=confidence,
                          probs={genre: confidence, "rock": round(1 - confidence, 4)},
                          duration_s=30.0, elapsed_s=0.1, finished_at=utcnow())


def test_claim_batch_takes_only_queued_tracks_in_one_go(db_url):
    with session_scope(db_url) as s:
        ids = [add_track(s, f"/{i}.mp3").id for i in range(4)]
        orphan = add_track(s, "/orphan.mp3", state="running", attempts=1).id
        done = add_track(s, "/done.mp3", state="done", genre="jazz").id
        spent = add_track(s, "/spent.mp3", attempts=3).id  # queued, attempts used up
    batch = [ids[2], orphan, ids[0], done, spent, ids[1], 999_999]
    with transaction(db_url) as db:
        claimed = queries.claim_batch(db, batch, max_attempts=3)
        assert claimed == {ids[2]: "/2.mp3", ids[0]: "/0.mp3", ids[1]: "/1.mp3"}  # batch order
        # What the batch leaves to one-track tasks: the orphan and the spent one.
        assert queries.pending_among(db, set(batch) - claimed.keys()) == [orphan, spent]
    with transaction(db_url) as db:
        assert queries.claim_batch(db, batch, max_attempts=3) == {}  # now running
    with session_scope(db_url) as s:
        assert [(s.get(Track, i).state, s.get(Track, i).attempts) for i in ids] == [
            (State.running, 1), (State.running, 1), (State.running, 1), (State.queued, 0)]


def test_record_results_writes_each_row_of_a_batch(db_url):
    with session_scope(db_url) as s:
        ids = [add_track(s, f"/{i}.mp3", state="running").id for i in range(3)]
    with transaction(db_url) as db:
        queries.record_results(db, [result(ids[0], "jazz", 0.7), result(ids[2], "metal", 0.9)],
                               "crnn", "v2")
    with session_scope(db_url) as s:
        rows = [s.get(Track, i) for i in ids]
        assert [(t.state, t.genre, t.confidence) for t in rows] == [
            (State.done, "jazz", 0.7), (State.running, None, None), (State.done, "metal", 0.9)]
        assert rows[2].probs == {"metal": 0.9, "rock": 0.1}
        assert (rows[0].model_name, rows[0].model_version, rows[0].elapsed_s) == ("crnn", "v2", 0.1)


def test_claim_gives_up_after_max_attempts(db_url):
    with session_scope(db_url) as s:
        track_id = add_track(s, "/killer.mp3", state="running", attempts=3).id
    with session_scope(db_url) as s:
        assert queries.claim(s, track_id, max_attempts=3) is None
    with session_scope(db_url) as s:
        track = s.get(Track, track_id)
        assert track.state == State.failed
        assert track.error == "/killer.mp3: gave up after 3 attempts (worker lost or timed out)"


def test_status_counts_genres_and_eta(db_url):
    now = utcnow()
    with session_scope(db_url) as s:
        for i in range(3):
            add_track(s, f"/rock{i}.mp3", "done", "rock", started_at=now - timedelta(seconds=10),
                      finished_at=now - timedelta(seconds=1), batch_id="b")
        add_track(s, "/jazz.mp3", "done", "jazz", started_at=now - timedelta(seconds=10),
                  finished_at=now - timedelta(seconds=1))
        add_track(s, "/bad.mp3", "failed", error="/bad.mp3: not audio", batch_id="b")
        add_track(s, "/q1.mp3", batch_id="b")
        add_track(s, "/q2.mp3", "running", batch_id="b")
    with session_scope(db_url) as s:
        status = queries.status(s)
        assert status.as_dict() | {"throughput_per_s": None, "eta_s": None} == {
            "total": 7, "queued": 1, "running": 1, "done": 4, "failed": 1,
            "genres": {"rock": 3, "jazz": 1}, "throughput_per_s": None, "eta_s": None,
        }
        # 4 finished since the first of them started, 10 s ago
        assert status.throughput_per_s == pytest.approx(0.4, rel=0.05)
        assert status.eta_s == pytest.approx(2 / status.throughput_per_s)
        batch = queries.status(s, "b")
        assert (batch.total, batch.done, batch.pending, batch.genres) == (6, 3, 2, {"rock": 3})
        assert [t.path for t in queries.failures(s)] == ["/bad.mp3"]


def test_no_throughput_once_workers_stopped(db_url):
    """A run interrupted a minute ago: work is pending, nothing finishes any more."""
    now = utcnow()
    with session_scope(db_url) as s:
        add_track(s, "/a.mp3", "done", "rock", started_at=now - timedelta(seconds=90),
                  finished_at=now - timedelta(seconds=60))
        add_track(s, "/b.mp3")
    with session_scope(db_url) as s:
        assert queries.throughput(s, now=now - timedelta(seconds=55)) is not None
        status = queries.status(s)
        assert (status.pending, status.throughput_per_s, status.eta_s) == (1, None, None)


def test_no_throughput_when_idle(db_url):
    with session_scope(db_url) as s:
        add_track(s, "/a.mp3", "done", "rock", started_at=utcnow(), finished_at=utcnow())
    with session_scope(db_url) as s:
        status = queries.status(s)
        assert (status.throughput_per_s, status.eta_s) == (None, None)


def test_done_tracks_filters_and_pages(db_url, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 2)
    with session_scope(db_url) as s:
        for i in range(5):
            add_track(s, f"/rock{i}.mp3", "done", "rock", confidence=0.1 * (i + 5))
        # classified by another model, with other genres
        add_track(s, "/jazz.mp3", "done", "jazz", probs={"jazz": 0.7, "blues": 0.3},
                  confidence=0.7, model_version="v2")
        add_track(s, "/queued.mp3")
    with session_scope(db_url) as s:
        assert [t.path for t in queries.done_tracks(s)] == [
            *(f"/rock{i}.mp3" for i in range(5)), "/jazz.mp3"]
        assert [t.path for t in queries.done_tracks(s, ["jazz"])] == ["/jazz.mp3"]
        assert [t.path for t in queries.done_tracks(s, ["rock"], min_confidence=0.75)] == [
            "/rock3.mp3", "/rock4.mp3"]
        assert queries.known_genres(s) == ["blues", "jazz", "other", "rock"]


def test_requeue_resets_stale_running_and_failed(db_url):
    now = utcnow()
    with session_scope(db_url) as s:
        stale = add_track(s, "/stale.mp3", state="running", attempts=1,
                          started_at=now - timedelta(seconds=600)).id
        fresh = add_track(s, "/fresh.mp3", state="running", attempts=1, started_at=now).id
        failed = add_track(s, "/failed.mp3", state="failed", attempts=5, error="/failed.mp3: x").id
        queued = add_track(s, "/queued.mp3").id
        add_track(s, "/done.mp3", state="done", genre="jazz")
    with session_scope(db_url) as s:
        result = queries.reset_for_requeue(s, stale_before=now - timedelta(seconds=150))
        assert (result.stale, result.failed) == (1, 0)
        assert [i for page in queries.queued_ids(s) for i in page] == [stale, queued]
    with session_scope(db_url) as s:
        assert queries.reset_for_requeue(s, failed=True).failed == 1
        track = s.get(Track, failed)
        assert (track.state, track.attempts, track.error) == (State.queued, 0, None)
        assert s.get(Track, fresh).state == State.running
        assert [i for page in queries.queued_ids(s) for i in page] == [stale, failed, queued]
