"""Heads on every layer of the vgg-msd tagger, not only its last: a candidate for the ears.

Choi et al. (2017, "Transfer learning for music classification and regression tasks")
found that concatenating pooled features of every layer of a pretrained tagger beats the
last layer alone on GTZAN. This script measures that under genreq's one protocol
(bench/crossval.py: artist-disjoint three-fold CV on artist_split, tuning inside the
training groups), with the head vgg-msd ships (bench/crossval.py's teacher
track_vgg-msd_embedding_balanced_la: class-weighted, logit-adjusted, C, tau and a
temperature tuned inside), on the chunks `genreq classify` reads: k = 1 (vgg-msd-fast's
middle chunk) and k = 5 (vgg-msd's five excerpts).

    python bench/layer_features.py embed --data ../shared/data/gtzan --cache CACHE
    python bench/layer_features.py accuracy --groups ../shared/data/gtzan/labels.csv:artist_split \\
        --groups-name labels.csv:artist_split --cache CACHE

Per chunk and per conv block, the mean and the max over time and mel bands of the block's
output after its batch norm (128 + 128 values; five blocks, 1,280), beside the tagger's
own 256-d embedding (its last pool, flattened). The candidates, fixed before any figure
was seen: the embedding alone (what ships), all layers, all layers + the embedding, the
last three blocks, and the means alone. Results: bench/results/fast/layers_k<k>_<inputs>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import crossval as cv  # noqa: E402  (bench/ is not a package)
import fast_default as fd  # noqa: E402

from genreq import dataset  # noqa: E402
from genreq.predict import Classifier  # noqa: E402

KS = (1, 5)
BLOCK = 256  # mean (128) then max (128) of one block's channels


def block_stats(tagger, chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chunks, 5 x 256) pooled block outputs and (chunks, 256) the tagger's embedding,
    by the tagger's reference graph (conv, ReLU, batch norm, max pool, five times)."""
    x = tagger.input_bn(torch.from_numpy(chunks)[:, 0].transpose(1, 2).contiguous().unsqueeze(1))
    stats = []
    for conv, bn, pool in zip(tagger.convs, tagger.bns, tagger.POOLS, strict=True):
        y = bn(torch.relu(conv(x)))
        stats.append(torch.cat([y.mean((2, 3)), y.amax((2, 3))], 1))
        x = torch.nn.functional.max_pool2d(y, pool)
    return torch.cat(stats, 1).numpy(), x.permute(0, 2, 3, 1).flatten(1).numpy()


def embed(args) -> None:
    torch.set_num_threads(args.threads)
    tracks, genres = dataset.scan(args.data)
    clf = Classifier.load("vgg-msd")
    clf.features = cv.UNLEVELLED  # these candidates were read unlevelled
    names = np.array([str(t.path.relative_to(t.path.parents[1])) for t in tracks])
    args.cache.mkdir(parents=True, exist_ok=True)
    for k in KS:
        clf.max_chunks = k
        layers, embs, owner = [], [], []
        started = time.perf_counter()
        with torch.inference_mode():
            for i, t in enumerate(tracks):
                stats, emb = block_stats(clf.model.tagger, fd.shipped_chunks(clf, t.path))
                layers.append(stats)
                embs.append(emb)
                owner.append(np.full(len(emb), i))
        np.savez(args.cache / f"layers-k{k}.npz", names=names, genres=np.array(genres),
                 layers=np.concatenate(layers), embedding=np.concatenate(embs),
                 track=np.concatenate(owner))  # fmt: skip
        fd.log(f"k={k}: {len(tracks)} clips in {time.perf_counter() - started:.0f} s")


def inputs(z) -> dict[str, np.ndarray]:
    layers, emb = z["layers"].astype(np.float64), z["embedding"].astype(np.float64)
    return {
        "embedding": emb,
        "layers": layers,
        "layers+embedding": np.hstack([layers, emb]),
        "blocks3-5": layers[:, 2 * BLOCK:],
        "means": np.hstack([layers[:, b * BLOCK:b * BLOCK + BLOCK // 2] for b in range(5)]),
    }


def accuracy(args) -> None:
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for k in KS:
        z = np.load(args.cache / f"layers-k{k}.npz")
        cached = [dataset.LabelledTrack(Path(n), Path(n).parts[0]) for n in z["names"]]
        tracks, kept, genres, dropped = cv.grouped_tracks(None, args.groups, cached)
        y = np.array([genres.index(t.genre) for t in tracks])
        protocol = cv.protocol_record(args.groups_name or args.groups,
                                      dataset.group_folds(tracks), dropped)  # fmt: skip
        for name, x in inputs(z).items():
            chunk_x = [x[z["track"] == i] for i in kept]
            probs, folds = cv.teacher_crossval(fd.LA, chunk_x, y, tracks, len(genres))
            rec = cv.result_record(
                f"layers_k{k}_{name}",
                {
                    "model": f"head on frozen vgg-msd's {name}, {k} chunk(s) per clip",
                    "chunks_per_track": k,
                    "inputs": name,
                    "dim": x.shape[1],
                    "candidate": fd.LA.describe(),
                    "scored_on": "the chunks Classifier.classify_file reads "
                    "(bench/layer_features.py embed)",
                },
                protocol, y, probs["shipped"], folds, genres,
            )  # fmt: skip
            cv.write(args.out / f"layers_k{k}_{name}.json", rec)
            fd.log(f"k={k} {name}: {100 * rec['accuracy']:.1f} % "
                    f"(balanced {100 * rec['balanced_accuracy']:.1f} %, n={rec['n']})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("embed", help="cache each clip's pooled block outputs for k = 1 and 5")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("accuracy", help="CV of a head on each set of inputs")
    p.add_argument("--groups", required=True, metavar="FILE:COLUMN")
    p.add_argument("--groups-name", default=None)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--out", type=Path, default=fd.RESULTS / "fast")
    args = parser.parse_args()
    {"embed": embed, "accuracy": accuracy}[args.command](args)


if __name__ == "__main__":
    main()
