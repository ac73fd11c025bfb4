"""Real formats and lengths: ms per track by stage, the old decoder against the new one.

    .venv/bin/python bench/formats.py                 # figures on stderr, JSON on stdout
    .venv/bin/python bench/formats.py --save          # also writes bench/results/formats.json
    .venv/bin/python bench/formats.py --library DIR   # build (or reuse) the library in DIR
    .venv/bin/python bench/formats.py --e2e           # also `genreq run`, 1 and 2 workers
    .venv/bin/python bench/formats.py --real --save   # 3-6-minute tracks: real_formats.json
    .venv/bin/python bench/formats.py --formats wma,aac,wv,tta,mka,oga,aifc,mp2,caf --save
                                                      # the later formats: formats-more.json
    BENCH_INRUN_PROFILE=DIR ... --real                # also DIR/<pid>.prof per pool process

Builds a library of 4-minute, 44.1 kHz stereo tracks (TRACKS_PER_FORMAT per format):
eight 30-s GTZAN clips from ../shared/data/gtzan concatenated, resampled to 44.1 kHz,
made stereo (the right channel a few ms late) and encoded with the ffmpeg program as
a real library holds them: mp3 (LAME VBR with a 600x600 JPEG cover in its ID3 tag),
m4a/aac (256 kb/s, cover art), flac (cover art), Ogg Vorbis and Opus. Every format is
made from the same TRACKS_PER_FORMAT source tracks, so the formats compare like with
like.

Then, one torch thread, in this process, for the default model: each track through
Classifier.classify_file, whose stage hook times probe, decode, resample, features and
model, REPEATS times per track (the per-track figure is the median of its repeats), with

- old: the decoder genreq had before PyAV (`legacy_duration_s`/`legacy_load_windows`
  below, copied from genreq/audio.py as it was): libsndfile for what it reads, and the
  ffmpeg program in a subprocess for the rest (m4a: no header duration, so the whole
  file is decoded);
- new: genreq.audio as it is (libsndfile for SOUNDFILE_SUFFIXES, PyAV for the rest);
- pyav: genreq.audio with PyAV for every format, to show where libsndfile pays.

Old, new and pyav alternate on each track, so that a busy moment of the machine falls on
both. Per format: the median and range over the tracks of the total and of each stage,
the ratio old/new, and the largest difference in any genre probability between the two
paths, as each runs and with both decoding the same windows.

With --real, the library is what real collections hold: tracks of 3, 4, 5 and 6 minutes
(REAL_CLIPS_PER_TRACK clips each) as mp3 with a cover, m4a/aac, flac and ogg; --tracks per
format in-process (default REAL_TRACKS_PER_FORMAT), --e2e-tracks for `genreq run`
(default REAL_E2E_TRACKS). Per format, genreq's decoder only, measured twice, alternating:
"after", genreq as it is, and "before", with the optimisations of issue 17 undone
(inrun_probe/legacy_decoder.py, and BENCH_INRUN_BASELINE in the workers). In-process: CPU
ms per track and wall ms by stage (classify_file's hook, one torch thread, the median of
REPEATS runs per track) and the largest difference in any genre probability between the
two. Then `genreq run` on that format's tracks with 1 and 2 workers (real processes, fresh
GENREQ_HOME each, bench/pipeline.py's time_genreq_run), with inrun_probe/sitecustomize.py
on PYTHONPATH so that each pool process records its CPU time by stage: start-up (launch
to the first result), tracks/s per core after the first result, and the pool's CPU per
track in the steady state (each process's first track left out) with its stages.
Written to real_formats.json.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parents[1]
GTZAN = REPO.parent / "shared" / "data" / "gtzan"
RESULTS = REPO / "bench" / "results" / "formats.json"
REAL_RESULTS = REPO / "bench" / "results" / "real_formats.json"
MORE_RESULTS = REPO / "bench" / "results" / "real_formats-more.json"
MORE_FORMATS_RESULTS = REPO / "bench" / "results" / "formats-more.json"

TRACKS_PER_FORMAT = 5
CLIPS_PER_TRACK = 8  # 8 x 30 s = 4 minutes
CLIP_MIN_S = 29.0
TRACK_RATE = 44100  # Hz
STEREO_DELAY_MS = 7  # the right channel lags: stereo that is not two copies of one signal
REPEATS = 3
COVER_SIZE = 600  # pixels, a common size for embedded album art
# ext -> the ffmpeg output options; "cover": whether the cover image goes in too.
ENCODINGS = {
    "mp3": (["-c:a", "libmp3lame", "-q:a", "2", "-id3v2_version", "3"], True),
    "m4a": (["-c:a", "aac", "-b:a", "256k", "-movflags", "+faststart"], True),
    "flac": (["-c:a", "flac"], True),
    "ogg": (["-c:a", "libvorbis", "-q:a", "5"], False),
    "opus": (["-c:a", "libopus", "-b:a", "128k"], False),
    # The formats genreq took later (--real --formats ...: real_formats-more.json).
    "wma": (["-c:a", "wmav2", "-b:a", "192k"], False),
    "aac": (["-c:a", "aac", "-b:a", "256k"], False),
    "wv": (["-c:a", "wavpack"], False),
    "tta": (["-c:a", "tta"], False),
    "mka": (["-c:a", "flac"], False),
    "oga": (["-c:a", "flac"], False),
    "aifc": (["-c:a", "pcm_s16be"], False),
    "mp2": (["-c:a", "mp2", "-b:a", "256k"], False),
    "caf": (["-c:a", "alac"], False),
}
FFMPEG_TIMEOUT_S = 300
REAL_FORMATS = ("mp3", "m4a", "flac", "ogg")
FORMATS_JSON = ("mp3", "m4a", "flac", "ogg", "opus")  # what formats.json measures
REAL_CLIPS_PER_TRACK = (6, 8, 10, 12)  # 30-s clips: 3, 4, 5 and 6-minute tracks, in turn
REAL_TRACKS_PER_FORMAT = 8
TARGET_S_PER_TRACK_PER_CORE = 0.125


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True,
                   timeout=FFMPEG_TIMEOUT_S)


def _clips(n_tracks: int, per_track: tuple[int, ...] = (CLIPS_PER_TRACK,)) -> list[list[Path]]:
    """Clips of mixed genres for each track (per_track[t % len(per_track)] of them), the
    same on every run."""
    with open(GTZAN / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if float(r["duration_s"]) >= CLIP_MIN_S]
    by_genre: dict[str, list[Path]] = {}
    for r in rows:
        by_genre.setdefault(r["genre"], []).append(GTZAN / r["path"])
    genres = sorted(by_genre)
    tracks = []
    for t in range(n_tracks):
        # Mostly one genre per track (as an album track is), two clips of the next one.
        main, other = genres[t % len(genres)], genres[(t + 1) % len(genres)]
        n = per_track[t % len(per_track)]
        picks = [by_genre[main][(t + i) % len(by_genre[main])] for i in range(n - n // 4)]
        picks += [by_genre[other][(t + i) % len(by_genre[other])] for i in range(n // 4)]
        tracks.append(picks)
    return tracks


def build_library(root: Path, n_tracks: int = TRACKS_PER_FORMAT,
                  per_track: tuple[int, ...] = (CLIPS_PER_TRACK,),
                  formats: tuple[str, ...] = FORMATS_JSON) -> dict[str, list[Path]]:
    """Encode the library under root (files already there are reused)."""
    root.mkdir(parents=True, exist_ok=True)
    cover = root / "cover.jpg"
    if not cover.exists():
        _ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={COVER_SIZE}x{COVER_SIZE}", "-frames:v", "1",
                "-q:v", "2", str(cover))
    library: dict[str, list[Path]] = {ext: [] for ext in formats}
    for t, clips in enumerate(_clips(n_tracks, per_track)):
        source = root / f"source-{t}-{len(clips)}.wav"
        if not source.exists():
            inputs = [a for c in clips for a in ("-i", str(c))]
            graph = (
                "".join(f"[{i}:a]" for i in range(len(clips)))
                + f"concat=n={len(clips)}:v=0:a=1,aresample={TRACK_RATE},"
                + f"pan=stereo|c0=c0|c1=c0,adelay=0|{STEREO_DELAY_MS}[out]"
            )
            _ffmpeg(*inputs, "-filter_complex", graph, "-map", "[out]", "-c:a", "pcm_s16le",
                    str(source))
        for ext in formats:
            options, with_cover = ENCODINGS[ext]
            target = root / ext / f"track-{t}-{len(clips)}.{ext}"
            target.parent.mkdir(exist_ok=True)
            if not target.exists():
                art = (["-i", str(cover), "-map", "0:a", "-map", "1:v", "-c:v", "copy",
                        "-disposition:v", "attached_pic"] if with_cover else ["-map", "0:a"])
                _ffmpeg("-i", str(source), *art, *options, str(target))
            library[ext].append(target)
    return library


# --- the decoder genreq used before PyAV (genreq/audio.py before this benchmark) ---------


def legacy_duration_s(path: str | Path) -> float | None:
    try:
        info = sf.info(str(path))
    except Exception:
        return None
    return info.frames / info.samplerate if info.samplerate else None


def _legacy_soundfile(path: Path, windows_s):
    # The libsndfile reader has not changed since: genreq.audio's own, not a copy.
    from genreq import audio

    return audio._read_soundfile(path, windows_s)


def _legacy_ffmpeg(path: Path, rate: int, window_s=None) -> np.ndarray:
    seek = ["-ss", f"{window_s[0]:.3f}", "-t", f"{window_s[1]:.3f}"] if window_s else []
    cmd = ["ffmpeg", "-nostdin", "-v", "error", *seek, "-i", str(path),
           "-f", "f32le", "-ac", "1", "-ar", str(rate), "-"]
    out = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=True)
    return np.frombuffer(out.stdout, dtype=np.float32).copy()


def legacy_load_windows(path, windows_s, rate, on_stage=None, damage=None) -> list[np.ndarray]:
    # DAMAGE: what genreq.audio.load_windows takes now (damaged packets counted); the old
    # decoder skipped none, so it has nothing to count.
    path = Path(path)
    started = time.perf_counter()
    try:
        parts, source_rate = _legacy_soundfile(path, windows_s)
        decoded = time.perf_counter()
        if source_rate != rate:
            parts = [soxr.resample(p, source_rate, rate, quality="HQ").astype(np.float32)
                     for p in parts]
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        if windows_s is None:
            parts = [_legacy_ffmpeg(path, rate)]
        else:
            parts = [_legacy_ffmpeg(path, rate, w) for w in windows_s]
        decoded = time.perf_counter()
    if on_stage is not None:
        on_stage("decode", decoded - started)
        on_stage("resample", time.perf_counter() - decoded)
    return [p for p in parts if p.size]


def legacy_decoder():
    """A context in which Classifier.classify_file decodes as genreq did before PyAV."""
    from genreq import audio

    return mock.patch.multiple(audio, duration_s=legacy_duration_s,
                               load_windows=legacy_load_windows)


# --- measurement ---------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _timed(classifier, path: Path) -> tuple[dict[str, float], dict[str, float]]:
    from genreq.predict import STAGES, StageTimes

    times = StageTimes()
    started = time.perf_counter()
    prediction = classifier.classify_file(path, on_stage=times)
    total = 1000 * (time.perf_counter() - started)
    return {"total": total, **{s: 1000 * times.get(s, 0.0) for s in STAGES}}, prediction.probs


def time_tracks(classifier, paths: list[Path], repeats: int) -> dict[str, list]:
    """Per track, old and new decoders alternating (so that a busy moment of the machine
    falls on both): the median over repeats of each stage's ms and of the total, and the
    genre probabilities; and the old decoder's probabilities on the new one's windows."""
    from genreq import audio

    found = {"old": [], "new": [], "pyav": [], "old_probs": [], "new_probs": [],
             "same_window_probs": [], "pyav_probs": []}
    for path in paths:
        runs: dict[str, list[dict]] = {"old": [], "new": [], "pyav": []}
        for _ in range(repeats):
            with legacy_decoder():
                old, old_probs = _timed(classifier, path)
            runs["old"].append(old)
            new, new_probs = _timed(classifier, path)
            runs["new"].append(new)
            # What choosing PyAV for every format would cost: libsndfile's share measured.
            with mock.patch.object(audio, "SOUNDFILE_SUFFIXES", frozenset()):
                pyav, pyav_probs = _timed(classifier, path)
            runs["pyav"].append(pyav)
        for key, rows in runs.items():
            found[key].append({k: statistics.median(r[k] for r in rows) for k in rows[0]})
        found["old_probs"].append(old_probs)
        found["new_probs"].append(new_probs)
        found["pyav_probs"].append(pyav_probs)
        # The decoders alone: the old one reading the windows the new probe chose.
        with mock.patch.object(audio, "load_windows", legacy_load_windows):
            found["same_window_probs"].append(classifier.classify_file(path).probs)
    return found


def summarize(per_track: list[dict]) -> dict:
    return {key: _spread([t[key] for t in per_track]) for key in per_track[0]}


def _max_diff(a: list[dict], b: list[dict]) -> float:
    return max(abs(x[g] - y[g]) for x, y in zip(a, b, strict=True) for g in x)


def measure(library: dict[str, list[Path]], repeats: int,
            progress: Callable[[str], None]) -> dict:
    import torch

    from genreq.predict import Classifier

    torch.set_num_threads(1)
    classifier = Classifier.load()
    first = next(iter(library.values()))[0]
    classifier.classify_file(first)  # warm-up: first-call allocations, lazy imports
    with legacy_decoder():
        classifier.classify_file(first)
    formats = {}
    for ext, paths in library.items():
        progress(f"{ext}: {len(paths)} tracks x {repeats} repeats, old and new decoders")
        found = time_tracks(classifier, paths, repeats)
        ratios = [o["total"] / n["total"] for o, n in zip(found["old"], found["new"],
                                                           strict=True)]
        formats[ext] = {
            "n_tracks": len(paths), "repeats": repeats,
            "mean_file_mb": statistics.mean(p.stat().st_size for p in paths) / 2**20,
            "old_ms": summarize(found["old"]), "new_ms": summarize(found["new"]),
            "pyav_only_ms": summarize(found["pyav"]),
            "speedup_old_over_new": _spread(ratios),
            # Old against new as each runs (the old m4a path read the whole file, so its
            # chunks came from other places), and the two decoders on the same windows.
            "max_prob_diff_old_vs_new": _max_diff(found["old_probs"], found["new_probs"]),
            "max_prob_diff_same_windows": _max_diff(found["same_window_probs"],
                                                    found["new_probs"]),
            "max_prob_diff_pyav_only": _max_diff(found["pyav_probs"], found["new_probs"]),
        }
    return formats


def end_to_end(library: dict[str, list[Path]], workers: int, root: Path) -> dict:
    """`genreq run` over every track of the library (all formats), on a fresh GENREQ_HOME
    (embedded broker, SQLite): wall time from start to exit, start-up included."""
    tracks = root / f"e2e-{workers}" / "library"
    tracks.mkdir(parents=True)
    for paths in library.values():
        for path in paths:
            os.link(path, tracks / f"{path.parent.name}-{path.name}")
    env = {**os.environ, "GENREQ_HOME": str(tracks.parent / "home")}
    for name in ("GENREQ_DATABASE_URL", "GENREQ_BROKER_URL"):
        env.pop(name, None)
    n = sum(len(p) for p in library.values())
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "genreq.cli", "run", str(tracks), "--workers",
                          str(workers)], env=env, capture_output=True, text=True, check=True,
                         timeout=FFMPEG_TIMEOUT_S * 4)
    wall_s = time.perf_counter() - started
    if f"done {n} · failed 0" not in out.stdout:
        raise RuntimeError(f"genreq run did not classify every track:\n{out.stdout}")
    return {"workers": workers, "tracks": n, "wall_s": wall_s, "tracks_per_s": n / wall_s,
            "tracks_per_s_per_worker": n / wall_s / workers}


def report_lines(formats: dict) -> list[str]:
    lines = [f"{'format':<6} {'n':>2}  {'old ms/track (range)':>22}  "
             f"{'new ms/track (range)':>22}  {'old/new':>7}  {'Δp same windows':>6}  "
             "new by stage: probe decode resample features model"]
    for ext, f in formats.items():
        o, n = f["old_ms"]["total"], f["new_ms"]["total"]
        stages = " ".join(f"{f['new_ms'][s]['median']:.1f}"
                          for s in ("probe", "decode", "resample", "features", "model"))
        lines.append(
            f"{ext:<6} {f['n_tracks']:>2}  {o['median']:8.1f} ({o['min']:.0f}–{o['max']:.0f})"
            f"{'':>4}  {n['median']:8.1f} ({n['min']:.0f}–{n['max']:.0f}){'':>4}  "
            f"{f['speedup_old_over_new']['median']:6.1f}x  "
            f"{f['max_prob_diff_same_windows']:.3f}  {stages}")
    return lines


# --- --real: 3-6-minute tracks, genreq's decoder, per format ------------------------------


def _track_s(path: Path) -> float:
    info = sf.info(str(path.parent.parent / f"source-{path.stem.split('-', 1)[1]}.wav"))
    return info.frames / info.samplerate


PROBE_DIR = Path(__file__).resolve().parent / "inrun_probe"
VARIANTS = ("before", "after")  # genreq before and after issue 17's real-format work
# What BENCH_INRUN_BASELINE undoes in a worker for "before" (inrun_probe/sitecustomize.py):
# the warm-up before the pool forks, and the decoder's mono mix and window buffer.
BEFORE = "warm_up,decoder"
REAL_E2E_TRACKS = 24  # per format: enough that the steady state shows after the first result


def _legacy_decoder():
    sys.path.insert(0, str(PROBE_DIR))
    import legacy_decoder

    return legacy_decoder


def real_stages(library: dict[str, list[Path]], repeats: int,
                progress: Callable[[str], None]) -> dict:
    """Per format: ms per track by stage (one torch thread, this process), the decoder
    before and after alternating on each track and formats alternating track by track,
    so that a busy moment falls on all of them; CPU ms per track of each variant."""
    import torch

    from genreq.predict import Classifier

    before = _legacy_decoder().patch
    torch.set_num_threads(1)
    classifier = Classifier.load()
    for paths in library.values():
        classifier.classify_file(paths[0])  # warm-up: each decoder's first-call costs
        with before():
            classifier.classify_file(paths[0])
    per_track = {ext: {v: [] for v in VARIANTS} for ext in library}
    cpu_ms = {ext: {v: [] for v in VARIANTS} for ext in library}
    prob_diff = dict.fromkeys(library, 0.0)
    for i in range(max(len(p) for p in library.values())):
        for ext, paths in library.items():
            if i >= len(paths):
                continue
            runs: dict[str, list] = {v: [] for v in VARIANTS}
            cpu: dict[str, list] = {v: [] for v in VARIANTS}
            probs = {}
            for _ in range(repeats):
                for variant in VARIANTS:
                    with before() if variant == "before" else contextlib.nullcontext():
                        started = time.process_time()
                        times, probs[variant] = _timed(classifier, paths[i])
                        cpu[variant].append(1000 * (time.process_time() - started))
                    runs[variant].append(times)
            for variant in VARIANTS:
                rows = runs[variant]
                per_track[ext][variant].append(
                    {k: statistics.median(r[k] for r in rows) for k in rows[0]})
                cpu_ms[ext][variant].append(statistics.median(cpu[variant]))
            prob_diff[ext] = max(prob_diff[ext], _max_diff([probs["before"]], [probs["after"]]))
        progress(f"  stages: track {i + 1}, load average {os.getloadavg()[0]:.1f}")
    return {ext: {
        "n_tracks": len(library[ext]), "repeats": repeats,
        "minutes": sorted({round(_track_s(p) / 60, 1) for p in library[ext]}),
        "mean_file_mb": statistics.mean(p.stat().st_size for p in library[ext]) / 2**20,
        # wall ms by stage; CPU ms per track (each track's median over its repeats)
        "ms": {v: summarize(per_track[ext][v]) for v in VARIANTS},
        "cpu_ms_per_track": {v: _spread(cpu_ms[ext][v]) for v in VARIANTS},
        "max_prob_diff_before_after": prob_diff[ext],
    } for ext in library}


def _probe_totals(probe: Path) -> dict:
    """The pool processes' CPU from the in-run probe (inrun_probe/sitecustomize.py): per
    track over the whole run, and in the steady state (each process's first task left
    out: what it pays once), with the stages of the steady state."""
    procs = [json.loads(f.read_text()) for f in sorted(probe.glob("*.json"))]
    procs = [p for p in procs if p["tasks"]]
    tracks = sum(sum(p["task_tracks"]) for p in procs)
    steady_tracks = sum(sum(p["task_tracks"][1:]) for p in procs)
    steady_cpu_s = sum(p["task_end_cpu_s"][-1] - p["task_end_cpu_s"][0] for p in procs)
    stages: dict[str, float] = {}
    for p in procs:
        for stage, row in p["stages"].items():
            first = p["first_task_stages"].get(stage, 0.0)
            stages[stage] = stages.get(stage, 0.0) + row["cpu_s"] - first
    per_task = [1000 * (b - a) / n for p in procs
                for a, b, n in zip(p["task_end_cpu_s"], p["task_end_cpu_s"][1:],
                                   p["task_tracks"][1:], strict=False)]
    steady = {k: 1000 * v / steady_tracks for k, v in sorted(stages.items())}
    total = 1000 * steady_cpu_s / steady_tracks if steady_tracks else None
    if total is not None:  # Celery between tasks, the heartbeat thread
        steady["outside_tasks"] = total - sum(steady.values())
    return {
        "pool_processes": len(procs), "tracks": tracks,
        "pool_cpu_ms_per_track": 1000 * sum(p["process_cpu_s"] for p in procs) / tracks,
        "pool_cpu_ms_per_track_steady": total,
        "pool_cpu_ms_per_track_steady_spread": _spread(per_task) if per_task else None,
        "first_task_cpu_ms": _spread([1000 * p["task_end_cpu_s"][0] / p["task_tracks"][0]
                                      for p in procs]),
        "steady_stages_cpu_ms": steady,
    }


def _finished_times(home: Path) -> list[datetime]:
    from sqlalchemy import select

    from genreq.db.models import State, Track, as_utc
    from genreq.db.session import session_scope

    with session_scope(f"sqlite:///{home / 'genreq.db'}") as session:
        return sorted(as_utc(t) for t in session.scalars(
            select(Track.finished_at).where(Track.state == State.done)))


def real_run(paths: list[Path], tracks: Path, workers: int, variant: str,
             root: Path) -> dict:
    """`genreq run` on `tracks` (pipeline.time_genreq_run, fresh home) with the in-run
    probe in its pool processes, and for "before" the optimisations undone there."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pipeline

    home = root / f"home-{tracks.name}-{workers}-{variant}"
    probe = root / f"probe-{tracks.name}-{workers}-{variant}"
    probe.mkdir(parents=True)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(PROBE_DIR),
                                                       os.environ.get("PYTHONPATH")])),
           "BENCH_INRUN_PROBE_DIR": str(probe),
           "BENCH_INRUN_BASELINE": BEFORE if variant == "before" else ""}
    cores = os.cpu_count() or 1
    launched = datetime.now(timezone.utc)
    with mock.patch.dict(os.environ, env):
        run = pipeline.time_genreq_run(pipeline.Library(tracks, clips=list(paths)), workers,
                                       home, cores)
    if run["failed"] or run["tracks"] != len(paths):
        raise RuntimeError(f"genreq run did not classify every track in {tracks}: {run}")
    finished = _finished_times(home)
    after_first_s = (finished[-1] - finished[0]).total_seconds()
    per_s = (len(finished) - 1) / after_first_s
    used = min(workers, cores)
    return {
        "workers": workers, "variant": variant, "tracks": run["tracks"],
        "wall_s": run["wall_s"],
        # launch to the first result: starting the broker and the worker, loading the
        # model, enqueueing, the first track
        "startup_s": (finished[0] - launched).total_seconds(),
        "first_claim_s": run["startup_s"],
        "tracks_per_s": run["clips_per_s"],
        "tracks_per_s_after_first": per_s,
        "tracks_per_s_per_core_after_first": per_s / used,
        "s_per_track_per_core_after_first": used / per_s,
        "s_per_track_per_core_wall": used * run["wall_s"] / run["tracks"],
        **_probe_totals(probe),
        "cpu_ms_per_track_by_role": run["cpu_ms_per_track"],
        "worker_rss_mb": run["worker_rss_mb"],
        "load_average_after": os.getloadavg()[0],
    }


