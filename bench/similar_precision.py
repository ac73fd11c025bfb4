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
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "similar_precision.json"
K = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--home", type=Path, default=None,
                        help="GENREQ_HOME to use (default: a temporary one)")
    parser.add_argument("--model", default=None,
                        help="the model to classify with (default: genreq's default)")
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
    times = []
    model = ""
    for path, genre in genre_of.items():
        started = time.perf_counter()
        result = app.similar(path, limit=K)
        times.append(time.perf_counter() - started)
        model = result.embedding_model
        same = sum(genre_of.get(r["path"]) == genre for r in result.rows)
        hits.setdefault(genre, []).append(same)
    total = sum(sum(h) for h in hits.values())
    n = K * sum(len(h) for h in hits.values())
    result = {
        "embedding_model": model, "queries": len(genre_of), "k": K, "n_results": n,
        "precision_at_5": round(total / n, 4),
        "per_genre": {g: {"queries": len(h), "precision_at_5": round(sum(h) / (K * len(h)), 3)}
                      for g, h in sorted(hits.items())},
        "query_s_median": round(statistics.median(times), 4),
        "note": "no album tags: only the query itself is excluded; "
                + ("vgg-msd's embedding is its MSD tagger's, never trained on GTZAN labels"
                   if args.model == "vgg-msd" else "the default model was trained on these clips"),
    }
    print(json.dumps(result, indent=2))
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
