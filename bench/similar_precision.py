"""precision@5 of `genreq similar` by genre on a labelled folder: classify it with
`genreq run` into a fresh GENREQ_HOME, then ask app.similar for the 5 nearest tracks of
every clip and count those of the clip's own genre. Writes
bench/results/similar_precision.json.

    python bench/similar_precision.py DATA_DIR [--home DIR] [--model NAME]

With --model, the run uses that model and writes similar_precision-NAME.json.

DATA_DIR holds labels.csv (path, genre) and the clips it names. The clips carry no
album tags, so nothing but the query itself is left out: clips of one artist may
answer each other, and a model trained on these clips has seen them all (vgg-msd's
embedding is its MSD tagger's, which never saw a GTZAN label).

    python bench/similar_precision.py DATA_DIR --groups DATA_DIR/labels.csv:artist_split

`--groups` adds genreq's protocol: a query's 5 nearest tracks are taken among the tracks
of the other groups only (artist_split's partitions share no artist, so no answer is by
the query's artist), and the group `excluded` is neither asked nor answered. Beside it
stands chance: a query's share of its genre among the tracks it may be answered with
(classical is a third of the clips). Figures are pooled over queries, with a 95 %
bootstrap interval over queries (2000 resamples, seed 0).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "similar_precision.json"
K = 5
EXCLUDED = "excluded"


def bootstrap_ci(values: list[float], resamples: int = 2000) -> list[float]:
    """95 % percentile interval of the mean of `values`, resampled with replacement."""
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values)))
                   for _ in range(resamples))
    return [round(means[int(0.025 * resamples)], 4), round(means[int(0.975 * resamples)], 4)]


def disjoint(genre_of: dict[str, str], group_of: dict[str, str | None],
             ranked: dict[str, list[str]]) -> dict:
    """precision@K of each query's K nearest tracks of other groups, beside chance."""
    eligible = [p for p in genre_of if group_of[p] not in (None, EXCLUDED)]
    precision, chance, per_genre = [], [], {}
    for q in eligible:
        others = [p for p in eligible if group_of[p] != group_of[q]]
        answers = [p for p in ranked[q] if p in set(others)][:K]
        if len(answers) < K:
            raise SystemExit(f"{q}: only {len(answers)} answers from other groups")
        hit = sum(genre_of[p] == genre_of[q] for p in answers) / K
        precision.append(hit)
        chance.append(sum(genre_of[p] == genre_of[q] for p in others) / len(others))
        per_genre.setdefault(genre_of[q], []).append(hit)
    return {
        "queries": len(precision), "n_results": K * len(precision),
        "precision_at_5": round(statistics.fmean(precision), 4),
        "ci95": bootstrap_ci(precision),
        "chance": round(statistics.fmean(chance), 4),
        "per_genre": {g: {"queries": len(h), "precision_at_5": round(statistics.fmean(h), 3)}
                      for g, h in sorted(per_genre.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--home", type=Path, default=None,
                        help="GENREQ_HOME to use (default: a temporary one)")
    parser.add_argument("--model", default=None,
                        help="the model to classify with (default: genreq's default)")
    parser.add_argument("--groups", default=None,
                        help="FILE:COLUMN: answers only from other groups (see above)")
    args = parser.parse_args()
    results = RESULTS.with_name(f"similar_precision-{args.model}.json") if args.model else RESULTS
    home = args.home or Path(tempfile.mkdtemp(prefix="genreq-similar-"))
    os.environ["GENREQ_HOME"] = str(home)
    os.environ.pop("GENREQ_DATABASE_URL", None)
    model_args = ["--model", args.model] if args.model else []
    subprocess.run([sys.executable, "-m", "genreq.cli", "run", str(args.data), *model_args],
                   check=True,
                   stdout=subprocess.DEVNULL)
    from genreq import app

    with (args.data / "labels.csv").open() as f:
        genre_of = {str((args.data / r["path"]).resolve()): r["genre"] for r in csv.DictReader(f)}
    hits: dict[str, list[int]] = {}
    times, ranked = [], {}
    model = ""
    for path, genre in genre_of.items():
        started = time.perf_counter()
        result = app.similar(path, limit=K)
        times.append(time.perf_counter() - started)
        model = result.embedding_model
        same = sum(genre_of.get(r["path"]) == genre for r in result.rows)
        hits.setdefault(genre, []).append(same)
        if args.groups:  # every track, nearest first, to pick the nearest of other groups
            ranked[path] = [r["path"] for r in app.similar(path, limit=len(genre_of)).rows]
    total = sum(sum(h) for h in hits.values())
    n = K * sum(len(h) for h in hits.values())
    result = {
        "embedding_model": model, "queries": len(genre_of), "k": K, "n_results": n,
        "precision_at_5": round(total / n, 4),
        "per_genre": {g: {"queries": len(h), "precision_at_5": round(sum(h) / (K * len(h)), 3)}
                      for g, h in sorted(hits.items())},
        "query_s_median": round(statistics.median(times), 4),
        "note": "no album tags: only the query itself is excluded; "
                + ("the model was trained on these clips" if model.startswith("crnn")
                   else f"{model.split('@')[0]}'s embedding is its MSD tagger's, never trained "
                   "on GTZAN labels"),
    }
    if args.groups:
        from genreq import dataset

        groups = dataset.read_groups(args.groups)
        group_of = {p: groups.of(Path(p)) for p in genre_of}
        result["artist_disjoint"] = {"groups": args.groups,
                                     **disjoint(genre_of, group_of, ranked)}
        result["note"] += "; artist_disjoint: answers from the other groups only"
    print(json.dumps(result, indent=2))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
