"""Fine-tuning vgg-msd's last conv block on GTZAN: does an ear whose top layer has heard
the ten genres beat the frozen one under genreq's one protocol?

    python bench/finetune.py embed --data ../shared/data/gtzan --cache CACHE
    python bench/finetune.py accuracy --groups ../shared/data/gtzan/labels.csv:artist_split \\
        --groups-name labels.csv:artist_split --cache CACHE --seeds 0 1 2

`embed` runs every chunk of each clip's grid (bench/crossval.py embed's chunks) through
vgg-msd's input norm and first four conv blocks once, and caches the block-4 maps
(128 channels x 11 x 6 per 3-s chunk, 87 MB in all; CACHE/block4.npz). Block 5 (one 3x3 conv of 128
channels, ReLU, batch norm, a (4, 4) max pool; about 10 M multiply-adds per chunk) is all
that is trained, so 2 CPU cores fine-tune it in seconds an epoch.

The recipe was fixed before any figure was seen, and is the candidate:
- trainable: block 5's conv weights and bias and its batch norm's scale and shift; the
  norm's running statistics stay the pretrained ones (eval mode), so epoch 0 is exactly
  the frozen tagger;
- a clip is the mean of the embeddings of CLIP_CHUNKS of its grid chunks (drawn afresh
  each epoch in training, the grid's evenly spread ones in scoring, as vgg-msd reads a
  clip), standardised by the frozen embedding's training mean and spread, dropout
  DROPOUT, a linear layer to the ten genres;
- class-balanced cross-entropy (each genre weighs the same), AdamW, batches of BATCH
  clips; WARMUP epochs train the linear layer alone (LR_HEAD), then block 5 trains with
  it (LR_BLOCK, LR_HEAD) for up to MAX_EPOCHS epochs;
- the number of block-5 epochs, 0 included, is chosen inside each fold's two training
  partitions: each trains on one and is scored on the other (the network's own linear
  layer, balanced accuracy, mean of the two), the best count wins (ties: fewer epochs);
- the fold's block 5 is then fine-tuned on both training partitions for that many epochs,
  and vgg-msd's own head recipe (`genreq train --arch vgg-msd --tune-head`:
  train.tune_head inside the training partitions, fitted on the mean of every grid chunk)
  is fitted on its embeddings and read on the held-out partition's grid (five chunks).

The figure that counts is seed 0's; seeds 1 and 2 give the spread. `frozen` (no block-5
epochs, same code) must reproduce vgg-msd's shipped figure, 78.6 % (bench/results/augment/
none.json). Results: bench/results/finetune/<name>.json, with clips gained and lost
against the frozen head and the exact McNemar p.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import crossval as cv  # noqa: E402  (bench/ is not a package)
import fast_default as fd  # noqa: E402

from genreq import dataset, models, train  # noqa: E402
from genreq import features as F  # noqa: E402

RESULTS = REPO / "bench" / "results" / "finetune"
TAGGER = "vgg-msd"
CLIP_CHUNKS = F.MAX_CHUNKS  # chunks averaged per clip, as vgg-msd reads one
DROPOUT = 0.2
BATCH = 16
WARMUP = 5
MAX_EPOCHS = 20
LR_HEAD = 1e-3
LR_BLOCK = 1e-4
WEIGHT_DECAY = 1e-2


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def embed(args) -> None:
    torch.set_num_threads(args.threads)
    tracks, genres = dataset.scan(args.data)
    spec = cv.UNLEVELLED
    tagger = models.build(TAGGER, len(genres), spec).tagger.eval()
    maps, owner = [], []
    with torch.inference_mode():
        for i, feat in enumerate(dataset.load_features(tracks, spec)):
            if feat is None:
                raise SystemExit(f"{tracks[i].path}: could not be decoded")
            x = torch.from_numpy(F.chunks(feat, spec, max_chunks=None))[:, 0].transpose(1, 2)
            x = tagger.input_bn(x.contiguous().unsqueeze(1))
            blocks = zip(tagger.convs, tagger.bns, tagger.POOLS, strict=True)
            for conv, bn, pool in list(blocks)[:4]:
                x = nn.functional.max_pool2d(bn(torch.relu(conv(x))), pool)
            maps.append(x.numpy())
            owner.append(np.full(len(x), i))
    names = np.array([str(t.path.relative_to(t.path.parents[1])) for t in tracks])
    np.savez(args.cache / "block4.npz", names=names, maps=np.concatenate(maps),
             track=np.concatenate(owner))
    log(f"block-4 maps of {len(tracks)} clips cached")


class Block5(nn.Module):
    """vgg-msd's fifth block and a linear genre layer over the mean chunk embedding."""

    def __init__(self, tagger, mean: np.ndarray, std: np.ndarray, n_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(128, 128, 3, padding=1)
        self.conv.load_state_dict(tagger.convs[4].state_dict())
        self.bn = nn.BatchNorm2d(128, eps=tagger.bns[4].eps)
        self.bn.load_state_dict(tagger.bns[4].state_dict())
        self.pool = tagger.POOLS[4]
        self.register_buffer("mean", torch.from_numpy(mean).float())
        self.register_buffer("std", torch.from_numpy(std).float())
        self.drop = nn.Dropout(DROPOUT)
        self.linear = nn.Linear(len(mean), n_classes)

    def chunk_embed(self, maps: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.bn(torch.relu(self.conv(maps))), self.pool)
        return x.permute(0, 2, 3, 1).flatten(1)  # as Vgg.reference_embed flattens

    def forward(self, clips: list[torch.Tensor]) -> torch.Tensor:
        sizes = [len(c) for c in clips]
        emb = self.chunk_embed(torch.cat(clips)).split(sizes)
        z = torch.stack([e.mean(0) for e in emb])
        return self.linear(self.drop((z - self.mean) / self.std))

    def train(self, mode: bool = True):
        super().train(mode)
        self.bn.eval()  # running statistics stay the pretrained ones
        return self


def frozen_embeddings(tagger, maps: list[np.ndarray]) -> list[np.ndarray]:
    net = Block5(tagger, np.zeros(256, np.float32), np.ones(256, np.float32), 1).eval()
    return embeddings(net, maps)


def embeddings(net: Block5, maps: list[np.ndarray]) -> list[np.ndarray]:
    net.eval()
    with torch.inference_mode():
        return [net.chunk_embed(torch.from_numpy(m.astype(np.float32))).double().numpy()
                for m in maps]


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([(pred[y == g] == g).mean() for g in np.unique(y)]))


