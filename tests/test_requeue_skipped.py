"""A file skipped as too short is queued again once the minimum duration is lowered to
its length (`genreq run --min-duration S`, or GENREQ_MIN_DURATION for enqueue), and
only then: unchanged, still too short, it stays known."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from helpers import add_track, genreq

from genreq.app.walk import LibraryWalk
from genreq.db import queue
from genreq.db.models import State
from genreq.db.session import session_scope

RATE = 22050


def tone(path, seconds: float):
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)
    return path


def test_upsert_requeues_a_skipped_file_the_minimum_now_admits(sqlite_url, tmp_path):
    short = tone(tmp_path / "short.wav", 2.0)
    shorter = tone(tmp_path / "shorter.wav", 0.5)
    files = list(LibraryWalk([tmp_path]))
    with session_scope() as s:
        for f in files:
            add_track(s, f.path, "skipped", size_bytes=f.size_bytes, mtime_ns=f.mtime_ns,
                      duration_s=2.0 if f.path == str(short) else 0.5,
                      reason="too short to classify (under 3 s)")
    with session_scope() as s:
        result = queue.upsert_tracks(s, files, "same-minimum", min_duration_s=3.0)
    assert (result.queued_ids, result.known) == ([], 2)
    with session_scope() as s:
        result = queue.upsert_tracks(s, files, "lowered", min_duration_s=1.0)
        assert (len(result.queued_ids), result.known) == (1, 1)
        from genreq.db import tracks

        requeued = tracks.track_by_path(s, str(short))
        assert (requeued.state, requeued.reason, requeued.batch_id) == (
            State.queued, None, "lowered")
        assert tracks.track_by_path(s, str(shorter)).state == State.skipped


@pytest.mark.e2e
@pytest.mark.slow
def test_run_with_a_lower_minimum_classifies_what_it_skipped(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    tone(lib / "jingle.wav", 2.0)
    tone(lib / "song.wav", 6.0)
    genreq("run", lib, "--workers", "1", timeout=240)
    status = json.loads(genreq("status", "--json").stdout)
    assert (status["done"], status["skipped"]) == (1, 1)
    genreq("run", lib, "--workers", "1", timeout=240)  # same minimum: nothing to do
    assert json.loads(genreq("status", "--json").stdout)["skipped"] == 1
    result = genreq("run", lib, "--workers", "1", "--min-duration", "1", timeout=240)
    assert "queued 1 · already known 1" in result.stderr
    status = json.loads(genreq("status", "--json").stdout)
    assert (status["done"], status["skipped"]) == (2, 0)
