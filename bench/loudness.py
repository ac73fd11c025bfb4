"""Loudness: does the default hear the same genre in a quieter or louder copy of a track?

    python bench/finetune.py embed --data ../shared/data/gtzan --cache CACHE   # block4.npz
    python bench/loudness.py embed --data ../shared/data/gtzan --cache CACHE
    python bench/loudness.py accuracy --groups ../shared/data/gtzan/labels.csv:artist_split \\
        --groups-name labels.csv:artist_split --cache CACHE

Real libraries are mastered anywhere from about -25 to -8 LUFS, and musicnn's input,
log10(10000 * mel + 1), is not invariant to gain. `embed` reads each clip as the default
(`vgg-msd-fast`) reads a file, its two excerpt windows, scales them by each gain of GAINS
(dB; a sample past full scale is clipped, as a file stores it) and caches the embedding
of every chunk (CACHE/loudness.npz). `accuracy` fits vgg-msd's own head recipe on each
fold's training clips as they are (their grid embeddings, from bench/finetune.py's
block-4 cache) and reads the held-out clips at every gain: accuracy, balanced accuracy,
how often the top genre stays the one at 0 dB, and the share of each genre among the
predictions (bench/results/loudness.json). At 0 dB it must reproduce the default's
figure, 78.6 % (bench/results/fast/vgg-msd_k2_grid-head.json).

    python bench/loudness.py embed --normalised --data ../shared/data/gtzan --cache CACHE
    python bench/loudness.py accuracy --normalised --groups ... --cache CACHE

The candidate, `--normalised`, written down before its figures were seen: every track's
decoded audio (a training clip whole; at classification the excerpts together) scaled so
that its RMS is REFERENCE_DBFS, the median of the 257 shared clips (-19.0 dBFS; their
genres' medians run from -31 for classical to -13 for hip-hop), by at most 40 dB;
the head refitted with the same recipe on the normalised training clips (their grid
embeddings, computed here), and the held-out clips read at every gain, normalised after
the gain and its clipping. It replaces the default's input if its mean accuracy over
-12, -6, 0 and +6 dB is above the default's as shipped and its accuracy at 0 dB still
meets issue 14's 75 %. It did (bench/results/loudness-normalised.json), and

    python bench/loudness.py ship --groups ../shared/data/gtzan/labels.csv:artist_split \
        --groups-name labels.csv:artist_split --cache CACHE

writes genreq/weights/vgg-msd-fast.pt: that head fitted on all 238 levelled clips, C, tau
and T tuned with the three partitions as inner folds, as each fold's head was tuned.
`speed --data DATA` times classify_file per clip levelled and not, in one process.

    python bench/loudness.py embed [--normalised] --model vgg-msd --data ... --cache CACHE
    python bench/loudness.py accuracy [--normalised] --model vgg-msd --groups ... --cache CACHE

The same two sweeps for the accurate model, `vgg-msd`, read as it reads a file: five
excerpt windows (bench/results/loudness-vgg-msd*.json). At 0 dB, unlevelled, they must
reproduce its classify-path figure, 76.1 % (bench/results/fast/vgg-msd_k5_grid-head.json).
Its rule, written down before either sweep was run, is the default's: vgg-msd levels its
input too (VggMSD.level_dbfs, and its head refitted on levelled clips by the command of
its card, `genreq train ... --arch vgg-msd --tune-head`) if the levelled head's mean
accuracy over -12, -6, 0 and +6 dB is above the unlevelled head's, and at 0 dB it still
reads at least 75 %. Its card then cites the levelled 0 dB figure (`cite`), the one
`classify` gives, in place of the training-grid figure it cites now. It passed.

`--model musicnn-msd` sweeps the MSD musicnn tagger the same way, five windows, with its
own shipped head recipe in each fold (class-weighted, C = 1, no logit adjustment, T = 1;
no tuning) and its grid embedded here, unlevelled and levelled. Its rule, written down
before either sweep was run: musicnn-msd levels its input (its head refitted by its
card's `genreq train ... --arch musicnn-msd`) if the levelled mean over -12, -6, 0 and
+6 dB is above the unlevelled one and at 0 dB the levelled head loses at most 2 points
against the unlevelled one (its 70.2 % is below 75 % either way). It passed.

`accuracy [--normalised] --model vgg-msd-gru` reads vgg-msd's two caches (the same ears,
the same five windows) with the transfer CRNN's recipe instead of a linear head: in each
fold a GRU trained by train.fit_gru_head on the training clips' grid sequences (seed =
the fold's index, as bench/transfer_gru.py), read on the windows' sequence at every
gain. Its rule, written down before either sweep was run, is musicnn-msd's: the GRU
levels its input (VggMSDGRU.level_dbfs, retrained by `genreq train ... --arch
vgg-msd-gru --val-fraction 0 --groups ...`, on the 238 clips) if the levelled mean over
-12, -6, 0 and +6 dB is above the unlevelled one and it loses at most 2 points at 0 dB.

    python bench/loudness.py accuracy --normalised --model musicnn-msd --head tuned ...
    python bench/loudness.py accuracy --normalised --model vgg-msd-gru --head balanced ...

Balanced heads for the two models whose balanced accuracy trails their accuracy by more
than issue 14's 5 points (levelled, 0 dB: musicnn-msd 71.9 against 63.2 %, vgg-msd-gru
74.0 against 64.1 %). One candidate each, fixed before its figures were seen:
`--head tuned` gives musicnn-msd vgg-msd's head recipe (C, the logit adjustment tau and T
tuned inside each fold's training partitions for inner balanced accuracy: what `genreq
train --arch musicnn-msd --tune-head` fits); `--head balanced` trains the GRU with each
genre weighing the same in its loss (train.SequenceRecipe.balanced), nothing else
changed. Their rule, written down with them: a candidate replaces its model's shipped head
if, levelled and at 0 dB, its balanced accuracy is above the shipped head's and its
accuracy is at most 2 points below (bench/results/loudness-<model>-normalised-<head>.json).
"""