def score(net: Block5, maps: list[np.ndarray]) -> np.ndarray:
    net.eval()
    with torch.inference_mode():
        clips = [torch.from_numpy(m[F.chunk_indices(len(m), CLIP_CHUNKS)].astype(np.float32))
                 for m in maps]
        return torch.cat([net(clips[i:i + 32]) for i in range(0, len(clips), 32)]).argmax(1).numpy()


def fine_tune(tagger, maps, y, n_classes, epochs: int, seed: int, val=None) -> tuple:
    """Block5 trained on `maps` (per clip) for WARMUP + `epochs` epochs; with `val`
    (maps, labels), the balanced accuracy on it after each block-5 epoch (0: warm-up only)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    frozen = np.concatenate([e.mean(0, keepdims=True) for e in frozen_embeddings(tagger, maps)])
    net = Block5(tagger, frozen.mean(0), frozen.std(0) + 1e-6, n_classes)
    counts = np.bincount(y, minlength=n_classes)
    weight = torch.tensor(len(y) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    head_opt = torch.optim.AdamW(net.linear.parameters(), lr=LR_HEAD, weight_decay=WEIGHT_DECAY)
    block = [*net.conv.parameters(), *net.bn.parameters()]
    both_opt = torch.optim.AdamW([{"params": net.linear.parameters(), "lr": LR_HEAD},
                                  {"params": block, "lr": LR_BLOCK}], weight_decay=WEIGHT_DECAY)
    curve = []
    for epoch in range(WARMUP + epochs):
        if epoch == WARMUP and val is not None:
            curve.append(balanced_accuracy(val[1], score(net, val[0])))
        opt = head_opt if epoch < WARMUP else both_opt
        net.train()
        for p in block:
            p.requires_grad_(epoch >= WARMUP)
        order = rng.permutation(len(y))
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            clips = [torch.from_numpy(maps[i][np.sort(rng.choice(len(maps[i]),
                                                                 min(CLIP_CHUNKS, len(maps[i])),
                                                                 replace=False))]
                                      .astype(np.float32)) for i in idx]
            loss = loss_fn(net(clips), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch >= WARMUP and val is not None:
            curve.append(balanced_accuracy(val[1], score(net, val[0])))
    if val is not None and epochs == 0:
        curve.append(balanced_accuracy(val[1], score(net, val[0])))
    return net, curve


def choose_epochs(tagger, maps, y, groups, n_classes, seed: int) -> tuple[int, list]:
    """Block-5 epochs (0..MAX_EPOCHS) with the best mean inner balanced accuracy, each
    training partition scored by a block fine-tuned on the other."""
    curves = []
    for g in sorted(set(groups)):
        fit, val = np.flatnonzero(groups != g), np.flatnonzero(groups == g)
        _, curve = fine_tune(tagger, [maps[i] for i in fit], y[fit], n_classes, MAX_EPOCHS,
                             seed, val=([maps[i] for i in val], y[val]))
        curves.append(curve)
    mean = np.mean(curves, axis=0)
    return int(np.argmax(mean)), [[round(v, 4) for v in c] for c in curves]


def fold_head(fit_x, y, groups, test_x, n_classes) -> tuple[np.ndarray, dict]:
    """vgg-msd's own head recipe on one fold, as bench/fast_default.py grid_head_crossval
    fits it: tuned inside the training partitions, read on the grid's CLIP_CHUNKS chunks."""
    tuned = train.tune_head(fit_x, y, groups, n_classes)
    head = train.fit_track_head(fit_x, y, n_classes, tuned.param, train.HEAD_BALANCED,
                                (tuned.setting,))[tuned.setting]
    probs = head.with_temperature(tuned.temperature).track_probs(test_x, CLIP_CHUNKS)
    return probs, {"c": tuned.param, "tau": tuned.setting, "temperature": tuned.temperature}


