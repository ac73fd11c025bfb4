"""db.queue on SQLite and PostgreSQL: idempotent upsert of walked files, requeue."""
from __future__ import annotations

from datetime import timedelta

from helpers import add_track

from genreq.app.walk import FileStat
from genreq.db import queue
from genreq.db.models import State, Track, utcnow
from genreq.db.session import session_scope


def stats(*specs) -> list[FileStat]:
    return [FileStat(path=p, size_bytes=s, mtime_ns=m) for p, s, m in specs]


def test_upsert_is_idempotent_on_size_and_mtime(db_url):
    with session_scope(db_url) as s:
        first = queue.upsert_tracks(s, stats(("/a.mp3", 1, 1), ("/b.mp3", 2, 2)), "batch1")
    assert len(first.queued_ids) == 2
    with session_scope(db_url) as s:
        s.execute(Track.__table__.update().values(state=State.done, genre="rock",
                                                  confidence=0.9, probs={"rock": 0.9}))
    with session_scope(db_url) as s:
        again = queue.upsert_tracks(s, stats(("/a.mp3", 1, 1), ("/b.mp3", 2, 3)), "batch2")
    assert (again.queued_ids, again.pending_ids, again.known) == ([first.queued_ids[1]], [], 1)
    with session_scope(db_url) as s:
        changed = s.get(Track, first.queued_ids[1])
        assert (changed.state, changed.genre, changed.probs, changed.mtime_ns) == (
            State.queued, None, None, 3)
        assert changed.batch_id == "batch2"
        assert s.get(Track, first.queued_ids[0]).batch_id == "batch1"


def test_upsert_reclassifies_done_tracks_of_another_model_version_only(db_url):
    """model_version=VERSION: an unchanged done track classified by another version is
    counted (known_other), and with reclassify queued again, its result cleared; one done
    by VERSION, a failed or a skipped one stays as it is, and is not counted."""
    files = stats(("/old.mp3", 1, 1), ("/same.mp3", 1, 1), ("/failed.mp3", 1, 1),
                  ("/skipped.mp3", 1, 1), ("/changed.mp3", 1, 1))
    with session_scope(db_url) as s:
        ids = queue.upsert_tracks(s, files, "batch1").queued_ids
    states = (("old", State.done), ("new", State.done), ("old", State.failed),
              (None, State.skipped), ("old", State.done))
    with session_scope(db_url) as s:
        for track_id, (version, state) in zip(ids, states, strict=True):
            s.execute(Track.__table__.update().where(Track.id == track_id).values(
                state=state, model_name="m", model_version=version, genre="rock"))
    with session_scope(db_url) as s:
        unknown = queue.upsert_tracks(s, files, "batch2")  # no version: nothing to compare
        plain = queue.upsert_tracks(s, files, "batch2", model_version="new")
    assert (unknown.queued_ids, unknown.known, unknown.known_other) == ([], 5, 0)
    assert (plain.queued_ids, plain.known, plain.known_other, plain.reclassified) == (
        [], 5, 2, 0)
    files[4] = FileStat(path="/changed.mp3", size_bytes=2, mtime_ns=1)
    with session_scope(db_url) as s:
        again = queue.upsert_tracks(s, files, "batch3", model_version="new", reclassify=True)
    assert sorted(again.queued_ids) == [ids[0], ids[4]] and again.known == 3
    assert again.known_other == 0
    assert again.reclassified == 1  # the changed file is queued for its change
    with session_scope(db_url) as s:
        old = s.get(Track, ids[0])
        assert (old.state, old.genre, old.model_version, old.batch_id) == (
            State.queued, None, None, "batch3")
        assert s.get(Track, ids[1]).model_version == "new"


def test_upsert_sends_pending_tracks_again(db_url):
    with session_scope(db_url) as s:
        first = queue.upsert_tracks(s, stats(("/a.mp3", 1, 1)), "batch1")
    with session_scope(db_url) as s:
        again = queue.upsert_tracks(s, stats(("/a.mp3", 1, 1)), "batch2")
        assert (again.queued_ids, again.pending_ids, again.known) == ([], first.queued_ids, 0)
        assert s.get(Track, first.queued_ids[0]).batch_id == "batch2"


