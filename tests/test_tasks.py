"""The classify task's logic, with a stand-in classifier (the real one runs in test_e2e)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy.exc
from conftest import add_track

from genreq.db.models import State, Track
from genreq.db.session import session_scope
from genreq.errors import AudioError
from genreq.worker import tasks

StubPrediction = SimpleNamespace(
    genre="jazz", confidence=0.75, probs={"jazz": 0.75, "blues": 0.2, "rock": 0.05}, duration_s=30.0
)


class StubClassifier:
    name = "stub"
    version = "0123abcd"

    def __init__(self, error: Exception | None = None):
        self.error = error
        self.calls: list[str] = []

    def classify_file(self, path):
        self.calls.append(path)
        if self.error:
            raise self.error
        return StubPrediction


@pytest.fixture
def stub(monkeypatch):
    def install(error: Exception | None = None) -> StubClassifier:
        classifier = StubClassifier(error)
        monkeypatch.setattr(tasks, "_classifier", classifier)
        return classifier

    return install


def new_track(path="/music/a.flac") -> int:
    with session_scope() as s:
        return add_track(s, path).id


def get(track_id) -> Track:
    with session_scope() as s:
        return s.get(Track, track_id)


def test_success_records_prediction_model_and_time(sqlite_url, stub):
    classifier = stub()
    track_id = new_track()
    assert tasks.classify_track.run(track_id) == "done"
    track = get(track_id)
    assert (track.state, track.genre, track.confidence, track.duration_s) == (
        State.done, "jazz", 0.75, 30.0)
    assert track.probs == StubPrediction.probs
    assert (track.model_name, track.model_version) == ("stub", "0123abcd")
    assert track.elapsed_s >= 0 and track.attempts == 1 and track.finished_at is not None
    # Done is done: a repeated task does nothing.
    assert tasks.classify_track.run(track_id) == "skipped"
    assert classifier.calls == ["/music/a.flac"]


def test_unreadable_audio_is_a_permanent_failure(sqlite_url, stub):
    classifier = stub(AudioError("/music/a.flac", "not decodable audio"))
    track_id = new_track()
    assert tasks.classify_track.run(track_id) == "failed"
    track = get(track_id)
    assert (track.state, track.error) == (State.failed, "/music/a.flac: not decodable audio")
    assert tasks.classify_track.run(track_id) == "skipped"  # no retry
    assert len(classifier.calls) == 1


def test_unexpected_error_fails_the_file_not_the_worker(sqlite_url, stub):
    stub(ValueError("odd header"))
    track_id = new_track()
    assert tasks.classify_track.run(track_id) == "failed"
    assert get(track_id).error == "/music/a.flac: ValueError: odd header"


def test_transient_error_propagates_for_retry(sqlite_url, stub):
    locked = sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
    stub(locked)
    track_id = new_track()
    with pytest.raises(sqlalchemy.exc.OperationalError):
        tasks.classify_track.run(track_id)
    assert get(track_id).state == State.running  # claimed, not failed: the retry claims again
    stub()
    assert tasks.classify_track.run(track_id) == "done"
    assert get(track_id).attempts == 2


def test_unknown_track_is_skipped(sqlite_url, stub):
    stub()
    assert tasks.classify_track.run(12345) == "skipped"


def test_task_options():
    task = tasks.classify_track
    conf = tasks.app.conf
    assert (conf.task_serializer, conf.accept_content) == ("json", ["json"])
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert sqlalchemy.exc.OperationalError in task.autoretry_for
    assert AudioError not in task.autoretry_for
    assert task.retry_backoff