from __future__ import annotations

import argparse
import json
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
import finetune as ft  # noqa: E402

from genreq import audio, checkpoint, dataset, metrics, models, train  # noqa: E402
from genreq import features as F  # noqa: E402
from genreq.predict import Classifier  # noqa: E402

RESULTS = REPO / "bench" / "results"
GAINS = (-24, -18, -12, -6, 0, 6, 12)  # dB
MODEL = "vgg-msd-fast"  # the default; `--model vgg-msd` sweeps the accurate model
GRU = "vgg-msd-gru"
REFERENCE_DBFS = models.LEVEL_DBFS
LEVELLED = replace(models.ARCHITECTURES["vgg-msd"].default_features(), level_dbfs=REFERENCE_DBFS)


def embed(args) -> None:
    torch.set_num_threads(args.threads)
    tracks, _genres = dataset.scan(args.data)
    clf = Classifier.load(args.model)
    # The default levels its input itself (Classifier.chunks_of_excerpts); the sweep of
    # the default as it was sets no level.
    clf.features = LEVELLED if args.normalised else replace(LEVELLED, level_dbfs=None)
    out = {"names": np.array([str(t.path.relative_to(t.path.parents[1])) for t in tracks])}
    with torch.inference_mode():
        # The training clips as the head is fitted on them; vgg's unlevelled grid comes
        # from bench/finetune.py's block-4 cache.
        if args.normalised or args.model == "musicnn-msd":
            spec, embs, owner = clf.features, [], []
            for i, t in enumerate(tracks):
                (whole,) = F.levelled([audio.load_audio(t.path, spec.sample_rate)], spec)
                chunks = torch.from_numpy(F.chunks(F.extract(whole, spec), spec, None))
                embs.append(clf.model._tagger_embed(chunks).numpy())
                owner.append(np.full(len(embs[-1]), i))
            out["grid/embedding"], out["grid/track"] = np.concatenate(embs), np.concatenate(owner)
            ft.log("grid embedded")
        for gain in GAINS:
            embs, owner = [], []
            for i, t in enumerate(tracks):
                windows = clf.excerpt_windows(audio.duration_s(t.path))
                excerpts = audio.load_windows(t.path, windows, clf.features.sample_rate)
                scaled = [np.clip(e * np.float32(10 ** (gain / 20)), -1, 1) for e in excerpts]
                chunks = torch.from_numpy(clf.chunks_of_excerpts(scaled))  # levelled there
                embs.append(clf.model._tagger_embed(chunks).numpy())
                owner.append(np.full(len(embs[-1]), i))
            out[f"{gain}/embedding"], out[f"{gain}/track"] = (np.concatenate(embs),
                                                              np.concatenate(owner))
            ft.log(f"{gain:+d} dB embedded")
    np.savez(args.cache / cache_name(args), **out)


def stem(args, model: str | None = None) -> str:
    """loudness[-MODEL][-normalised]: the name of a sweep's cache files, and with the
    head candidate (-HEAD, results only) of its result files."""
    model = model or args.model
    model = "" if model == MODEL else f"-{model}"
    return f"loudness{model}{'-normalised' if args.normalised else ''}"


