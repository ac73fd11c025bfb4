"""The workers' status channel (GENREQ_HOME/workers/<pid>.json): what a worker writes,
what `run` makes of it, and a model that cannot be loaded stopping `run` and `worker`
with the reason, before any track is blamed."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import GENREQ, genreq

from genreq.app import workers
from genreq.errors import GenreqError


def test_status_is_written_whole_and_read_back(genreq_home):
    workers.write_status(4242, workers.STARTING)
    workers.write_status(4242, workers.FAILED, error="m.pt: not a genreq checkpoint")
    assert workers.read_status(4242) == {"pid": 4242, "state": "failed",
                                         "error": "m.pt: not a genreq checkpoint"}
    assert [p.name for p in (genreq_home / "workers").iterdir()] == ["4242.json"]
    assert workers.read_status(4343) is None


def exited(code: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A real process that has run `code` (with `pid` its own pid) and exited."""
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "import os; from genreq.app import workers; "
                                   f"pid = os.getpid(); {code}"],
            stdout=log, stderr=subprocess.STDOUT)
    process.wait(60)
    return process, log_path


def test_run_reads_the_reason_a_worker_failed(tmp_path):
    process, log_path = exited(
        "workers.write_status(pid, workers.FAILED, error='m.pt: no such file'); exit(1)",
        tmp_path)
    with pytest.raises(GenreqError) as caught:
        workers.check_alive(process, log_path)
    assert str(caught.value) == f"the workers stopped: m.pt: no such file (log: {log_path})"


def test_a_worker_that_dies_without_a_reason_is_reported_with_its_log(tmp_path):
    process, log_path = exited("print('segfault, say'); exit(3)", tmp_path)
    with pytest.raises(GenreqError) as caught:
        workers.check_alive(process, log_path)
    assert str(caught.value) == (f"the workers stopped (exit status 3); last lines of "
                                 f"{log_path}:\nsegfault, say")


def test_a_running_ready_worker_is_alive(tmp_path):
    log_path = tmp_path / "worker.log"
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        workers.write_status(process.pid, workers.READY, model="crnn")
        workers.check_alive(process, log_path)  # no exception
    finally:
        process.kill()
        process.wait()


@pytest.mark.e2e
@pytest.mark.slow
def test_run_with_a_broken_model_fails_fast_with_the_reason(genreq_home, audio_library,
                                                            tmp_path, monkeypatch):
    """`--model` reaches the worker on its command line; the worker cannot load it and
    says why in its status file; run stops with that reason, blaming no track."""
    monkeypatch.chdir(tmp_path)
    Path("broken.pt").write_bytes(b"not a checkpoint")
    started = time.monotonic()
    result = genreq("run", audio_library["root"], "--workers", "1", "--model", "broken.pt",
                    check=False)
    elapsed_s = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    error = result.stderr[result.stderr.index("Error: "):]
    assert error.startswith("Error: the workers stopped: broken.pt: "), result.stderr
    assert error.rstrip().endswith(f"(log: {genreq_home / 'logs' / 'run-workers.log'})")
    # Start-up (imports, broker, the failed load) and no waiting on tracks: well under
    # the time a track would be given.
    assert elapsed_s < 60
    assert not list((genreq_home / "workers").iterdir())  # read, then removed
    status = json.loads(genreq("status", "--json").stdout)
    assert status["failed"] == 0 and status["done"] == 0


@pytest.mark.e2e
@pytest.mark.slow
def test_worker_with_a_missing_model_exits_with_the_reason(genreq_home, tmp_path):
    missing = tmp_path / "missing.pt"
    process = subprocess.run([*GENREQ, "worker", "--model", str(missing)], capture_output=True,
                             text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert process.returncode == 1
    assert process.stderr.splitlines()[-1].startswith(f"Error: {missing}")
    (status_file,) = (genreq_home / "workers").iterdir()
    status = json.loads(status_file.read_text())
    assert status["state"] == "failed" and status["error"].startswith(str(missing))
    assert genreq("stop").stderr.startswith("stopped 0 workers")  # a dead worker's file
    assert not list((genreq_home / "workers").iterdir())
