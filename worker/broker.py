"""The embedded broker: a redis-server that genreq starts itself, bound to a unix
socket under GENREQ_HOME (no TCP port), persisting there (append-only file).

Every genreq process with the same GENREQ_HOME finds the same server through the
socket; the first one that needs it starts it (under a file lock), the others reuse it.
It runs daemonized until `genreq stop` (or the `genreq run` that started it) stops it.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from genreq import config
from genreq.errors import GenreqError

log = logging.getLogger(__name__)

REDIS_SERVER = "redis-server"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# sockaddr_un.sun_path holds 108 bytes on Linux; deeper GENREQ_HOMEs use a short
# per-home directory in the temp dir instead.
MAX_SOCKET_PATH = 100


def broker_dir(home: Path | None = None) -> Path:
    path = (home or config.home()) / "broker"
    path.mkdir(parents=True, exist_ok=True)
    return path


def socket_path(home: Path | None = None) -> Path:
    """Where the embedded broker listens for this GENREQ_HOME (deterministic)."""
    home = home or config.home()
    path = home / "broker" / "redis.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"genreq-{os.getuid()}-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def embedded_url(home: Path | None = None) -> str:
    return f"redis+socket://{socket_path(home)}"


def _client(sock: Path) -> redis.Redis:
    # No retries: a probe must answer at once, and SHUTDOWN closing the connection is
    # the expected outcome, not something to retry.
    return redis.Redis(unix_socket_path=str(sock), socket_timeout=2, socket_connect_timeout=2,
                       retry=Retry(NoBackoff(), 0))


def is_running(home: Path | None = None) -> bool:
    sock = socket_path(home)
    if not sock.exists():
        return False
    try:
        return bool(_client(sock).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


@contextmanager
def _locked(home: Path | None):
    with open(broker_dir(home) / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def find_server() -> str:
    server = os.environ.get("GENREQ_REDIS_SERVER") or shutil.which(REDIS_SERVER)
    if not server:
        raise GenreqError(
            "the embedded broker needs `redis-server` on PATH "
            "(Debian/Ubuntu: apt-get install redis-server), or set GENREQ_BROKER_URL"
        )
    return server


def ensure_running(home: Path | None = None) -> bool:
    """Start the embedded broker unless it already runs. True when this call started it."""
    home = home or config.home()
    with _locked(home):
        if is_running(home):
            return False
        sock = socket_path(home)
        sock.unlink(missing_ok=True)  # stale, from a server that died
        data = broker_dir(home)
        args = [
            find_server(),
            "--port", "0",  # no TCP at all: the unix socket only
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(data),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(data / "redis.pid"),
            "--logfile", str(config.logs_dir() / "redis.log"),
        ]  # fmt: skip
        log.info("starting the embedded broker on %s", sock)
        completed = subprocess.run(args, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise GenreqError(f"redis-server failed to start: {completed.stderr.strip()}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not is_running(home):
            if time.monotonic() > deadline:
                raise GenreqError(
                    f"the embedded broker did not come up; see {config.logs_dir() / 'redis.log'}"
                )
            time.sleep(0.05)
        return True


def stop(home: Path | None = None) -> bool:
    """Stop the embedded broker of this GENREQ_HOME. True when one was running."""
    home = home or config.home()
    with _locked(home):
        if not is_running(home):
            return False
        sock = socket_path(home)
        # SHUTDOWN flushes the append-only file; the server closes the connection.
        with suppress(redis.ConnectionError, OSError):
            _client(sock).shutdown()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while is_running(home) or sock.exists():
            if time.monotonic() > deadline:
                raise GenreqError(f"the embedded broker on {sock} did not stop")
            time.sleep(0.05)
        return True