def result_stem(args) -> str:
    head = getattr(args, "head", "shipped")
    return stem(args) + ("" if head == "shipped" else f"-{head}")


HEADS = {"musicnn-msd": ("shipped", "tuned"), GRU: ("shipped", "balanced")}


def cache_name(args) -> str:
    # The GRU reads vgg-msd's ears on vgg-msd's windows: its embeddings are those.
    return f"{stem(args, 'vgg-msd' if args.model == GRU else None)}.npz"


def accuracy(args) -> None:
    if args.head not in HEADS.get(args.model, ("shipped",)):
        raise SystemExit(f"--head {args.head}: not a candidate for {args.model}")
    tracks, maps, y, genres, dropped = ft.load(args.cache, args.groups)
    n_classes = len(genres)
    z = np.load(args.cache / cache_name(args))
    cached = [dataset.LabelledTrack(Path(n), Path(n).parts[0]) for n in z["names"]]
    _, kept, _, _ = cv.grouped_tracks(None, args.groups, cached)
    if "grid/embedding" in z.files:
        x, owner = z["grid/embedding"].astype(np.float64), z["grid/track"]
        grid = [x[owner == i] for i in kept]
    else:
        spec = cv.UNLEVELLED
        tagger = models.build("vgg-msd", n_classes, spec).tagger.eval()
        grid = ft.frozen_embeddings(tagger, maps)
    k = Classifier.load(args.model).max_chunks
    record = {"benchmark": "loudness", "model": args.model, "head": args.head,
              "chunks_per_track": k,
              "gains_db": list(GAINS),
              "input": (f"each track normalised to {REFERENCE_DBFS:g} dBFS RMS (at most "
                        f"+{F.MAX_LEVEL_GAIN_DB:g} dB), after the gain" if args.normalised
                        else "as decoded, after the gain"),
              "protocol": cv.protocol_record(args.groups_name or args.groups,
                                             dataset.group_folds(tracks), dropped),
              "by_gain": {}}
    if args.model == "musicnn-msd":  # must reproduce bench/results/heads/'s grid figure
        control, _ = fixed_head_crossval(grid, grid, y, tracks, n_classes, k)
        record["grid_reading_accuracy"] = round(float((control.argmax(1) == y).mean()), 4)
    grus = None
    if args.model == GRU:
        # "shipped" is the recipe the sweep was first run with, before balanced shipped.
        recipe = replace(train.GRU_RECIPE, balanced=args.head == "balanced")
        record["recipe"] = train.recipe_dict(recipe)
        grus = gru_fits(grid, y, tracks, n_classes, recipe)
    fixed = args.model == "musicnn-msd" and args.head == "shipped"
    base = None
    for gain in GAINS:
        x, owner = z[f"{gain}/embedding"].astype(np.float64), z[f"{gain}/track"]
        score_x = [x[owner == i] for i in kept]
        if args.model == GRU:
            probs = gru_probs(grus, score_x, tracks, n_classes, k)
        else:
            crossval = fixed_head_crossval if fixed else fd.grid_head_crossval
            probs, _folds = crossval(grid, score_x, y, tracks, n_classes, k)
        pred = probs.argmax(1)
        if gain == 0:
            base = pred
        s = metrics.summarise(y, pred, genres, probs)
        shares = np.bincount(pred, minlength=n_classes) / len(pred)
        record["by_gain"][str(gain)] = {
            "n": s["n"], "accuracy": s["accuracy"], "ci95": s["ci95"],
            "balanced_accuracy": s["balanced_accuracy"], "ece": s["ece"],
            "predicted_share": {g: round(float(v), 4) for g, v in zip(genres, shares,
                                                                      strict=True)},
            "_pred": pred,
        }
    for gain, r in record["by_gain"].items():
        r["same_top_as_0db"] = round(float((r.pop("_pred") == base).mean()), 4)
        print(f"{int(gain):+3d} dB: {100 * r['accuracy']:.1f} % ({100 * r['ci95'][0]:.0f}-"
              f"{100 * r['ci95'][1]:.0f}), balanced {100 * r['balanced_accuracy']:.1f} %, "
              f"same top genre as at 0 dB {100 * r['same_top_as_0db']:.0f} %, classical "
              f"{100 * r['predicted_share']['classical']:.0f} % of predictions", file=sys.stderr)
    text = json.dumps(record, indent=1)
    print(text)
    if args.save:
        (RESULTS / f"{result_stem(args)}.json").write_text(text + "\n")


