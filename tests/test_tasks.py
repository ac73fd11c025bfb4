"""The classify tasks' logic, with a stand-in classifier (the real one runs in test_e2e)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import soundfile
import sqlalchemy.exc
from celery.exceptions import SoftTimeLimitExceeded
from helpers import add_track

from genreq import audio, config
from genreq.app.reasons import count_reasons
from genreq.db.models import State, Track
from genreq.db.session import session_scope
from genreq.errors import AudioError, GenreqError
from genreq.predict import Prediction
from genreq.worker import app as worker_app
from genreq.worker import tasks

StubPrediction = Prediction(
    genre="jazz", confidence=0.75, probs={"jazz": 0.75, "blues": 0.2, "rock": 0.05},
    duration_s=30.0, tags={}, embedding=None, embedding_model="",
)


class StubClassifier:
    name = "stub"
    version = "0123abcd"

    def __init__(self, error: Exception | None = None, errors: dict | None = None,
                 notes: dict | None = None):
        self.error = error
        self.errors = errors or {}  # path -> the exception classifying it raises
        self.notes = notes or {}  # path -> the note of its prediction
        self.calls: list[str] = []

    def classify_file(self, path, min_duration_s=0.0):
        self.calls.append(path)
        if error := self.errors.get(path, self.error):
            raise error
        return replace(StubPrediction, note=self.notes.get(path, ""))


@pytest.fixture
def stub(monkeypatch):
    def install(error: Exception | None = None, errors: dict | None = None,
                notes: dict | None = None) -> StubClassifier:
        classifier = StubClassifier(error, errors, notes)
        monkeypatch.setattr(tasks, "_classifier", classifier)
        return classifier

    return install


def new_track(path="/music/a.flac") -> int:
    with session_scope() as s:
        return add_track(s, path).id


def get(track_id) -> Track:
    with session_scope() as s:
        return s.get(Track, track_id)


def test_a_track_decoded_around_damage_is_done_and_counted_with_its_note(sqlite_url, stub):
    note = audio.Damage(damaged=3, packets=1200).note()
    stub(notes={"/music/b.m4a": note})
    ids = [new_track("/music/a.flac"), new_track("/music/b.m4a")]
    assert [tasks.classify_track.run(i) for i in ids] == ["done", "done"]
    a, b = (get(i) for i in ids)
    assert (a.reason, a.error) == (None, None)
    assert (b.state, b.genre, b.reason) == (State.done, "jazz", audio.DAMAGED)
    assert b.error == f"/music/b.m4a: {note}"
    with session_scope() as s:
        (counted,) = count_reasons(s)
    assert (counted.state, counted.reason, counted.count) == ("done", audio.DAMAGED, 1)
    assert counted.example_error == b.error


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


class MovedAway(StubClassifier):
    """A classifier during whose read an enqueue follows the file to a new path: the
    old path is gone (no such file), the row holds the new one."""

    def __init__(self, moves: dict[str, str]):
        super().__init__()
        self.moves = moves

    def classify_file(self, path, min_duration_s=0.0):
        if path in self.moves:
            self.calls.append(path)
            with session_scope() as s:
                s.query(Track).filter(Track.path == path).update({"path": self.moves[path]})
            raise AudioError(path, "no such file")
        return super().classify_file(path, min_duration_s)


@pytest.mark.parametrize("batch", [False, True])
def test_a_file_moved_while_held_is_classified_at_its_new_path(sqlite_url, monkeypatch,
                                                                batch, handed_on):
    classifier = MovedAway({"/music/a.flac": "/music/sorted/a.flac"})
    monkeypatch.setattr(tasks, "_classifier", classifier)
    ids = [new_track("/music/a.flac"), new_track("/music/b.flac")]
    if batch:
        assert tasks.classify_tracks.run(ids)["done"] == 2
    else:
        assert [tasks.classify_track.run(i) for i in ids] == ["done", "done"]
    assert classifier.calls == ["/music/a.flac", "/music/sorted/a.flac", "/music/b.flac"]
    moved = get(ids[0])
    assert (moved.path, moved.state, moved.genre, moved.error) == (
        "/music/sorted/a.flac", State.done, "jazz", None)


def test_a_file_gone_while_held_and_not_moved_fails_as_before(sqlite_url, stub):
    classifier = stub(AudioError("/music/a.flac", "no such file"))
    track_id = new_track()
    assert tasks.classify_track.run(track_id) == "failed"
    assert classifier.calls == ["/music/a.flac"]  # the row's path is the same: no retry


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
    # Given back, not failed, the attempt not counted: the retry claims it again.
    assert (get(track_id).state, get(track_id).attempts) == (State.queued, 0)
    stub()
    assert tasks.classify_track.run(track_id) == "done"
    assert get(track_id).attempts == 1


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
    # Short: a redelivered copy of a running task's message is a no-op under the leases,
    # and a message a dead worker had fetched comes back within the recovery guarantee.
    options = conf.broker_transport_options
    assert options["visibility_timeout"] + options["unacked_restore_interval"] < 120
    assert options["unacked_restore_throttle"] == 1
    assert sqlalchemy.exc.OperationalError in task.autoretry_for
    assert AudioError not in task.autoretry_for
    assert task.retry_backoff


@pytest.fixture
def handed_on(monkeypatch) -> list[int]:
    """Track ids the batch task hands on to one-track tasks (no broker here)."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.classify_track, "delay", sent.append)
    return sent


