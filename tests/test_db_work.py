"""db.work on SQLite and PostgreSQL: the worker's claims, leases and writes."""
from __future__ import annotations

from datetime import timedelta

from helpers import add_track

from genreq.db import work
from genreq.db.models import State, Track, as_utc, utcnow
from genreq.db.session import session_scope, transaction

LEASE_S = 30.0


def claim_of(worker: str = "host:1") -> work.Claim:
    return work.new_claim(worker, LEASE_S)


def test_claim_then_repeat_is_a_noop(db_url):
    with session_scope(db_url) as s:
        track_id = add_track(s, "/a.mp3").id
    with session_scope(db_url) as s:
        claim = claim_of()
        assert work.claim(s, track_id, 3, claim) == "/a.mp3"
        track = s.get(Track, track_id)
        assert (track.state, track.attempts) == (State.running, 1)
        assert (track.claimed_by, track.claim_token) == ("host:1", claim.token)
        assert as_utc(track.lease_expires_at) > utcnow() + timedelta(seconds=LEASE_S - 5)
    with session_scope(db_url) as s:  # held under a live lease: another claim is a no-op
        assert work.claim(s, track_id, 3, claim_of("host:2")) is None
        assert s.get(Track, track_id).claimed_by == "host:1"
    with transaction(db_url) as db:
        assert work.record_results(db, [result(track_id, "jazz", 0.8)], "crnn", "v1",
                                   claim.token) == 1
    with session_scope(db_url) as s:
        assert work.claim(s, track_id, 3, claim_of()) is None
        assert work.claim(s, 999_999, 3, claim_of()) is None
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
        orphan = add_track(s, "/orphan.mp3", state="running", attempts=1,
                           lease_expires_at=utcnow() - timedelta(seconds=1)).id
        held = add_track(s, "/held.mp3", state="running", attempts=1, claim_token="t",
                         lease_expires_at=utcnow() + timedelta(seconds=LEASE_S)).id
        done = add_track(s, "/done.mp3", state="done", genre="jazz").id
        spent = add_track(s, "/spent.mp3", attempts=3).id  # queued, attempts used up
    batch = [ids[2], orphan, ids[0], done, held, spent, ids[1], 999_999]
    with transaction(db_url) as db:
        claimed = work.claim_batch(db, batch, 3, claim_of())
        assert claimed == {ids[2]: "/2.mp3", ids[0]: "/0.mp3", ids[1]: "/1.mp3"}  # batch order
        # What the batch leaves to one-track tasks: the orphan (its lease ran out) and
        # the spent one; not the one another worker holds.
        assert work.claimable_among(db, set(batch) - claimed.keys()) == [orphan, spent]
    with transaction(db_url) as db:
        assert work.claim_batch(db, batch, 3, claim_of()) == {}  # now running
    with session_scope(db_url) as s:
        assert [(s.get(Track, i).state, s.get(Track, i).attempts) for i in ids] == [
            (State.running, 1), (State.running, 1), (State.running, 1), (State.queued, 0)]


def test_record_results_writes_each_row_of_a_batch(db_url):
    with session_scope(db_url) as s:
        ids = [add_track(s, f"/{i}.mp3").id for i in range(3)]
        claim = claim_of()
    with transaction(db_url) as db:
        assert work.claim_batch(db, ids, 3, claim)
        assert work.record_results(
            db, [result(ids[0], "jazz", 0.7), result(ids[2], "metal", 0.9)], "crnn", "v2",
            claim.token) == 2
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
        assert work.claim(s, track_id, 3, claim_of()) is None
    with session_scope(db_url) as s:
        track = s.get(Track, track_id)
        assert track.state == State.failed
        assert track.error == "/killer.mp3: gave up after 3 attempts (worker lost or timed out)"


