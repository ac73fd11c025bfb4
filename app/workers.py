"""Worker processes on this machine: serve one (`genreq worker`), start one as a child
(`genreq run`), stop those registered under GENREQ_HOME (`genreq stop`).

Each worker announces itself in one status file, GENREQ_HOME/workers/<pid>.json, that
only it writes (atomically: a whole JSON object or none):

    {"pid": 4242, "state": "starting"}                 before the model is loaded
    {"pid": 4242, "state": "ready", "model": "crnn", "model_version": "…"}
    {"pid": 4242, "state": "failed", "error": "<path>: not a genreq checkpoint (...)"}

`genreq stop` finds the workers by these files; `genreq run` reads its child's to tell
a model that cannot be loaded (a failure of the run, not of any track) from a crash.
The file goes when the worker stops; a failed one stays until it is read.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from genreq import config
from genreq.errors import GenreqError

log = logging.getLogger(__name__)

WORKER_STOP_TIMEOUT_S = 60.0
STARTING, READY, FAILED = "starting", "ready", "failed"

# The worker's command line is the `genreq` CLI run by this interpreter, but not as
# `python -m genreq.cli`: -m (and -c) put the current folder first on sys.path, so a
# `genreq/` folder there (a source checkout, with genreq installed from a wheel) would
# shadow the installed package and the worker would die on `No module named
# genreq.cli`. -P does the same on Python 3.11+ only, and -I would also drop
# PYTHONPATH and the user site that genreq may be installed in.
WORKER_BOOT = (
    "import sys\n"
    "if sys.path and sys.path[0] == '':\n"  # the current folder; absent under PYTHONSAFEPATH
    "    del sys.path[0]\n"
    "from genreq.cli.main import cli\n"
    "cli(prog_name='genreq')\n"
)


def workers_dir() -> Path:
    path = config.home() / "workers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def status_path(pid: int) -> Path:
    return workers_dir() / f"{pid}.json"


def write_status(pid: int, state: str, **fields) -> None:
    """Replace worker `pid`'s status file in one step (no reader sees half a file)."""
    path = status_path(pid)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"pid": pid, "state": state, **fields}))
    os.replace(tmp, path)


def read_status(pid: int) -> dict | None:
    """Worker `pid`'s status, or None when it has none (not started yet, or gone)."""
    try:
        return json.loads(status_path(pid).read_text())
    except (OSError, ValueError):
        return None


def serve(concurrency: int | None = None, loglevel: str = "INFO",
          model: str | None = None, events: bool = False) -> int:
    """Run a Celery worker (prefork) in this process until it is told to stop; returns
    its exit status. With `events`, it sends Celery's task events (as `celery worker
    -E`), which monitors such as Flower read from the broker.

    The model (`model`: a checkpoint path or a shipped model's name; None: $GENREQ_MODEL
    or the default) is loaded here, before the pool processes are forked: they inherit
    it, and a model that cannot be loaded stops the worker before it takes any task,
    raising ModelError with the reason (also written to the status file)."""
    from genreq.app.pipeline import prepare

    pid = os.getpid()
    # Until Celery installs its own handlers in start(), a SIGTERM (`genreq stop`, or
    # `run` shutting down) ends the start-up cleanly instead of killing the process.
    previous = signal.signal(signal.SIGTERM, _stop_starting)
    write_status(pid, STARTING)
    try:
        prepare()
        from genreq.worker import leases, tasks
        from genreq.worker.app import QUEUE, app

        # Before the pool forks: every pool process's claims name this process, and
        # the settings are checked before any task is taken.
        leases.set_worker_id(pid)
        config.heartbeat_s()

        worker = app.Worker(
            concurrency=concurrency or os.cpu_count() or 1,
            pool="prefork",
            queues=[QUEUE],
            hostname=f"genreq-{pid}@{socket.gethostname()}",
            loglevel=loglevel,
            quiet=True,  # no banner on stdout: stdout is for data
            without_mingle=True,
            without_gossip=True,
            task_events=events,
        )
        # After the Worker exists (it sets up logging, so the load is in the log) and
        # before start() forks the pool.
        classifier = tasks.load_classifier(model)
        write_status(pid, READY, model=classifier.name, model_version=classifier.version)
        worker.start()
    except GenreqError as exc:
        write_status(pid, FAILED, error=str(exc))
        raise
    except _StopRequested:
        log.info("stopped while starting")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if (read_status(pid) or {}).get("state") != FAILED:
            status_path(pid).unlink(missing_ok=True)
    return worker.exitcode or 0


class _StopRequested(Exception):
    pass


def _stop_starting(_signum, _frame) -> None:
    raise _StopRequested


def spawn(concurrency: int, log_path: Path, model: str | None = None) -> subprocess.Popen:
    """Start `genreq worker` as a child process, its log going to `log_path` (replaced)."""
    command = [sys.executable, "-c", WORKER_BOOT, "worker", "--concurrency", str(concurrency)]
    if model:
        command += ["--model", str(model)]
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches `genreq run`, which then
            # shuts the worker down in order instead of it dying mid-task.
            start_new_session=True,
        )


def check_alive(process: subprocess.Popen, log_path: Path) -> None:
    """Raise GenreqError when the worker `process` failed (with the reason it wrote in
    its status file) or has exited (with the last lines of its log)."""
    status = read_status(process.pid)
    if status is not None and status["state"] == FAILED:
        raise GenreqError(f"the workers stopped: {status['error']} (log: {log_path})")
    if process.poll() is None:
        return
    status = read_status(process.pid)  # it may have failed just before exiting
    if status is not None and status["state"] == FAILED:
        raise GenreqError(f"the workers stopped: {status['error']} (log: {log_path})")
    raise GenreqError(
        f"the workers stopped (exit status {process.returncode}); "
        f"last lines of {log_path}:\n{tail(log_path)}"
    )


def stop_process(process: subprocess.Popen, timeout_s: float = WORKER_STOP_TIMEOUT_S) -> None:
    """Warm shutdown (running tasks finish), then kill the process group if it hangs;
    the worker's status file goes with it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop in %.0f s; killing it", process.pid, timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # pool processes left behind, if any
    process.wait()
    status_path(process.pid).unlink(missing_ok=True)


def _is_genreq_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"genreq" in cmdline


def stop_all(timeout_s: float = WORKER_STOP_TIMEOUT_S) -> int:
    """Stop the workers registered under GENREQ_HOME. Returns how many were running."""
    stopped = []
    for path in sorted(workers_dir().glob("*.json")):
        pid = int(path.stem)
        if _is_genreq_worker(pid):  # not a stale file whose pid was reused
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        else:
            path.unlink(missing_ok=True)
    deadline = time.monotonic() + timeout_s
    for pid in stopped:
        while _is_genreq_worker(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_genreq_worker(pid):
            log.warning("worker %d did not stop in %.0f s; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
        status_path(pid).unlink(missing_ok=True)
    return len(stopped)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
