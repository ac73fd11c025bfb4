"""The bad-input corpus through the real pipeline: every file ends `done`, `failed` with
a reason that names it, or `skipped` (too short), and the worker keeps going."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from bad_input import write_corpus
from helpers import genreq, wait_until_finished

from genreq.worker.app import CLASSIFY_BATCH_TASK, TASK_BATCH_SPREAD

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def rows_by_path() -> dict[str, dict]:
    done = json.loads(genreq("export", "--format", "json").stdout)
    failed = json.loads(genreq("status", "--json", "--failed").stdout)["failures"]
    rows = {row["path"]: {"state": "done", **row} for row in done}
    rows.update({row["path"]: {"state": "failed", **row} for row in failed})
    return rows


@pytest.mark.parametrize("batched", [False, True], ids=["one-per-message", "batched"])
def test_corpus_every_file_accounted_for(tmp_path, start_worker, batched):
    lib = tmp_path / "library"
    expected = write_corpus(lib)
    if batched:
        # Enough valid tracks beside the corpus that enqueue sends several per message.
        # Walked last, they make the single-track tail (task_batches), so every corpus
        # file travels in a batch.
        for i in range(2 * TASK_BATCH_SPREAD):
            padding = lib / f"zz padding {i:02d}.wav"
            shutil.copyfile(lib / "digital silence.wav", padding)
            expected[padding] = ("done", None)
    # A directory whose name ends in .wav is walked into, not classified.
    (lib / "album.wav").mkdir()
    inside = lib / "album.wav" / "track 01.wav"
    shutil.copyfile(lib / "digital silence.wav", inside)
    expected[inside] = ("done", None)
    # A symlink loop ends the walk instead of running forever.
    (lib / "album.wav" / "loop").symlink_to(lib, target_is_directory=True)
    # Deleted between enqueue and processing.
    vanishing = lib / "deleted later.wav"
    shutil.copyfile(lib / "digital silence.wav", vanishing)
    expected[vanishing] = ("failed", "no such file")

    result = genreq("enqueue", lib)
    assert result.stderr.strip() == f"queued {len(expected)} · already known 0 · ignored 0"
    vanishing.unlink()

    worker = start_worker(concurrency=1)
    status = wait_until_finished(len(expected), timeout_s=300, worker=worker)
    batch_tasks = worker.log().count(CLASSIFY_BATCH_TASK)
    assert batch_tasks > 0 if batched else batch_tasks == 0
    skipped = {str(p) for p, (state, _) in expected.items() if state == "skipped"}
    assert status["done"] + status["failed"] + status["skipped"] == len(expected)
    assert status["skipped"] == len(skipped)

    rows = rows_by_path()
    assert set(rows) == {str(p) for p in expected} - skipped  # neither exported nor failed
    for path, (state, reason) in expected.items():
        if state == "skipped":
            continue
        row = rows[str(path)]
        assert row["state"] == state, (path, row)
        if state == "failed":
            assert row["error"].startswith(f"{path}: "), row["error"]
            assert reason in row["error"].lower(), row["error"]
        else:
            assert 0.0 <= row["confidence"] <= 1.0
            assert all(0.0 <= t["probability"] <= 1.0 for t in row["top"]), row
    noted = {p: r for p, (state, r) in expected.items() if state == "done" and r}
    listing = genreq("status").stdout
    assert ("classified, with a note:" in listing) == bool(noted)
    for path, words in noted.items():
        assert f"{path}: " in listing and words in listing, listing
        assert words in json.loads(genreq("show", path, "--json").stdout)["note"]
    assert worker.process.poll() is None, "the worker must survive every file"
    assert "Traceback" not in worker.log()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make the files")
def test_without_ffmpeg_on_path_m4a_and_opus_classify(tmp_path):
    """The ffmpeg program only makes the files: genreq decodes them in-process."""
    files = []
    for ext in ("m4a", "opus"):
        files.append(tmp_path / f"song.{ext}")
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                        "sine=frequency=440:duration=3", str(files[-1])], check=True)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**os.environ, "PATH": str(empty_bin)}
    result = subprocess.run([sys.executable, "-m", "genreq.cli", "classify", *map(str, files)],
                            check=False, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    for path in files:
        assert str(path) in result.stdout


def test_hour_long_file_costs_what_a_clip_costs(tmp_path):
    """Bounded memory: only the excerpts of a long file are decoded. Peak RSS after the
    hour-long file must stay within a few MB of the peak after a 30-s clip (decoding it
    whole would add ~300 MB)."""
    import numpy as np
    import soundfile as sf

    rate = 8000
    hour, clip = tmp_path / "hour.wav", tmp_path / "clip.wav"
    with sf.SoundFile(hour, "w", rate, 1, "PCM_16") as out:
        block = (0.3 * np.sin(np.arange(60 * rate) * 0.05)).astype(np.float32)
        for _ in range(60):
            out.write(block)
    sf.write(clip, block[: 30 * rate], rate)
    script = (
        "import resource, sys\n"
        "from genreq.predict import Classifier\n"
        "clf = Classifier.load()\n"
        "clf.classify_file(sys.argv[1])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "p = clf.classify_file(sys.argv[2])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) // 1024, round(p.duration_s))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(clip), str(hour)],
                            capture_output=True, text=True, check=True, timeout=120)
    grown_mb, duration_s = map(int, result.stdout.split())
    assert duration_s == 3600
    assert grown_mb < 30, f"peak RSS grew by {grown_mb} MB on the hour-long file"