def test_a_result_under_a_lease_taken_over_is_not_written(db_url):
    """Worker 1 claims, stops renewing (paused), its lease runs out; the expiry scan
    queues the track again, worker 2 claims and writes. Worker 1's late result, failure
    or skip writes nothing, and it cannot renew the lease it lost."""
    with session_scope(db_url) as s:
        track_id = add_track(s, "/a.mp3").id
    first, second = work.new_claim("host:1", 0.001), claim_of("host:2")
    with transaction(db_url) as db:
        assert work.claim(db, track_id, 5, first) == "/a.mp3"
    with transaction(db_url) as db:
        assert work.claim(db, track_id, 5, second) == "/a.mp3"  # expired: taken over
    with transaction(db_url) as db:
        assert work.renew(db, [first.token], LEASE_S) == 0
        assert work.still_held(db, first.token, [track_id]) == set()
        assert work.record_results(db, [result(track_id, "jazz", 0.8)], "m", "1",
                                   first.token) == 0
        assert not work.record_failure(db, track_id, "/a.mp3: x", 0.1, claim_token=first.token)
        assert not work.record_skip(db, track_id, "short", 1.0, 0.1, claim_token=first.token)
    with session_scope(db_url) as s:
        track = s.get(Track, track_id)
        assert (track.state, track.claimed_by, track.attempts) == (State.running, "host:2", 2)
    with transaction(db_url) as db:
        assert work.still_held(db, second.token, [track_id]) == {track_id}
        assert work.record_results(db, [result(track_id, "metal", 0.9)], "m", "1",
                                   second.token) == 1
    with session_scope(db_url) as s:
        track = s.get(Track, track_id)
        assert (track.state, track.genre, track.claim_token, track.lease_expires_at) == (
            State.done, "metal", None, None)
        assert track.claimed_by == "host:2"  # kept: who did it


def test_renew_extends_only_the_leases_held(db_url):
    with session_scope(db_url) as s:
        ids = [add_track(s, f"/{i}.mp3").id for i in range(3)]
    mine, other = work.new_claim("host:1", 1.0), work.new_claim("host:2", 1.0)
    with transaction(db_url) as db:
        work.claim_batch(db, ids[:2], 5, mine)
        work.claim_batch(db, ids[2:], 5, other)
    with transaction(db_url) as db:
        assert work.renew(db, [mine.token], 600) == 2
    with session_scope(db_url) as s:
        leases = [as_utc(s.get(Track, i).lease_expires_at) for i in ids]
    assert min(leases[:2]) > utcnow() + timedelta(seconds=500) > leases[2]


def test_expire_leases_queues_what_ran_out_once(db_url):
    now = utcnow()
    with session_scope(db_url) as s:
        gone = add_track(s, "/gone.mp3", state="running", attempts=1, claimed_by="host:1",
                         claim_token="t1", lease_expires_at=now - timedelta(seconds=1)).id
        legacy = add_track(s, "/legacy.mp3", state="running", attempts=1).id  # no lease
        live = add_track(s, "/live.mp3", state="running", attempts=1, claim_token="t2",
                         lease_expires_at=now + timedelta(seconds=LEASE_S)).id
        add_track(s, "/queued.mp3")
        add_track(s, "/done.mp3", state="done", genre="jazz")
    with transaction(db_url) as db:
        assert work.expire_leases(db, limit=1) == [gone]
        assert work.expire_leases(db) == [legacy]
        assert work.expire_leases(db) == []  # a second scanner finds nothing left
    with session_scope(db_url) as s:
        track = s.get(Track, gone)
        assert (track.state, track.claim_token, track.lease_expires_at, track.attempts) == (
            State.queued, None, None, 1)
        assert s.get(Track, live).state == State.running


def test_release_gives_back_unworked_tracks(db_url):
    with session_scope(db_url) as s:
        ids = [add_track(s, f"/{i}.mp3").id for i in range(2)]
    claim = claim_of()
    with transaction(db_url) as db:
        work.claim_batch(db, ids, 5, claim)
        assert work.release(db, work.new_claim("host:9", 1), ids) == []  # not theirs
        assert work.release(db, claim, ids) == ids
    with session_scope(db_url) as s:
        assert [(s.get(Track, i).state, s.get(Track, i).attempts) for i in ids] == [
            (State.queued, 0), (State.queued, 0)]
