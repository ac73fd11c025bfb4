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


# --- monitoring: status --watch, worker --events -------------------------------------

def watch_output(monkeypatch, *args: str, blocks: int = 2):
    """`genreq status --watch ARGS` in-process, interrupted (Ctrl-C) after `blocks`."""
    from click.testing import CliRunner

    from genreq.cli.main import cli

    shown = []

    def sleep(_seconds):
        shown.append(1)
        if len(shown) == blocks:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    return CliRunner().invoke(cli, ["status", "--watch", *args])


def test_status_watch_off_a_terminal_prints_a_block_each_interval(genreq_home, monkeypatch):
    from click.testing import CliRunner

    from genreq.cli.main import cli

    once = CliRunner().invoke(cli, ["status"])
    result = watch_output(monkeypatch, "--interval", "0.5")
    assert result.exit_code == 0, result.output  # Ctrl-C is how it ends
    assert "\x1b[" not in result.output
    assert result.output == once.output + "\n" + once.output


def test_status_watch_json_prints_one_object_a_line(genreq_home, monkeypatch):
    result = watch_output(monkeypatch, "--json", blocks=3)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["total"] == 0 for line in lines)


def test_status_interval_needs_watch(genreq_home):
    from click.testing import CliRunner

    from genreq.cli.main import cli

    result = CliRunner().invoke(cli, ["status", "--interval", "5"])
    assert result.exit_code == 2 and "--interval needs --watch" in result.output


@pytest.mark.e2e
def test_status_watch_redraws_in_place_on_a_terminal(genreq_home):
    import os
    import pty
    import signal

    from genreq.cli.main import REDRAW

    leader, follower = pty.openpty()
    process = subprocess.Popen([*GENREQ, "status", "--watch", "--interval", "0.2"],
                               stdin=subprocess.DEVNULL, stdout=follower,
                               stderr=subprocess.PIPE, start_new_session=True)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while output.count(REDRAW.encode()) < 3:
            assert time.monotonic() < deadline, output
            output += os.read(leader, 4096)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0, process.stderr.read()
        os.close(leader)
    frames = output.decode().split(REDRAW)[1:]
    assert frames[0].startswith("queued") and "Ctrl-C to stop" in frames[0]
    assert "Traceback" not in process.stderr.read().decode()


class EventListener:
    """Celery events on genreq's broker, received as Flower receives them."""

    def __init__(self):
        import threading

        from genreq.worker.app import make_app

        app = make_app()  # for this test's GENREQ_HOME (the module's app keeps the first)
        self.events: list[dict] = []
        self.ready = threading.Event()
        self.connection = app.connection_for_read()
        self.receiver = app.events.Receiver(self.connection,
                                            handlers={"*": self.events.append})
        # bound before any event is sent: a fanout exchange keeps nothing for later
        self.receiver.on_consume_ready = lambda *_args, **_kwargs: self.ready.set()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()
        assert self.ready.wait(30), "the event receiver did not start"

    def _listen(self) -> None:
        for _ in self.receiver.itercapture(limit=None, timeout=None, wakeup=False):
            pass

    def close(self) -> set[str]:
        self.receiver.should_stop = True
        self.thread.join(10)
        self.connection.release()
        return {event["type"] for event in self.events}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("events", [True, False], ids=["events", "no-events"])
def test_worker_events_are_what_flower_reads(genreq_home, tmp_path, audio_library, events):
    from helpers import WorkerProcess, wait_until_finished

    from genreq.app.pipeline import prepare

    prepare()  # the embedded broker, for the listener
    listener = EventListener()
    worker = WorkerProcess(tmp_path / "worker.log", options=("--events",) if events else ())
    try:
        genreq("enqueue", audio_library["root"])
        wait_until_finished(len(audio_library["audio"]) + 1, worker=worker)
        time.sleep(2.0)  # the last events in flight
    finally:
        kinds = listener.close()
        worker.stop()
    if events:
        assert {"task-received", "task-started", "task-succeeded", "worker-heartbeat"} <= kinds
        names = {e.get("name") for e in listener.events if e["type"] == "task-received"}
        assert names and names <= {"genreq.classify_track", "genreq.classify_tracks"}
    else:
        # worker heartbeats go out either way; task events only when asked for
        assert not {kind for kind in kinds if kind.startswith("task-")}, kinds