def real_end_to_end(library: dict[str, list[Path]], root: Path, n_tracks: int,
                    progress: Callable[[str], None]) -> dict:
    """Per format, `genreq run` on its first n_tracks tracks with 1 and 2 workers, before
    and after alternating."""
    out: dict[str, list[dict]] = {}
    for ext, all_paths in library.items():
        paths = all_paths[:n_tracks]
        tracks = root / "e2e" / ext
        tracks.mkdir(parents=True)
        for path in paths:
            os.link(path, tracks / path.name)
        out[ext] = []
        for workers in (1, 2):
            for variant in VARIANTS:
                x = real_run(paths, tracks, workers, variant, root / "e2e")
                out[ext].append(x)
                progress(f"  {ext}, {workers} worker(s), {variant}: start-up "
                         f"{x['startup_s']:.1f} s, {x['tracks_per_s_per_core_after_first']:.2f}"
                         f" tracks/s per core after the first result, pool CPU "
                         f"{x['pool_cpu_ms_per_track_steady']:.0f} ms/track steady")
    return out


def real_report(library: dict[str, list[Path]], in_process_tracks: int, repeats: int,
                e2e_tracks: int, root: Path, progress: Callable[[str], None]) -> dict:
    """In-process stages on the first in_process_tracks of each format, then `genreq run`
    on the first e2e_tracks (0: none)."""
    load_before = os.getloadavg()
    stages = real_stages({ext: paths[:in_process_tracks] for ext, paths in library.items()},
                         repeats, progress)
    runs = real_end_to_end(library, root, e2e_tracks, progress) if e2e_tracks else {}
    from genreq import predict

    target_ms = 1000 * TARGET_S_PER_TRACK_PER_CORE
    formats = {}
    for ext, st in stages.items():
        median = {k: v["median"] for k, v in st["ms"]["after"].items()}
        in_stages = {k: median[k] for k in ("probe", "decode", "resample", "features", "model")}
        after = [r for r in runs.get(ext, []) if r["variant"] == "after"]
        formats[ext] = {
            **st, "bound_by": max(in_stages, key=in_stages.get), "end_to_end": runs.get(ext, []),
            # A track's cost to a core, whatever else runs on the machine: the pool's CPU
            # per track in the steady state, every run of the current genreq.
            "meets_target_cpu": None if not after else all(
                r["pool_cpu_ms_per_track_steady"] <= target_ms for r in after),
            # The same in wall time, after the first result: true only on a quiet machine.
            "meets_target_wall": None if not after else all(
                r["s_per_track_per_core_after_first"] <= TARGET_S_PER_TRACK_PER_CORE
                for r in after),
        }
    return {
        "benchmark": "real_formats",
        "when": datetime.now(timezone.utc).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch_threads": 1,
                    "load_average": {"before": load_before, "end": os.getloadavg()}},
        "model": predict.DEFAULT_MODEL.stem,
        "track": {"rate_hz": TRACK_RATE, "channels": 2,
                  "minutes": [n * 30 / 60 for n in REAL_CLIPS_PER_TRACK],
                  "cover": [ext for ext in library if ENCODINGS[ext][1]]},
        "variants": {"before": "the worker's warm-up and the decoder's mono mix and window "
                               "buffer undone (bench/inrun_probe)",
                     "after": "genreq as it is"},
        "target_s_per_track_per_core": TARGET_S_PER_TRACK_PER_CORE,
        "formats": formats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, help="where to build (or reuse) the library")
    parser.add_argument("--tracks", type=int, default=TRACKS_PER_FORMAT)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--save", action="store_true", help=f"also write {RESULTS.name}")
    parser.add_argument("--e2e", action="store_true",
                        help="also time `genreq run` on the whole library with 1 and 2 workers")
    parser.add_argument("--real", action="store_true",
                        help="3-6-minute tracks in mp3, m4a, flac, ogg; genreq's decoder only, "
                             f"`genreq run` per format; writes {REAL_RESULTS.name} with --save")
    parser.add_argument("--e2e-tracks", type=int, default=REAL_E2E_TRACKS,
                        help="with --real: tracks per format for `genreq run` (0: none)")
    parser.add_argument("--formats", default=None,
                        help="which of " + ", ".join(ENCODINGS) + f" [default: "
                             f"{','.join(FORMATS_JSON)}; with --real {','.join(REAL_FORMATS)}"
                             f"]; others save to {MORE_RESULTS.name} (--real) or "
                             f"{MORE_FORMATS_RESULTS.name}")
    args = parser.parse_args()
    default_formats = REAL_FORMATS if args.real else FORMATS_JSON
    formats = tuple(args.formats.split(",")) if args.formats else default_formats
    # The usual formats keep their results file; others have one of their own.
    if args.real:
        results_file = REAL_RESULTS if formats == default_formats else MORE_RESULTS
    else:
        results_file = RESULTS if formats == default_formats else MORE_FORMATS_RESULTS
    unknown = set(formats) - set(ENCODINGS)
    if unknown:
        parser.error(f"--formats: no encoding for {', '.join(sorted(unknown))}")
    if shutil.which("ffmpeg") is None:
        sys.exit("bench/formats.py needs the ffmpeg program to build its library")

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.real:
        with tempfile.TemporaryDirectory(prefix="genreq-real-formats-") as tmp:
            root = args.library or Path(tmp) / "library"
            n = args.tracks if args.tracks != TRACKS_PER_FORMAT else REAL_TRACKS_PER_FORMAT
            e2e_tracks = max(n, args.e2e_tracks)
            progress(f"building {e2e_tracks} tracks per format in {root}")
            library = build_library(root, e2e_tracks, REAL_CLIPS_PER_TRACK, formats)
            report = real_report(library, n, args.repeats, args.e2e_tracks, Path(tmp),
                                 progress)
        text = json.dumps(report, indent=2)
        print(text)
        if args.save:
            results_file.write_text(text + "\n")
        for ext, f in report["formats"].items():
            cpu = f["cpu_ms_per_track"]
            progress(f"{ext:<5} CPU ms/track in-process before {cpu['before']['median']:.0f}, "
                     f"after {cpu['after']['median']:.0f}; after by stage (wall ms): " + " ".join(
                         f"{k} {f['ms']['after'][k]['median']:.0f}"
                         for k in ("probe", "decode", "resample", "features", "model")))
        return

    with tempfile.TemporaryDirectory(prefix="genreq-formats-") as tmp:
        root = args.library or Path(tmp)
        progress(f"building {args.tracks} tracks per format in {root}")
        started = time.perf_counter()
        library = build_library(root, args.tracks, formats=formats)
        progress(f"library ready in {time.perf_counter() - started:.0f} s")
        formats = measure(library, args.repeats, progress)
        runs = []
        if args.e2e:
            for workers in (1, 2):
                progress(f"genreq run, {workers} worker(s)")
                runs.append(end_to_end(library, workers, Path(tmp)))
                progress(f"  {runs[-1]['tracks_per_s']:.2f} tracks/s")
    import av

    from genreq import predict

    report = {
        "benchmark": "formats",
        "when": datetime.now(timezone.utc).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch_threads": 1, "pyav": av.__version__,
                    "ffmpeg_program": subprocess.run(["ffmpeg", "-version"], check=True,
                                                     capture_output=True, text=True
                                                     ).stdout.split("\n")[0]},
        "model": predict.DEFAULT_MODEL.stem,
        "track": {"minutes": CLIPS_PER_TRACK * 30 / 60, "rate_hz": TRACK_RATE, "channels": 2},
        "formats": formats,
        "end_to_end": runs,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        results_file.write_text(text + "\n")
    for line in report_lines(formats):
        print(line, file=sys.stderr)


if __name__ == "__main__":
    main()
