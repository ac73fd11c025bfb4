"""Throwaway servers for the tests that need a password on the wire: a redis-server on
TCP with `--requirepass`, and a PostgreSQL cluster made by initdb in a temporary folder
with password logins. Each can run inside a network namespace (`netns`), as a separate
host would. Nothing here touches the machine's own Redis or PostgreSQL."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def in_netns(netns: str | None, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *command] if netns else command


def wait_for_port(host: str, port: int, process: subprocess.Popen, what: str,
                  netns: str | None = None, log: Path | None = None) -> None:
    """Until something accepts TCP connections on host:port (probed from `netns`)."""
    probe = ("import socket, sys\n"
             "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            detail = log.read_text(errors="replace") if log and log.exists() else ""
            raise AssertionError(f"{what} exited with status {process.returncode}\n{detail}")
        if netns:
            ok = subprocess.run(in_netns(netns, ["python3", "-c", probe, host, str(port)]),
                                capture_output=True, timeout=10).returncode == 0
        else:
            try:
                socket.create_connection((host, port), timeout=1).close()
                ok = True
            except OSError:
                ok = False
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not listen on {host}:{port}")
        time.sleep(0.1)


@contextlib.contextmanager
def redis_server(workdir: Path, password: str | None, host: str = "127.0.0.1",
                 port: int | None = None, netns: str | None = None) -> Iterator[int]:
    """A redis-server on host:port (a free port by default), requiring `password`
    unless it is None. Yields the port."""
    server = shutil.which("redis-server")
    if server is None:
        import pytest

        pytest.skip("redis-server is not installed")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "redis.log"
    args = [server, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--logfile", str(log)]
    if password is not None:
        # The password on the command line of a throwaway test server only; a real one
        # reads it from its configuration file.
        args += ["--requirepass", password]
    process = subprocess.Popen(in_netns(netns, args), stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    try:
        wait_for_port(host, port, process, "redis-server", netns, log)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in versions:
        if (folder / name).exists():
            return str(folder / name)
    import pytest

    pytest.skip(f"PostgreSQL's {name} is not installed")
    raise AssertionError  # unreachable: skip raises


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: as root, run them as `postgres`."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass(frozen=True)
class Postgres:
    url: str  # postgresql://user@host:port/database: no password
    socket_dir: Path  # its unix socket, reachable from any network namespace
    port: int

    def connect(self, password: str):
        """A psycopg connection through the unix socket (from outside the namespace)."""
        import psycopg

        user, database = self.url.split("//")[1].split("@")[0], self.url.rsplit("/", 1)[1]
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=user,
                               dbname=database, password=password, autocommit=True)


@contextlib.contextmanager
def postgres_cluster(password: str, host: str = "127.0.0.1", port: int | None = None,
                     netns: str | None = None, user: str = "genreq",
                     database: str = "genreq") -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster (initdb in a temporary folder) listening on
    host:port and a unix socket, with `user` (password `password`, scram-sha-256)
    owning `database`."""
    if os.geteuid() == 0:
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            import pytest

            pytest.skip("no `postgres` user to run a throwaway PostgreSQL as")
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    port = port or free_port()
    # Not under pytest's tmp_path: the postgres user must be able to reach it.
    top = Path(tempfile.mkdtemp(prefix="genreq-pg-"))
    data, sock_dir = top / "data", top / "run"
    sock_dir.mkdir()
    (top / "pw").write_text(password + "\n")
    if os.geteuid() == 0:
        for path in (top, sock_dir, top / "pw"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    os.chmod(top, 0o700)
    process = None
    try:
        subprocess.run(
            _as_postgres([initdb, "-D", str(data), "-U", user, "--pwfile", str(top / "pw"),
                          "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C"]),
            check=True, capture_output=True, timeout=120)
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
        log = top / "postgres.log"
        process = subprocess.Popen(
            in_netns(netns, _as_postgres([
                postgres, "-D", str(data), "-h", host, "-p", str(port),
                "-k", str(sock_dir), "-c", "fsync=off", "-c", "logging_collector=off"])),
            stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115 - the server keeps it
        wait_for_port(host, port, process, "postgres", netns, log)
        subprocess.run(
            in_netns(netns, _as_postgres([_pg_bin("createdb"), "-h", host, "-p", str(port),
                                          "-U", user, "-O", user, database])),
            check=True, capture_output=True, timeout=60,
            env={**os.environ, "PGPASSWORD": password})
        yield Postgres(f"postgresql://{user}@{host}:{port}/{database}", sock_dir, port)
    finally:
        if process is not None and process.poll() is None:
            # Fast shutdown (a throwaway has nothing to keep), sent to the postmaster
            # itself: runuser, between us and it, does not pass SIGINT on.
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(top, ignore_errors=True)
