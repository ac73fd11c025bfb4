"""Three hosts on this machine, made with network namespaces: Redis (password required)
and PostgreSQL listen on host 1 only, one `genreq worker` runs on each of hosts 2 and 3,
and `genreq enqueue` and `status` run on host 1. The library is at the same path on every
host (namespaces share the filesystem, as machines share a mount). Host 2's worker is
killed whole mid-run; with no command, host 3 takes its tracks over once their leases
run out, and every track is done with its result written exactly once.

Needs root and `ip netns` (CI runs as root); skipped otherwise. The network lives inside
the namespaces only: a bridge in host 1's namespace, a veth pair to each other host,
private addresses that nothing outside the namespaces sees."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers import GENREQ, REPO
from servers import in_netns, postgres_cluster, redis_server
from test_faults import make_library

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRACKS = 24
SUBNET = "10.77.0"  # inside the namespaces only
HOSTS = {"host1": f"{SUBNET}.1", "host2": f"{SUBNET}.2", "host3": f"{SUBNET}.3"}
REDIS_PORT, POSTGRES_PORT = 6379, 5432  # the usual ports: host 1 is a host of its own
BROKER_PASSWORD = "multi host/broker@pw"
DATABASE_PASSWORD = "multi host/db@pw"
# Short leases (as tests/test_recovery.py), so that the takeover is seconds away.
LEASE_S, HEARTBEAT_S = 6, 1.5
TIMEOUT_S = 120


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


def require_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs this as root)")
    if not shutil.which("ip") or not shutil.which("unshare"):
        pytest.skip("needs iproute2's `ip` and util-linux's `unshare`")


@contextlib.contextmanager
def three_hosts():
    """Namespaces host1..3 (named uniquely per run) wired to a bridge in host1's.
    Yields {host: namespace name}."""
    require_namespaces()
    tag = uuid.uuid4().hex[:6]
    names = {host: f"gq{tag}{host[-1]}" for host in HOSTS}
    made = []
    try:
        for name in names.values():
            try:
                _run("ip", "netns", "add", name)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"`ip netns add` is not available here: {exc.stderr.strip()}")
            made.append(name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        first = names["host1"]
        try:
            _run("ip", "-n", first, "link", "add", "br0", "type", "bridge")
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"no bridge device in a namespace: {exc.stderr.strip()}")
        _run("ip", "-n", first, "addr", "add", f"{HOSTS['host1']}/24", "dev", "br0")
        _run("ip", "-n", first, "link", "set", "br0", "up")
        for host in ("host2", "host3"):
            name, port = names[host], f"to{host}"
            _run("ip", "link", "add", port, "netns", first, "type", "veth",
                 "peer", "name", "eth0", "netns", name)
            _run("ip", "-n", first, "link", "set", port, "master", "br0", "up")
            _run("ip", "-n", name, "addr", "add", f"{HOSTS[host]}/24", "dev", "eth0")
            _run("ip", "-n", name, "link", "set", "eth0", "up")
        yield names
    finally:
        for name in made:  # takes its veth ends and the bridge with it
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def on_host(netns: str, hostname: str, *command: str) -> list[str]:
    """`command` run on a host: in its network namespace, under its own host name (the
    worker names its leases host:pid)."""
    return in_netns(netns, ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
                            hostname, *command])


def genreq_on(netns: str, hostname: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(on_host(netns, hostname, *GENREQ, *map(str, args)), cwd=REPO,
                            capture_output=True, text=True, timeout=TIMEOUT_S,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (
        f"genreq {' '.join(map(str, args))} on {hostname} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def count_writes(connection) -> None:
    """Count every write of a result, so that a duplicate shows even with equal values."""
    connection.execute("""
        CREATE TABLE result_writes (track_id integer, state text);
        CREATE FUNCTION count_result_write() RETURNS trigger AS $$
        BEGIN INSERT INTO result_writes VALUES (NEW.id, NEW.state); RETURN NEW; END
        $$ LANGUAGE plpgsql;
        CREATE TRIGGER count_result_writes AFTER UPDATE ON tracks FOR EACH ROW
        WHEN (NEW.state IN ('done', 'failed', 'skipped')) EXECUTE FUNCTION count_result_write();
    """)


def rows(connection, sql: str) -> list[tuple]:
    return connection.execute(sql).fetchall()


def leak(text: str) -> list[str]:
    return [form for p in (BROKER_PASSWORD, DATABASE_PASSWORD)
            for form in {p, quote(p, safe="")} if form in text]


def test_three_hosts_one_worker_killed(tmp_path, monkeypatch):
    require_namespaces()  # before the library is made
    started = time.monotonic()
    library = tmp_path / "library"  # the same path on every host
    make_library(library, TRACKS, seconds=10.0)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "broker").write_text(BROKER_PASSWORD + "\n")
    (secrets / "database").write_text(DATABASE_PASSWORD + "\n")

    with three_hosts() as ns, \
            redis_server(tmp_path / "redis", BROKER_PASSWORD, host=HOSTS["host1"],
                         port=REDIS_PORT, netns=ns["host1"]), \
            postgres_cluster(DATABASE_PASSWORD, host=HOSTS["host1"], port=POSTGRES_PORT,
                             netns=ns["host1"]) as postgres:
        # The settings of every host (README, "Running on several machines").
        for name, value in {
            "GENREQ_BROKER_URL": f"redis://{HOSTS['host1']}:{REDIS_PORT}/0",
            "GENREQ_BROKER_PASSWORD_FILE": str(secrets / "broker"),
            "GENREQ_DATABASE_URL": postgres.url,
            "GENREQ_DATABASE_PASSWORD_FILE": str(secrets / "database"),
            "GENREQ_LEASE_S": str(LEASE_S), "GENREQ_HEARTBEAT_S": str(HEARTBEAT_S),
            # The kill must land mid-run: the default classifies these 24 tracks in well
            # under a second, faster than the poll below can catch host 2 holding one;
            # crnn's five windows a track leave the run a few seconds long.
            "GENREQ_MODEL": "crnn",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("GENREQ_HOME", str(tmp_path / "host1"))
        phases = {"hosts and servers": time.monotonic() - started}
        shown = [genreq_on(ns["host1"], "host1", "db", "upgrade")]
        phases["db upgrade"] = time.monotonic() - started
        db = postgres.connect(DATABASE_PASSWORD)  # the test's own view, over the socket
        count_writes(db)

        workers, logs = {}, {}
        try:
            for host in ("host2", "host3"):
                # Each host its own GENREQ_HOME, as each machine has.
                monkeypatch.setenv("GENREQ_HOME", str(tmp_path / host))
                logs[host] = tmp_path / f"{host}-worker.log"
                with open(logs[host], "wb") as log:
                    workers[host] = subprocess.Popen(
                        on_host(ns[host], host, *GENREQ, "worker", "--concurrency", "1"),
                        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL, start_new_session=True)
            monkeypatch.setenv("GENREQ_HOME", str(tmp_path / "host1"))
            # Both ready before anything is queued, or the first up might take it all.
            for host, worker in workers.items():
                wait_ready(tmp_path / host, worker, logs)
            # Enqueue in the background: the workers may finish the whole library before
            # the command has exited, so the kill is looked for while it runs.
            enqueue = subprocess.Popen(
                on_host(ns["host1"], "host1", *GENREQ, "enqueue", str(library)), cwd=REPO,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                stdin=subprocess.DEVNULL)

            # Mid-run: host 2 has finished some tracks and holds one now.
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                (done,), (held,) = (rows(db, "SELECT count(*) FROM tracks WHERE state = "
                                             f"'{state}' AND claimed_by LIKE 'host2:%'")[0]
                                    for state in ("done", "running"))
                if done and held:
                    break
                assert time.monotonic() < deadline, _logs(logs, "host 2 never took work")
                assert all(w.poll() is None for w in workers.values()), _logs(logs, "exited")
                time.sleep(0.02)
            phases["kill"] = time.monotonic() - started
            os.killpg(workers["host2"].pid, signal.SIGKILL)  # main process and pool
            workers["host2"].wait(30)
            killed_at = time.monotonic()
            stranded = [i for (i,) in rows(db, "SELECT id FROM tracks WHERE state = "
                                               "'running' AND claimed_by LIKE 'host2:%'")]
            assert stranded, "the dead worker's claims stay, under their lease"
            out, err = enqueue.communicate(timeout=TIMEOUT_S)
            assert enqueue.returncode == 0, f"genreq enqueue exited {enqueue.returncode}\n{err}"
            shown.append(subprocess.CompletedProcess(enqueue.args, 0, out, err))
            phases["enqueued"] = time.monotonic() - started

            while rows(db, "SELECT count(*) FROM tracks WHERE state != 'done'")[0][0]:
                assert time.monotonic() - killed_at < TIMEOUT_S, _logs(logs, "not all done")
                assert workers["host3"].poll() is None, _logs(logs, "host 3's worker exited")
                time.sleep(0.1)
            recovery_s = time.monotonic() - killed_at
            phases["all done"] = time.monotonic() - started
            status = genreq_on(ns["host1"], "host1", "status", "--json")
            shown.append(status)
            phases["status"] = time.monotonic() - started
        finally:
            for worker in workers.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers.values():
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()

        counts = json.loads(status.stdout)
        assert {k: counts[k] for k in ("total", "done", "queued", "running", "failed")} == {
            "total": TRACKS, "done": TRACKS, "queued": 0, "running": 0, "failed": 0}
        # Exactly once: one result write per track, whoever claimed it how often.
        assert rows(db, "SELECT count(*), count(DISTINCT track_id) FROM result_writes"
                        " WHERE state = 'done'")[0] == (TRACKS, TRACKS)
        assert rows(db, "SELECT count(*) FROM result_writes WHERE state != 'done'")[0] == (0,)
        # Host 3 took over what host 2 held, by its lease, with no command.
        marks = ",".join(map(str, stranded))
        taken = rows(db, f"SELECT claimed_by, attempts FROM tracks WHERE id IN ({marks})")
        assert all(by.startswith("host3:") and attempts == 2 for by, attempts in taken), taken
        assert "lease ran out" in logs["host3"].read_text(errors="replace")
        by_host = dict(rows(db, "SELECT split_part(claimed_by, ':', 1), count(*) FROM tracks"
                                " GROUP BY 1"))
        assert set(by_host) == {"host2", "host3"} and sum(by_host.values()) == TRACKS
        db.close()
        phases["workers stopped"] = time.monotonic() - started

    everything = "\n".join([r.stdout + r.stderr for r in shown]
                           + [p.read_text(errors="replace") for p in logs.values()])
    assert leak(everything) == []
    assert "has no password" not in everything
    elapsed_s = time.monotonic() - started
    print(f"multi-host: {TRACKS} tracks, host 2 killed holding {len(stranded)}; all done "
          f"{recovery_s:.1f} s after the kill; by host {by_host}; {elapsed_s:.1f} s in all; "
          + ", ".join(f"{phase} at {t:.1f} s" for phase, t in phases.items()))


def wait_ready(home: Path, worker: subprocess.Popen, logs: dict[str, Path]) -> None:
    """Until the worker's status file (GENREQ_HOME/workers/<pid>.json) says ready."""
    path = home / "workers" / f"{worker.pid}.json"
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text())["state"] == "ready":
                return
        assert worker.poll() is None, _logs(logs, f"the worker of {home.name} exited")
        assert time.monotonic() < deadline, _logs(logs, f"{home.name}'s worker never ready")
        time.sleep(0.1)


def _logs(logs: dict[str, Path], what: str) -> str:
    return what + "".join(f"\n--- {host}:\n{path.read_text(errors='replace')[-3000:]}"
                          for host, path in logs.items())
