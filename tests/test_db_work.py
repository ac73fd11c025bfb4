"""db.work on SQLite and PostgreSQL: the worker's claims and writes."""
from __future__ import annotations

from helpers import add_track

from genreq.db import work
from genreq.db.models import State, Track, utcnow
from genreq.db.session import session_scope, transaction


def test_claim_then_repeat_is_a_noop(db_url):
    with session_scope(db_url) as s:
        track_id = add_track(s, "/a.mp3").id
    with session_scope(db_url) as s:
        assert work.claim(s, track_id, max_attempts=3) == "/a.mp3"
        track = s.get(Track, track_id)
        assert (track.state, track.attempts) == (State.running, 1)
    with transaction(db_url) as db:
        work.record_results(db, [result(track_id, "jazz", 0.8)], "crnn", "v1")
    with session_scope(db_url) as s:
        assert work.claim(s, track_id, max_attempts=3) is None
        assert work.claim(s, 999_999, max_attempts=3) is None
        track = s.get(Track, track_id)
        assert (track.state, track.genre, track.attempts) == (State.done, "jazz", 1)
        assert track.top(1) == [("jazz", 0.8)]


def result(track_id: int, genre: str, confidence: float) -> work.Result:
    return work.Result(track_id=track_id, genre=genre, confidence=confidence,
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
        claimed = work.claim_batch(db, batch, max_attempts=3)
        assert claimed == {ids[2]: "/2.mp3", ids[0]: "/0.mp3", ids[1]: "/1.mp3"}  # batch order
        # What the batch leaves to one-track tasks: the orphan and the spent one.
        assert work.pending_among(db, set(batch) - claimed.keys()) == [orphan, spent]
    with transaction(db_url) as db:
        assert work.claim_batch(db, batch, max_attempts=3) == {}  # now running
    with session_scope(db_url) as s:
        assert [(s.get(Track, i).state, s.get(Track, i).attempts) for i in ids] == [
            (State.running, 1), (State.running, 1), (State.running, 1), (State.queued, 0)]


def test_record_results_writes_each_row_of_a_batch(db_url):
    with session_scope(db_url) as s:
        ids = [add_track(s, f"/{i}.mp3", state="running").id for i in range(3)]
    with transaction(db_url) as db:
        work.record_results(db, [result(ids[0], "jazz", 0.7), result(ids[2], "metal", 0.9)],
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
        assert work.claim(s, track_id, max_attempts=3) is None
    with session_scope(db_url) as s:
        track = s.get(Track, track_id)
        assert track.state == State.failed
        assert track.error == "/killer.mp3: gave up after 3 attempts (worker lost or timed out)"
