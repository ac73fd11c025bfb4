"""Classifier.classify_file's stage hook, with the shipped model on real files: every
stage reported once and in order, their sum is the call's time, and the prediction is
the one made without a hook."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreq.errors import AudioError
from genreq.predict import STAGES, Classifier, StageTimes

FILE_RATE = 44100  # not the model's rate, so the resample stage has work to do
SECONDS = 40.0  # longer than one excerpt window: decoding seeks


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load()


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    """Stereo 44.1 kHz: chords with a noise beat, so features and model see music-like input."""
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * FILE_RATE)) / FILE_RATE
    beat = (np.sin(2 * np.pi * 2 * t) > 0.9) * rng.standard_normal(t.size)
    mono = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t) + 0.2 * beat
    path = tmp_path_factory.mktemp("predict") / "song.wav"
    sf.write(path, np.stack([mono, mono * 0.8], axis=1).astype(np.float32), FILE_RATE)
    return path


def test_each_stage_is_reported_once_in_order(classifier, song):
    calls: list[tuple[str, float]] = []
    classifier.classify_file(song, on_stage=lambda stage, s: calls.append((stage, s)))
    assert [stage for stage, _ in calls] == list(STAGES)
    assert all(seconds >= 0 for _, seconds in calls)
    seconds = dict(calls)
    assert seconds["resample"] > 0  # 44.1 kHz to the model's rate is real work
    assert seconds["features"] > 0 and seconds["model"] > 0


def test_the_stages_add_up_to_the_call(classifier, song):
    classifier.classify_file(song)  # first-call set-up (oneDNN kernels) is not a stage
    times = StageTimes()
    started = time.perf_counter()
    classifier.classify_file(song, on_stage=times)
    total_s = time.perf_counter() - started
    # What is left out: the call itself, the checks between stages, building the result.
    assert times.total_s <= total_s
    assert total_s - times.total_s < 0.1 * total_s + 0.005


def test_the_hook_changes_nothing_in_the_prediction(classifier, song):
    plain = classifier.classify_file(song)
    timed = classifier.classify_file(song, on_stage=StageTimes())
    assert (timed.genre, timed.duration_s) == (plain.genre, plain.duration_s)
    assert timed.probs == pytest.approx(plain.probs, abs=1e-6)


def test_stage_times_sum_over_calls(classifier, song):
    times = StageTimes()
    classifier.classify_file(song, on_stage=times)
    once = dict(times)
    classifier.classify_file(song, on_stage=times)
    assert list(times) == list(STAGES)
    assert all(times[stage] > once[stage] for stage in STAGES)
    assert times.total_s == pytest.approx(sum(times.values()))


def test_a_file_that_fails_reports_the_stages_before_it(classifier, tmp_path):
    bad = tmp_path / "not-audio.wav"
    bad.write_bytes(b"RIFF but not really a wave file" * 100)
    times = StageTimes()
    with pytest.raises(AudioError, match="not-audio.wav"):
        classifier.classify_file(bad, on_stage=times)
    assert list(times) == ["probe"]
