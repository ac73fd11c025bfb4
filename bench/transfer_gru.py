"""The transfer CRNN on frozen pretrained ears (registry models `vgg-msd-gru`,
`musicnn-msd-gru`), cross-validated on the artist-aware folds of the linear heads.

    python bench/transfer_gru.py [vgg-msd|musicnn-msd] [--time-clips 19]

A bidirectional GRU over the sequence of a clip's 3-s chunk embeddings, trained with
genreq's own code (genreq.train.fit_gru_head, the recipe `genreq train --arch
vgg-msd-gru` uses: random runs of 3-5 consecutive chunks, dropout on the embeddings,
label smoothing). Each clip is embedded once, through the same decode and features as
`genreq train` (cached in runs/). Every fold is scored two ways: on the chunks genreq
classifies with (features.MAX_CHUNKS spread over the clip, "as shipped") and on all of a
clip's chunks; the base model's linear head is scored as shipped on the same folds and
embeddings for comparison. `--time-clips N` also times `Classifier.classify_file` of the shipped
checkpoints (this model and its linear-head base) on N clips, one torch thread.

Writes bench/results/pretrained/transfer_gru_<base>.json. The front-end stays frozen:
fine-tuning it is out of reach on a CPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from genreq import dataset, metrics, models, train
from genreq import features as F
from genreq.predict import WEIGHTS_DIR, Classifier

DEFAULT_DATA = REPO.parent / "shared" / "data" / "gtzan"
RESULTS = REPO / "bench" / "results" / "pretrained"


def embeddings(arch: str, tracks: list[dataset.LabelledTrack], names: list[str], n_classes: int,
               cache: Path) -> list[np.ndarray]:
    """Every track's (chunks, n_embed) raw embeddings, from the cache when it holds these
    tracks, else computed (and cached) as `genreq train` computes them."""
    if cache.is_file():
        saved = np.load(cache)
        if list(saved["names"]) == names:
            return [saved["embeddings"][saved["track"] == i] for i in range(len(names))]
    spec = models.ARCHITECTURES[arch].default_features()
    feats = dataset.load_features(tracks, spec)
    if any(f is None for f in feats):
        raise SystemExit("some clips could not be decoded; the folds would not match")
    seqs = train.chunk_embeddings(models.build(arch, n_classes, spec), feats, spec)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=np.array(names), embeddings=np.concatenate(seqs),
             track=np.concatenate([np.full(len(s), i) for i, s in enumerate(seqs)]))
    return seqs


def crossval(arch: str, seqs: list[np.ndarray], y: np.ndarray, folds: list[list[int]], n_classes: int) -> dict:
    """Out-of-fold predictions scored on MAX_CHUNKS chunks (as shipped) and on all chunks."""
    pred = {"shipped": np.full(len(y), -1), "all_chunks": np.full(len(y), -1)}
    per_fold: dict[str, list[float]] = {k: [] for k in pred}
    seconds = []
    for k, test in enumerate(folds):
        test = np.array(test)
        fit_idx = np.setdiff1d(np.arange(len(y)), test)
        started = time.perf_counter()
        result = train.fit_gru_head(arch, [seqs[i] for i in fit_idx], y[fit_idx], n_classes, seed=k,
                                    progress=False)
        seconds.append(time.perf_counter() - started)
        test_seqs = [seqs[i] for i in test]
        for how, max_chunks in (("shipped", F.MAX_CHUNKS), ("all_chunks", None)):
            pred[how][test] = train.sequence_probs(result.model, test_seqs, max_chunks).argmax(1)
            per_fold[how].append(float((pred[how][test] == y[test]).mean()))
        print(f"fold {k}: {100 * per_fold['shipped'][-1]:.1f} % ({len(test)} clips, "
              f"{seconds[-1]:.0f} s)", file=sys.stderr, flush=True)
    out = {}
    for how, predicted in pred.items():
        correct = int((predicted == y).sum())
        low, high = metrics.wilson_interval(correct, len(y))
        out[how] = {"fold_accuracy": [round(a, 4) for a in per_fold[how]],
                    "mean": round(statistics.mean(per_fold[how]), 4),
                    "std": round(statistics.stdev(per_fold[how]), 4),
                    "pooled_accuracy": round(correct / len(y), 4),
                    "pooled_ci95": [round(low, 4), round(high, 4)],
                    "balanced_accuracy": round(float(np.mean([(predicted[y == c] == c).mean()
                                                              for c in range(n_classes)])), 4)}
    out["train_seconds_per_fold"] = round(statistics.median(seconds), 1)
    return out


def linear_head_crossval(seqs: list[np.ndarray], y: np.ndarray, folds: list[list[int]], n_classes: int) -> dict:
    """The base model's linear head (train.fit_head's fit: logistic regression on the
    standardised mean embedding) on the same folds and embeddings, scored as shipped:
    the mean of the probabilities of the MAX_CHUNKS chunks classification reads."""
    means = np.stack([s.mean(0) for s in seqs])
    pred = np.full(len(y), -1)
    per_fold = []
    for test in folds:
        test = np.array(test)
        fit_idx = np.setdiff1d(np.arange(len(y)), test)
        mu, sd = means[fit_idx].mean(0), means[fit_idx].std(0) + 1e-6
        weight, bias = train.fit_logistic((means[fit_idx] - mu) / sd, y[fit_idx], n_classes)
        for i in test:
            logits = (seqs[i][F.chunk_indices(len(seqs[i]))] - mu) / sd @ weight.T + bias
            pred[i] = torch.softmax(torch.from_numpy(logits), -1).mean(0).argmax().item()
        per_fold.append(float((pred[test] == y[test]).mean()))
    correct = int((pred == y).sum())
    low, high = metrics.wilson_interval(correct, len(y))
    return {"fold_accuracy": [round(a, 4) for a in per_fold], "mean": round(statistics.mean(per_fold), 4),
            "std": round(statistics.stdev(per_fold), 4), "pooled_accuracy": round(correct / len(y), 4),
            "pooled_ci95": [round(low, 4), round(high, 4)]}


def time_clips(names: tuple[str, ...], paths: list[Path], repeats: int = 2) -> dict:
    """Median seconds of Classifier.classify_file per clip for each shipped model, one
    torch thread; models interleaved clip by clip so a busy machine slows them alike."""
    classifiers = {name: Classifier.load(name) for name in names}
    for clf in classifiers.values():  # warm-up: first-call allocations and librosa imports
        clf.classify_file(paths[0])
    times: dict[str, list[float]] = {name: [] for name in names}
    for path in paths:
        for name, clf in classifiers.items():
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                clf.classify_file(path)
                best = min(best, time.perf_counter() - started)
            times[name].append(best)
    return {name: {"median_s": round(statistics.median(t), 4), "clips": len(t)} for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", nargs="?", default="vgg-msd", choices=["vgg-msd", "musicnn-msd"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-clips", type=int, default=0, help="also time N clips through classify_file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    arch = f"{args.base}-gru"

    tracks, genres = dataset.scan(args.data)
    names = [str(t.path.relative_to(args.data)) for t in tracks]
    y = np.array([genres.index(t.genre) for t in tracks])
    seqs = embeddings(arch, tracks, names, len(genres), REPO / "runs" / f"transfer_gru_{args.base}_embeddings.npz")
    folds = dataset.group_kfold(tracks, args.folds, seed=args.seed)
    model = models.build(arch, len(genres))
    result = {
        "arch": arch,
        "model": f"frozen {args.base} tagger + BiGRU({model.dims.hidden // 2}) over chunk embeddings",
        "n": len(y),
        "chunks_per_clip": [int(min(len(s) for s in seqs)), int(max(len(s) for s in seqs))],
        "split": f"group_kfold(k={args.folds}, seed={args.seed}), groups of {dataset.GROUP_BLOCK} clip ids",
        "recipe": {**asdict(train.GRU_RECIPE), "dropout": model.dims.dropout, "seed": "fold index"},
        "parameters": models.count_parameters(model),
        "scored_on": {"shipped": f"{F.MAX_CHUNKS} chunks spread over the clip (features.chunk_indices), "
                                 "as genreq classifies", "all_chunks": "every 3-s chunk of the clip"},
        **crossval(arch, seqs, y, folds, len(genres)),
        "linear_head_shipped": {"model": args.base, **linear_head_crossval(seqs, y, folds, len(genres))},
    }
    if args.time_clips:
        picks = np.linspace(0, len(tracks) - 1, args.time_clips).round().astype(int)
        shipped = [n for n in (arch, args.base) if (WEIGHTS_DIR / f"{n}.pt").is_file()]
        result["seconds_per_clip"] = {
            "how": "Classifier.classify_file, 1 torch thread, best of 2 per clip, median over clips",
            **time_clips(tuple(shipped), [tracks[i].path for i in picks]),
        }
    print(json.dumps(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"transfer_gru_{args.base}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
