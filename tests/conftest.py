"""Shared fixtures: an isolated environment per test, real redis-server and database
helpers for the end-to-end tests, and a small audio library."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The labelled clips shared next to the repository (absent on machines without them).
SHARED_DATA = REPO.parent / "shared" / "data"
GENREQ = [sys.executable, "-m", "genreq.cli"]
POSTGRES_URL = os.environ.get("GENREQ_TEST_POSTGRES_URL")
CONFIG_VARS = ("GENREQ_HOME", "GENREQ_DATABASE_URL", "GENREQ_BROKER_URL", "GENREQ_MODEL")
COMMAND_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def genreq_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own GENREQ_HOME and none of the caller's genreq settings."""
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("GENREQ_HOME", str(home))
    yield home
    # Whatever a failing test left running under this home: workers, embedded broker.
    if home.exists():
        from genreq.app import pipeline

        pipeline.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite file, set as GENREQ_DATABASE_URL."""
    from genreq.db import migrate

    url = f"sqlite:///{tmp_path / 'test.db'}"
    monkeypatch.setenv("GENREQ_DATABASE_URL", url)
    migrate.upgrade(url)
    return url


def reset_postgres(url: str) -> None:
    """Empty the test database (the suite owns it) and migrate it afresh."""
    from genreq.db import migrate

    migrate.downgrade(url, "base")
    migrate.upgrade(url)


@pytest.fixture
def postgres_url(monkeypatch: pytest.MonkeyPatch) -> str:
    if not POSTGRES_URL:
        pytest.skip("GENREQ_TEST_POSTGRES_URL is not set")
    reset_postgres(POSTGRES_URL)
    monkeypatch.setenv("GENREQ_DATABASE_URL", POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a unix socket, for this test only."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    sock = tmp_path / "redis.sock"
    process = subprocess.Popen(
        [server, "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis+socket://{sock}"
    finally:
        process.terminate()
        process.wait(10)


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

    def __init__(self, log_path: Path, concurrency: int = 1):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*GENREQ, "worker", "--concurrency", str(concurrency)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.process.wait()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    workers: list[WorkerProcess] = []

    def start(concurrency: int = 1) -> WorkerProcess:
        worker = WorkerProcess(tmp_path / f"worker-{len(workers)}.log", concurrency)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()


def wait_until_finished(total: int, timeout_s: float = 180, worker: WorkerProcess | None = None):
    """Poll `genreq status --json` until every track is done or failed."""
    import json

    deadline = time.monotonic() + timeout_s
    while True:
        status = json.loads(genreq("status", "--json").stdout)
        if status["total"] == total and status["done"] + status["failed"] == total:
            return status
        if worker is not None and worker.process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{worker.log()}")
        if time.monotonic() > deadline:
            log = worker.log() if worker else ""
            raise AssertionError(f"not finished after {timeout_s} s: {status}\n{log}")
        time.sleep(0.5)


# --- audio ---------------------------------------------------------------------------

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


def _synthesize(path: Path, index: int) -> None:
    import numpy as np
    import soundfile

    rng = np.random.default_rng(index)
    t = np.arange(int(SAMPLE_RATE * SYNTH_DURATION_S)) / SAMPLE_RATE
    if index % 2:
        audio = 0.3 * rng.standard_normal(t.size)
    else:
        audio = 0.5 * np.sin(2 * np.pi * (220 + 110 * index) * t)
    soundfile.write(path, audio.astype(np.float32), SAMPLE_RATE)


@pytest.fixture
def audio_library(tmp_path: Path) -> dict:
    """A small library: 6 readable audio files (one with an upper-case extension, one in
    a subfolder), a corrupt .mp3, and a text file. Shared clips when present."""
    lib = tmp_path / "library"
    (lib / "more").mkdir(parents=True)
    names = [f"{i}-{Path(c).name}" for i, c in enumerate(SHARED_CLIPS)]
    use_shared = all((SHARED_DATA / clip).exists() for clip in SHARED_CLIPS)
    audio = []
    for i, name in enumerate(names):
        if not use_shared:
            name = f"{i}-synth.wav"
        if i == 1:
            name = name.rsplit(".", 1)[0] + "." + name.rsplit(".", 1)[1].upper()
        target = lib / ("more" if i == 5 else "") / name
        if use_shared:
            shutil.copyfile(SHARED_DATA / SHARED_CLIPS[i], target)
        else:
            _synthesize(target, i)
        audio.append(target)
    corrupt = lib / "more" / "corrupt.mp3"
    corrupt.write_bytes(b"this is not audio" * 100)
    (lib / "notes.txt").write_text("not audio\n")
    return {"root": lib, "audio": sorted(audio), "corrupt": corrupt, "ignored": 1}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    """A migrated database, SQLite and (when configured) PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


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