def test_batch_classifies_each_track_and_writes_failures_apart(sqlite_url, stub, handed_on):
    classifier = stub(errors={"/music/b.ogg": AudioError("/music/b.ogg", "truncated")})
    ids = [new_track("/music/a.flac"), new_track("/music/b.ogg"), new_track("/music/c.mp3")]
    assert tasks.classify_tracks.run(ids) == {
        "done": 2, "failed": 1, "too_short": 0, "skipped": 0, "handed_on": 0,
        "lease_lost": 0}
    a, b, c = (get(i) for i in ids)
    assert (a.state, a.genre, a.probs, a.attempts) == (State.done, "jazz", StubPrediction.probs, 1)
    assert (b.state, b.error, b.genre) == (State.failed, "/music/b.ogg: truncated", None)
    assert c.state == State.done and c.model_name == "stub"
    assert a.finished_at <= c.finished_at
    assert classifier.calls == ["/music/a.flac", "/music/b.ogg", "/music/c.mp3"]
    # The same message again (redelivered after its ack was lost): nothing to do.
    assert tasks.classify_tracks.run(ids) == {
        "done": 0, "failed": 0, "too_short": 0, "skipped": 3, "handed_on": 0,
        "lease_lost": 0}
    assert len(classifier.calls) == 3 and handed_on == []


def test_batch_hands_tracks_left_running_to_one_track_tasks(sqlite_url, stub, handed_on):
    """A batch redelivered after its worker died finds its tracks running under a lease
    that ran out (here: none at all): each goes to a task of its own, so a file that
    kills workers cannot spend its batch-mates' attempts."""
    classifier = stub()
    ids = [new_track("/music/a.flac"), new_track("/music/b.ogg")]
    with session_scope() as s:
        s.get(Track, ids[0]).state = State.running
    assert tasks.classify_tracks.run(ids) == {
        "done": 1, "failed": 0, "too_short": 0, "skipped": 0, "handed_on": 1,
        "lease_lost": 0}
    assert handed_on == [ids[0]] and classifier.calls == ["/music/b.ogg"]
    assert tasks.classify_track.run(ids[0]) == "done"  # what the handed-on task does


def test_batch_time_limit_fails_the_slow_file_and_hands_on_the_rest(sqlite_url, stub, handed_on):
    stub(errors={"/music/slow.wav": SoftTimeLimitExceeded()})
    ids = [new_track("/music/a.flac"), new_track("/music/slow.wav"), new_track("/music/c.mp3")]
    assert tasks.classify_tracks.run(ids) == {
        "done": 1, "failed": 1, "too_short": 0, "skipped": 0, "handed_on": 1,
        "lease_lost": 0}
    slow = get(ids[1])
    assert slow.state == State.failed and slow.error.startswith("/music/slow.wav: stopped after")
    assert "time limit" in slow.error
    # The rest of the batch is given back and handed on, to be claimed again alone.
    assert (get(ids[0]).state, get(ids[2]).state) == (State.done, State.queued)
    assert handed_on == [ids[2]]
    assert tasks.classify_track.run(ids[2]) == "done"


def test_batch_transient_error_propagates_and_loses_nothing(sqlite_url, stub, handed_on):
    locked = sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
    stub(errors={"/music/b.ogg": locked})
    ids = [new_track("/music/a.flac"), new_track("/music/b.ogg")]
    with pytest.raises(sqlalchemy.exc.OperationalError):
        tasks.classify_tracks.run(ids)
    # Nothing written, both given back: the retry of the message claims them again.
    assert [get(i).state for i in ids] == [State.queued, State.queued]
    stub()
    assert tasks.classify_tracks.run(ids)["done"] == 2
    assert [get(i).attempts for i in ids] == [1, 1]


