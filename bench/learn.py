"""How long `learn` takes on a large library: 100,000 synthetic track embeddings of
the default model's dimension, 10,000 of them tagged with one of 20 genres in albums of
10 tracks; learn's grouped cross-validation and final fit (genreq.learn.learn), then the
learned genres of every track (GenreHead.probs). Writes bench/results/learn.json.

    python bench/learn.py [--tracks 100000] [--tagged 10000] [--repeats 3]
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

RESULTS = Path(__file__).parent / "results" / "learn.json"
DIM = 128  # the default crnn's embedding
GENRES = 20
ALBUM_TRACKS = 10
TARGET_S = 60.0


def library(n_tracks: int, n_tagged: int, rng: np.random.Generator):
    centres = rng.standard_normal((GENRES, DIM)).astype(np.float32)
    n_albums = n_tracks // ALBUM_TRACKS
    album_genre = rng.integers(0, GENRES, n_albums)
    album_centre = centres[album_genre] + 0.8 * rng.standard_normal((n_albums, DIM))
    album = np.repeat(np.arange(n_albums), ALBUM_TRACKS)[:n_tracks]
    x = (album_centre[album] + 4.0 * rng.standard_normal((n_tracks, DIM))).astype(np.float32)
    tagged_albums = set(rng.choice(n_albums, n_tagged // ALBUM_TRACKS, replace=False).tolist())
    genre_lists = [[f"genre {album_genre[a]}"] if a in tagged_albums else [] for a in album]
    groups = [f"album:{a}" for a in album]
    return x, genre_lists, groups, album_genre[album]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--tagged", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from genreq.learn import learn

    rng = np.random.default_rng(0)
    x, genre_lists, groups, truth = library(args.tracks, args.tagged, rng)
    runs = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        learned = learn(x, genre_lists, groups, "synthetic@0")
        fitted = time.perf_counter()
        pred = learned.head.probs(x).argmax(axis=1)
        done = time.perf_counter()
        runs.append({"learn_s": fitted - started, "apply_s": done - fitted,
                     "total_s": done - started})
    untagged = np.array([not g for g in genre_lists])
    index = {g: i for i, g in enumerate(learned.head.genres)}
    truth_idx = np.array([index[f"genre {t}"] for t in truth])
    result = {
        "tracks": args.tracks, "tagged": args.tagged, "dim": DIM, "genres": GENRES,
        "n": args.repeats, "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "target_s": TARGET_S,
        "total_s_median": round(statistics.median(r["total_s"] for r in runs), 2),
        "total_s_max": round(max(r["total_s"] for r in runs), 2),
        "apply_s_median": round(statistics.median(r["apply_s"] for r in runs), 3),
        "cv_folds": learned.cv.n_folds,
        "cv_accuracy": round(learned.cv.accuracy, 4),
        "untagged_accuracy": round(float((pred[untagged] == truth_idx[untagged]).mean()), 4),
    }
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