def fixed_head_crossval(grid_x, score_x, y, tracks, n_classes, k):
    """Out-of-fold probabilities of genreq's untuned head recipe (train.HEAD_*: what
    `genreq train --arch musicnn-msd` fits) fitted on each fold's training clips' grid
    chunks and read on `k` chunks of `score_x`."""
    groups = np.array([t.group for t in tracks])
    probs = np.zeros((len(y), n_classes))
    for group, test in dataset.group_folds(tracks):
        test, fit = np.array(test), np.flatnonzero(groups != group)
        head = train.fit_track_head([grid_x[i] for i in fit], y[fit], n_classes, train.HEAD_C,
                                    train.HEAD_BALANCED, (train.HEAD_TAU,))[train.HEAD_TAU]
        probs[test] = head.with_temperature(train.HEAD_TEMPERATURE).track_probs(
            [score_x[i] for i in test], k)
    return probs, None


def gru_fits(grid_x, y, tracks, n_classes, recipe=train.GRU_RECIPE) -> dict:
    """Each fold's transfer CRNN, trained on its training clips' grid sequences."""
    groups = np.array([t.group for t in tracks])
    fits = {}
    for index, (group, _test) in enumerate(dataset.group_folds(tracks)):
        fit = np.flatnonzero(groups != group)
        fits[group] = train.fit_gru_head(GRU, [grid_x[i] for i in fit], y[fit], n_classes,
                                         recipe, seed=index, progress=False).model
    return fits


def gru_probs(fits: dict, score_x, tracks, n_classes, k) -> np.ndarray:
    probs = np.zeros((len(score_x), n_classes))
    for group, test in dataset.group_folds(tracks):
        probs[test] = train.sequence_probs(fits[group], [score_x[i] for i in test], k)
    return probs


def ship(args) -> None:
    import json as json_

    z = np.load(args.cache / "loudness-normalised.npz")
    cached = [dataset.LabelledTrack(Path(n), Path(n).parts[0]) for n in z["names"]]
    tracks, kept, genres, dropped = cv.grouped_tracks(None, args.groups, cached)
    y = np.array([genres.index(t.genre) for t in tracks])
    groups = np.array([t.group for t in tracks])
    x, owner = z["grid/embedding"].astype(np.float64), z["grid/track"]
    grid = [x[owner == i] for i in kept]
    tuned = train.tune_head(grid, y, groups, len(genres))
    head = train.fit_track_head(grid, y, len(genres), tuned.param, train.HEAD_BALANCED,
                                (tuned.setting,))[tuned.setting]
    head = head.with_temperature(tuned.temperature)
    model = models.build(MODEL, len(genres)).eval()
    assert model.default_features().level_dbfs == REFERENCE_DBFS
    with torch.no_grad():
        model.embedding_mean.copy_(torch.from_numpy(head.mean))
        model.embedding_std.copy_(torch.from_numpy(head.std))
        model.head.weight.copy_(torch.from_numpy(head.weight))
        model.head.bias.copy_(torch.from_numpy(head.bias))
    k = model.max_chunks
    train_acc = float((head.track_probs(grid, k).argmax(1) == y).mean())
    result = "bench/results/loudness-normalised.json"
    at_0db = json_.loads((REPO / result).read_text())["by_gain"]["0"]
    base_path = REPO / "genreq" / "weights" / "vgg-msd.pt"
    metrics_ = {
        "split": "none (all data trained)", "groups": args.groups_name or args.groups,
        "dropped": dropped, "n_train": len(y), "n_val": 0,
        "parameters": models.count_parameters(model),
        "macs_per_chunk": fd.macs_per_chunk(model), "chunks_per_track": k,
        "train_accuracy": round(train_acc, 4),
        "crossval": {"result": result, "protocol": "artist-disjoint 3-fold", "reading": "0 dB",
                     **{key: at_0db[key] for key in ("n", "accuracy", "ci95",
                                                     "balanced_accuracy", "ece")}},
    }
    recipe = {
        "head": "vgg-msd's head recipe (the standardised mean of every 3-s chunk of a clip, "
        "class-balanced logistic regression, logit adjustment), fitted on clips levelled "
        f"to {REFERENCE_DBFS:g} dBFS RMS; read on the mean of the probabilities of {k} 3-s "
        f"chunks, centred on {k} equal parts of the track's middle 90 %, the excerpts "
        "levelled together",
        "data": "../shared/data/gtzan, labels.csv:artist_split without the excluded clips",
        "c": tuned.param, "balanced": train.HEAD_BALANCED,
        "logit_adjustment_tau": tuned.setting, "temperature": tuned.temperature,
        "level_dbfs": REFERENCE_DBFS,
        "base": "vgg-msd", "base_version": checkpoint.file_digest(base_path),
        "base_tagger_sha256": train.tagger_digest(model),
        "command": "python bench/finetune.py embed --data ../shared/data/gtzan --cache CACHE "
        "&& python bench/loudness.py embed --normalised --data ../shared/data/gtzan --cache "
        "CACHE && python bench/loudness.py ship --groups ../shared/data/gtzan/labels.csv:"
        "artist_split --groups-name labels.csv:artist_split --cache CACHE",
    }
    out = REPO / "genreq" / "weights" / f"{MODEL}.pt"
    checkpoint.save(out, model, MODEL, genres, model.default_features(), metrics_, recipe)
    ft.log(f"wrote {out}: C {tuned.param:g}, tau {tuned.setting:g}, T {tuned.temperature:g}, "
           f"train accuracy {train_acc:.3f}, CV {at_0db['accuracy']:.3f} (n={at_0db['n']})")


