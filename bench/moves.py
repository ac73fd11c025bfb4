"""What following moved files and counting gone ones costs `genreq enqueue`, in one run.

    .venv/bin/python bench/moves.py                 # 20,000 files beside 200,000 known rows
    .venv/bin/python bench/moves.py --save          # also writes bench/results/moves.json
    .venv/bin/python bench/moves.py --files 2000 --rows 20000 --repeats 1   # a quick look
    .venv/bin/python bench/moves.py --database-url postgresql://... --save   # moves-postgresql.json

Builds in a temporary directory a GENREQ_HOME (SQLite, or the scratch database of
`--database-url`, which it empties; migrated by genreq's own migrations; the embedded
broker) holding ROWS done tracks whose files are gone (paths
elsewhere, sizes and mtimes drawn as the tree's are, each row as big as a classified
track's: genre probabilities, 50 tag scores, a 256-d embedding), and a tree of FILES
sparse files of 3-12 MB (no disk used; only their size and mtime matter to enqueue).
Then, in this process, calling genreq.app.enqueue as `genreq enqueue TREE` does,
interleaved REPEATS times, each after deleting the tree's tracks again:

- the first enqueue of the tree (every file new: each batch looks its files' sizes and
  mtimes up among the known tracks) against the same with the lookup switched off
  (db.queue._moved_rows returning nothing: genreq before it), and with the lookup but
  without its index (ix_tracks_size_bytes_mtime_ns dropped);
- the tree enqueued again unchanged (the walk, then the count of gone tracks under it)
  against the same with the count switched off (db.queue.gone_tracks returning nothing),
  and with the tracks under the tree found by LIKE 'TREE/%' instead of a range of the
  index of paths (SQLite's LIKE, case-blind, uses no index: it reads every row; on
  PostgreSQL, LIKE is what genreq runs, and the two readings are the same code);
- the tree after MOVED_SHARE of its files were renamed into another folder and as many
  deleted: what it reports (every renamed file `moved`, nothing queued, every deleted
  one `gone`) and its time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "moves.json"
MOVED_SHARE = 0.01
INSERT_BATCH = 10_000
SIZE_RANGE = (3_000_000, 12_000_000)  # bytes: 3-12 MB, a compressed track's
# What a classified track's row holds besides its file (as bench/big_library.py's rows):
# a table scan would read them all, an index of paths or sizes none.
PROBS = {genre: 0.1 for genre in ("blues", "classical", "country", "disco", "hiphop",
                                  "jazz", "metal", "pop", "reggae", "rock")}
TAGS = {f"tag {i}": 0.02 for i in range(50)}
EMBEDDING = bytes(512)  # 256 float16


def make_tree(tree: Path, n_files: int, rng: np.random.Generator) -> list[Path]:
    paths = []
    for i in range(n_files):
        path = tree / f"artist {i // 100:04d}" / f"album {i // 10:05d}" / f"{i % 10:02d}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.truncate(int(rng.integers(*SIZE_RANGE)))
        paths.append(path)
    return paths


def add_gone_rows(n_rows: int, rng: np.random.Generator) -> None:
    from sqlalchemy import insert

    from genreq.db.models import Track, utcnow
    from genreq.db.session import session_scope

    now_ns = time.time_ns()
    for start in range(0, n_rows, INSERT_BATCH):
        count = min(INSERT_BATCH, n_rows - start)
        sizes = rng.integers(*SIZE_RANGE, size=count)
        mtimes = now_ns - rng.integers(0, 10**17, size=count)
        with session_scope() as session:
            session.execute(insert(Track), [
                {"path": f"/elsewhere/{start + i:07d}.mp3", "size_bytes": int(size),
                 "mtime_ns": int(mtime), "state": "done", "genre": "rock", "attempts": 1,
                 "queued_at": utcnow(), "probs": PROBS, "tags": TAGS,
                 "embedding": EMBEDDING, "embedding_model": "vgg-msd-fast@bench"}
                for i, (size, mtime) in enumerate(zip(sizes, mtimes, strict=True))])


@contextmanager
def switched_off(module, name: str, replacement):
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def timed_enqueue(tree: Path) -> tuple[float, object]:
    from genreq import app

    started = time.perf_counter()
    summary = app.enqueue([tree])
    return time.perf_counter() - started, summary


def spread(values: list[float]) -> dict:
    return {"n": len(values), "median": round(statistics.median(values), 3),
            "min": round(min(values), 3), "max": round(max(values), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--database-url", default=None, metavar="URL",
                        help="a scratch database to use instead of SQLite: it is emptied")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="genreq-moves-"))
    os.environ["GENREQ_HOME"] = str(work / "home")
    os.environ.pop("GENREQ_BROKER_URL", None)
    if args.database_url:
        os.environ["GENREQ_DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("GENREQ_DATABASE_URL", None)
    sys.path.insert(0, str(REPO))
    from sqlalchemy import text

    from genreq import app
    from genreq.app import pipeline
    from genreq.db import migrate, queue
    from genreq.db.models import Track
    from genreq.db.session import get_engine, session_scope

    rng = np.random.default_rng(0)
    try:
        tree = work / "tree"
        files = make_tree(tree, args.files, rng)
        if args.database_url:  # a scratch database: emptied, then migrated
            migrate.downgrade(revision="base")
            migrate.upgrade()
        pipeline.prepare()
        add_gone_rows(args.rows, rng)
        dialect = get_engine().dialect.name

        def fresh() -> None:
            """The database as built: the tree's tracks deleted, the statistics fresh."""
            with session_scope() as session:
                session.execute(Track.__table__.delete().where(
                    queue.like_prefix(f"{tree}/")))
            with get_engine().connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                    text("ANALYZE" if dialect == "sqlite" else "VACUUM ANALYZE tracks"))

        def index(create: bool) -> None:
            with session_scope() as session:
                session.execute(text(
                    "CREATE INDEX ix_tracks_size_bytes_mtime_ns ON tracks (size_bytes, mtime_ns)"
                    if create else "DROP INDEX ix_tracks_size_bytes_mtime_ns"))

        fresh()
        timed_enqueue(tree)  # a warm-up: the broker starts, the modules load
        first = {"lookup": [], "no_lookup": [], "lookup_no_index": []}
        for _ in range(args.repeats):
            fresh()
            first["lookup"].append(timed_enqueue(tree)[0])
            fresh()
            with switched_off(queue, "_moved_rows", lambda *_: {}):
                first["no_lookup"].append(timed_enqueue(tree)[0])
            fresh()
            index(create=False)
            first["lookup_no_index"].append(timed_enqueue(tree)[0])
            index(create=True)
            print(f"first enqueue: { {k: round(v[-1], 2) for k, v in first.items()} }",
                  file=sys.stderr)

        fresh()
        _, summary = timed_enqueue(tree)
        assert (summary.queued, summary.moved, summary.gone) == (args.files, 0, 0), summary
        with session_scope() as session:
            session.execute(text("UPDATE tracks SET state = 'done'"))
        again = {"gone_count": [], "no_gone_count": [], "gone_count_by_like": []}
        for _ in range(args.repeats):
            seconds, summary = timed_enqueue(tree)
            assert (summary.queued, summary.known, summary.gone) == (0, args.files, 0)
            again["gone_count"].append(seconds)
            with switched_off(queue, "gone_tracks", lambda *_args, **_kw: iter(())):
                again["no_gone_count"].append(timed_enqueue(tree)[0])
            with switched_off(queue, "_starts_with",
                              lambda _session, prefix: queue.like_prefix(prefix)):
                seconds, summary = timed_enqueue(tree)
                assert summary.gone == 0
                again["gone_count_by_like"].append(seconds)
            print(f"unchanged: { {k: round(v[-1], 2) for k, v in again.items()} }",
                  file=sys.stderr)

        n_changed = max(1, int(args.files * MOVED_SHARE))
        picks = rng.choice(len(files), size=2 * n_changed, replace=False)
        (tree / "sorted").mkdir()
        for k, index in enumerate(picks):
            if k < n_changed:
                files[index].rename(tree / "sorted" / f"{k:05d}.mp3")
            else:
                files[index].unlink()
        seconds, summary = timed_enqueue(tree)
        moved = {"renamed": n_changed, "deleted": n_changed, "wall_s": round(seconds, 3),
                 "reported": {"queued": summary.queued, "moved": summary.moved,
                              "known": summary.known, "gone": summary.gone}}
        app.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    first_s = {k: spread(v) for k, v in first.items()}
    again_s = {k: spread(v) for k, v in again.items()}
    result = {
        "benchmark": "moves",
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "database": dialect,
        "library": {"files": args.files, "gone_rows": args.rows, "repeats": args.repeats},
        "first_enqueue_s": first_s,
        "first_enqueue_ratio_lookup_vs_none": round(
            first_s["lookup"]["median"] / first_s["no_lookup"]["median"], 3),
        "first_enqueue_ratio_no_index_vs_none": round(
            first_s["lookup_no_index"]["median"] / first_s["no_lookup"]["median"], 3),
        "unchanged_enqueue_s": again_s,
        "unchanged_ratio_gone_count_vs_none": round(
            again_s["gone_count"]["median"] / again_s["no_gone_count"]["median"], 3),
        "unchanged_ratio_by_like_vs_none": round(
            again_s["gone_count_by_like"]["median"] / again_s["no_gone_count"]["median"], 3),
        "after_moves": moved,
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    if args.save:
        target = RESULTS if dialect == "sqlite" else RESULTS.with_name(f"moves-{dialect}.json")
        target.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
