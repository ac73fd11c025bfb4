"""db.tracks on SQLite and PostgreSQL: done tracks filtered and paged, known genres."""
from __future__ import annotations

import pytest
from helpers import add_track

from genreq.config import SORTS
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


def test_every_sort_has_keyset_columns():
    assert tuple(tracks.SORT_KEYS) == SORTS


def test_done_tracks_sorts(db_url, monkeypatch):
    monkeypatch.setattr(paging, "PAGE_SIZE", 2)
    with session_scope(db_url) as s:
        # /c and /d tie on confidence: id breaks the tie
        for path, confidence in [("/c", 0.6), ("/a", 0.9), ("/d", 0.6), ("/b", 0.3)]:
            add_track(s, f"{path}.mp3", "done", "rock", confidence=confidence)
    with session_scope(db_url) as s:
        assert [t.path for t in tracks.done_tracks(s, sort="confidence")] == [
            "/a.mp3", "/c.mp3", "/d.mp3", "/b.mp3"]
        assert [t.path for t in tracks.done_tracks(s, sort="path")] == [
            "/a.mp3", "/b.mp3", "/c.mp3", "/d.mp3"]
        assert list(tracks.done_probs(s))[1] == {"rock": 0.9, "other": 0.1}
        assert tracks.count_done_tracks(s, path_glob="/[ab]*") == 2
        with pytest.raises(ValueError, match="sort must be one of"):
            next(tracks.done_tracks(s, sort="genre"))
