"""How long a killed worker's tracks take to come back, with no command.

Two `genreq worker` processes (one pool process each) share a library of 30-s tracks
on the embedded broker and SQLite. Once the first holds claimed tracks, it is killed
whole (SIGKILL to its process group); nothing else is done. Measured from the kill:
until the killed worker's tracks are done (the other worker's expiry scan sends them
again once their lease runs out), and until the whole library is done. A fresh library
and a fresh first worker each run; the second worker lives through all of them.

    python bench/recovery.py                    # default lease (30 s), 5 runs
    python bench/recovery.py --lease 6 --runs 3 --no-write

Writes bench/results/recovery.json (recovery-<lease>s.json for a non-default lease).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

RESULTS = Path(__file__).resolve().parent / "results"
GENREQ = [sys.executable, "-m", "genreq.cli"]
RATE = 22050
# Few enough that the queue drains long before the lease runs out, enough for batches of
# several tracks (task_batches): what a killed worker has in its hands.
TRACKS = 48
TRACK_S = 30.0
TIMEOUT_S = 300


def make_library(root: Path, n: int) -> None:
    root.mkdir(parents=True)
    t = np.arange(int(TRACK_S * RATE)) / RATE
    clip = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    sf.write(root / "track 000.wav", clip, RATE)
    for i in range(1, n):
        shutil.copyfile(root / "track 000.wav", root / f"track {i:03d}.wav")


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as connection:
        return connection.execute(sql).fetchall()


def start_worker(log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([*GENREQ, "worker", "--concurrency", "1"], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def wait_for(condition, timeout_s: float = TIMEOUT_S, step_s: float = 0.02) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"not within {timeout_s} s")
        time.sleep(step_s)
    return time.monotonic() - started


def one_run(home: Path, run: int, db: Path) -> dict:
    lib = home.parent / f"lib-{run}"
    make_library(lib, TRACKS)
    first = start_worker(home.parent / f"first-{run}.log")
    me = f"{os.uname().nodename}:{first.pid}"
    log = home.parent / f"first-{run}.log"
    # Celery's own line once it consumes (genreq's status file says ready before that)
    wait_for(lambda: f"genreq-{first.pid}@" in log.read_text() and " ready." in
             log.read_text(), step_s=0.1)
    subprocess.run([*GENREQ, "enqueue", str(lib)], check=True, capture_output=True)
    lib_ids = f"SELECT id FROM tracks WHERE path LIKE '{lib}/%'"

    def held() -> list[int]:
        return [i for (i,) in query(db, f"SELECT id FROM tracks WHERE state = 'running'"
                                        f" AND claimed_by = '{me}'")]

    wait_for(lambda: bool(held()), step_s=0.005)
    os.killpg(first.pid, signal.SIGKILL)
    killed = time.monotonic()
    first.wait(30)
    stranded = held()
    marks = ",".join(map(str, stranded))
    tracks_s = wait_for(lambda: not query(
        db, f"SELECT id FROM tracks WHERE id IN ({marks}) AND state != 'done'"), step_s=0.05)
    library_s = wait_for(lambda: not query(
        db, f"SELECT id FROM tracks WHERE id IN ({lib_ids}) AND state != 'done'"), step_s=0.05)
    library_s += tracks_s
    writes = query(db, f"SELECT count(*) FROM result_writes WHERE track_id IN ({lib_ids})")[0][0]
    print(f"run {run}: {len(stranded)} stranded, back and done in {tracks_s:.1f} s, "
          f"library in {library_s:.1f} s, {writes} result writes for {TRACKS} tracks",
          file=sys.stderr)
    assert writes == TRACKS, f"{writes} result writes for {TRACKS} tracks"
    assert time.monotonic() - killed < TIMEOUT_S
    return {"stranded": len(stranded), "stranded_done_s": tracks_s, "library_done_s": library_s,
            "result_writes": writes}


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lease", type=float, default=None,
                        help="GENREQ_LEASE_S for the workers [default: genreq's]")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from genreq import config

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["GENREQ_HOME"] = str(home)
        for name in ("GENREQ_DATABASE_URL", "GENREQ_BROKER_URL", "GENREQ_HEARTBEAT_S"):
            os.environ.pop(name, None)
        if args.lease is not None:
            os.environ["GENREQ_LEASE_S"] = repr(args.lease)
        lease_s, heartbeat_s = config.lease_s(), config.heartbeat_s()
        subprocess.run([*GENREQ, "db", "upgrade"], check=True, capture_output=True)
        db = home / "genreq.db"
        with sqlite3.connect(db) as connection:  # every result write, counted
            connection.executescript("""
                CREATE TABLE result_writes (track_id INTEGER, state TEXT);
                CREATE TRIGGER count_result_writes AFTER UPDATE ON tracks
                WHEN NEW.state IN ('done', 'failed', 'skipped')
                BEGIN INSERT INTO result_writes VALUES (NEW.id, NEW.state); END;
            """)
        second = start_worker(Path(tmp) / "second.log")
        try:
            runs = [one_run(home, run, db) for run in range(args.runs)]
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(60)
            subprocess.run([*GENREQ, "stop"], capture_output=True)

    result = {
        "benchmark": "recovery",
        "when": datetime.now(timezone.utc).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1min": os.getloadavg()[0]},
        "lease_s": lease_s,
        "heartbeat_s": heartbeat_s,
        "tracks_per_run": TRACKS,
        "track_s": TRACK_S,
        "n": len(runs),
        "stranded_done_s": summary([r["stranded_done_s"] for r in runs]),
        "library_done_s": summary([r["library_done_s"] for r in runs]),
        "runs": runs,
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        default = args.lease is None
        name = "recovery.json" if default else f"recovery-{lease_s:g}s.json"
        (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
