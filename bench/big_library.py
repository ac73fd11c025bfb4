"""A big library: genreq's commands on a database of a million classified tracks.

    .venv/bin/python bench/big_library.py                      # build (or reuse) and measure
    .venv/bin/python bench/big_library.py --save               # also bench/results/big_library.json
    .venv/bin/python bench/big_library.py --tracks 2000 --tree 200 --dir DIR   # a quick look
    .venv/bin/python bench/big_library.py --database-url postgresql://...     # status, export

Builds, once, in DIR (default: the temporary directory's genreq-big-library; `--rebuild`
builds again): GENREQ_HOME with its SQLite database migrated by genreq's own Alembic
migrations, and TRACKS synthetic rows bulk-inserted into it (SQLAlchemy Core executemany,
one transaction per BUILD_BATCH rows) as genreq's workers would have left them: done
tracks with the vgg-msd model's ten genre probabilities, its fifty MSD tag scores and its
256-dimension float16 embedding, file tags (artist, album of ALBUM_TRACKS tracks, title),
and a few failed, skipped and queued tracks with their reasons. The first TREE rows are
real files: a tree of tiny .mp3 files (artist/album/track) whose rows hold their real
size and mtime, as if they had been classified, so that enqueueing the tree again must
queue nothing.

Then, each the real CLI in a subprocess with GENREQ_HOME (or GENREQ_DATABASE_URL) set,
against Python's start-up with genreq's CLI imported (`genreq --version`), interleaved:

- `genreq status`: wall time, REPEATS runs, against the same command counting the index
  instead of reading the kept counts (genreq.db.counts.kept false: PostgreSQL's path
  before migration 3f8a2c61d9e4), its output checked equal; in this process the same,
  and the embeddings' fingerprint (similar's cache check) both ways;
- `genreq export --format ndjson > /dev/null`: rows/s and peak RSS, and, streamed through
  a pipe, the resident memory when the 100,000th and the last row arrive (constant
  memory: the two match). A library built here has no stored export lines (nor one
  after `--clear-lines`, which sets them to NULL first, timed): the first export,
  which makes and stores them, is timed apart. Then, in this process, the stored lines
  against every line made from its row as before they were stored (the first
  UNCACHED_ROWS rows), alternated: rows/s, rows per CPU s and their ratio;
- result writes (`db.work.record_results`, as a worker writes its batches) on a scratch
  database: microseconds per result with the export-line trigger over new tracks and
  over tracks whose line is stored (cleared by it), against the trigger dropped, and
  against the count triggers dropped (results and claims);
- PostgreSQL's count deltas, on the scratch PostgreSQL database of the result writes
  (none on SQLite): reading the counts and folding the deltas in, with none to a
  million waiting (DELTA_BACKLOGS);
- `genreq enqueue TREE` on the unchanged tree, the embedded broker running (started by a
  first enqueue, stopped with `genreq stop` at the end): wall time, and what it queued;
- `similar`: genreq.app.similar.find_similar in this process on REPEATS library tracks
  (the warm query, after a first one that builds the cache), the brute-force top N alone
  (genreq.similarity.top_n), and the `genreq similar` command's wall time.

The machine's load average is recorded around each measurement: on a shared machine the
ratios against the start-up baseline say more than the seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "big_library.json"
GENREQ = [sys.executable, "-m", "genreq.cli"]

TRACKS = 1_000_000
TREE = 100_000
REPEATS = 5
BUILD_BATCH = 20_000  # rows per executemany and per transaction
ALBUM_TRACKS = 12
ALBUMS_PER_ARTIST = 5
RSS_AT_ROWS = 100_000  # export's memory is sampled here and at the last row
# Rows of the in-process export that makes every line from its row (the path before the
# lines were stored), against the stored lines over every row.
UNCACHED_ROWS = 100_000
TARGETS = {"status_s": 1.0, "export_rows_per_s": 50_000, "enqueue_unchanged_s": 30.0,
           "similar_s": 0.2}
# What the rows claim to come from: the shipped vgg-msd (genres, MSD tags, embedding).
MODEL_NAME = "vgg-msd"
EMBED_DIM = 256
# Shares of the tracks not done, in the library: failed, skipped, queued.
FAILED_SHARE, SKIPPED_SHARE, QUEUED_SHARE = 0.01, 0.009, 0.001
FAILURE_REASONS = ("not decodable audio (Invalid data found when processing input)",
                   "not decodable audio (file is empty)", "cannot read file (Permission denied)")
SKIP_REASON = "shorter than 3 s"
MANIFEST = "manifest.json"


# --- building the library ---------------------------------------------------------------


def _model() -> tuple[list[str], tuple[str, ...], str]:
    """(genres, tag names, model version) of the shipped vgg-msd, as its rows store them."""
    from genreq.checkpoint import file_digest
    from genreq.predict import resolve_model
    from genreq.pretrained.tags import MSD_TAG_NAMES

    path = resolve_model(MODEL_NAME)
    import torch

    genres = list(torch.load(path, weights_only=True, map_location="cpu")["genres"])
    return genres, MSD_TAG_NAMES, file_digest(path)


def tree_paths(tree: Path, n_files: int) -> Iterator[Path]:
    """The tree's files in the order the walk yields them: artist/album/NN title.mp3."""
    width = len(str(max(n_files // (ALBUM_TRACKS * ALBUMS_PER_ARTIST), 1)))
    for i in range(n_files):
        album = i // ALBUM_TRACKS
        artist = album // ALBUMS_PER_ARTIST
        yield (tree / f"artist {artist:0{width}d}" / f"album {album:0{width + 1}d}"
               / f"{i % ALBUM_TRACKS + 1:02d} title {i}.mp3")


def make_tree(tree: Path, n_files: int) -> None:
    """Tiny files (a few bytes each: only their size and mtime matter to enqueue)."""
    for path in tree_paths(tree, n_files):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (1 + len(path.name) % 7))


# Distinct genre and tag vectors the rows draw from: their JSON is made once, so the
# build costs seconds per 100,000 rows; reading them back costs what any row's does.
POOL = 10_000


def _pool(genres: list[str], tag_names: tuple[str, ...], rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(top genre index, its probability, probs JSON, tags JSON) of POOL results, as the
    worker stores them (float32 values as Python floats, every genre and tag)."""
    genre_ix = np.minimum(rng.zipf(1.6, POOL) - 1, len(genres) - 1)
    logits = rng.standard_normal((POOL, len(genres))).astype(np.float32)
    logits[np.arange(POOL), genre_ix] += rng.uniform(0.5, 4.0, POOL).astype(np.float32)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    tags = rng.beta(0.5, 6.0, (POOL, len(tag_names))).astype(np.float32)
    top = probs.argmax(axis=1)
    return (top, probs[np.arange(POOL), top],
            [json.dumps(dict(zip(genres, p.tolist(), strict=True))) for p in probs],
            [json.dumps(dict(zip(tag_names, t.tolist(), strict=True))) for t in tags])


def _times(now: np.datetime64, ages_s: np.ndarray) -> list[str]:
    """Timestamps as SQLAlchemy's SQLite DateTime stores them (UTC, no offset)."""
    stamps = now - (ages_s * 1e6).astype("timedelta64[us]")
    return np.char.replace(np.datetime_as_string(stamps, unit="us"), "T", " ").tolist()


def _rows(n_tracks: int, tree: Path, n_tree: int, seed: int, dialect: str = "sqlite"
          ) -> Iterator[list[dict]]:
    """The library's rows, BUILD_BATCH at a time, as the Track table's columns (JSON
    columns as their JSON text, timestamps as the dialect takes them)."""
    genres, tag_names, version = _model()
    embedding_model = f"{MODEL_NAME}@{version}"
    rng = np.random.default_rng(seed)
    rand = random.Random(seed)
    top, confidence, probs_json, tags_json = _pool(genres, tag_names, rng)
    # Clustered embeddings (genres, then tracks), as bench/similar.py makes them.
    centres = rng.standard_normal((len(genres), EMBED_DIM)).astype(np.float32)
    now = np.datetime64(datetime.now(timezone.utc).replace(tzinfo=None), "us")
    batches = [f"{rand.getrandbits(128):032x}" for _ in range(n_tracks // 10_000 + 1)]
    tree_files = tree_paths(tree, n_tree)
    artist_width = len(str(n_tracks // (ALBUM_TRACKS * ALBUMS_PER_ARTIST)))
    file_genres = [json.dumps([g.title()]) for g in genres]
    for start in range(0, n_tracks, BUILD_BATCH):
        size = min(BUILD_BATCH, n_tracks - start)
        pick = rng.integers(0, POOL, size)
        vectors = (centres[top[pick]] + 0.8 * rng.standard_normal((size, EMBED_DIM))
                   ).astype("<f2")  # genreq.similarity.STORED_DTYPE
        states = rng.random(size)
        durations = rng.uniform(150.0, 380.0, size).tolist()
        ages_s = rng.uniform(60.0, 30 * 86400.0, size)
        finished = _times(now, ages_s)
        started = _times(now, ages_s + 0.3)
        queued = _times(now, ages_s + 86400.0)
        if dialect != "sqlite":
            finished, started, queued = ([datetime.fromisoformat(t).replace(
                tzinfo=timezone.utc) for t in times] for times in (finished, started, queued))
        rows = []
        for j in range(size):
            i = start + j
            album = i // ALBUM_TRACKS
            artist = album // ALBUMS_PER_ARTIST
            if i < n_tree:
                path = next(tree_files)
                stat = path.stat()
                path, size_bytes, mtime_ns = str(path), stat.st_size, stat.st_mtime_ns
                state = "done"
            else:
                path = (f"/music/artist {artist:0{artist_width}d}/album {album}/"
                        f"{i % ALBUM_TRACKS + 1:02d} title {i}.mp3")
                size_bytes = 4_000_000 + (i * 7919) % 8_000_000
                mtime_ns = 1_700_000_000_000_000_000 + i * 1_000_003
                s = states[j]
                state = ("failed" if s < FAILED_SHARE else
                         "skipped" if s < FAILED_SHARE + SKIPPED_SHARE else
                         "queued" if s < FAILED_SHARE + SKIPPED_SHARE + QUEUED_SHARE else
                         "done")
            row = {
                "path": path, "size_bytes": size_bytes, "mtime_ns": mtime_ns, "state": state,
                "batch_id": batches[i // 10_000], "attempts": 1 if state != "queued" else 0,
                "error": None, "reason": None, "genre": None, "confidence": None,
                "probs": None, "duration_s": None, "model_name": None,
                "model_version": None, "elapsed_s": None, "tags": None, "embedding": None,
                "embedding_model": None, "artist": None, "album": None, "title": None,
                "file_genres": None, "queued_at": queued[j], "started_at": None,
                "finished_at": None,
            }
            if state == "done":
                k = pick[j]
                row.update(
                    genre=genres[top[k]], confidence=float(confidence[k]),
                    probs=probs_json[k], duration_s=durations[j], model_name=MODEL_NAME,
                    model_version=version, elapsed_s=0.3, tags=tags_json[k],
                    embedding=vectors[j].tobytes(), embedding_model=embedding_model,
                    artist=f"Artist {artist}", album=f"Album {album}", title=f"Title {i}",
                    file_genres=file_genres[top[k]] if i % 2 else "[]",
                    started_at=started[j], finished_at=finished[j])
            elif state in ("failed", "skipped"):
                reason = (FAILURE_REASONS[i % len(FAILURE_REASONS)] if state == "failed"
                          else SKIP_REASON)
                row.update(reason=reason, error=f"{path}: {reason}" if state == "failed"
                           else None, elapsed_s=0.01, finished_at=finished[j],
                           started_at=started[j],
                           duration_s=1.5 if state == "skipped" else None)
            rows.append(row)
        yield rows


def build(url: str, n_tracks: int, tree: Path, n_tree: int, seed: int = 0,
          log: Callable[[str], None] = lambda _m: None) -> dict:
    """Migrate the database at URL to head (genreq's migrations) and fill it with
    N_TRACKS rows, the first N_TREE of them the files of TREE (made here)."""
    from sqlalchemy import column, insert, table

    from genreq.db import migrate
    from genreq.db.models import Track
    from genreq.db.session import get_engine

    started = time.perf_counter()
    make_tree(tree, n_tree)
    tree_s = time.perf_counter() - started
    migrate.upgrade(url)
    # genreq's table, its columns untyped: the rows carry their JSON and timestamps
    # already as stored, so executemany binds them as they are.
    untyped = table("tracks", *(column(c.name) for c in Track.__table__.c if c.name != "id"))
    statement = insert(untyped)
    done = 0
    engine = get_engine(url)
    with engine.connect() as connection:
        for rows in _rows(n_tracks, tree, n_tree, seed, engine.dialect.name):
            with connection.begin():
                connection.execute(statement, rows)
            done += len(rows)
            log(f"built {done}/{n_tracks} rows")
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("ANALYZE")
        else:
            connection.commit()
            # VACUUM runs outside a transaction only.
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE tracks")
    return {"tracks": n_tracks, "tree_files": n_tree, "tree_s": round(tree_s, 1),
            "build_s": round(time.perf_counter() - started, 1)}


def prepare_library(directory: Path, n_tracks: int, n_tree: int, url: str | None,
                    rebuild: bool, log: Callable[[str], None]) -> tuple[dict, dict]:
    """(the environment for genreq, what was built): builds into DIRECTORY unless its
    manifest says it already holds this library."""
    home, tree = directory / "home", directory / "tree"
    db_url = url or f"sqlite:///{home / 'genreq.db'}"
    env = {**os.environ, "GENREQ_HOME": str(home)}
    env.pop("GENREQ_DATABASE_URL", None)
    if url:
        env["GENREQ_DATABASE_URL"] = url
    # The database as the results file may name it: no machine path.
    wanted = {"tracks": n_tracks, "tree_files": n_tree,
              "database": _redacted(db_url).replace(str(directory), "DIR")}
    manifest = directory / MANIFEST
    if not rebuild and manifest.exists():
        built = json.loads(manifest.read_text())
        if {k: built.get(k) for k in wanted} == wanted:
            log(f"reusing the library in {directory}")
            return env, built
    if directory.exists():
        shutil.rmtree(directory)
    home.mkdir(parents=True)
    if url:
        _drop_tables(url)
    built = {**wanted, **build(db_url, n_tracks, tree, n_tree, log=log)}
    if db_url.startswith("sqlite"):
        built["database_mib"] = round((home / "genreq.db").stat().st_size / 2**20)
    manifest.write_text(json.dumps(built, indent=2) + "\n")
    log(f"built {n_tracks} rows in {built['build_s']} s")
    return env, built


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _drop_tables(url: str) -> None:
    from sqlalchemy import text

    from genreq.db.session import get_engine

    with get_engine(url).begin() as connection:
        for name in ("tracks", "track_counts", "change_stamps", "track_count_deltas",
                     "change_stamp_deltas", "alembic_version"):
            connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
        # The triggers' functions outlive their table.
        for name in ("tracks_export_line_stale", "tracks_count_deltas",
                     "tracks_embeddings_delta"):
            connection.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))


# --- measuring ----------------------------------------------------------------------------


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _summary(values: list[float], digits: int = 3) -> dict:
    return {"n": len(values), "median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}


def _maxrss_of(args: list[str], env: dict, stdout) -> tuple[float, float, str]:
    """(wall s, peak RSS MB of this child alone, stderr): wait4 gives one child's usage,
    where RUSAGE_CHILDREN is the largest child so far."""
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=stdout, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"{' '.join(args)} exited {process.returncode}: {stderr.decode()}")
    return wall, usage.ru_maxrss / 1024, stderr.decode()


def startup_s(env: dict) -> float:
    return _maxrss_of([*GENREQ, "--version"], env, subprocess.DEVNULL)[0]


# `genreq status` as it was before the database kept the counts (PostgreSQL before
# migration 3f8a2c61d9e4): the same command with genreq.db.counts.kept false, so status
# counts the (state, genre) index and the embeddings' fingerprint reads its index.
GENREQ_COUNTING = [sys.executable, "-c",
                   "from genreq.db import counts; counts.kept = lambda _session: False; "
                   "from genreq.cli.main import cli; cli(prog_name='genreq')"]


def measure_status(env: dict, repeats: int) -> dict:
    """`genreq status` (text and --json) against `genreq --version` and against the
    command counting the index instead of reading the kept counts, interleaved."""
    subprocess.run([*GENREQ, "status"], env=env, check=True, capture_output=True)  # warm
    subprocess.run([*GENREQ_COUNTING, "status"], env=env, check=True, capture_output=True)
    walls, json_walls, counting_walls, base = [], [], [], []
    load = [_load()]
    for _ in range(repeats):
        base.append(startup_s(env))
        walls.append(_maxrss_of([*GENREQ, "status"], env, subprocess.DEVNULL)[0])
        counting_walls.append(_maxrss_of([*GENREQ_COUNTING, "status"], env,
                                         subprocess.DEVNULL)[0])
        json_walls.append(_maxrss_of([*GENREQ, "status", "--json"], env, subprocess.DEVNULL)[0])
    load.append(_load())
    out = subprocess.run([*GENREQ, "status", "--json"], env=env, check=True,
                         capture_output=True, text=True).stdout
    fingerprint = _fingerprint_call()
    counting = subprocess.run([*GENREQ_COUNTING, "status", "--json"], env=env, check=True,
                              capture_output=True, text=True).stdout
    if json.loads(out) != json.loads(counting):
        raise RuntimeError(f"kept counts {out} differ from the counted ones {counting}")
    return {"wall_s": _summary(walls), "json_wall_s": _summary(json_walls),
            "counting_wall_s": _summary(counting_walls),
            "startup_s": _summary(base),
            "import_app_s": _summary([_maxrss_of(
                [sys.executable, "-c", "import genreq.app"], env, subprocess.DEVNULL)[0]
                for _ in range(repeats)]),
            "in_process_s": _in_process(env, repeats, _status_call),
            "counting_in_process_s": _in_process(env, repeats, _counting(_status_call)),
            "fingerprint_s": _in_process(env, repeats, fingerprint),
            "counting_fingerprint_s": _in_process(env, repeats, _counting(fingerprint)),
            "counts": {k: v for k, v in json.loads(out).items()
                       if k in ("total", "done", "failed", "skipped", "queued")},
            "load": load}


def _status_call() -> None:
    from genreq import app

    app.status()
    list(app.reasons())


def _fingerprint_call() -> Callable[[], None]:
    """What similar's cache and the learned head's counts check first: the embeddings'
    fingerprint of the library's model."""
    from genreq.app.library import session
    from genreq.db import embeddings

    embedding_model = f"{MODEL_NAME}@{_model()[2]}"

    def call() -> None:
        with session() as db:
            embeddings.fingerprint(db, embedding_model)

    return call


def _counting(call: Callable[[], None]) -> Callable[[], None]:
    """CALL with genreq.db.counts.kept false (GENREQ_COUNTING's path), in this process."""

    def counting() -> None:
        from genreq.db import counts

        kept = counts.kept
        counts.kept = lambda _session: False
        try:
            call()
        finally:
            counts.kept = kept

    return counting


def _in_process(env: dict, repeats: int, call: Callable[[], None]) -> dict:
    """CALL's wall time in this process with ENV's GENREQ_HOME and database (what the
    command does once imported), after one call that warms it."""

    def timed() -> dict:
        call()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        return _summary(times)

    return _with_env(env, timed)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_export_head(env: dict, rows_wanted: int) -> dict:
    """The first ROWS_WANTED rows of `genreq export --format ndjson` through a pipe, the
    command then stopped: rows/s from its start, for an export too slow to run whole."""
    args = [*GENREQ, "export", "--format", "ndjson"]
    load = [_load()]
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    rows = 0
    while rows < rows_wanted and (chunk := process.stdout.read1(1 << 16)):
        rows += chunk.count(b"\n")
    wall = time.perf_counter() - started
    rss = _rss_mb(process.pid)
    cpu = _cpu_s(process.pid)
    process.kill()
    process.wait()
    load.append(_load())
    # Rows per CPU second of the command (its start-up included): what the export costs
    # apart from waiting for a core on a shared machine.
    return {"rows": rows, "stopped_after_rows": rows_wanted, "wall_s": round(wall, 2),
            "rows_per_s": round(rows / wall), "cpu_s": round(cpu, 2),
            "rows_per_cpu_s": round(rows / cpu), "rss_mb_at_stop": round(rss, 1), "load": load}


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of the running process PID so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _no_paths(row: dict, directory: Path) -> dict:
    """An exported row with the benchmark's DIRECTORY written DIR."""
    return {**row, "path": row["path"].replace(str(directory), "DIR")}


def _with_env(env: dict, call: Callable[[], object]) -> object:
    """CALL in this process with ENV's GENREQ_HOME and database."""
    saved = {k: os.environ.get(k) for k in ("GENREQ_HOME", "GENREQ_DATABASE_URL")}
    for k in saved:
        if k in env:
            os.environ[k] = env[k]
        else:
            os.environ.pop(k, None)
    try:
        return call()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _stored_lines() -> tuple[int, int]:
    """(done tracks, those with a stored export line) of the configured database."""
    from sqlalchemy import func, select

    from genreq.app.library import session
    from genreq.db.models import State, Track

    with session() as db:
        return tuple(db.execute(select(func.count(), func.count(Track.export_line))
                                .where(Track.state == State.done)).one())


def clear_lines() -> float:
    """Set every stored export line to NULL (what a migration that changes the lines'
    format does, and the state a library is left in by the migration that adds them):
    its wall time."""
    from sqlalchemy import update

    from genreq.app.library import session
    from genreq.db.models import Track

    started = time.perf_counter()
    with session() as db:
        db.execute(update(Track).where(Track.export_line.is_not(None))
                   .values(export_line=None))
    return time.perf_counter() - started


def _export_in_process(rows: int | None, cached: bool) -> tuple[int, float, float]:
    """(rows, wall s, CPU s) of the export's lines in this process, written to /dev/null
    as the command writes them; the stored lines (CACHED) or every line made from its
    row as before they were stored (the first ROWS only: that path is slow). Nothing
    is stored."""
    from itertools import islice

    from genreq.app.library import TrackFilter, json_lines, session, with_learned_head

    started, cpu = time.perf_counter(), time.process_time()
    n = 0
    with session() as db, open(os.devnull, "w", encoding="utf-8") as out:
        lines = json_lines(db, TrackFilter(), with_learned_head(None), cached=cached)
        for line in islice(lines, rows):
            out.write(line + "\n")
            n += 1
    return n, time.perf_counter() - started, time.process_time() - cpu


def measure_export_in_process(env: dict, repeats: int, uncached_rows: int) -> dict:
    """The stored lines against making them (the path before they were stored) in this
    process, alternated REPEATS times: rows/s and rows per CPU s of each, and their
    ratio per round."""
    def rounds() -> dict:
        stored, made, ratios = [], [], []
        for _ in range(repeats):
            n, wall, cpu = _export_in_process(None, cached=True)
            stored.append((n / wall, n / cpu))
            m, wall_m, cpu_m = _export_in_process(uncached_rows, cached=False)
            made.append((m / wall_m, m / cpu_m))
            ratios.append((stored[-1][0] / made[-1][0], stored[-1][1] / made[-1][1]))
        return {"stored_rows": n, "made_rows": m,
                "stored_rows_per_s": _summary([w for w, _ in stored], 0),
                "stored_rows_per_cpu_s": _summary([c for _, c in stored], 0),
                "made_rows_per_s": _summary([w for w, _ in made], 0),
                "made_rows_per_cpu_s": _summary([c for _, c in made], 0),
                "ratio_wall": _summary([w for w, _ in ratios], 1),
                "ratio_cpu": _summary([c for _, c in ratios], 1)}

    load = [_load()]
    result = _with_env(env, rounds)
    load.append(_load())
    return {**result, "load": load}


def measure_export(env: dict, repeats: int, done: int, directory: Path,
                   clear: bool = False) -> dict:
    """`genreq export --format ndjson` to /dev/null: rows/s and peak RSS; then once
    through a pipe, RSS at the RSS_AT_ROWS-th row and at the last. When some done
    tracks have no stored line (a library built here, or CLEAR, which first sets every
    one to NULL), the first export, which makes and stores them, is timed apart."""
    args = [*GENREQ, "export", "--format", "ndjson"]
    result: dict = {}
    if clear:
        result["clear_lines_s"] = round(_with_env(env, clear_lines), 1)
    total, stored = _with_env(env, _stored_lines)
    if stored < total:
        load = [_load()]
        with open(os.devnull, "w") as null:
            wall, peak, _ = _maxrss_of(args, env, null)
        load.append(_load())
        result["first"] = {"lines_stored_before": stored, "wall_s": round(wall, 1),
                           "rows_per_s": round(total / wall), "peak_rss_mb": round(peak, 1),
                           "lines_stored_after": _with_env(env, _stored_lines)[1],
                           "load": load}
    walls, peaks = [], []
    load = [_load()]
    for _ in range(repeats):
        with open(os.devnull, "w") as null:
            wall, peak, _ = _maxrss_of(args, env, null)
        walls.append(wall)
        peaks.append(peak)
    load.append(_load())
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    rows, rss_at, first_row = 0, {}, None
    mark = RSS_AT_ROWS
    while chunk := process.stdout.read1(1 << 16):
        rows += chunk.count(b"\n")
        if first_row is None:
            first_row = chunk.split(b"\n", 1)[0]
        if rows >= mark and "first" not in rss_at:
            rss_at["first"] = (rows, _rss_mb(process.pid))
        rss_at["last"] = (rows, _rss_mb(process.pid))
    process.wait()
    rates = [done / w for w in walls]
    return {**result, "rows": rows, "rows_per_s": _summary(rates, 0),
            "wall_s": _summary(walls), "startup_s": _summary([startup_s(env)
                                                              for _ in range(repeats)]),
            "peak_rss_mb": _summary(peaks, 1),
            "rss_mb_at_rows": {str(n): round(mb, 1) for n, mb in rss_at.values()},
            "example_row": _no_paths(json.loads(first_row), directory) if first_row else None,
            "load": load}


# Results per worker write in the result-write measurement (a worker's batch), and
# tracks written per round.
RESULT_BATCH = 16
RESULT_TRACKS = 2_000
LINE_CHARS = 1_200  # about a vgg-msd track's stored line


def measure_result_writes(scratch: Path, repeats: int, url: str | None = None) -> dict:
    """The added cost of a result write (db.work.record_results, RESULT_BATCH a
    transaction) on a scratch database at head: over tracks with no stored line (a new
    track: the trigger's condition only), over tracks whose line is stored (a track
    classified again: the trigger clears it), with the trigger dropped (the schema
    before it), and with the count triggers dropped (their cost: on SQLite the counter
    rows of e41b7d93c5a8, on PostgreSQL the deltas of 3f8a2c61d9e4), alternated REPEATS
    times; microseconds per result, and per claimed track (db.work.claim_batch, which
    the count triggers also see)."""
    from sqlalchemy import insert, text

    from genreq.db import counts, migrate, work
    from genreq.db.models import State, Track, utcnow
    from genreq.db.session import get_engine, session_scope, transaction

    if url is None:
        path = scratch / "writes.db"
        path.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        _drop_tables(url)
    migrate.upgrade(url)
    genres, tag_names, version = _model()
    rng = np.random.default_rng(1)
    _top, _confidence, probs_json, tags_json = _pool(genres, tag_names, rng)
    probs = [json.loads(p) for p in probs_json[:RESULT_TRACKS]]
    tags = [json.loads(t) for t in tags_json[:RESULT_TRACKS]]
    with transaction(url) as db:
        db.execute(insert(Track), [{"path": f"/m/{i}.mp3", "size_bytes": 1, "mtime_ns": 1,
                                    "state": State.queued, "attempts": 0}
                                   for i in range(RESULT_TRACKS)])
        ids = [row[0] for row in db.execute(text("SELECT id FROM tracks ORDER BY id"))]
    dialect = get_engine(url).dialect.name
    trigger = ("tracks_export_line_stale" if dialect == "sqlite"
               else "tracks_export_line_stale ON tracks")
    ddl = _trigger_ddl(dialect)
    count_ddl = _count_trigger_ddl(dialect)

    def write_all(round_: int) -> tuple[float, float]:
        """Claim every track and write its result (a new one each ROUND_: a stored line
        made of the old one must go), RESULT_BATCH a transaction: wall s of the
        results, and of the claims."""
        with transaction(url) as db:
            db.execute(text("UPDATE tracks SET state = 'queued', claim_token = NULL, "
                            "attempts = 0"))
            counts.compact(db)  # every round starts with no deltas (PostgreSQL)
        elapsed = claiming = 0.0
        for start in range(0, len(ids), RESULT_BATCH):
            batch = ids[start:start + RESULT_BATCH]
            claim = work.new_claim("bench:1", 60.0)
            started = time.perf_counter()
            with transaction(url) as db:
                work.claim_batch(db, batch, 3, claim)
            claiming += time.perf_counter() - started
            results = [work.Result(
                track_id=i, genre=genres[0], confidence=0.5, probs=probs[k],
                duration_s=200.0 + round_, elapsed_s=0.3, finished_at=utcnow(),
                tags=tags[k], embedding=bytes(512), embedding_model=f"{MODEL_NAME}@x",
                artist="A", album="B", title="T", file_genres=["Rock"])
                for k, i in enumerate(batch, start)]
            started = time.perf_counter()
            with transaction(url) as db:
                written = work.record_results(db, results, MODEL_NAME, version, claim.token)
            elapsed += time.perf_counter() - started
            if written != len(batch):
                raise RuntimeError(f"{written} of {len(batch)} results written")
        return elapsed, claiming

    def store_lines(line: str | None) -> None:
        with transaction(url) as db:
            db.execute(text("UPDATE tracks SET export_line = :line"), {"line": line})

    def set_trigger(on: bool) -> None:
        with transaction(url) as db:
            db.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
            if on:
                for statement in ddl:
                    db.execute(text(statement))

    def set_count_triggers(on: bool, statement_level: bool = False) -> None:
        """The count triggers as their migration creates them, none, or (PostgreSQL)
        STATEMENT_COUNT_TRIGGERS for the counts in their place (the stamp's stay)."""
        on_tracks = " ON tracks" if dialect != "sqlite" else ""
        with transaction(url) as db:
            for name in [*count_ddl, *list(STATEMENT_COUNT_TRIGGERS)[1:]]:
                db.execute(text(f"DROP TRIGGER IF EXISTS {name}{on_tracks}"))
            if on:
                for name, statement in count_ddl.items():
                    if not (statement_level and name.startswith("tracks_counts_")):
                        db.execute(text(statement))
            if statement_level:
                for statement in STATEMENT_COUNT_TRIGGERS.values():
                    db.execute(text(statement))

    cases: dict[str, list[float]] = {"no_line": [], "line_stored": [], "no_trigger": [],
                                     "no_count_triggers": []}
    if dialect != "sqlite":
        cases["statement_count_triggers"] = []
    claims: dict[str, list[float]] = {case: [] for case in cases}
    load = [_load()]
    write_all(0)  # warm
    for r in range(repeats):
        for k, case in enumerate(cases, 1):
            set_trigger(case != "no_trigger")
            set_count_triggers(case != "no_count_triggers",
                               statement_level=case == "statement_count_triggers")
            # A line as long as a real one; none where the schema had no column.
            store_lines("x" * LINE_CHARS if case == "line_stored" else None)
            results_s, claims_s = write_all(r * len(cases) + k)
            with session_scope(url) as db:
                if case == "no_count_triggers":  # uncounted writes: count them again
                    _recount(db)
                elif _counted(db) != sorted(counts.state_genre_counts(db)):
                    raise RuntimeError(f"{case}: the kept counts are not the tracks'")
            cases[case].append(results_s / len(ids) * 1e6)
            claims[case].append(claims_s / len(ids) * 1e6)
            if case == "line_stored":
                with transaction(url) as db:
                    left = db.execute(text("SELECT count(export_line) FROM tracks")).scalar()
                if left:
                    raise RuntimeError(f"{left} stored lines outlived their track's result")
    load.append(_load())
    set_trigger(True)
    set_count_triggers(True)
    return {"database": dialect, "tracks": len(ids), "batch": RESULT_BATCH,
            **{f"{case}_us_per_result": _summary(v, 1) for case, v in cases.items()},
            **{f"{case}_us_per_claim": _summary(v, 1) for case, v in claims.items()},
            "load": load}


# Deltas waiting to be folded in, for the read and compaction costs: none, as many as a
# reader lets pile up (genreq.db.counts.COMPACT_AFTER_DELTAS), and what a long run with
# no reader leaves (four a track: 250,000 tracks for a million).
DELTA_BACKLOGS = (0, 10_000, 100_000, 1_000_000)


def measure_deltas(url: str, repeats: int) -> dict:
    """PostgreSQL's count deltas on the scratch database URL (after the result writes):
    reading the counts (genreq.db.counts.state_genre_counts) over each of DELTA_BACKLOGS
    deltas, REPEATS times, and folding them in (counts.compact), max(1, REPEATS // 2)
    times. The deltas are +1/-1 pairs over a library's (state, genre)s: they sum to
    nothing, so the counts stay those of the tracks (checked)."""
    from sqlalchemy import text

    from genreq.db import counts
    from genreq.db.session import get_engine, session_scope, transaction

    genres = _model()[0]
    keys = [("queued", ""), ("running", "")] + [("done", g) for g in genres]
    values = ", ".join(f"({k}, '{state}', '{genre}')" for k, (state, genre) in enumerate(keys))

    def add(n: int) -> None:
        """N deltas: +1 then -1 on each key in turn."""
        with transaction(url) as db:
            db.execute(text(
                "INSERT INTO track_count_deltas (state, genre, tracks) "
                "SELECT k.state, k.genre, CASE WHEN i % 2 = 0 THEN 1 ELSE -1 END "
                f"FROM generate_series(0, :n - 1) AS i JOIN (VALUES {values}) "
                f"AS k(key, state, genre) ON k.key = (i / 2) % {len(keys)}"), {"n": n})

    def read() -> list:
        with session_scope(url) as db:
            return sorted(counts.state_genre_counts(db))

    with transaction(url) as db:
        counts.compact(db)
    settled = read()
    with get_engine(url).connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE track_count_deltas, track_counts")
    load = [_load()]
    result = {}
    for backlog in DELTA_BACKLOGS:
        reads, folds = [], []
        for _ in range(max(1, repeats // 2)):
            add(backlog)
            with session_scope(url) as db:
                if counts.count_deltas(db) != backlog:
                    raise RuntimeError(f"{backlog} deltas were not added")
            read()  # warm
            for _ in range(repeats):
                started = time.perf_counter()
                if read() != settled:
                    raise RuntimeError("the counts moved with deltas that sum to nothing")
                reads.append(time.perf_counter() - started)
            with transaction(url) as db:
                started = time.perf_counter()
                counts.compact(db)
            folds.append(time.perf_counter() - started)  # with its commit
        result[str(backlog)] = {"read_s": _summary(reads, 4), "compact_s": _summary(folds, 3)}
    load.append(_load())
    return {"backlogs": result, "load": load}


def _counted(db) -> list[tuple[str, str | None, int]]:
    """The counts by counting the tracks, as genreq.db.counts.state_genre_counts has them."""
    from sqlalchemy import text

    return sorted((state, genre, n) for state, genre, n in db.execute(text(
        "SELECT state, genre, count(*) FROM tracks GROUP BY state, genre")))


def _recount(db) -> None:
    """The kept counts set to the tracks', after writes made with the triggers dropped."""
    from sqlalchemy import text

    for table in ("track_counts", "track_count_deltas"):
        db.execute(text(f"DELETE FROM {table}"))
    db.execute(text("INSERT INTO track_counts (state, genre, tracks) "
                    "SELECT state, coalesce(genre, ''), count(*) FROM tracks GROUP BY 1, 2"))


def _migration(revision: str):
    """The migration module of REVISION, for the DDL it creates."""
    import importlib.util

    path = next((REPO / "migrations" / "versions").glob(f"*_{revision}_*.py"))
    spec = importlib.util.spec_from_file_location(f"migration_{revision}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trigger_ddl(dialect: str) -> list[str]:
    """The export-line trigger's DDL as its migration creates it."""
    module = _migration("195753152286")
    return list(module.TRIGGERS.values()) if dialect == "sqlite" else [module.PG_TRIGGER]


# The alternative to PostgreSQL's row triggers (migration 3f8a2c61d9e4), measured
# against them: statement triggers with transition tables, one INSERT of the summed
# (state, genre) changes a statement. Transition tables allow no column list, so the
# UPDATE one fires on every UPDATE of tracks (renewals, stored export lines too).
_CHANGED = ("FROM old_rows o JOIN new_rows n ON o.id = n.id "
            "WHERE o.state IS DISTINCT FROM n.state OR o.genre IS DISTINCT FROM n.genre")
STATEMENT_COUNT_TRIGGERS = {
    "tracks_counts_statement_fn": f"""CREATE OR REPLACE FUNCTION tracks_counts_statement()
    RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO track_count_deltas (state, genre, tracks)
            SELECT state, coalesce(genre, ''), count(*) FROM new_rows GROUP BY 1, 2;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO track_count_deltas (state, genre, tracks)
            SELECT state, coalesce(genre, ''), -count(*) FROM old_rows GROUP BY 1, 2;
        ELSE
            INSERT INTO track_count_deltas (state, genre, tracks)
            SELECT state, genre, sum(d) FROM (
                SELECT o.state, coalesce(o.genre, '') AS genre, -1 AS d {_CHANGED}
                UNION ALL
                SELECT n.state, coalesce(n.genre, ''), 1 {_CHANGED}) AS changes
            GROUP BY 1, 2 HAVING sum(d) <> 0;
        END IF;
        RETURN NULL;
    END $$""",
    "tracks_counts_statement_insert": """CREATE TRIGGER tracks_counts_statement_insert
    AFTER INSERT ON tracks REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracks_counts_statement()""",
    "tracks_counts_statement_delete": """CREATE TRIGGER tracks_counts_statement_delete
    AFTER DELETE ON tracks REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracks_counts_statement()""",
    "tracks_counts_statement_update": """CREATE TRIGGER tracks_counts_statement_update
    AFTER UPDATE ON tracks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tracks_counts_statement()""",
}


def _count_trigger_ddl(dialect: str) -> dict[str, str]:
    """The count and stamp triggers' DDL by name, as their migration creates them (on
    PostgreSQL their functions stay)."""
    if dialect == "sqlite":
        return _migration("e41b7d93c5a8").TRIGGERS
    return _migration("3f8a2c61d9e4").PG_TRIGGERS


def measure_enqueue(env: dict, tree: Path, repeats: int, scratch: Path) -> dict:
    """`genreq enqueue TREE` again: nothing may be queued. The broker is started first by
    enqueueing an empty folder, so the runs time the walk and the comparison."""
    empty = scratch / "empty"
    empty.mkdir(exist_ok=True)
    subprocess.run([*GENREQ, "enqueue", str(empty)], env=env, check=True, capture_output=True)
    walls, summaries = [], []
    load = [_load()]
    try:
        for _ in range(repeats):
            wall, _peak, stderr = _maxrss_of([*GENREQ, "enqueue", str(tree)], env,
                                             subprocess.DEVNULL)
            walls.append(wall)
            summaries.append(stderr.strip().splitlines()[-1])
    finally:
        subprocess.run([*GENREQ, "stop"], env=env, capture_output=True)
    load.append(_load())
    return {"wall_s": _summary(walls, 2), "summary_lines": sorted(set(summaries)),
            "load": load}


def measure_similar(env: dict, repeats: int, cli_repeats: int) -> dict:
    """find_similar in this process (cold: builds the cache; then warm), top_n alone, and
    the `genreq similar` command."""
    return _with_env(env, lambda: _measure_similar(env, repeats, cli_repeats))


def _measure_similar(env: dict, repeats: int, cli_repeats: int) -> dict:
    import torch
    from sqlalchemy import func, select

    from genreq import config
    from genreq.app.library import session
    from genreq.app.similar import _library_matrix, find_similar
    from genreq.db.models import State, Track
    from genreq.similarity import top_n

    torch.set_num_threads(1)  # as the CLI's one process on a shared machine
    shutil.rmtree(config.home() / "cache", ignore_errors=True)
    with session() as db:
        n_done = db.scalar(select(func.count()).where(Track.state == State.done))
        rand = random.Random(1)
        picks = [rand.randrange(n_done) for _ in range(repeats + 1)]
        paths = [db.scalar(select(Track.path).where(Track.state == State.done)
                           .order_by(Track.id).offset(k).limit(1)) for k in picks]
    load = [_load()]
    with session() as db:
        started = time.perf_counter()
        first = find_similar(db, paths[0])
        cold = time.perf_counter() - started
    warm, matrix_s, rank_s = [], [], []
    for path in paths[1:]:
        with session() as db:
            started = time.perf_counter()
            find_similar(db, path)
            warm.append(time.perf_counter() - started)
            started = time.perf_counter()
            library = _library_matrix(db, first.embedding_model)
            matrix_s.append(time.perf_counter() - started)
        query = library.matrix[len(library.ids) // 2].astype(np.float32)
        started = time.perf_counter()
        top_n(library.matrix, query, 10, exclude=range(10))
        rank_s.append(time.perf_counter() - started)
    load.append(_load())
    cli, base = [], []
    for path in paths[1:cli_repeats + 1]:
        base.append(_maxrss_of([sys.executable, "-c", "import torch, genreq.cli.main"], env,
                               subprocess.DEVNULL)[0])
        cli.append(_maxrss_of([*GENREQ, "similar", path], env, subprocess.DEVNULL)[0])
    return {"searched": first.searched, "dim": int(library.matrix.shape[1]),
            "matrix_mib": round(library.matrix.nbytes / 2**20, 1),
            "cold_s": round(cold, 2), "warm_s": _summary(warm),
            "library_matrix_s": _summary(matrix_s), "top_n_s": _summary(rank_s),
            "cli_wall_s": _summary(cli, 2), "cli_startup_s": _summary(base, 2),
            "load": load}


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "load_at_start": _load()}


def run(directory: Path, n_tracks: int, n_tree: int, repeats: int, url: str | None = None,
        rebuild: bool = False, only: tuple[str, ...] = ("status", "export", "enqueue",
                                                         "similar", "writes", "deltas"),
        export_rows: int | None = None, clear: bool = False, writes_url: str | None = None,
        log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    """Build or reuse the library, then measure ONLY's commands; the result dict. Result
    writes go to a scratch SQLite file in DIRECTORY, or to WRITES_URL (emptied)."""
    directory.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "big_library", "machine": machine(), "targets": TARGETS}
    env, built = prepare_library(directory, n_tracks, n_tree, url, rebuild, log)
    result["library"] = built
    if "status" in only:
        result["status"] = measure_status(env, repeats)
        log(f"status: {json.dumps(result['status'])}")
    if "export" in only and export_rows:
        result["export_head"] = measure_export_head(env, export_rows)
        log(f"export: {json.dumps(result['export_head'])}")
    elif "export" in only:
        result["export"] = measure_export(env, max(1, repeats // 2),
                                          result.get("status", {}).get("counts", {}).get(
                                              "done") or _done(env), directory, clear)
        log(f"export: {json.dumps(result['export'])}")
        result["export_in_process"] = measure_export_in_process(
            env, max(1, repeats // 2), min(UNCACHED_ROWS, n_tracks))
        log(f"export in process: {json.dumps(result['export_in_process'])}")
    if "writes" in only:
        result["result_writes"] = measure_result_writes(directory, repeats, writes_url)
        log(f"result writes: {json.dumps(result['result_writes'])}")
    if "deltas" in only and writes_url:
        result["count_deltas"] = measure_deltas(writes_url, repeats)
        log(f"count deltas: {json.dumps(result['count_deltas'])}")
    if "enqueue" in only and not url:
        result["enqueue"] = measure_enqueue(env, directory / "tree", max(1, repeats // 2),
                                            directory)
        log(f"enqueue: {json.dumps(result['enqueue'])}")
    if "similar" in only and not url:
        result["similar"] = measure_similar(env, 2 * repeats, max(1, repeats // 2))
        log(f"similar: {json.dumps(result['similar'])}")
    result["machine"]["load_at_end"] = _load()
    return result


def _done(env: dict) -> int:
    out = subprocess.run([*GENREQ, "status", "--json"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["done"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=TRACKS)
    parser.add_argument("--tree", type=int, default=TREE, help="files of the enqueued tree")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "genreq-big-library")
    parser.add_argument("--database-url", default=None,
                        help="measure on this database instead (status and export only)")
    parser.add_argument("--rebuild", action="store_true", help="build even if DIR has it")
    parser.add_argument("--only", default="status,export,enqueue,similar,writes,deltas")
    parser.add_argument("--export-rows", type=int, default=None,
                        help="time only the first N rows of export (a slow one)")
    parser.add_argument("--clear-lines", action="store_true",
                        help="set every stored export line to NULL first, to time the "
                             "export that stores them again")
    parser.add_argument("--writes-database-url", default=None,
                        help="a scratch database (emptied) for the result writes; default "
                             "a SQLite file in DIR")
    parser.add_argument("--label", default=None, help="key of this run in the results file")
    parser.add_argument("--save", action="store_true", help=f"merge into {RESULTS.name}")
    args = parser.parse_args()
    result = run(args.dir, args.tracks, args.tree, args.repeats, args.database_url,
                 args.rebuild, tuple(args.only.split(",")), args.export_rows,
                 args.clear_lines, args.writes_database_url)
    print(json.dumps(result, indent=2))
    if args.save:
        saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {
            "benchmark": "big_library", "runs": {}}
        label = args.label or ("postgresql" if args.database_url else "sqlite")
        # A run of some commands only adds to (or replaces) their figures in the label's.
        saved["runs"].setdefault(label, {}).update(result)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
