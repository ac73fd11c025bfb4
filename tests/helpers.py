"""Helpers the tests import: paths, the genreq command in a subprocess, real worker
processes, polling for a finished library, synthesized audio and direct row inserts.
Fixtures live in conftest.py; this module holds what a test calls by name."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The labelled clips shared next to the repository (absent on machines without them).
SHARED_DATA = REPO.parent / "shared" / "data"
GENREQ = [sys.executable, "-m", "genreq.cli"]
POSTGRES_URL = os.environ.get("GENREQ_TEST_POSTGRES_URL")
COMMAND_TIMEOUT_S = 120

# Two clips each of three genres the model tells apart well, from the shared data.
SHARED_CLIPS = [
    "gtzan/classical/classical.00000.ogg",
    "gtzan/classical/classical.00001.ogg",
    "gtzan/metal/metal.00000.ogg",
    "gtzan/metal/metal.00001.ogg",
    "gtzan/hiphop/hiphop.00000.ogg",
    "gtzan/hiphop/hiphop.00001.ogg",
]
SAMPLE_RATE = 22050
SYNTH_DURATION_S = 6.0


def reset_postgres(url: str) -> None:
    """Empty the test database (the suite owns it) and migrate it afresh."""
    from genreq.db import migrate

    migrate.downgrade(url, "base")
    migrate.upgrade(url)


def genreq(*args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_S):
    """Run the genreq command line in a subprocess with the current environment."""
    result = subprocess.run(
        [*GENREQ, *map(str, args)], check=False, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"genreq {' '.join(map(str, args))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


class WorkerProcess:
    """A real `genreq worker` subprocess, always cleaned up."""

    def __init__(self, log_path: Path, concurrency: int = 1, options: tuple[str, ...] = ()):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*GENREQ, "worker", "--concurrency", str(concurrency), *options],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            # a worker that ignores SIGTERM gets SIGKILL below, with its whole group
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


def wait_until_finished(total: int, timeout_s: float = 180, worker: WorkerProcess | None = None):
    """Poll `genreq status --json` until every track is done, failed or skipped."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = json.loads(genreq("status", "--json").stdout)
        finished = status["done"] + status["failed"] + status["skipped"]
        if status["total"] == total and finished == total:
            return status
        if worker is not None and worker.process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{worker.log()}")
        if time.monotonic() > deadline:
            log = worker.log() if worker else ""
            raise AssertionError(f"not finished after {timeout_s} s: {status}\n{log}")
        time.sleep(0.5)


def synthesize(path: Path, index: int) -> None:
    """A few seconds of a tone (even index) or noise (odd index), as a WAV file."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng(index)
    t = np.arange(int(SAMPLE_RATE * SYNTH_DURATION_S)) / SAMPLE_RATE
    if index % 2:
        audio = 0.3 * rng.standard_normal(t.size)
    else:
        audio = 0.5 * np.sin(2 * np.pi * (220 + 110 * index) * t)
    soundfile.write(path, audio.astype(np.float32), SAMPLE_RATE)


def add_track(session, path: str, state: str = "queued", genre: str | None = None,
              confidence: float = 0.5, **fields):
    """Insert one track row directly (unit tests of queries and output)."""
    from genreq.db.models import State, Track

    probs = fields.pop("probs", None)
    if genre and probs is None:
        probs = {genre: confidence, "other": round(1 - confidence, 4)}
    if genre:
        fields = {"model_name": "crnn", "model_version": "abc123", **fields}
    track = Track(path=path, size_bytes=fields.pop("size_bytes", 1),
                  mtime_ns=fields.pop("mtime_ns", 1), state=State(state), genre=genre,
                  confidence=confidence if genre else None, probs=probs, **fields)
    session.add(track)
    session.flush()
    return track
