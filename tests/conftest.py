"""Shared fixtures: an isolated environment per test, real redis-server and databases for
the end-to-end tests, real worker processes, and a small audio library. What tests call
by name (the genreq command, polling, row inserts) lives in helpers.py."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    POSTGRES_URL,
    SHARED_CLIPS,
    SHARED_DATA,
    WorkerProcess,
    reset_postgres,
    synthesize,
)

# A shell starts a background job (`make test &`, nohup, a CI step run with &) with
# Ctrl-C ignored, and an ignored signal stays ignored across exec: every genreq process
# the tests start would then shrug off the SIGINT that the Ctrl-C tests send. A handled
# signal goes back to its default in an exec'd child, so handling it here restores it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

CONFIG_VARS = ("GENREQ_HOME", "GENREQ_DATABASE_URL", "GENREQ_BROKER_URL", "GENREQ_MODEL",
               "GENREQ_DATABASE_PASSWORD", "GENREQ_DATABASE_PASSWORD_FILE",
               "GENREQ_BROKER_PASSWORD", "GENREQ_BROKER_PASSWORD_FILE")


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
            synthesize(target, i)
        audio.append(target)
    corrupt = lib / "more" / "corrupt.mp3"
    corrupt.write_bytes(b"this is not audio" * 100)
    (lib / "notes.txt").write_text("not audio\n")
    return {"root": lib, "audio": sorted(audio), "corrupt": corrupt, "ignored": 1}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    """A migrated database, SQLite and (when configured) PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")
