"""The transfer CRNN on frozen pretrained ears (registry models `vgg-msd-gru`,
`musicnn-msd-gru`), under genreq's artist-disjoint protocol (bench/crossval.py: each
group of `--groups` tested once by a model fitted on the others, `excluded` dropped).

    python bench/transfer_gru.py [vgg-msd|musicnn-msd] --groups LABELS.csv:artist_split \
        [--time-clips 19] [--cache DIR]

A bidirectional GRU over the sequence of a clip's 3-s chunk embeddings, trained with
genreq's own code (genreq.train.fit_gru_head, the recipe `genreq train --arch
vgg-msd-gru` uses: random runs of 3-5 consecutive chunks, dropout on the embeddings,
label smoothing). Each clip is embedded once, through the same decode and features as
`genreq train` (cached in runs/). Every fold is scored two ways: on the chunks genreq
classifies with (features.MAX_CHUNKS spread over the clip, "as shipped") and on all of a
clip's chunks; the linear heads on the same embeddings are bench/crossval.py heads'
(bench/results/heads/). `--time-clips N` also times `Classifier.classify_file` of the shipped
checkpoints (this model and its linear-head base) on N clips, one torch thread.

Writes bench/results/pretrained/transfer_gru_<base>.json (bench/crossval.py's schema). The
front-end stays frozen: fine-tuning it is out of reach on a CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

# Run from a checkout without installing; crossval.py beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import crossval as crossval_protocol  # the protocol's result schema

from genreq import dataset, models, train
from genreq import features as F
from genreq.predict import WEIGHTS_DIR, Classifier

REPO = Path(__file__).resolve().parents[1]

DEFAULT_DATA = REPO.parent / "shared" / "data" / "gtzan"
RESULTS = REPO / "bench" / "results" / "pretrained"


def embeddings(
    arch: str, tracks: list[dataset.LabelledTrack], names: list[str], n_classes: int, cache: Path
) -> list[np.ndarray]:
    """Every track's (chunks, n_embed) raw embeddings, from the cache when it holds these
    tracks, else computed (and cached) as `genreq train` computes them."""
    shared = cache.parent / "taggers.npz"  # bench/crossval.py embed: every clip, both taggers
    if shared.is_file():
        saved = np.load(shared)
        index = {str(n): i for i, n in enumerate(saved["names"])}
        if all(n in index for n in names):
            emb = saved[f"{arch.removesuffix('-gru')}/embedding"]
            return [emb[saved["track"] == index[n]] for n in names]
    if cache.is_file():
        saved = np.load(cache)
        if list(saved["names"]) == names:
            return [saved["embeddings"][saved["track"] == i] for i in range(len(names))]
    spec = crossval_protocol.UNLEVELLED  # as its results, and taggers.npz, were computed
    feats = dataset.load_features(tracks, spec)
    if any(f is None for f in feats):
        raise SystemExit("some clips could not be decoded; the folds would not match")
    seqs = train.chunk_embeddings(models.build(arch, n_classes, spec), feats, spec)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        cache,
        names=np.array(names),
        embeddings=np.concatenate(seqs),
        track=np.concatenate([np.full(len(s), i) for i, s in enumerate(seqs)]),
    )
    return seqs


def crossval(
    arch: str,
    seqs: list[np.ndarray],
    y: np.ndarray,
    folds: list[tuple[str, list[int]]],
    n_classes: int,
) -> tuple[dict[str, np.ndarray], list[dict], list[float]]:
    """Out-of-fold probabilities scored on MAX_CHUNKS chunks (as shipped) and on all
    chunks; the fold records (bench/crossval.py's schema) and training seconds."""
    probs = {"shipped": np.zeros((len(y), n_classes)), "all_chunks": np.zeros((len(y), n_classes))}
    folds_out, seconds = [], []
    for k, (group, test) in enumerate(folds):
        test = np.array(test)
        fit_idx = np.setdiff1d(np.arange(len(y)), test)
        started = time.perf_counter()
        result = train.fit_gru_head(
            arch, [seqs[i] for i in fit_idx], y[fit_idx], n_classes, seed=k, progress=False
        )
        seconds.append(time.perf_counter() - started)
        test_seqs = [seqs[i] for i in test]
        for how, max_chunks in (("shipped", F.MAX_CHUNKS), ("all_chunks", None)):
            probs[how][test] = train.sequence_probs(result.model, test_seqs, max_chunks)
        folds_out.append(
            crossval_protocol.fold_record(
                group, test, y, probs["shipped"], train_seconds=round(seconds[-1], 1)
            )
        )
        print(
            f"fold {group}: {100 * folds_out[-1]['accuracy']:.1f} % ({len(test)} clips, "
            f"{seconds[-1]:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return probs, folds_out, seconds


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
    return {
        name: {"median_s": round(statistics.median(t), 4), "clips": len(t)}
        for name, t in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", nargs="?", default="vgg-msd", choices=["vgg-msd", "musicnn-msd"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--groups", required=True, metavar="FILE:COLUMN", help="e.g. labels.csv:artist_split"
    )
    parser.add_argument("--groups-name", default=None, help="how the result names the groups")
    parser.add_argument(
        "--cache", type=Path, default=REPO / "runs", help="folder for the embeddings cache"
    )
    parser.add_argument(
        "--time-clips", type=int, default=0, help="also time N clips through classify_file"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    arch = f"{args.base}-gru"

    tracks, genres = dataset.scan(args.data)
    tracks, dropped = dataset.apply_groups(tracks, dataset.read_groups(args.groups))
    names = [str(t.path.relative_to(args.data)) for t in tracks]
    y = np.array([genres.index(t.genre) for t in tracks])
    seqs = embeddings(
        arch, tracks, names, len(genres), args.cache / f"transfer_gru_{args.base}_embeddings.npz"
    )
    folds = dataset.group_folds(tracks)
    model = models.build(arch, len(genres))
    probs, fold_recs, seconds = crossval(arch, seqs, y, folds, len(genres))
    result = crossval_protocol.result_record(
        arch,
        {
            "model": f"frozen {args.base} tagger + BiGRU({model.dims.hidden // 2}) over chunk "
            "embeddings",
            "arch": arch,
            "chunks_per_clip": [int(min(len(s) for s in seqs)), int(max(len(s) for s in seqs))],
            "recipe": {
                **asdict(train.GRU_RECIPE),
                "dropout": model.dims.dropout,
                "seed": "fold index",
            },
            "parameters": models.count_parameters(model),
            "scored_on": f"{F.MAX_CHUNKS} chunks spread over the clip (features.chunk_indices), "
            "as genreq classifies",
            "train_seconds_per_fold": round(statistics.median(seconds), 1),
        },
        crossval_protocol.protocol_record(args.groups_name or args.groups, folds, dropped),
        y,
        probs["shipped"],
        fold_recs,
        genres,
        crossval_protocol.all_chunks_extra(y, probs["all_chunks"], genres),
    )
    if args.time_clips:
        picks = np.linspace(0, len(tracks) - 1, args.time_clips).round().astype(int)
        shipped = [n for n in (arch, args.base) if (WEIGHTS_DIR / f"{n}.pt").is_file()]
        result["seconds_per_clip"] = {
            "how": "Classifier.classify_file, 1 torch thread, best of 2 per clip, "
            "median over clips",
            **time_clips(tuple(shipped), [tracks[i].path for i in picks]),
        }
    crossval_protocol.write(RESULTS / f"transfer_gru_{args.base}.json", result)


if __name__ == "__main__":
    main()