@pytest.mark.parametrize(("n", "sizes"), [
    (0, []),
    (5, [1] * 5),  # few tracks: one per message, so every worker gets some
    (40, [2] * 12 + [1] * 16),  # and the last 16 alone, so that workers finish together
    (130, [8] * 14 + [2] + [1] * 16),
    (500, [8] * 60 + [4] + [1] * 16),
])
def test_task_batches(n, sizes):
    ids = list(range(100, 100 + n))
    batches = list(worker_app.task_batches(ids))
    assert [len(b) for b in batches] == sizes
    assert [i for b in batches for i in b] == ids


def test_batch_task_options():
    task = tasks.classify_tracks
    conf = tasks.app.conf
    assert sqlalchemy.exc.OperationalError in task.autoretry_for and task.retry_backoff
    # A batch may outlive the visibility timeout (per-track limit times its length): the
    # copy Redis then hands out is a no-op (the next test).
    assert (conf.broker_transport_options["visibility_timeout"]
            < worker_app.TASK_HARD_TIME_LIMIT_S * config.MAX_TASK_BATCH)


def test_a_copy_of_a_batch_still_running_elsewhere_does_nothing(sqlite_url, stub, handed_on):
    """Redis redelivers a slow batch's message after the visibility timeout while the
    first worker still works on it: its tracks are under that worker's live lease."""
    from genreq.db import work
    from genreq.db.session import transaction

    classifier = stub()
    ids = [new_track("/music/a.flac"), new_track("/music/b.ogg")]
    with transaction() as db:
        assert work.claim_batch(db, ids, tasks.MAX_ATTEMPTS, work.new_claim("host:1", 60))
    assert tasks.classify_tracks.run(ids) == {
        "done": 0, "failed": 0, "too_short": 0, "skipped": 2, "handed_on": 0,
        "lease_lost": 0}
    assert classifier.calls == [] and handed_on == []
    assert [get(i).claimed_by for i in ids] == ["host:1", "host:1"]


class RecordingApp:
    """Stands in for the Celery app: records what send_classify would publish."""

    def __init__(self):
        self.sent: list[tuple] = []

    def send_task(self, name, args, producer, **options):
        self.sent.append((name, args, options))


def test_send_classify_batches_and_single_ids(monkeypatch):
    celery_app = RecordingApp()
    assert worker_app.send_classify(list(range(40)), None, celery_app) == 28
    name, args, options = celery_app.sent[0]
    assert (name, args) == (worker_app.CLASSIFY_BATCH_TASK, [[0, 1]])
    assert options == {"soft_time_limit": 2 * worker_app.TASK_SOFT_TIME_LIMIT_S,
                       "time_limit": 2 * worker_app.TASK_HARD_TIME_LIMIT_S}
    # GENREQ_TASK_BATCH=1: one track id per message, the one-track task.
    monkeypatch.setenv("GENREQ_TASK_BATCH", "1")
    celery_app = RecordingApp()
    assert worker_app.send_classify([7, 8], None, celery_app) == 2
    assert celery_app.sent == [(worker_app.CLASSIFY_TASK, [7], {}),
                               (worker_app.CLASSIFY_TASK, [8], {})]


@pytest.mark.parametrize("value", ["0", "17", "eight", "-1"])
def test_task_batch_setting_is_checked(monkeypatch, value):
    monkeypatch.setenv("GENREQ_TASK_BATCH", value)
    with pytest.raises(GenreqError, match="GENREQ_TASK_BATCH must be a whole number from 1 to 16"):
        config.task_batch()


# A fresh interpreter: what the worker's main process has imported before the pool forks,
# against what classifying and tag-reading the first files imports on top.
FIRST_TRACKS = """
import json, sys
from genreq import filetags
from genreq.worker import tasks
classifier = tasks.load_classifier()
before = set(sys.modules)
for path in sys.argv[1:]:
    classifier.classify_file(path)
    filetags.read(path)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_load_classifier_warms_up_what_the_first_track_would_import(tmp_path):
    """A pool process inherits the warm-up, so its first track pays no lazy import of the
    tag reader or of PyAV (bench/formats.py --real measures what that saved)."""
    samples = (0.1 * np.random.default_rng(0).standard_normal(44100 * 25)).astype(np.float32)
    paths = [tmp_path / "long.wav", tmp_path / "long.flac"]
    for path in paths:
        soundfile.write(path, samples, 44100)
    if shutil.which("ffmpeg"):  # an aac file goes through PyAV
        paths.append(tmp_path / "long.m4a")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(paths[0]), "-c:a", "aac",
                        str(paths[-1])], check=True, timeout=120)
    out = subprocess.run([sys.executable, "-c", FIRST_TRACKS, *map(str, paths)],
                         capture_output=True, text=True, timeout=300, check=True)
    imported = json.loads(out.stdout)
    # PyAV's subtitle module and a text codec still load on the first real file: small.
    heavy = [m for m in imported if not m.startswith(("av.subtitles", "encodings."))]
    assert heavy == []
