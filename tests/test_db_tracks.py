"""db.tracks on SQLite and PostgreSQL: done tracks filtered and paged, known genres."""
from __future__ import annotations

from helpers import add_track

from genreq.db import paging, tracks
from genreq.db.session import session_scope


def test_done_tracks_filters_and_pages(db_url, monkeypatch):
    monkeypatch.setattr(paging, "PAGE_SIZE", 2)
    with session_scope(db_url) as s:
        for i in range(5):
            add_track(s, f"/rock{i}.mp3", "done", "rock", confidence=0.1 * (i + 5))
        # classified by another model, with other genres
        add_track(s, "/jazz.mp3", "done", "jazz", probs={"jazz": 0.7, "blues": 0.3},
                  confidence=0.7, model_version="v2")
        add_track(s, "/queued.mp3")
    with session_scope(db_url) as s:
        assert [t.path for t in tracks.done_tracks(s)] == [
            *(f"/rock{i}.mp3" for i in range(5)), "/jazz.mp3"]
        assert [t.path for t in tracks.done_tracks(s, ["jazz"])] == ["/jazz.mp3"]
        assert [t.path for t in tracks.done_tracks(s, ["rock"], min_confidence=0.75)] == [
            "/rock3.mp3", "/rock4.mp3"]
        assert tracks.known_genres(s) == ["blues", "jazz", "other", "rock"]
