"""What `export --min-tag-score` should default to: on the labelled clips, the score
above which a tagger's genre-named tags (rock, jazz, blues, country, metal, pop,
hip-hop, ...) best say "this clip is of that genre" (the F1-best threshold per tag),
for a tagger with tag outputs. Writes bench/results/tag_threshold.json.

    python bench/tag_threshold.py DATA_DIR [--model vgg-msd]
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from genreq.predict import Classifier

RESULTS = Path(__file__).parent / "results" / "tag_threshold.json"
# GTZAN genre -> the MSD tag of the same name
GENRE_TAG = {"blues": "blues", "country": "country", "disco": "dance", "hiphop": "hip-hop",
             "jazz": "jazz", "metal": "metal", "pop": "pop", "rock": "rock"}
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", default="vgg-msd")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clf = Classifier.load(args.model)
    with (args.data / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    scores = {tag: [] for tag in GENRE_TAG.values()}
    labels = []
    for row in rows:
        tags = clf.classify_file(args.data / row["path"]).tags
        labels.append(row["genre"])
        for tag in scores:
            scores[tag].append(tags[tag])
    labels = np.array(labels)
    per_tag = {}
    for genre, tag in GENRE_TAG.items():
        s, truth = np.array(scores[tag]), labels == genre
        f1 = []
        for t in THRESHOLDS:
            pred = s >= t
            tp = int((pred & truth).sum())
            f1.append(2 * tp / (pred.sum() + truth.sum()) if pred.sum() + truth.sum() else 0.0)
        best = int(np.argmax(f1))
        per_tag[tag] = {"genre": genre, "positives": int(truth.sum()),
                        "best_threshold": float(THRESHOLDS[best]), "f1": round(f1[best], 3),
                        "f1_at_0.5": round(f1[int(np.where(THRESHOLDS == 0.5)[0][0])], 3)}
    result = {"model": clf.model_id, "n": len(rows), "per_tag": per_tag,
              "median_best_threshold": statistics.median(
                  v["best_threshold"] for v in per_tag.values())}
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
