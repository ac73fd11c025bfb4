"""Linear probe of the pretrained musicnn taggers' embeddings for genre, with artist-aware
k-fold cross-validation on a labelled folder.

    python bench/musicnn_probe.py --data ../shared/data/gtzan --out bench/results/musicnn_probe.json

Every clip is decoded at 16 kHz, cut into non-overlapping 3-s patches, and each tagger
embeds every patch: MSD musicnn's 200-d "penultimate" layer (the primary feature, fixed
before looking at any score) and, as a secondary row, MSD vgg's flattened last pool
(256-d). A clip's feature is the mean over its patches. A standardised logistic
regression (C fixed at 1, no tuning on the folds) is trained on k-1 folds and scores
the held-out fold; folds come from genreq.dataset.group_kfold, which keeps GTZAN's blocks
of ten consecutive clip ids (often one artist) together. Embeddings are cached in
runs/ so the classifier can be re-run without the networks.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from genreq import audio, dataset, metrics
from genreq.pretrained import convert, musicnn

DEFAULT_DATA = REPO.parent / "shared" / "data" / "gtzan"
DEFAULT_CACHE = REPO / "runs" / "musicnn_probe_embeddings.npz"
FEATURES = {  # name -> (tagger file in genreq/weights or checkpoint in the wheel, description)
    "musicnn-msd": "MSD musicnn penultimate (200-d), mean over 3-s patches",
    "vgg-msd": "MSD vgg last pool (256-d), mean over 3-s patches",
}
C = 1.0  # inverse regularisation, fixed a priori


def _taggers() -> dict[str, torch.nn.Module]:
    shipped = REPO / "genreq" / "weights" / "musicnn-msd.pt"
    taggers = {"musicnn-msd": musicnn.load(shipped)[0]}
    wheel = convert.default_wheel_path()
    if wheel.is_file():
        taggers["vgg-msd"] = convert.load_from_wheel(wheel, "MSD_vgg")
    else:
        print(f"no cached wheel at {wheel}: vgg-msd skipped", file=sys.stderr)
    return taggers


def embed_all(tracks: list[dataset.LabelledTrack]) -> dict[str, np.ndarray]:
    """(n_tracks, dim) mean patch embedding per tagger."""
    taggers = _taggers()
    out: dict[str, list[np.ndarray]] = {name: [] for name in taggers}
    start = time.perf_counter()
    for i, track in enumerate(tracks, 1):
        x = torch.from_numpy(musicnn.patches(musicnn.log_mel(audio.load_audio(track.path, musicnn.SAMPLE_RATE))))
        with torch.no_grad():
            for name, model in taggers.items():
                out[name].append(model.embed(x).mean(0).numpy())
        if i % 10 == 0 or i == len(tracks):
            rate = i / (time.perf_counter() - start)
            print(f"\rembedded {i}/{len(tracks)} ({rate:.2f} clips/s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    return {name: np.stack(v) for name, v in out.items()}


def crossval(x: np.ndarray, y: np.ndarray, folds: list[list[int]], n_classes: int) -> dict:
    pred = np.full(len(y), -1)
    per_fold = []
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
        clf.fit(x[train], y[train])
        pred[test] = clf.predict(x[test])
        per_fold.append(float((pred[test] == y[test]).mean()))
    correct = int((pred == y).sum())
    lo, hi = metrics.wilson_interval(correct, len(y))
    return {
        "n": len(y), "folds": len(folds), "fold_accuracy": per_fold,
        "mean": statistics.mean(per_fold), "std": statistics.stdev(per_fold),
        "pooled_accuracy": correct / len(y), "pooled_ci95": [lo, hi],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    tracks, genres = dataset.scan(args.data)
    names = [str(t.path.relative_to(args.data)) for t in tracks]
    if args.cache.is_file() and list(np.load(args.cache)["names"]) == names:
        cached = np.load(args.cache)
        embeddings = {k: cached[k] for k in FEATURES if k in cached}
    else:
        embeddings = embed_all(tracks)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.cache, names=np.array(names), **embeddings)
    y = np.array([genres.index(t.genre) for t in tracks])
    folds = dataset.group_kfold(tracks, args.folds, seed=args.seed)
    results = {"data": args.data.name, "genres": genres, "classifier": f"standardise + logistic regression C={C}",
               "split": f"group_kfold(k={args.folds}, seed={args.seed}), groups of {dataset.GROUP_BLOCK} clip ids",
               "features": {}}
    for name, x in embeddings.items():
        r = crossval(x, y, folds, len(genres))
        results["features"][name] = {"description": FEATURES[name], **r}
        print(f"{name:12s} {100 * r['mean']:.1f} ± {100 * r['std']:.1f} % over {r['folds']} folds; "
              f"pooled {100 * r['pooled_accuracy']:.1f} % (n={r['n']}, 95 % CI "
              f"{100 * r['pooled_ci95'][0]:.0f}-{100 * r['pooled_ci95'][1]:.0f} %)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
