"""db.counts: the counts and the embeddings' stamp that triggers keep (SQLite; PostgreSQL
as deltas, tests/test_count_deltas.py), through
every write genreq makes: enqueue, claim, result, failure, skip, lease expiry, requeue,
a changed file reset, delete; checked against counting the tracks themselves."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from helpers import add_track
from sqlalchemy import delete, func, select, text, update

from genreq.db import counts, embeddings, migrate, queue, status, work
from genreq.db.models import State, Track, utcnow
from genreq.db.session import session_scope, transaction

MODEL = "crnn@v1"


@dataclass(frozen=True)
class Stat:
    path: str
    size_bytes: int = 1
    mtime_ns: int = 1


def counted(url: str) -> list[tuple[str, str | None, int]]:
    """The counts by counting the tracks: what the kept counts must equal."""
    with session_scope(url) as s:
        rows = s.execute(select(Track.state, Track.genre, func.count())
                         .group_by(Track.state, Track.genre)).all()
    return sorted((State(state).value, genre, n) for state, genre, n in rows)


def kept(url: str) -> list[tuple[str, str | None, int]]:
    with session_scope(url) as s:
        return sorted(counts.state_genre_counts(s))


def stamp(url: str) -> int:
    with session_scope(url) as s:
        return counts.embeddings_generation(s)


def result(track_id: int, genre: str = "jazz", embedding: bytes = b"\x00\x3c" * 4,
           album: str | None = "A") -> work.Result:
    return work.Result(track_id=track_id, genre=genre, confidence=0.8,
                       probs={genre: 0.8, "rock": 0.2}, duration_s=30.0, elapsed_s=0.1,
                       finished_at=utcnow(), embedding=embedding, embedding_model=MODEL,
                       artist="X", album=album)


def claim(url: str, ids: list[int]) -> work.Claim:
    c = work.new_claim("host:1", 30.0)
    with transaction(url) as db:
        assert sorted(work.claim_batch(db, ids, 3, c)) == sorted(ids)
    return c


def test_counts_and_stamp_follow_every_write(db_url):
    url = db_url
    assert kept(url) == counted(url) == []
    before = stamp(url)
    with session_scope(url) as s:  # enqueue: new tracks, queued
        ids = queue.upsert_tracks(s, [Stat(f"/{i}.mp3") for i in range(6)], "b1").queued_ids
    assert kept(url) == counted(url) == [("queued", None, 6)]
    c = claim(url, ids[:5])
    assert kept(url) == counted(url) == [("queued", None, 1), ("running", None, 5)]
    assert stamp(url) == before  # nothing done changed
    with transaction(url) as db:
        assert work.record_results(db, [result(ids[0]), result(ids[1], "rock")],
                                   "crnn", "v1", c.token) == 2
        assert work.record_failure(db, ids[2], "/2.mp3: bad", 0.1, short_reason="bad",
                                   claim_token=c.token)
        assert work.record_skip(db, ids[3], "short", 1.0, 0.1, claim_token=c.token)
    assert kept(url) == counted(url)
    assert ("done", "jazz", 1) in kept(url) and ("failed", None, 1) in kept(url)
    after_results = stamp(url)
    assert after_results > before  # tracks became done

    with session_scope(url) as s:  # the running one's lease runs out: queued again
        s.execute(update(Track).where(Track.id == ids[4])
                  .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    with session_scope(url) as s:
        assert queue.reset_for_requeue(s, expired=True, failed=True).stale == 1
    assert kept(url) == counted(url)
    assert stamp(url) == after_results  # neither was done

    with transaction(url) as db:  # a renewal or a file-stat update changes nothing kept
        work.renew(db, [c.token], 30.0)
    with session_scope(url) as s:
        s.execute(update(Track).where(Track.id == ids[0]).values(size_bytes=2, title="T"))
    assert stamp(url) == after_results

    with session_scope(url) as s:  # a done file changed on disk: reset and queued again
        assert queue.upsert_tracks(s, [Stat("/0.mp3", size_bytes=9)], "b2").queued_ids \
            == [ids[0]]
    assert kept(url) == counted(url)
    reset = stamp(url)
    assert reset > after_results  # a done track left done

    c = claim(url, [ids[0]])  # re-done with the same embedding: it became done again
    with transaction(url) as db:
        work.record_results(db, [result(ids[0])], "crnn", "v1", c.token)
    assert stamp(url) > reset
    redone = stamp(url)

    with session_scope(url) as s:  # a done track's album, then its embedding, changes
        s.execute(update(Track).where(Track.id == ids[1]).values(album="B"))
    assert stamp(url) > redone
    redone = stamp(url)
    with session_scope(url) as s:
        s.execute(update(Track).where(Track.id == ids[1]).values(embedding=b"\x01" * 8))
    assert stamp(url) > redone
    redone = stamp(url)

    with session_scope(url) as s:  # deleted: a done one and a queued one
        s.execute(delete(Track).where(Track.id.in_([ids[1], ids[5]])))
    assert kept(url) == counted(url)
    assert stamp(url) > redone
    with session_scope(url) as s:  # a row inserted done (as the benchmark builds them)
        add_track(s, "/direct.mp3", state="done", genre="pop", embedding_model=MODEL)
    assert kept(url) == counted(url)
    with session_scope(url) as s:
        assert status.status(s).genres == {"jazz": 1, "pop": 1}
        assert status.status(s).as_dict()["total"] == sum(n for _s, _g, n in counted(url))


def test_fingerprint_is_the_stamp_where_kept(sqlite_url):
    with session_scope(sqlite_url) as s:
        first = embeddings.fingerprint(s, MODEL)
        add_track(s, "/a.mp3", state="done", genre="jazz", embedding=b"\x00" * 8,
                  embedding_model=MODEL)
    with session_scope(sqlite_url) as s:
        assert embeddings.fingerprint(s, MODEL) != first
        assert embeddings.fingerprint(s, MODEL) == ("generation", counts.embeddings_generation(s))


def test_migration_counts_an_existing_library(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "7c3e9a41f0d2")  # before the counts: rows written untracked
    with session_scope(url) as s:
        # In SQL: the model's columns are head's, which this schema lacks.
        for path, state, genre in [("/a.mp3", "done", "jazz"), ("/b.mp3", "done", "jazz"),
                                   ("/c.mp3", "queued", None)]:
            s.execute(text("INSERT INTO tracks (path, size_bytes, mtime_ns, state, attempts, "
                           "genre, queued_at) VALUES (:path, 1, 1, :state, 0, :genre, "
                           "'2026-12-01 00:00:00')"),
                      {"path": path, "state": state, "genre": genre})
    migrate.upgrade(url)
    assert kept(url) == counted(url) == [("done", "jazz", 2), ("queued", None, 1)]
    with session_scope(url) as s:
        add_track(s, "/d.mp3")
    assert kept(url) == counted(url)
    migrate.downgrade(url, "7c3e9a41f0d2")
    with session_scope(url) as s:  # no trigger left behind naming the dropped tables
        s.execute(text("INSERT INTO tracks (path, size_bytes, mtime_ns, state, attempts, "
                       "queued_at) VALUES ('/e.mp3', 1, 1, 'queued', 0, "
                       "'2026-12-01 00:00:00')"))


@pytest.mark.postgres
def test_postgres_keeps_the_counts(postgres_url):
    with session_scope(postgres_url) as s:
        assert counts.kept(s)
        add_track(s, "/a.mp3", state="done", genre="jazz", embedding_model=MODEL)
    with session_scope(postgres_url) as s:
        assert status.status(s).genres == {"jazz": 1}
        assert embeddings.fingerprint(s, MODEL) == ("generation", 1)
