"""What applying a learned genre head at read time costs: `status` and a full `export`
(genreq.app, in process) over a SQLite library of synthetic done tracks with float16
embeddings, without a head and with one under GENREQ_HOME, in the same process. Prints
the median and range of each over the repeats, and the ratios.

    python bench/learned_apply.py [--tracks 20000] [--dim 256] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

GENRES = 10  # the model's
LEARNED = 5  # the head's


def build(n_tracks: int, dim: int, rng: np.random.Generator) -> None:
    from sqlalchemy import insert

    from genreq.db import migrate
    from genreq.db.models import State, Track
    from genreq.db.session import session_scope
    from genreq.similarity import embedding_bytes

    migrate.upgrade(os.environ["GENREQ_DATABASE_URL"])
    genres = [f"g{i}" for i in range(GENRES)]
    rows = []
    for i in range(n_tracks):
        p = rng.dirichlet(np.ones(GENRES))
        rows.append(dict(
            path=f"/m/{i}.flac", size_bytes=1, mtime_ns=1, state=State.done,
            genre=genres[int(p.argmax())], confidence=float(p.max()),
            probs=dict(zip(genres, p.round(4).tolist(), strict=True)), model_name="m",
            model_version="v", embedding=embedding_bytes(rng.standard_normal(dim)),
            embedding_model="m@v", tags={}))
    with session_scope() as s:
        s.execute(insert(Track), rows)


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def measure(repeats: int) -> dict[str, list[float]]:
    from genreq import app

    return {"status": timed(app.status, repeats),
            "export": timed(lambda: sum(1 for _ in app.export_records()), repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=256)  # vgg-msd's embedding
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GENREQ_HOME"] = os.path.join(tmp, "home")
        os.environ["GENREQ_DATABASE_URL"] = f"sqlite:///{os.path.join(tmp, 'library.db')}"
        rng = np.random.default_rng(0)
        build(args.tracks, args.dim, rng)
        without = measure(args.repeats)

        from genreq.app import learning
        from genreq.learn import GenreHead

        GenreHead([f"u{i}" for i in range(LEARNED)], "m@v", np.zeros(args.dim, np.float32),
                  np.ones(args.dim, np.float32),
                  rng.standard_normal((LEARNED, args.dim)).astype(np.float32),
                  np.zeros(LEARNED, np.float32), {"source": "tags"}).save(learning.head_path())
        with_head = measure(args.repeats)
    print(f"{args.tracks} tracks, {args.dim}-d float16 embeddings, {args.repeats} runs each "
          "(median, min-max):")
    for name in ("status", "export"):
        a, b = without[name], with_head[name]
        print(f"  {name:<7} model genres {statistics.median(a):.2f} s ({min(a):.2f}-{max(a):.2f})"
              f"  learned {statistics.median(b):.2f} s ({min(b):.2f}-{max(b):.2f})"
              f"  x{statistics.median(b) / statistics.median(a):.1f}")


if __name__ == "__main__":
    main()
