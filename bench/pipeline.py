"""Throughput of the whole genreq pipeline on this machine, in one run.

    .venv/bin/python bench/pipeline.py            # N=200 clips; JSON on stdout, progress on stderr
    .venv/bin/python bench/pipeline.py --n 20     # a quick look
    .venv/bin/python bench/pipeline.py --save     # also writes bench/results/pipeline.json

Builds a library in a temp dir (N copies of 30-s GTZAN clips from ../shared/data/gtzan,
a few 4-minute tracks and a few 44.1 kHz compressed files), then measures, one after
the other so that nothing competes for the cores:

1. a naive baseline: a per-file loop librosa.load → librosa log-mel → every chunk →
   model forward, one process, torch's default threads; and the same loop with genreq's
   own log-mel and 5 chunks, to show what is left once the kernels are equal;
2. `genreq run LIB --workers 1` and `--workers 2`, each as a subprocess on a fresh
   GENREQ_HOME (embedded broker, SQLite), wall time from start to exit, the steady
   rate from the database timestamps (worker start-up excluded), the worker's own
   classification time per track (elapsed_s) and the peak memory of the worker processes;
3. the cost of a no-op task through the real broker and database (a task for a track
   that is already done);
4. one worker's per-track time by stage, in this process with one torch thread, calling
   what the task calls: Classifier.classify_file, whose stage hook times probe, decode,
   resample, features and model, and the task's two DB transactions on a real SQLite
   file;
5. a 4-minute track through Classifier.classify_file (bounded excerpts), per core.

Timing is wall-clock (perf_counter). Before each phase it waits for other processes
to leave the cores alone (--wait-idle) and reports the share of the cores they took
during each phase (foreign_cpu_share_by_phase): above a few percent, figures are low.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parents[1]
GTZAN = REPO.parent / "shared" / "data" / "gtzan"
RESULTS = REPO / "bench" / "results" / "pipeline.json"

DEFAULT_N = 200  # 30-s clips in the library
CLIP_MIN_S = 29.0  # GTZAN here also has 15-s clips; the targets are about 30-s ones
LONG_TRACKS = ("wav", "flac", "mp3")  # 4-minute tracks, one per format
LONG_TRACK_CLIPS = 8  # 8 × 30 s = 4 min
COMPRESSED = ("flac", "ogg", "mp3")  # 30-s clips re-encoded at COMPRESSED_RATE, two of each
COMPRESSED_EACH = 2
COMPRESSED_RATE = 44100  # Hz: what real libraries hold, so the resample stage is exercised
WORKER_COUNTS = (1, 2)
RUN_TIMEOUT_S = 1800
RSS_SAMPLE_S = 0.25
DRAIN_POLL_S = 0.005
LONG_TRACK_REPEATS = 3
FOREIGN_LOAD_WARN = 0.03  # share of the cores other processes may take before a warning
IDLE_WINDOW_S = 1.0  # before each phase: windows in a row with other processes
IDLE_WINDOWS = 2  # under IDLE_SHARE of the cores
IDLE_SHARE = 0.05
DEFAULT_WAIT_IDLE_S = 600

# The targets, for the closing table: (key, comparison, bound).
TARGETS = (
    ("clips_per_s_per_core_steady", ">=", 12.0),
    ("speedup_vs_naive", ">=", 3.0),
    ("long_track_s_per_core", "<=", 0.3),
    ("overhead_share", "<", 0.05),
    ("scaling_2_vs_1_workers", ">=", 1.8),
    ("worker_rss_mb", "<=", 400.0),
)

log = logging.getLogger("bench.pipeline")


# --- the library -------------------------------------------------------------------


@dataclass
class Library:
    root: Path
    clips: list[Path] = field(default_factory=list)  # copies of 30-s clips, as stored
    compressed: list[Path] = field(default_factory=list)  # 30-s clips at 44.1 kHz
    long: list[Path] = field(default_factory=list)  # 4-minute tracks

    @property
    def tracks(self) -> list[Path]:
        return sorted(self.clips + self.compressed + self.long)

    def kind(self, path: Path) -> str:
        if path in self.long:
            return "long"
        return "compressed" if path in self.compressed else "clip"


def source_clips(data: Path) -> list[Path]:
    """The 30-s clips of the labelled set, in labels.csv order."""
    import csv

    with open(data / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    clips = [data / r["path"] for r in rows if float(r["duration_s"]) >= CLIP_MIN_S]
    if not clips:
        raise SystemExit(f"no clips of at least {CLIP_MIN_S:g} s listed in {data / 'labels.csv'}")
    return clips


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def encode_mp3(wav: Path, mp3: Path) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav),
                    "-codec:a", "libmp3lame", "-b:a", "192k", str(mp3)], check=True)


def write_audio(path: Path, audio: np.ndarray, rate: int) -> None:
    """soundfile for wav/flac/ogg; mp3 through ffmpeg (from a temporary wav)."""
    if path.suffix == ".mp3":
        wav = path.with_suffix(".tmp.wav")
        sf.write(str(wav), audio, rate)
        encode_mp3(wav, path)
        wav.unlink()
    else:
        sf.write(str(path), audio, rate)


def build_library(root: Path, n: int, data: Path) -> Library:
    sources = source_clips(data)
    lib = Library(root)
    (root / "clips").mkdir(parents=True)
    for i in range(n):
        src = sources[i % len(sources)]
        dst = root / "clips" / f"{i:05d}-{src.name}"
        shutil.copyfile(src, dst)
        lib.clips.append(dst)
    (root / "compressed").mkdir()
    picks = iter(sources[len(sources) // 2:])  # other clips than the first copies
    for ext in COMPRESSED:
        for j in range(COMPRESSED_EACH):
            src = next(picks)
            audio, rate = read_mono(src)
            audio = soxr.resample(audio, rate, COMPRESSED_RATE, quality="HQ")
            dst = root / "compressed" / f"{src.stem}-{j}.{ext}"
            write_audio(dst, audio, COMPRESSED_RATE)
            lib.compressed.append(dst)
    (root / "long").mkdir()
    for k, ext in enumerate(LONG_TRACKS):
        # Eight consecutive clips of one genre: about one artist's 4-minute "song".
        start = (k * len(sources)) // len(LONG_TRACKS)
        parts = [read_mono(p) for p in sources[start:start + LONG_TRACK_CLIPS]]
        audio = np.concatenate([a for a, _ in parts])
        rate = parts[0][1]
        # The wav stays at the clips' rate; the compressed ones are 44.1 kHz like real files.
        if ext != "wav":
            audio, rate = soxr.resample(audio, rate, COMPRESSED_RATE, quality="HQ"), COMPRESSED_RATE
        dst = root / "long" / f"long-{k}.{ext}"
        write_audio(dst, audio, rate)
        lib.long.append(dst)
    return lib


# --- the naive baseline ------------------------------------------------------------


def naive_baseline(paths: list[Path], clf, kernels: str = "librosa") -> dict:
    """A per-file loop in one process with torch's default threads.

    kernels="librosa" is the loop as one writes it from the librosa docs:
    librosa.load → librosa.feature.melspectrogram → power_to_db → every chunk of the
    clip → forward. kernels="genreq" keeps librosa.load but borrows genreq's own
    features (torch.stft log-mel, 5 chunks): what is left of the speed-up is then
    only decoding, processes and the pipeline."""
    import librosa
    import torch

    from genreq import features

    spec = clf.features

    def librosa_log_mel(audio: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(
            y=audio, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length,
            n_mels=spec.n_mels, pad_mode="constant")
        return librosa.power_to_db(mel, ref=1.0, amin=features.AMIN, top_db=None)

    def one(path: Path) -> np.ndarray:
        audio, _ = librosa.load(path, sr=spec.sample_rate)
        if kernels == "librosa":
            x = features.chunks(librosa_log_mel(audio).astype(np.float32), spec, max_chunks=None)
        else:
            x = features.chunks(features.log_mel(audio, spec), spec)
        with torch.inference_mode():
            return torch.softmax(clf.model(torch.from_numpy(x)), dim=-1).mean(0).numpy()

    one(paths[0])  # imports and first-call set-up are not the per-file cost
    started = time.perf_counter()
    for path in paths:
        one(path)
    elapsed_s = time.perf_counter() - started
    return {"kernels": kernels, "tracks": len(paths), "elapsed_s": round(elapsed_s, 3),
            "clips_per_s": round(len(paths) / elapsed_s, 3),
            "torch_threads": torch.get_num_threads()}


# --- process memory from /proc -----------------------------------------------------


def _children(pid: int) -> list[int]:
    """Child pids, from every process's stat (/proc/PID/task/*/children is not always built)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def _proc_kb(pid: int, filename: str, key: str) -> int:
    """A `Key:  N kB` field of /proc/PID/FILENAME, 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{filename}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _status_kb(pid: int, key: str) -> int:
    return _proc_kb(pid, "status", key)


def _pss_kb(pid: int) -> int:
    return _proc_kb(pid, "smaps_rollup", "Pss")


def _is_python(pid: int) -> bool:
    try:
        return b"python" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ProcessSampler(threading.Thread):
    """Peak memory and CPU time of the processes of a `genreq run`: the CLI itself, its
    child `genreq worker` (the Celery main process), that one's children (the pool
    processes, which classify) and the embedded redis-server."""

    def __init__(self, run_pid: int, home: Path):
        super().__init__(daemon=True)
        self.run_pid = run_pid
        self.redis_pidfile = home / "broker" / "redis.pid"
        self.stopped = threading.Event()
        self.pool_hwm_kb: dict[int, int] = {}
        self.main_hwm_kb = 0
        self.pss_total_kb = 0
        self.cpu: list[tuple[datetime, dict[str, float]]] = []  # (when, role → CPU s)

    def run(self) -> None:
        while not self.stopped.wait(RSS_SAMPLE_S):
            cpu = {"run_cli": _cpu_s(self.run_pid), "celery_main": 0.0, "pool": 0.0, "redis": 0.0}
            with suppress(OSError, ValueError):  # redis not up yet, or gone
                cpu["redis"] = _cpu_s(int(self.redis_pidfile.read_text()))
            for worker in filter(_is_python, _children(self.run_pid)):
                self.main_hwm_kb = max(self.main_hwm_kb, _status_kb(worker, "VmHWM"))
                cpu["celery_main"] += _cpu_s(worker)
                pool = [p for p in _children(worker) if _is_python(p)]
                for pid in pool:
                    # VmHWM: the peak resident set, not only what this sample saw.
                    hwm_kb = _status_kb(pid, "VmHWM")
                    self.pool_hwm_kb[pid] = max(self.pool_hwm_kb.get(pid, 0), hwm_kb)
                    cpu["pool"] += _cpu_s(pid)
                # PSS splits shared pages (torch's libraries, forked weights) fairly
                # between processes: their sum is what the workers cost the machine.
                pss = _pss_kb(worker) + sum(_pss_kb(p) for p in pool)
                self.pss_total_kb = max(self.pss_total_kb, pss)
            self.cpu.append((datetime.now(timezone.utc), cpu))

    def cpu_ms_per_track(self, first: datetime, last: datetime, tracks: int) -> dict[str, float]:
        """CPU ms per track of each role over the steady part of the run (between the
        first claim and the last result), from the samples inside it."""
        inside = [(t, c) for t, c in self.cpu if first <= t <= last]
        if len(inside) < 2:
            return {}
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        tracks_inside = tracks * (t1 - t0).total_seconds() / (last - first).total_seconds()
        return {role: round(1000 * (c1[role] - c0[role]) / tracks_inside, 2) for role in c0}


# --- genreq run --------------------------------------------------------------------


def genreq_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GENREQ_DATABASE_URL", "GENREQ_BROKER_URL", "GENREQ_MODEL")}
    env["GENREQ_HOME"] = str(home)
    return env


def genreq(args: list[str], home: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genreq.cli", *args], env=genreq_env(home),
                            stdin=subprocess.DEVNULL, **kwargs)


def stop_home(home: Path) -> None:
    """`genreq stop` for this home: nothing the benchmark started keeps running."""
    genreq(["stop"], home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait(120)


def track_times(home: Path) -> dict:
    """From the run's database: states, the steady span and the worker's own time."""
    from sqlalchemy import select

    from genreq.db.models import State, Track, as_utc
    from genreq.db.session import session_scope

    with session_scope(f"sqlite:///{home / 'genreq.db'}") as session:
        rows = session.execute(
            select(Track.state, Track.started_at, Track.finished_at, Track.elapsed_s)
        ).all()
    done = [r for r in rows if r.state == State.done]
    first = min(as_utc(r.started_at) for r in done)
    last = max(as_utc(r.finished_at) for r in done)
    return {"done": len(done), "failed": sum(r.state == State.failed for r in rows),
            "first_started": first, "last_finished": last,
            "elapsed_s_sum": sum(r.elapsed_s for r in done),
            "elapsed_s_median": statistics.median(r.elapsed_s for r in done),
            # Each pool process's first track pays for what loading the model left to
            # the first call (lazy imports, oneDNN kernels): the slowest ones.
            "elapsed_s_first": max(r.elapsed_s for r in done)}


def time_genreq_run(lib: Library, workers: int, home: Path, cores: int) -> dict:
    """`genreq run LIB --workers W` on a fresh home, end to end."""
    log.info("genreq run --workers %d on %d tracks", workers, len(lib.tracks))
    wall_start = datetime.now(timezone.utc)
    started = time.perf_counter()
    process = genreq(["run", str(lib.root), "--workers", str(workers)], home,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = ProcessSampler(process.pid, home)
    sampler.start()
    try:
        _out, err = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        elapsed_s = time.perf_counter() - started
        sampler.stopped.set()
        sampler.join()
        stop_home(home)
    if process.returncode != 0:
        raise SystemExit(f"genreq run failed ({process.returncode}):\n{err.decode()[-2000:]}")
    db = track_times(home)
    tracks = db["done"] + db["failed"]
    steady_s = (db["last_finished"] - db["first_started"]).total_seconds()
    worker_s = steady_s * workers  # process-seconds the pool spent on this batch
    return {
        "workers": workers,
        "tracks": tracks,
        "failed": db["failed"],
        "wall_s": round(elapsed_s, 3),
        "clips_per_s": round(tracks / elapsed_s, 3),
        "startup_s": round((db["first_started"] - wall_start).total_seconds(), 3),
        "steady_s": round(steady_s, 3),
        "clips_per_s_steady": round(tracks / steady_s, 3),
        "clips_per_s_per_core_steady": round(tracks / steady_s / min(workers, cores), 3),
        # Time a pool process spends per track, and how much of it is classify_file
        # (the task's own elapsed_s): the rest is claim, result write and the queue.
        "worker_ms_per_track": round(1000 * worker_s / tracks, 2),
        "classify_ms_per_track": round(1000 * db["elapsed_s_sum"] / db["done"], 2),
        "classify_ms_median": round(1000 * db["elapsed_s_median"], 2),
        "classify_ms_max": round(1000 * db["elapsed_s_first"], 2),
        "overhead_share": round(1 - db["elapsed_s_sum"] / worker_s, 4),
        "worker_rss_mb": round(max(sampler.pool_hwm_kb.values(), default=0) / 1024, 1),
        "worker_main_rss_mb": round(sampler.main_hwm_kb / 1024, 1),
        "worker_pss_total_mb": round(sampler.pss_total_kb / 1024, 1),
        "pool_processes_seen": len(sampler.pool_hwm_kb),
        # Where the machine's CPU goes per track: the pool classifies; the rest (Celery's
        # main process, redis, the CLI polling the database) competes with it for the cores.
        "cpu_ms_per_track": sampler.cpu_ms_per_track(
            db["first_started"], db["last_finished"], tracks),
    }


# --- a no-op task through the real broker ------------------------------------------


def noop_task_ms(home: Path, count: int) -> float:
    """Round trip of `count` tracks already done, sent as enqueue sends them (batches):
    send, broker, prefetch, the claim transaction (it finds nothing to do), ack. Per
    track, in ms."""
    import redis
    from sqlalchemy import select

    from genreq.db.models import Track
    from genreq.db.session import session_scope

    with session_scope(f"sqlite:///{home / 'genreq.db'}") as session:
        ids = list(session.scalars(select(Track.id).order_by(Track.id)))
    ids = (ids * (count // len(ids) + 1))[:count]
    os.environ["GENREQ_HOME"] = str(home)  # the Celery app reads its broker from here
    from genreq.worker import broker
    from genreq.worker.app import QUEUE, make_app, send_classify

    worker = genreq(["worker", "--concurrency", "1"], home,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not broker.is_running(home):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("the worker for the no-op tasks did not start")
            time.sleep(0.1)
        app = make_app()
        client = redis.Redis(unix_socket_path=str(broker.socket_path(home)))

        def drained() -> bool:
            return client.llen(QUEUE) == 0 and client.hlen("unacked") == 0

        def send_and_drain(batch: list[int]) -> float:
            started = time.perf_counter()
            with app.producer_or_acquire() as producer:
                send_classify(batch, producer, app)
            while not drained():
                if worker.poll() is not None:
                    raise SystemExit("the worker for the no-op tasks stopped")
                time.sleep(DRAIN_POLL_S)
            return time.perf_counter() - started

        send_and_drain(ids[:1])  # waits out the worker's start-up
        return 1000 * send_and_drain(ids) / count
    finally:
        worker.terminate()
        worker.wait(60)
        stop_home(home)


# --- one worker's time by stage ----------------------------------------------------

def staged_track(path: Path, clf, track_id: int) -> tuple[dict[str, float], object]:
    """What classify_tracks does for one claimed track, stage by stage, in seconds
    (Classifier.classify_file's own stages: probe the header, decode only the excerpts
    of a long file, resample to the model's rate, features, one forward pass), and the
    result it would write."""
    from genreq.db import work
    from genreq.db.models import utcnow
    from genreq.predict import StageTimes

    times = StageTimes()
    started = time.perf_counter()
    prediction = clf.classify_file(path, on_stage=times)
    elapsed_s = time.perf_counter() - started
    result = work.Result(
        track_id=track_id, genre=prediction.genre, confidence=prediction.confidence,
        probs=prediction.probs, duration_s=prediction.duration_s, elapsed_s=elapsed_s,
        finished_at=utcnow())
    return dict(times), result


def stage_breakdown(lib: Library, clf, db_path: Path) -> dict:
    """Mean ms per track and stage over the whole library (and per kind of file).

    The database stage is the worker's, batch by batch as enqueue cuts them: one claim
    and one result write per batch, shared by its tracks."""
    from genreq.app.walk import LibraryWalk
    from genreq.db import migrate, queue, work
    from genreq.db.session import session_scope, transaction
    from genreq.predict import STAGES as CLASSIFY_STAGES
    from genreq.worker.app import task_batches
    from genreq.worker.tasks import MAX_ATTEMPTS

    db_url = f"sqlite:///{db_path}"
    migrate.upgrade(db_url)  # the worker's database, schema by migrations
    with session_scope(db_url) as session:
        files = list(LibraryWalk([lib.root]))
        result = queue.upsert_tracks(session, files, "bench")
        ids = {f.path: track_id for f, track_id in zip(files, result.queued_ids, strict=True)}
    staged_track(lib.tracks[0], clf, 0)  # warm-up
    paths = {track_id: Path(path) for path, track_id in ids.items()}
    by_kind: dict[str, list[dict]] = {}
    for batch in task_batches([ids[str(path)] for path in lib.tracks]):
        started = time.perf_counter()
        claim = work.new_claim("bench", 60.0)
        with transaction(db_url) as db:
            claimed = work.claim_batch(db, batch, MAX_ATTEMPTS, claim)
        db_s = time.perf_counter() - started
        rows = [(track_id, *staged_track(paths[track_id], clf, track_id)) for track_id in claimed]
        started = time.perf_counter()
        with transaction(db_url) as db:
            # as the worker writes: what it still holds, then the results
            work.still_held(db, claim.token, list(claimed))
            work.record_results(db, [r for _, _, r in rows], clf.name, clf.version, claim.token)
        db_s += time.perf_counter() - started
        for track_id, times, _ in rows:
            times["db_write"] = db_s / len(rows)
            by_kind.setdefault(lib.kind(paths[track_id]), []).append(times)

    stages = (*CLASSIFY_STAGES, "db_write")

    def mean_ms(rows: list[dict]) -> dict:
        ms = {s: round(1000 * statistics.fmean(r[s] for r in rows), 2) for s in stages}
        ms["total"] = round(sum(ms.values()), 2)
        return ms

    every = [r for rows in by_kind.values() for r in rows]
    return {"all": mean_ms(every), **{k: mean_ms(v) for k, v in sorted(by_kind.items())}}


def long_track_s(paths: list[Path], clf) -> dict[str, float]:
    """Median seconds of Classifier.classify_file per long file, one torch thread."""
    out = {}
    for path in paths:
        runs = []
        for _ in range(LONG_TRACK_REPEATS):
            started = time.perf_counter()
            clf.classify_file(path)
            runs.append(time.perf_counter() - started)
        out[path.suffix.lstrip(".")] = round(statistics.median(runs), 4)
    return out


# --- the report --------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def busy_processes() -> list[str]:
    """Other processes using a core right now (e.g. a training run): numbers would suffer."""
    try:
        out = subprocess.run(["ps", "-eo", "pcpu=,pid=,args="], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    me = {os.getpid(), os.getppid()}
    busy = []
    for line in out.splitlines():
        pcpu, pid, args = line.split(None, 2)
        if float(pcpu) >= 50 and int(pid) not in me:
            busy.append(f"{pid} {args[:80]}")
    return busy


def cpu_busy_ticks() -> int:
    """Busy jiffies of the whole machine since boot (user, nice, system, irq, softirq)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = values[:7]
    return user + nice + system + irq + softirq


def own_cpu_s() -> float:
    """CPU seconds of this process and of every descendant it (transitively) waited for."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


@contextmanager
def foreign_load() -> Iterator[dict]:
    """How much CPU other processes took while the block ran, as a share of the
    machine's cores. A few percent means the figures are low."""
    hz = os.sysconf("SC_CLK_TCK")
    started, ticks, own = time.perf_counter(), cpu_busy_ticks(), own_cpu_s()
    load: dict = {}
    yield load
    capacity_s = (time.perf_counter() - started) * (os.cpu_count() or 1)
    foreign_s = (cpu_busy_ticks() - ticks) / hz - (own_cpu_s() - own)
    load["foreign_cpu_share"] = round(max(0.0, foreign_s) / capacity_s, 4)


def wait_idle(max_wait_s: float) -> float:
    """Wait (at most max_wait_s) until other processes leave the cores alone for two
    windows in a row: on a shared machine a test run or a training next door would
    otherwise be measured too. Returns the seconds waited."""
    hz, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    started, quiet = time.perf_counter(), 0
    while quiet < IDLE_WINDOWS and time.perf_counter() - started < max_wait_s:
        ticks, own = cpu_busy_ticks(), own_cpu_s()
        time.sleep(IDLE_WINDOW_S)
        foreign_s = (cpu_busy_ticks() - ticks) / hz - (own_cpu_s() - own)
        quiet = quiet + 1 if foreign_s < IDLE_SHARE * IDLE_WINDOW_S * cores else 0
    waited_s = time.perf_counter() - started
    if quiet < IDLE_WINDOWS and max_wait_s > 0:
        log.warning("the machine did not become idle in %.0f s; measuring anyway", max_wait_s)
    elif waited_s > IDLE_WINDOWS * IDLE_WINDOW_S + 1:
        log.info("waited %.0f s for other processes to finish", waited_s)
    return waited_s


@contextmanager
def phase(name: str, loads: dict, max_wait_s: float) -> Iterator[None]:
    """One measured phase: wait for an idle machine, then record the foreign load."""
    wait_idle(max_wait_s)
    with foreign_load() as load:
        yield
    loads[name] = load["foreign_cpu_share"]
    if load["foreign_cpu_share"] > FOREIGN_LOAD_WARN:
        log.warning("other processes used %.0f %% of the cores during %s; its figures are low",
                    100 * load["foreign_cpu_share"], name)


def check_targets(report: dict) -> dict:
    ops = {">=": float.__ge__, "<=": float.__le__, "<": float.__lt__}
    return {key: {"target": f"{op} {bound:g}", "value": report[key],
                  "met": bool(ops[op](float(report[key]), bound))}
            for key, op, bound in TARGETS}


def benchmark(n: int, data: Path, work: Path, max_wait_s: float = DEFAULT_WAIT_IDLE_S) -> dict:
    import torch

    from genreq.predict import Classifier

    cores = os.cpu_count() or 1
    log.info("building a library of %d clips + %d compressed + %d long tracks in %s",
             n, len(COMPRESSED) * COMPRESSED_EACH, len(LONG_TRACKS), work / "library")
    lib = build_library(work / "library", n, data)
    tracks = lib.tracks
    clf = Classifier.load()
    loads: dict[str, float] = {}  # phase → share of the cores other processes used

    naive = {}
    for kernels in ("librosa", "genreq"):
        log.info("naive loop (librosa.load, %s features, default torch threads) on %d tracks",
                 kernels, len(tracks))
        with phase(f"naive_{kernels}", loads, max_wait_s):
            naive[kernels] = naive_baseline(tracks, clf, kernels)
        log.info("naive, %s features: %.2f clips/s", kernels, naive[kernels]["clips_per_s"])

    runs = {}
    for workers in WORKER_COUNTS:
        with phase(f"run_{workers}_workers", loads, max_wait_s):
            runs[workers] = time_genreq_run(lib, workers, work / f"home-w{workers}", cores)
        log.info("--workers %d: %s", workers, json.dumps(runs[workers]))

    log.info("no-op tasks through the broker")
    with phase("noop_tasks", loads, max_wait_s):
        noop_ms = noop_task_ms(work / "home-w1", len(tracks))

    torch.set_num_threads(1)  # what each worker process does
    log.info("stage breakdown and long tracks, one thread, %d tracks", len(tracks))
    with phase("stages", loads, max_wait_s):
        stages = stage_breakdown(lib, clf, work / "stages.db")
        long_s = long_track_s(lib.long, clf)

    one, two = runs[1], runs[2]
    headline = two  # both cores busy: the configuration `genreq run` uses here
    used_cores = min(headline["workers"], cores)
    worker_ms = one["worker_ms_per_track"]
    stages_ms = dict(stages["all"])
    stages_ms.pop("total")
    # What one pool process spends per track beyond the measured stages: Celery,
    # the broker round trip, sessions. Derived from the 1-worker run.
    stages_ms["queue"] = round(worker_ms - one["classify_ms_per_track"] - stages_ms["db_write"], 2)
    stages_ms["worker_total"] = worker_ms
    report = {
        "n": n,
        "tracks": len(tracks),
        "cores": cores,
        "cpu": cpu_model(),
        "model": f"{clf.name}@{clf.version}",
        "clips_per_s": headline["clips_per_s"],
        "clips_per_s_per_core": round(headline["clips_per_s"] / used_cores, 3),
        "clips_per_s_steady": headline["clips_per_s_steady"],
        "clips_per_s_per_core_steady": headline["clips_per_s_per_core_steady"],
        "naive_clips_per_s": naive["librosa"]["clips_per_s"],
        "speedup_vs_naive": round(
            headline["clips_per_s_steady"] / naive["librosa"]["clips_per_s"], 3),
        "speedup_vs_naive_wall": round(
            headline["clips_per_s"] / naive["librosa"]["clips_per_s"], 3),
        # Against a loop that already has genreq's features and 5 chunks: at most the
        # cores (2x here) times what decoding and the pipeline add.
        "speedup_vs_naive_genreq_features": round(
            headline["clips_per_s_steady"] / naive["genreq"]["clips_per_s"], 3),
        "scaling_2_vs_1_workers": round(two["clips_per_s_steady"] / one["clips_per_s_steady"], 3),
        "scaling_2_vs_1_workers_wall": round(two["clips_per_s"] / one["clips_per_s"], 3),
        "long_track_s_per_core": round(statistics.fmean(long_s.values()), 4),
        "long_track_s_by_format": long_s,
        "overhead_share": one["overhead_share"],
        "overhead_share_2_workers": two["overhead_share"],
        "noop_task_ms": round(noop_ms, 2),
        "worker_rss_mb": max(one["worker_rss_mb"], two["worker_rss_mb"]),
        "worker_pss_total_mb_2_workers": two["worker_pss_total_mb"],
        "stages_ms": stages_ms,
        "stages_ms_by_kind": {k: v for k, v in stages.items() if k != "all"},
        "naive": naive,
        "runs": {str(w): r for w, r in runs.items()},
    }
    report["targets"] = check_targets(report)
    # Other processes' share of the cores during each phase: above a few percent, that
    # phase's figures are low.
    report["foreign_cpu_share"] = max(loads.values())
    report["foreign_cpu_share_by_phase"] = loads
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="30-s clips in the library")
    parser.add_argument("--data", type=Path, default=GTZAN, help="labelled clips (labels.csv)")
    parser.add_argument("--save", action="store_true",
                        help=f"also write {RESULTS.relative_to(REPO)}")
    parser.add_argument("--wait-idle", type=float, default=DEFAULT_WAIT_IDLE_S, metavar="S",
                        help="before each phase, wait up to S seconds for other processes "
                             "to leave the cores alone (0: don't)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (library, homes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the stage database's migration
    if args.n < 1:
        parser.error("--n must be at least 1")
    if busy := busy_processes():
        log.warning("other processes are busy; the figures will be low:\n  %s", "\n  ".join(busy))
    work = Path(tempfile.mkdtemp(prefix="genreq-bench-"))
    try:
        report = benchmark(args.n, args.data, work, args.wait_idle)
    finally:
        if args.keep:
            log.info("kept %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text + "\n")
        log.info("wrote %s", RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
