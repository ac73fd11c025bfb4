"""What genreq accepts from outside: JSON messages only, weights-only checkpoints, no
shell, and services that are not published to the host."""
from __future__ import annotations

import re
import time

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO, wait_until_finished

from genreq.errors import ModelError


class Payload:
    """Anything a pickle could smuggle in; never to be instantiated on load."""

    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.e2e
@pytest.mark.slow
def test_worker_refuses_pickled_messages(tmp_path, genreq_home, start_worker):
    from genreq.app import pipeline
    from genreq.app.walk import FileStat
    from genreq.db import queue
    from genreq.db.models import State, Track
    from genreq.db.session import session_scope
    from genreq.worker.app import CLASSIFY_TASK, make_app

    song = tmp_path / "lib" / "song.wav"
    song.parent.mkdir()
    sf.write(song, np.zeros(22050 * 3, np.float32), 22050)
    pipeline.prepare()
    app = make_app()  # for this test's GENREQ_HOME (the module's app may be older)
    with session_scope() as session:
        stat = song.stat()
        (track_id,) = queue.upsert_tracks(
            session, [FileStat(str(song), stat.st_size, stat.st_mtime_ns)], "b"
        ).queued_ids
    app.send_task(CLASSIFY_TASK, args=[track_id], serializer="pickle")

    worker = start_worker(concurrency=1)
    deadline = time.monotonic() + 120
    while "Refusing to deserialize untrusted content" not in worker.log():
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.2)
    with session_scope() as session:
        assert session.get(Track, track_id).state == State.queued

    app.send_task(CLASSIFY_TASK, args=[track_id])  # the same task as JSON is run
    wait_until_finished(1, worker=worker)
    assert "unpickled!" not in worker.log()


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    import torch

    from genreq.checkpoint import load

    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "arch": "crnn", "payload": Payload()}, path)
    with pytest.raises(ModelError, match=f"^{re.escape(str(path))}: not a genreq checkpoint"):
        load(path)


def test_embedded_broker_has_no_tcp_listener(genreq_home):
    import redis

    from genreq.worker import broker

    broker.ensure_running(genreq_home)
    try:
        client = redis.Redis(unix_socket_path=str(broker.socket_path(genreq_home)))
        assert client.config_get("port") == {"port": "0"}
        assert client.config_get("unixsocketperm") == {"unixsocketperm": "700"}
    finally:
        broker.stop(genreq_home)


def test_compose_publishes_no_service_port():
    """Redis and PostgreSQL stay on the compose network: no `ports:` anywhere."""
    compose = (REPO / "docker-compose.yml").read_text()
    assert not re.search(r"^\s*ports\s*:", compose, flags=re.MULTILINE)
    assert "POSTGRES_PASSWORD" in compose


def test_no_shell_anywhere():
    """File names reach subprocesses as argv items, never through a shell."""
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("genreq", "cli", "worker", "db", "bench", "tools", "scripts")
        for path in (REPO / folder).rglob("*.py")
        if re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(", path.read_text())
    ]
    assert offenders == []



def test_split_playlists_stay_in_their_folder(tmp_path):
    """A genre name from a user's taxonomy can hold '/', '..' or a leading dot: the
    playlist still lands inside the folder it was given."""
    from genreq.cli.output import write_split_m3u

    target = tmp_path / "a" / "playlists"
    records = [{"path": f"/music/{i}.mp3", "genre": genre, "duration_s": 30.0, "title": None}
               for i, genre in enumerate(["../../escape", "/etc/passwd", ".hidden", "Rock"])]
    write_split_m3u(records, str(target))
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert all(p.parent == target.relative_to(tmp_path) for p in written), written
    assert len(written) == 4
