"""Linear probe of the pretrained musicnn taggers' embeddings for genre, with artist-aware
k-fold cross-validation on a labelled folder.

    python bench/musicnn_probe.py --data ../shared/data/gtzan --out bench/results/pretrained/musicnn_probe.json \
        --checkpoints runs/pretrained

Every clip goes through genreq's own inference path for the registry models
`musicnn-msd` and `vgg-msd` (decode at 16 kHz, features kind "musicnn", up to 10
non-overlapping 3-s chunks) and each frozen tagger embeds every chunk: MSD musicnn's
200-d "penultimate" layer (the primary feature, fixed before looking at any score) and
MSD vgg's flattened last pool (256-d). A standardised logistic regression (C fixed at 1,
no tuning on the folds) is trained on k-1 folds and scores the held-out fold, two ways:
  mean       one feature per clip, the mean of its chunk embeddings;
  chunks     fitted on one example per chunk, a clip scored by the mean of its chunks'
             probabilities;
  mean-head  fitted as `mean`, a clip scored as `chunks`: exactly what
             `genreq classify/run` computes with the written checkpoints (chosen for them
             after comparing the three on these folds, so its score is slightly optimistic).
Folds come from genreq.dataset.group_kfold, which keeps GTZAN's blocks of ten
consecutive clip ids (often one artist) together. Embeddings are cached in runs/ so the
classifier can be re-run without the networks. `--checkpoints DIR` fits the `mean-head`
head on every clip and writes genreq checkpoints DIR/<arch>.pt.
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

from genreq import audio, checkpoint, dataset, features, metrics, models

DEFAULT_DATA = REPO.parent / "shared" / "data" / "gtzan"
DEFAULT_CACHE = REPO / "runs" / "musicnn_probe_chunk_embeddings.npz"
ARCHS = {  # registry architecture -> description of its embedding
    "musicnn-msd": "MSD musicnn penultimate (200-d)",
    "vgg-msd": "MSD vgg last pool (256-d)",
}
C = 1.0  # inverse regularisation, fixed a priori


def embed_all(tracks: list[dataset.LabelledTrack], n_classes: int) -> dict[str, np.ndarray]:
    """Per tagger (n_chunks_total, dim) chunk embeddings, and "track" (n_chunks_total,)."""
    taggers = {arch: models.build(arch, n_classes).eval() for arch in ARCHS}
    spec = models.ARCHITECTURES["musicnn-msd"].default_features()
    out: dict[str, list[np.ndarray]] = {arch: [] for arch in ARCHS} | {"track": []}
    start = time.perf_counter()
    for i, track in enumerate(tracks):
        x = features.chunks(features.extract(audio.load_audio(track.path, spec.sample_rate), spec), spec)
        with torch.no_grad():
            for arch, model in taggers.items():
                out[arch].append(model.embed(torch.from_numpy(x)).numpy())
        out["track"].append(np.full(len(x), i))
        if (i + 1) % 10 == 0 or i + 1 == len(tracks):
            rate = (i + 1) / (time.perf_counter() - start)
            print(f"\rembedded {i + 1}/{len(tracks)} ({rate:.2f} clips/s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    return {k: np.concatenate(v) for k, v in out.items()}


def _classifier():
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))


def track_predictions(emb: np.ndarray, chunk_track: np.ndarray, y: np.ndarray, train: np.ndarray,
                      test: np.ndarray, how: str) -> np.ndarray:
    """Predicted class of every test track by a head fitted on the train tracks."""
    if how == "chunks":
        in_train = np.isin(chunk_track, train)
        clf = _classifier().fit(emb[in_train], y[chunk_track[in_train]])
    else:
        clf = _classifier().fit(_track_means(emb, chunk_track)[train], y[train])
    if how == "mean":
        return clf.predict(_track_means(emb, chunk_track)[test])
    return np.array([clf.predict_proba(emb[chunk_track == t]).mean(0).argmax() for t in test])


def _track_means(emb: np.ndarray, chunk_track: np.ndarray) -> np.ndarray:
    return np.stack([emb[chunk_track == t].mean(0) for t in range(chunk_track.max() + 1)])


def crossval(emb: np.ndarray, chunk_track: np.ndarray, y: np.ndarray, folds: list[list[int]], how: str) -> dict:
    pred = np.full(len(y), -1)
    per_fold = []
    for test in folds:
        test = np.array(test)
        train = np.setdiff1d(np.arange(len(y)), test)
        pred[test] = track_predictions(emb, chunk_track, y, train, test, how)
        per_fold.append(float((pred[test] == y[test]).mean()))
    correct = int((pred == y).sum())
    lo, hi = metrics.wilson_interval(correct, len(y))
    return {
        "n": len(y), "folds": len(folds), "fold_accuracy": per_fold,
        "mean": statistics.mean(per_fold), "std": statistics.stdev(per_fold),
        "pooled_accuracy": correct / len(y), "pooled_ci95": [lo, hi],
    }


def write_checkpoint(path: Path, arch: str, emb: np.ndarray, chunk_track: np.ndarray, y: np.ndarray,
                     genres: list[str], result: dict) -> None:
    """The `mean-head` fitted on every clip, folded into a genreq checkpoint of ARCH."""
    clf = _classifier().fit(_track_means(emb, chunk_track), y)
    scaler, lr = clf[0], clf[1]
    model = models.build(arch, len(genres)).eval()
    with torch.no_grad():
        model.embedding_mean.copy_(torch.from_numpy(scaler.mean_))
        model.embedding_std.copy_(torch.from_numpy(scaler.scale_))
        model.head.weight.copy_(torch.from_numpy(lr.coef_))
        model.head.bias.copy_(torch.from_numpy(lr.intercept_))
    recipe = {"head": f"logistic regression C={C} on standardised mean chunk embeddings (sklearn), "
                      f"all {len(y)} clips", "script": "bench/musicnn_probe.py"}
    run_metrics = {"split": "none (all data trained)", "n_train": len(y),
                   "parameters": sum(t.numel() for t in model.state_dict().values()),
                   "macs_per_chunk": models.count_macs(model), "crossval": result}
    checkpoint.save(path, model, arch, genres, model.default_features(), run_metrics, recipe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument("--checkpoints", type=Path, default=None, help="folder for genreq checkpoints")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    tracks, genres = dataset.scan(args.data)
    names = [str(t.path.relative_to(args.data)) for t in tracks]
    if args.cache.is_file() and list(np.load(args.cache)["names"]) == names:
        embeddings = dict(np.load(args.cache))
    else:
        embeddings = embed_all(tracks, len(genres))
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.cache, names=np.array(names), **embeddings)
    y = np.array([genres.index(t.genre) for t in tracks])
    chunk_track = embeddings["track"]
    folds = dataset.group_kfold(tracks, args.folds, seed=args.seed)
    results = {"data": args.data.name, "genres": genres,
               "classifier": f"standardise + logistic regression C={C}",
               "split": f"group_kfold(k={args.folds}, seed={args.seed}), groups of {dataset.GROUP_BLOCK} clip ids",
               "results": {}}
    for arch, description in ARCHS.items():
        for how in ("mean", "chunks", "mean-head"):
            r = crossval(embeddings[arch], chunk_track, y, folds, how)
            results["results"][f"{arch}/{how}"] = {"description": description, **r}
            print(f"{arch:12s} {how:9s} {100 * r['mean']:.1f} ± {100 * r['std']:.1f} % over {r['folds']} folds; "
                  f"pooled {100 * r['pooled_accuracy']:.1f} % (n={r['n']}, 95 % CI "
                  f"{100 * r['pooled_ci95'][0]:.0f}-{100 * r['pooled_ci95'][1]:.0f} %)")
        if args.checkpoints:
            path = args.checkpoints / f"{arch}.pt"
            write_checkpoint(path, arch, embeddings[arch], chunk_track, y, genres,
                             results["results"][f"{arch}/mean-head"])
            print(f"wrote {path}", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
