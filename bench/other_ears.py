"""Other ears beside vgg-msd's: the musicnn package's two MagnaTagATune taggers (MTT_vgg,
MTT_musicnn: the same networks as the MSD ones, trained on other music and other tags),
alone and concatenated with vgg-msd's embedding, under genreq's one protocol.

    python bench/other_ears.py embed --data ../shared/data/gtzan --cache CACHE
    python bench/other_ears.py accuracy --groups ../shared/data/gtzan/labels.csv:artist_split \\
        --groups-name labels.csv:artist_split --cache CACHE

CACHE must already hold bench/crossval.py embed's taggers.npz and bench/fast_default.py
embed's fast-k5.npz. `embed` converts the two MTT taggers from the musicnn wheel
(genreq.pretrained.convert, the wheel pip fetches) and caches their embedding of every
chunk of each clip's grid, as bench/crossval.py embed does, and of the five excerpt
windows `genreq classify` reads, as bench/fast_default.py embed does; musicnn-msd's too on
those windows (CACHE/ears.npz).

`accuracy` fits vgg-msd's own head recipe (`genreq train --arch vgg-msd --tune-head`:
train.tune_head inside the two training partitions, the mean of each clip's grid chunks)
on each ear set of EAR_SETS, one embedding or several concatenated, and reads it on the
grid's five chunks and on the five excerpt windows (bench/results/ears/<set>_<reading>.json,
each with its clips gained and lost against vgg-msd alone and the exact McNemar p). The
ear sets were listed before any was scored, but one of them is the best only after the
folds were seen; so `nested` is the honest figure for "pick the ears": in each fold every
set is tuned inside the training partitions, the one with the best inner balanced
accuracy (train.tune_inner's rule) is fitted and tested on the held-out partition.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import crossval as cv  # noqa: E402  (bench/ is not a package)
import fast_default as fd  # noqa: E402

from genreq import dataset, models, train  # noqa: E402
from genreq import features as F  # noqa: E402
from genreq.predict import Classifier  # noqa: E402
from genreq.pretrained import convert  # noqa: E402

RESULTS = REPO / "bench" / "results" / "ears"
MTT = {"MTT_vgg": "vgg", "MTT_musicnn": "musicnn"}  # wheel folder: network
BASE = "vgg-msd"
EAR_SETS = {
    "vgg-msd": (BASE,),
    "mtt-vgg": ("MTT_vgg",),
    "mtt-musicnn": ("MTT_musicnn",),
    "vgg-msd+mtt-vgg": (BASE, "MTT_vgg"),
    "vgg-msd+mtt-musicnn": (BASE, "MTT_musicnn"),
    "vgg-msd+musicnn-msd+mtt-both": (BASE, "musicnn-msd", "MTT_vgg", "MTT_musicnn"),
}
K = F.MAX_CHUNKS  # the five chunks vgg-msd reads


def _embed_all(tagger, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    embs, owner = [], []
    with torch.inference_mode():
        for i, x in enumerate(inputs):
            e = tagger.embed(torch.from_numpy(x)[:, 0].transpose(1, 2).contiguous())
            embs.append(e.numpy())
            owner.append(np.full(len(e), i))
    return np.concatenate(embs), np.concatenate(owner)


def embed(args) -> None:
    torch.set_num_threads(args.threads)
    tracks, genres = dataset.scan(args.data)
    spec = cv.UNLEVELLED
    assert replace(models.ARCHITECTURES["musicnn-msd"].default_features(), level_dbfs=None) == spec
    clf = Classifier.load(BASE)
    clf.features = spec
    clf.max_chunks = K
    grid = [F.chunks(f, spec, max_chunks=None) for f in dataset.load_features(tracks, spec)]
    windows = [fd.shipped_chunks(clf, t.path) for t in tracks]
    wheel = convert.fetch_wheel()
    taggers = {name: convert.load_from_wheel(wheel, name, arch) for name, arch in MTT.items()}
    out = {"names": np.array([str(t.path.relative_to(t.path.parents[1])) for t in tracks])}
    for name, tagger in taggers.items():
        out[f"{name}/grid"], out[f"{name}/grid_track"] = _embed_all(tagger, grid)
        fd.log(f"{name}: grid embedded")
    taggers["musicnn-msd"] = models.build("musicnn-msd", len(genres), spec).tagger.eval()
    for name, tagger in taggers.items():
        out[f"{name}/k{K}"], out[f"{name}/k{K}_track"] = _embed_all(tagger, windows)
        fd.log(f"{name}: {K} excerpt windows embedded")
    np.savez(args.cache / "ears.npz", **out)


def ear_inputs(cache: Path, groups: str):
    """tracks, y, genres, dropped and {ear: (grid chunks, excerpt chunks) per clip}."""
    tracks, base_grid, y, genres, dropped = fd.load_grid(cache, groups)
    _, base_k, y_k, _, _ = fd.load_shipped(cache, K, groups)
    assert (y_k == y).all()
    cached, z = cv.load_taggers(cache)
    _, kept, _, _ = cv.grouped_tracks(None, groups, cached)
    ears_z = np.load(cache / "ears.npz")
    assert (ears_z["names"] == z["names"]).all()

    def per_clip(x, owner):
        x = x.astype(np.float64)
        return [x[owner == i] for i in kept]

    def windows(name):
        return per_clip(ears_z[f"{name}/k{K}"], ears_z[f"{name}/k{K}_track"])

    ears = {BASE: (base_grid, base_k),
            "musicnn-msd": (per_clip(z["musicnn-msd/embedding"], z["track"]),
                            windows("musicnn-msd"))}
    for name in MTT:
        ears[name] = (per_clip(ears_z[f"{name}/grid"], ears_z[f"{name}/grid_track"]),
                      windows(name))
    return tracks, y, genres, dropped, ears


def joined(ears: dict, names: tuple[str, ...], which: int) -> list[np.ndarray]:
    """Per clip the chunks of the ears `names` side by side (which: 0 grid, 1 excerpts)."""
    parts = [ears[n][which] for n in names]
    return [np.concatenate([p[i] for p in parts], axis=1) for i in range(len(parts[0]))]


def nested_crossval(inputs: dict, y, tracks, n_classes):
    """Out-of-fold probabilities when each fold picks its ear set inside its training
    partitions (best inner balanced accuracy, then accuracy, then log loss)."""
    groups = np.array([t.group for t in tracks])
    probs, folds = np.zeros((len(y), n_classes)), []
    for group, test in dataset.group_folds(tracks):
        test, fit = np.array(test), np.flatnonzero(groups != group)
        inner = {}
        for name, x in inputs.items():
            tuned = train.tune_head([x[i] for i in fit], y[fit], groups[fit], n_classes)
            r = tuned.record[f"{tuned.param:g}/{tuned.setting:g}"]
            inner[name] = ((r["balanced"], r["accuracy"], -r["log_loss"]), tuned)
        chosen = max(inner, key=lambda n: inner[n][0])
        tuned = inner[chosen][1]
        fit_x = [inputs[chosen][i] for i in fit]
        head = train.fit_track_head(fit_x, y[fit], n_classes, tuned.param, train.HEAD_BALANCED,
                                    (tuned.setting,))[tuned.setting]
        probs[test] = head.with_temperature(tuned.temperature).track_probs(
            [inputs[chosen][i] for i in test], K)
        folds.append(cv.fold_record(
            group, test, y, probs, chosen=chosen, c=tuned.param, tau=tuned.setting,
            temperature=tuned.temperature,
            inner_balanced={n: v[0][0] for n, v in inner.items()}))
    return probs, folds


def against_base(y, pred, base_pred) -> dict:
    right, base_right = pred == y, base_pred == y
    gained, lost = int((right & ~base_right).sum()), int((base_right & ~right).sum())
    return {"against": BASE, "gained": gained, "lost": lost,
            "mcnemar_p": round(cv.mcnemar_exact(gained, lost), 4)}


def accuracy(args) -> None:
    tracks, y, genres, dropped, ears = ear_inputs(args.cache, args.groups)
    protocol = cv.protocol_record(args.groups_name or args.groups, dataset.group_folds(tracks),
                                  dropped)
    readings = {"grid-5": ("the grid's five chunks (vgg-msd's figure on the training path)", 0),
                f"classify-k{K}": (f"the {K} excerpt windows `genreq classify` reads", 1)}
    base_pred = {}
    for set_name, names in EAR_SETS.items():
        grid_x = joined(ears, names, 0)
        for reading, (where, which) in readings.items():
            score_x = joined(ears, names, which)
            probs, folds = fd.grid_head_crossval(grid_x, score_x, y, tracks, len(genres), K)
            pred = probs.argmax(1)
            base_pred.setdefault(reading, pred)  # vgg-msd comes first
            rec = cv.result_record(
                f"{set_name}_{reading}",
                {"model": f"vgg-msd's tuned head recipe on {' + '.join(names)}",
                 "arch": BASE if names == (BASE,) else None, "ears": list(names),
                 "head_fit": "train.tune_head inside the training partitions, on the mean of "
                 "each training clip's grid chunks", "scored_on": where},
                protocol, y, probs, folds, genres,
                extra={"vs_base": against_base(y, pred, base_pred[reading]),
                       "oof_pred": ",".join(str(p) for p in pred)},
            )
            cv.write(args.out / f"{set_name}_{reading}.json", rec)
            fd.log(f"{set_name:30s} {reading:12s} {rec['accuracy']:.3f} "
                   f"(bal {rec['balanced_accuracy']:.3f}) {rec['vs_base']}")
    inputs = {n: joined(ears, names, 0) for n, names in EAR_SETS.items()}
    probs, folds = nested_crossval(inputs, y, tracks, len(genres))
    pred = probs.argmax(1)
    rec = cv.result_record(
        "nested-choice_grid-5",
        {"model": "the ear set of EAR_SETS each fold picks inside its training partitions, "
         "with vgg-msd's tuned head recipe", "arch": None, "ears": list(EAR_SETS),
         "scored_on": readings["grid-5"][0]},
        protocol, y, probs, folds, genres,
        extra={"vs_base": against_base(y, pred, base_pred["grid-5"]),
               "oof_pred": ",".join(str(p) for p in pred)},
    )
    cv.write(args.out / "nested-choice_grid-5.json", rec)
    fd.log(f"nested choice: {rec['accuracy']:.3f} (bal {rec['balanced_accuracy']:.3f}), chose "
           + ", ".join(f"{f['test_group']}: {f['chosen']}" for f in folds))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("embed", help="cache the MTT taggers' embeddings")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("accuracy", help="CV of vgg-msd's head recipe on each ear set")
    p.add_argument("--groups", required=True, metavar="FILE:COLUMN")
    p.add_argument("--groups-name", default=None)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    {"embed": embed, "accuracy": accuracy}[args.command](args)


if __name__ == "__main__":
    main()