def test_requeue_resets_stale_running_and_failed(db_url):
    now = utcnow()
    with session_scope(db_url) as s:
        stale = add_track(s, "/stale.mp3", state="running", attempts=1,
                          started_at=now - timedelta(seconds=600),
                          lease_expires_at=now + timedelta(seconds=30)).id
        fresh = add_track(s, "/fresh.mp3", state="running", attempts=1, started_at=now,
                          lease_expires_at=now + timedelta(seconds=30)).id
        failed = add_track(s, "/failed.mp3", state="failed", attempts=5, error="/failed.mp3: x").id
        queued = add_track(s, "/queued.mp3").id
        add_track(s, "/done.mp3", state="done", genre="jazz")
    with session_scope(db_url) as s:
        result = queue.reset_for_requeue(s, stale_before=now - timedelta(seconds=150))
        assert (result.stale, result.failed) == (1, 0)
        assert queue.reset_for_requeue(s, expired=True).stale == 0  # fresh: no lease ran out
        assert [i for page in queue.queued_ids(s) for i in page] == [stale, queued]
    with session_scope(db_url) as s:
        assert queue.reset_for_requeue(s, failed=True).failed == 1
        track = s.get(Track, failed)
        assert (track.state, track.attempts, track.error) == (State.queued, 0, None)
        assert s.get(Track, fresh).state == State.running
        assert [i for page in queue.queued_ids(s) for i in page] == [stale, failed, queued]


def test_upsert_follows_a_moved_file_to_its_new_path(db_url):
    """A new path with the size and mtime of a known track whose file is gone is that
    track moved: same row, result kept, nothing queued. Each gone row is taken once; a
    row whose file is still there, or another mtime, is not taken."""
    gone = {"/old/a.mp3", "/old/b.mp3"}
    with session_scope(db_url) as s:
        ids = queue.upsert_tracks(s, stats(("/old/a.mp3", 10, 5), ("/old/b.mp3", 20, 6),
                                           ("/keep/c.mp3", 30, 7)), "batch1").queued_ids
        s.execute(Track.__table__.update().values(state=State.done, genre="jazz",
                                                  model_version="v"))
    with session_scope(db_url) as s:
        result = queue.upsert_tracks(
            s, stats(("/new/a.mp3", 10, 5), ("/new/a-copy.mp3", 10, 5),
                     ("/new/b.mp3", 20, 7), ("/new/c.mp3", 30, 7)),
            "batch2", model_version="v", gone=gone.__contains__)
    assert (result.moved, result.known, len(result.queued_ids)) == (1, 1, 3)
    with session_scope(db_url) as s:
        moved = s.get(Track, ids[0])
        assert (moved.path, moved.state, moved.genre, moved.batch_id) == (
            "/new/a.mp3", State.done, "jazz", "batch1")
        assert s.get(Track, ids[1]).path == "/old/b.mp3"  # another mtime: a new file
        assert s.get(Track, ids[2]).path == "/keep/c.mp3"  # still there: a copy
        assert {t.path for t in s.query(Track).filter(Track.id.in_(result.queued_ids))} == {
            "/new/a-copy.mp3", "/new/b.mp3", "/new/c.mp3"}


def test_a_moved_track_of_another_model_is_reclassified_with_reclassify(db_url):
    with session_scope(db_url) as s:
        (track_id,) = queue.upsert_tracks(s, stats(("/old/a.mp3", 10, 5)), "b1").queued_ids
        s.execute(Track.__table__.update().values(state=State.done, model_version="old"))
    with session_scope(db_url) as s:
        result = queue.upsert_tracks(s, stats(("/new/a.mp3", 10, 5)), "b2",
                                     model_version="new", reclassify=True,
                                     gone=lambda path: path == "/old/a.mp3")
    assert (result.moved, result.queued_ids, result.reclassified) == (1, [track_id], 1)


def test_gone_tracks_are_those_under_the_roots_not_on_disk(db_url):
    paths = ["/music/a.mp3", "/music/sub/b.mp3", "/Music/c.mp3", "/music2/d.mp3",
             "/music/e_%.mp3", "/musicx_%/f.mp3", "/one.mp3"]
    with session_scope(db_url) as s:
        queue.upsert_tracks(s, stats(*((p, i, i) for i, p in enumerate(paths))), "b")
    with session_scope(db_url) as s:
        under = [p for _, p in queue.tracks_under(s, ["/music", "/one.mp3"])]
        assert under == ["/music/a.mp3", "/music/e_%.mp3", "/music/sub/b.mp3", "/one.mp3"]
        gone = [p for _, p in queue.gone_tracks(s, ["/music/", "/music/sub"],
                                                gone=lambda path: path != "/music/e_%.mp3")]
        assert gone == ["/music/a.mp3", "/music/sub/b.mp3"]  # each once
        assert len(list(queue.tracks_under(s))) == len(paths)
        ids = [i for i, _ in queue.gone_tracks(s, ["/music"], gone=lambda path: True)]
        assert queue.forget_tracks(s, ids) == 3
    with session_scope(db_url) as s:
        assert sorted(t.path for t in s.query(Track)) == sorted(
            ["/Music/c.mp3", "/music2/d.mp3", "/musicx_%/f.mp3", "/one.mp3"])