def load(cache: Path, groups: str):
    z = np.load(cache / "block4.npz")
    cached = [dataset.LabelledTrack(Path(n), Path(n).parts[0]) for n in z["names"]]
    tracks, kept, genres, dropped = cv.grouped_tracks(None, groups, cached)
    maps = [z["maps"][z["track"] == i] for i in kept]
    y = np.array([genres.index(t.genre) for t in tracks])
    return tracks, maps, y, genres, dropped


def accuracy(args) -> None:
    torch.set_num_threads(args.threads)
    tracks, maps, y, genres, dropped = load(args.cache, args.groups)
    n_classes = len(genres)
    tagger = models.build(TAGGER, n_classes, cv.UNLEVELLED)
    tagger = tagger.tagger.eval()
    groups = np.array([t.group for t in tracks])
    folds_idx = dataset.group_folds(tracks)
    protocol = cv.protocol_record(args.groups_name or args.groups, folds_idx, dropped)
    frozen = frozen_embeddings(tagger, maps)
    base_probs, base_folds = fd.grid_head_crossval(frozen, frozen, y, tracks, n_classes,
                                                   CLIP_CHUNKS)
    base_pred = base_probs.argmax(1)
    write(args, "frozen", "vgg-msd frozen, its own head recipe (no block-5 epochs)",
          protocol, y, base_probs, base_folds, genres, base_pred)
    for seed in args.seeds:
        probs = np.zeros((len(y), n_classes))
        own = np.zeros(len(y), dtype=int)
        folds = []
        for group, test in folds_idx:
            test, fit = np.array(test), np.flatnonzero(groups != group)
            epochs, curves = choose_epochs(tagger, [maps[i] for i in fit], y[fit], groups[fit],
                                           n_classes, seed)
            log(f"seed {seed}, test {group}: {epochs} block-5 epochs chosen inside")
            net, _ = fine_tune(tagger, [maps[i] for i in fit], y[fit], n_classes, epochs, seed)
            own[test] = score(net, [maps[i] for i in test])
            emb = embeddings(net, maps)
            probs[test], head = fold_head([emb[i] for i in fit], y[fit], groups[fit],
                                          [emb[i] for i in test], n_classes)
            folds.append({**cv.fold_record(group, test, y, probs), "block5_epochs": epochs,
                          "inner_balanced_by_epoch": curves, **head})
        write(args, f"block5_seed{seed}",
              f"vgg-msd with block 5 fine-tuned (seed {seed}), its own head recipe",
              protocol, y, probs, folds, genres, base_pred)
        own_probs = np.eye(n_classes)[own]
        own_folds = [{**cv.fold_record(g, np.array(i), y, own_probs), "block5_epochs":
                      f["block5_epochs"]} for (g, i), f in zip(folds_idx, folds, strict=True)]
        write(args, f"block5_seed{seed}_own-layer",
              f"vgg-msd with block 5 fine-tuned (seed {seed}), the fine-tuning's own linear "
              "layer (not the candidate: no head recipe, probabilities one-hot)",
              protocol, y, own_probs, own_folds, genres, base_pred)


def write(args, name, model, protocol, y, probs, folds, genres, base_pred) -> None:
    pred = probs.argmax(1)
    gained = int(((pred == y) & (base_pred != y)).sum())
    lost = int(((pred != y) & (base_pred == y)).sum())
    rec = cv.result_record(
        name,
        {"model": model, "arch": TAGGER, "chunks_per_track": CLIP_CHUNKS,
         "recipe": {"clip_chunks": CLIP_CHUNKS, "dropout": DROPOUT, "batch": BATCH,
                    "warmup": WARMUP, "max_epochs": MAX_EPOCHS, "lr_head": LR_HEAD,
                    "lr_block": LR_BLOCK, "weight_decay": WEIGHT_DECAY}},
        protocol, y, probs, folds, genres,
        extra={"against_frozen": {"gained": gained, "lost": lost,
                                  "mcnemar_p": round(cv.mcnemar_exact(gained, lost), 4)},
               "oof_pred": ",".join(str(k) for k in pred)},
    )
    cv.write(args.out / f"{name}.json", rec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("embed")
    e.add_argument("--data", type=Path, required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--groups", required=True)
    a.add_argument("--groups-name")
    a.add_argument("--seeds", type=int, nargs="+", default=[0])
    a.add_argument("--out", type=Path, default=RESULTS)
    for p in (e, a):
        p.add_argument("--cache", type=Path, required=True)
        p.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    {"embed": embed, "accuracy": accuracy}[args.command](args)


if __name__ == "__main__":
    main()
