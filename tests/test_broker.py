"""The embedded broker: started once per GENREQ_HOME, reused, stopped, persisted."""
from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from genreq.worker import broker

pytestmark = pytest.mark.skipif(
    not __import__("shutil").which("redis-server"), reason="redis-server is not installed"
)


def test_start_reuse_stop(genreq_home):
    assert not broker.is_running()
    try:
        assert broker.ensure_running() is True
        assert broker.ensure_running() is False  # the same server, reused
        sock = broker.socket_path()
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700
        client = redis.Redis(unix_socket_path=str(sock))
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


def test_concurrent_starts_share_one_server(genreq_home):
    with ThreadPoolExecutor(4) as pool:
        started = list(pool.map(lambda _: broker.ensure_running(), range(4)))
    try:
        assert started.count(True) == 1
    finally:
        broker.stop()


def test_stale_socket_is_replaced(genreq_home):
    sock = broker.socket_path()
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.write_text("left behind by a crash")
    try:
        assert broker.ensure_running() is True
        assert broker.is_running()
    finally:
        broker.stop()


def test_missing_server_binary_is_a_clear_error(genreq_home, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(broker.GenreqError, match="apt-get install redis-server"):
        broker.ensure_running()
