"""db.status on SQLite and PostgreSQL: counts, throughput and ETA, failures."""
from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import add_track

from genreq.db import status as db_status
from genreq.db.models import utcnow
from genreq.db.session import session_scope


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
        status = db_status.status(s)
        assert status.as_dict() | {"throughput_per_s": None, "eta_s": None} == {
            "total": 7, "queued": 1, "running": 1, "done": 4, "failed": 1, "skipped": 0,
            "genres": {"rock": 3, "jazz": 1}, "throughput_per_s": None, "eta_s": None,
        }
        # 4 finished since the first of them started, 10 s ago
        assert status.throughput_per_s == pytest.approx(0.4, rel=0.05)
        assert status.eta_s == pytest.approx(2 / status.throughput_per_s)
        batch = db_status.status(s, "b")
        assert (batch.total, batch.done, batch.pending, batch.genres) == (6, 3, 2, {"rock": 3})
        assert [t.path for t in db_status.failures(s)] == ["/bad.mp3"]


def test_no_throughput_once_workers_stopped(db_url):
    """A run interrupted a minute ago: work is pending, nothing finishes any more."""
    now = utcnow()
    with session_scope(db_url) as s:
        add_track(s, "/a.mp3", "done", "rock", started_at=now - timedelta(seconds=90),
                  finished_at=now - timedelta(seconds=60))
        add_track(s, "/b.mp3")
    with session_scope(db_url) as s:
        assert db_status.throughput(s, now=now - timedelta(seconds=55)) is not None
        status = db_status.status(s)
        assert (status.pending, status.throughput_per_s, status.eta_s) == (1, None, None)


def test_no_throughput_when_idle(db_url):
    with session_scope(db_url) as s:
        add_track(s, "/a.mp3", "done", "rock", started_at=utcnow(), finished_at=utcnow())
    with session_scope(db_url) as s:
        status = db_status.status(s)
        assert (status.throughput_per_s, status.eta_s) == (None, None)