def cite(args) -> None:
    """Record the levelled sweep's 0 dB figures in genreq/weights/MODEL.pt as its
    `crossval`, which its card and tests repeat; weights and recipe stay as they are.
    For the accurate model, whose head `genreq train --tune-head` fits on levelled clips
    with the recipe the sweep cross-validated."""
    args.normalised = True
    result = RESULTS / f"{result_stem(args)}.json"
    at_0db = json.loads(result.read_text())["by_gain"]["0"]
    path = REPO / "genreq" / "weights" / f"{args.model}.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt["features"].get("level_dbfs") != REFERENCE_DBFS:
        raise SystemExit(f"{path.name}: not a head fitted on levelled clips")
    ckpt["metrics"]["crossval"] = {
        "result": result.relative_to(REPO).as_posix(), "protocol": "artist-disjoint 3-fold",
        "reading": "0 dB", **{k: at_0db[k] for k in ("n", "accuracy", "ci95",
                                                     "balanced_accuracy", "ece")}}
    torch.save(ckpt, path)
    print(json.dumps(ckpt["metrics"]["crossval"]))


def speed(args) -> None:
    """ms of Classifier.classify_file per clip, levelled (as shipped) and not, alternating
    clip by clip in this process, one torch thread: what levelling costs."""
    import statistics
    import time

    torch.set_num_threads(1)
    tracks, _ = dataset.scan(args.data)
    levelled = Classifier.load(MODEL)
    plain = Classifier.load(MODEL)
    plain.features = replace(plain.features, level_dbfs=None)
    for clf in (levelled, plain):
        clf.classify_file(tracks[0].path)  # first-call costs are not per-clip costs
    ms = {"levelled": [], "unlevelled": []}
    for t in tracks[: args.clips]:
        for name, clf in (("levelled", levelled), ("unlevelled", plain)):
            started = time.perf_counter()
            clf.classify_file(t.path)
            ms[name].append(1000 * (time.perf_counter() - started))
    out = {k: round(statistics.median(v), 2) for k, v in ms.items()}
    out["levelled_over_unlevelled"] = round(out["levelled"] / out["unlevelled"], 3)
    out["clips"] = len(ms["levelled"])
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("embed")
    e.add_argument("--data", type=Path, required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--groups", required=True)
    a.add_argument("--groups-name")
    a.add_argument("--save", action="store_true")
    a.add_argument("--head", choices=("shipped", "tuned", "balanced"), default="shipped",
                   help="a balanced head candidate (see above) instead of the shipped recipe")
    sp = sub.add_parser("speed")
    sp.add_argument("--data", type=Path, required=True)
    sp.add_argument("--clips", type=int, default=60)
    s = sub.add_parser("ship")
    s.add_argument("--groups", required=True)
    s.add_argument("--groups-name")
    c = sub.add_parser("cite")
    for p in (e, a):
        p.add_argument("--normalised", action="store_true")
    c.add_argument("--head", choices=("shipped", "tuned", "balanced"), default="shipped")
    for p in (e, a, c):
        p.add_argument("--model", choices=(MODEL, "vgg-msd", "musicnn-msd", GRU), default=MODEL)
    for p in (e, a, s):
        p.add_argument("--cache", type=Path, required=True)
        p.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.command == "speed":
        speed(args)
        return
    {"embed": embed, "accuracy": accuracy, "ship": ship, "cite": cite}[args.command](args)


if __name__ == "__main__":
    main()
