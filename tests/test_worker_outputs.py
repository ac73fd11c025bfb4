"""What a worker stores per track beside the genre (issue 15): the embedding and the
model that made it, the tags of a model that has them, what the file's own tags say,
and the `skipped` state with its reason for files under the minimum duration. The real
task with the real shipped models on files written here, on SQLite and PostgreSQL."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from helpers import add_track
from sqlalchemy import text

from genreq import config
from genreq.db import migrate
from genreq.db import status as db_status
from genreq.db.models import State, Track
from genreq.db.session import get_engine, session_scope
from genreq.errors import GenreqError
from genreq.predict import Classifier
from genreq.pretrained import musicnn
from genreq.similarity import embedding_from_bytes
from genreq.worker import tasks

RATE = 22050


def song(path, seconds: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    beat = (np.sin(2 * np.pi * 2 * t) > 0.9) * rng.standard_normal(t.size)
    sf.write(path, (0.2 * np.sin(2 * np.pi * 220 * t) + 0.2 * beat).astype(np.float32), RATE)
    return path


def tagged_song(path, seconds: float = 6.0):
    import mutagen

    song(path, seconds)
    audio = mutagen.File(str(path))
    audio["ARTIST"], audio["ALBUM"], audio["TITLE"] = "Someone", "First Album", "Song"
    audio["GENRE"] = ["Chiptune", "Electronic"]
    audio.save()
    return path


@pytest.fixture(scope="module")
def crnn() -> Classifier:
    return Classifier.load("crnn")


@pytest.fixture
def use(monkeypatch):
    def install(classifier: Classifier) -> Classifier:
        monkeypatch.setattr(tasks, "_classifier", classifier)
        return classifier

    return install


def new_track(path) -> int:
    with session_scope() as s:
        return add_track(s, str(path)).id


def get(track_id) -> Track:
    with session_scope() as s:
        return s.get(Track, track_id)


def test_a_done_track_stores_its_embedding_and_the_files_tags(db_url, use, crnn, tmp_path):
    use(crnn)
    path = tagged_song(tmp_path / "a.flac")
    track_id = new_track(path)
    assert tasks.classify_track.run(track_id) == "done"
    track = get(track_id)
    assert track.state == State.done
    assert (track.artist, track.album, track.title) == ("Someone", "First Album", "Song")
    assert track.file_genres == ["Chiptune", "Electronic"]
    assert track.embedding_model == f"crnn@{crnn.version}"
    assert track.tags is None  # the crnn has no tag outputs
    stored = embedding_from_bytes(track.embedding)
    assert stored.dtype == np.float16 and stored.shape == (crnn.model.head.in_features,)
    expected = crnn.classify_file(path).embedding
    np.testing.assert_allclose(stored.astype(np.float32), expected, rtol=2e-3, atol=2e-3)
    assert track.reason is None and track.error is None


def test_a_tagger_stores_its_readable_tags(sqlite_url, use, tmp_path):
    vgg = use(Classifier.load("vgg-msd"))
    track_id = new_track(song(tmp_path / "plain.wav", 6.0))
    assert tasks.classify_track.run(track_id) == "done"
    track = get(track_id)
    assert list(track.tags) == list(musicnn.MSD_TAG_NAMES)
    assert all(0.0 < p < 1.0 for p in track.tags.values())
    assert len(embedding_from_bytes(track.embedding)) == 256
    assert track.embedding_model == f"vgg-msd@{vgg.version}"
    assert (track.artist, track.album, track.file_genres) == (None, None, [])  # no tags


def test_a_file_under_the_minimum_duration_is_skipped_with_its_reason(db_url, use, crnn,
                                                                      tmp_path, monkeypatch):
    use(crnn)
    short = new_track(song(tmp_path / "blip.wav", 2.0))
    longer = new_track(song(tmp_path / "loop.wav", 4.0))
    assert config.min_duration_s() == config.DEFAULT_MIN_DURATION_S
    assert tasks.classify_tracks.run([short, longer]) == {
        "done": 1, "failed": 0, "too_short": 1, "skipped": 0, "handed_on": 0,
        "lease_lost": 0}
    track = get(short)
    assert track.state == State.skipped
    assert track.reason == f"too short to classify (under {config.DEFAULT_MIN_DURATION_S:g} s)"
    assert track.error is None and track.genre is None and track.embedding is None
    assert track.duration_s == pytest.approx(2.0)
    with session_scope() as s:
        counts = db_status.status(s)
    assert (counts.done, counts.skipped, counts.failed, counts.total) == (1, 1, 0, 2)
    assert counts.as_dict()["skipped"] == 1

    monkeypatch.setenv("GENREQ_MIN_DURATION", "1.5")
    again = new_track(song(tmp_path / "blip again.wav", 2.0))
    assert tasks.classify_track.run(again) == "done"
    monkeypatch.setenv("GENREQ_MIN_DURATION", "30")
    assert tasks.classify_track.run(new_track(song(tmp_path / "b.wav", 4.0))) == "too_short"


def test_a_failure_keeps_its_reason_without_the_path(sqlite_url, use, crnn, tmp_path):
    use(crnn)
    bad = tmp_path / "not audio.wav"
    bad.write_bytes(b"RIFF but not really a wave file" * 100)
    track_id = new_track(bad)
    assert tasks.classify_track.run(track_id) == "failed"
    track = get(track_id)
    assert track.error.startswith(f"{bad}: ")
    assert track.reason == track.error.removeprefix(f"{bad}: ")


@pytest.mark.parametrize("value", ["-1", "soon", "inf"])
def test_a_bad_min_duration_setting_is_refused(value, monkeypatch):
    monkeypatch.setenv("GENREQ_MIN_DURATION", value)
    with pytest.raises(GenreqError, match="GENREQ_MIN_DURATION"):
        config.min_duration_s()


def test_the_migration_keeps_results_and_takes_skipped_tracks_back_down(db_url):
    previous = "9c292d62deb1"
    migrate.downgrade(db_url, previous)
    engine = get_engine(db_url)
    insert = text("INSERT INTO tracks (path, size_bytes, mtime_ns, state, attempts, queued_at, "
                  "genre) VALUES (:p, 1, 1, :s, 0, CURRENT_TIMESTAMP, :g)")
    with engine.begin() as c:
        c.execute(insert, {"p": "/old.wav", "s": "done", "g": "jazz"})
    engine.dispose()
    migrate.upgrade(db_url)
    with session_scope() as s:
        old = s.query(Track).filter_by(path="/old.wav").one()
        assert (old.state, old.genre, old.embedding, old.file_genres) == (
            State.done, "jazz", None, None)
        add_track(s, "/short.wav", "skipped", reason="too short to classify (under 3 s)")
    engine = get_engine(db_url)
    # the CHECK takes the new state, and only known ones
    with engine.connect() as c, pytest.raises(Exception, match="(?i)check"):
        c.execute(insert, {"p": "/bad.wav", "s": "bogus", "g": None})
    engine.dispose()
    migrate.downgrade(db_url, previous)
    with get_engine(db_url).connect() as c:
        states = dict(c.execute(text("SELECT path, state FROM tracks")).all())
    assert states == {"/old.wav": "done", "/short.wav": "queued"}
    migrate.upgrade(db_url)
