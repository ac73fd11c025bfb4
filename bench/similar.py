"""How long `similar` takes to rank a library: brute-force cosine top-N
(genreq.similarity.top_n) over a float16 matrix of synthetic embeddings, of the
dimensions of the shipped models' embeddings, on one thread. Writes
bench/results/similar.json.

    python bench/similar.py [--tracks 100000] [--repeats 50] [--limit 10]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "similar.json"
# The default crnn's embedding and the widest shipped one (vgg-msd).
DIMENSIONS = (128, 256)
TARGET_S = 0.2


def library(n_tracks: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Clustered vectors (albums around artists around genres), so the top N is not
    a tie among noise."""
    from genreq.similarity import normalise

    genres = rng.standard_normal((20, dim))
    artists = genres[rng.integers(0, 20, n_tracks // 50 + 1)] + 0.7 * rng.standard_normal(
        (n_tracks // 50 + 1, dim))
    tracks = artists[rng.integers(0, len(artists), n_tracks)] + 0.5 * rng.standard_normal(
        (n_tracks, dim))
    return normalise(tracks.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()
    # A query runs in the CLI's one process; pin BLAS to one thread to measure that alone.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from genreq.similarity import top_n

    rng = np.random.default_rng(0)
    result = {"tracks": args.tracks, "n": args.repeats, "limit": args.limit,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "target_s": TARGET_S, "by_dim": {}}
    for dim in DIMENSIONS:
        matrix = library(args.tracks, dim, rng)
        queries = rng.integers(0, args.tracks, args.repeats + 3)
        times = []
        for i, row in enumerate(queries):
            exclude = range(max(0, row - 10), row + 10)  # the query and "its album"
            started = time.perf_counter()
            top_n(matrix, matrix[row].astype(np.float32), args.limit, exclude)
            if i >= 3:  # the first queries page the matrix in
                times.append(time.perf_counter() - started)
        q = statistics.quantiles(times, n=20)
        entry = {"matrix_mib": round(matrix.nbytes / 2**20, 1),
                 "median_s": round(statistics.median(times), 4),
                 "p95_s": round(q[-1], 4), "max_s": round(max(times), 4)}
        result["by_dim"][str(dim)] = entry
        print(f"{args.tracks} tracks x {dim}: {json.dumps(entry)}")
    result["meets_target"] = all(e["p95_s"] <= TARGET_S for e in result["by_dim"].values())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
