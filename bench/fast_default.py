"""vgg-msd on fewer chunks per track: what it hears, what it costs, and the default.

The frozen vgg-msd tagger costs ~0.88 GMAC per 3-s chunk; classified on MAX_CHUNKS (5)
chunks it is the accurate model, on two (SHIPPED_K) it is the default `vgg-msd-fast`.
This script measures, under genreq's one protocol (bench/crossval.py, whose functions it
imports), how much accuracy k = 1, 2, 3 chunks keep, and how fast they run:

    python bench/fast_default.py embed --data ../shared/data/gtzan --cache CACHE
    python bench/fast_default.py accuracy --groups ../shared/data/gtzan/labels.csv:artist_split \\
        --groups-name labels.csv:artist_split --cache CACHE
    python bench/fast_default.py positions --groups ... --groups-name ... --cache CACHE
    python bench/fast_default.py ship --groups ... --groups-name ... --cache CACHE
    python bench/fast_default.py speed --data ../shared/data/gtzan --clips 40

`embed` runs every clip through the path genreq classifies with (Classifier: header
duration → features.excerpt_windows → decode of those windows only → chunks_of_excerpts)
for k = 1, 2, 3 and 5 chunks, and caches each chunk's raw vgg embedding and tag logits
(CACHE/fast-k<k>.npz). The excerpts follow genreq's one rule (features.excerpt_windows:
each at the centre of one of k equal parts of the track's middle 90 %; one chunk is the
middle), fixed before any figure was seen: intros and outros say little, and a GTZAN
clip's position inside its song is unknown, so no position of a 30-s clip stands for one
of a whole track.

`accuracy` scores, in artist-disjoint three-fold CV:
- as shipped: a head fitted on the same k chunks the model reads (inside the training
  groups only), with vgg-msd's recipe (class-weighted, C = 1, no temperature), and the
  same with C and the temperature tuned inside the training groups; and a head fitted on
  every chunk of each training clip as its own sample, scored on the shipped chunk(s);
  and vgg-msd's own head recipe (`genreq train --arch vgg-msd --tune-head`, fitted on
  the mean of every chunk of a training clip) read on the k chunks: `grid-head`, tuned
  as vgg-msd tunes it, and `grid-head_tuned-k<k>`, tuned on the k chunks; each a result
  file in the crossval schema (bench/results/fast/);
- every position a rule could pick: on the cached grid of a clip's chunks
  (bench/crossval.py embed: CACHE/taggers.npz), each of the 10 relative positions
  (k = 1) and every pair and triple of them, a head fitted on those positions, and the
  spread of the figures over the choices; and the position(s) chosen by an inner CV
  inside the training groups, tested on the held-out group (an honest figure for "pick
  the best position"): `positions`, bench/results/fast_default_positions.json.

`pair A B` counts the clips two of those results disagree on (exact McNemar p).
`ship` wrote genreq/weights/vgg-msd-fast.pt until the default levelled its input (now
bench/loudness.py ship does): vgg-msd.pt's own head, read on SHIPPED_K
chunks; its figure is the `grid-head` record at k = SHIPPED_K. The number of chunks was
chosen by speed (the most that keep bench/pipeline.py's steady rate at 15 clips/s per
core or more: the issue's 12, with headroom for busier machines), the head before the
figures at the present excerpt positions were seen.
`speed` times Classifier.classify_file per clip for crnn, vgg-msd and vgg-msd-fast in
one process with one torch thread, the models alternating, and `genreq run --model`
with one and two workers for crnn and vgg-msd-fast back to back on the same library
(bench/pipeline.py's library and its run timing): bench/results/fast_default_speed.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import crossval as cv  # noqa: E402  (bench/ is not a package)

from genreq import audio, checkpoint, dataset, metrics, models, train  # noqa: E402
from genreq.predict import Classifier  # noqa: E402

RESULTS = REPO / "bench" / "results"
KS = (1, 2, 3, 5)  # chunks per track: the candidates, and vgg-msd as shipped
GRID_POSITIONS = 10  # relative positions of a clip's chunk grid (a 30-s clip has 10 chunks)
SHIPPED = "vgg-msd-fast"
SHIPPED_K = models.ARCHITECTURES[SHIPPED].max_chunks
# vgg-msd's head recipe (genreq train --arch vgg-msd): what every "as shipped" row uses.
RECIPE = cv.HeadCandidate(("vgg-msd",), "embedding", True, train.HEAD_C, False)
TUNED = cv.HeadCandidate(("vgg-msd",), "embedding", True, None, True)
LA = cv.Teacher("track_vgg-msd_embedding_balanced_la", level="track", adjust=True)


def macs_per_chunk(model: models.GenreModel) -> int:
    """models.count_macs on the tagger's layers as trained: count_macs runs under no_grad,
    where the tagger takes its fast path (Vgg.fast_embed), whose kernels are no nn.Conv2d
    calls its hooks would see; the arithmetic is the same."""
    tagger = type(model.tagger)
    with mock.patch.object(tagger, "embed", tagger.reference_embed):
        return models.count_macs(model)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- embeddings on the path genreq classifies with --------------------------------------


def shipped_chunks(clf: Classifier, path: Path) -> np.ndarray:
    """(k, 1, mels, frames): the chunks Classifier.classify_file feeds the model."""
    windows = clf.excerpt_windows(audio.duration_s(path))
    excerpts = audio.load_windows(path, windows, clf.features.sample_rate)
    return clf.chunks_of_excerpts(excerpts)


def embed(args) -> None:
    torch.set_num_threads(args.threads)
    tracks, genres = dataset.scan(args.data)
    clf = Classifier.load("vgg-msd")
    clf.features = cv.UNLEVELLED  # these candidates were read unlevelled
    names = np.array([str(t.path.relative_to(t.path.parents[1])) for t in tracks])
    for k in args.ks:
        clf.max_chunks = k
        embs, tags, owner = [], [], []
        started = time.perf_counter()
        with torch.inference_mode():
            for i, t in enumerate(tracks):
                raw = clf.model._tagger_embed(torch.from_numpy(shipped_chunks(clf, t.path)))
                embs.append(raw.numpy())
                tags.append(clf.model.tagger.out(raw).numpy())
                owner.append(np.full(len(raw), i))
        np.savez(
            args.cache / f"fast-k{k}.npz",
            names=names,
            genres=np.array(genres),
            embedding=np.concatenate(embs),
            tag_logits=np.concatenate(tags),
            track=np.concatenate(owner),
        )
        log(f"k={k}: {len(tracks)} clips in {time.perf_counter() - started:.0f} s")


def load_shipped(cache: Path, k: int, groups: str):
    """(tracks with groups, per track its (k, 256) raw embeddings, labels, genres, dropped)."""
    z = np.load(cache / f"fast-k{k}.npz")
    cached = [dataset.LabelledTrack(Path(n), Path(n).parts[0]) for n in z["names"]]
    tracks, kept, genres, dropped = cv.grouped_tracks(None, groups, cached)
    x = z["embedding"].astype(np.float64)
    chunk_x = [x[z["track"] == i] for i in kept]
    y = np.array([genres.index(t.genre) for t in tracks])
    return tracks, chunk_x, y, genres, dropped


def load_grid(cache: Path, groups: str):
    """The same from bench/crossval.py's cache: every chunk of a clip's grid, in order."""
    cached, z = cv.load_taggers(cache)
    tracks, kept, genres, dropped = cv.grouped_tracks(None, groups, cached)
    x = cv.chunk_inputs(z, RECIPE)
    chunk_x = [x[z["track"] == i] for i in kept]
    y = np.array([genres.index(t.genre) for t in tracks])
    return tracks, chunk_x, y, genres, dropped


# --- heads and their figures ------------------------------------------------------------


def other_head_crossval(how: str, fit_x, score_x, y, tracks, n_classes):
    """Out-of-fold probabilities of a head fitted on the chunks of the training clips
    (`fit_x`) and scored on `score_x`: with how="every-chunk" each chunk a sample with its
    clip's label, with "all-chunks-mean" each clip the mean of its chunks."""
    probs = np.zeros((len(y), n_classes))
    groups = np.array([t.group for t in tracks])
    folds = []
    for group, test in dataset.group_folds(tracks):
        test = np.array(test)
        fit = np.flatnonzero(groups != group)
        if how == "every-chunk":
            samples = [row[None] for i in fit for row in fit_x[i]]
            labels = np.concatenate([np.full(len(fit_x[i]), y[i]) for i in fit])
        else:
            samples, labels = [fit_x[i] for i in fit], y[fit]
        head = cv.fit_head(samples, labels, n_classes, RECIPE.c, RECIPE.balanced)
        probs[test] = head.track_probs([score_x[i] for i in test], None)
        folds.append(cv.fold_record(group, test, y, probs, c=RECIPE.c, temperature=1.0))
    return probs, folds


def summary(y: np.ndarray, probs: np.ndarray, genres: list[str]) -> dict:
    s = metrics.summarise(y, probs.argmax(1), genres, probs)
    return {k: s[k] for k in ("n", "accuracy", "ci95", "balanced_accuracy", "ece")}


def shipped_records(args) -> list[dict]:
    out = []
    for k in args.ks:
        tracks, chunk_x, y, genres, dropped = load_shipped(args.cache, k, args.groups)
        protocol = cv.protocol_record(
            args.groups_name or args.groups, dataset.group_folds(tracks), dropped
        )
        where = (
            "the middle 3-s chunk of each clip"
            if k == 1
            else f"{k} 3-s chunks, centred on {k} equal parts of the middle 90 % of each clip"
        )
        runs = [("same-chunks", RECIPE), ("same-chunks_tuned", TUNED)]
        for recipe_name, cand in runs:
            probs, folds = cv.head_crossval(cand, chunk_x, y, tracks, len(genres), {})
            probs = probs["shipped"]  # k <= MAX_CHUNKS: every chunk given
            out.append(
                record(args, k, recipe_name, cand.describe(), where, protocol, y, probs, folds,
                       genres, f"fitted on the mean of the same {k} chunk(s) per clip")
            )
        # vgg-msd's best teacher recipe (bench/crossval.py teachers,
        # track_vgg-msd_embedding_balanced_la) on the same k chunks: logit adjustment, C, tau
        # and a temperature tuned inside the training groups.
        probs, folds = cv.teacher_crossval(LA, chunk_x, y, tracks, len(genres))
        out.append(
            record(args, k, "same-chunks_la", LA.describe(), where, protocol, y,
                   probs["shipped"], folds, genres,
                   f"fitted on the mean of the same {k} chunk(s) per clip")
        )
        if args.grid:
            _, grid_x, grid_y, _, _ = load_grid(args.cache, args.groups)
            assert (grid_y == y).all()
            for how, fitted in (
                ("every-chunk", "fitted on every 3-s chunk of each training clip as its own "
                 "sample (bench/crossval.py's chunk grid)"),
                ("all-chunks-mean", "fitted on the mean of all the 3-s chunks of each training "
                 "clip (bench/crossval.py's chunk grid), as `genreq train --arch vgg-msd` fits"),
            ):
                probs, folds = other_head_crossval(how, grid_x, chunk_x, y, tracks, len(genres))
                out.append(record(args, k, how, RECIPE.describe(), where, protocol, y, probs,
                                  folds, genres, fitted))
            # vgg-msd's own head (`genreq train --arch vgg-msd --tune-head`: the mean of
            # every grid chunk, C, tau and T tuned on the grid's F.MAX_CHUNKS chunks) read
            # on the k chunks of this path: at k = 5, vgg-msd as `genreq classify` runs it;
            # and the same fit tuned on the k chunks this path reads.
            fitted = ("fitted as `genreq train --arch vgg-msd --tune-head` fits: on the mean "
                      "of every 3-s chunk of each training clip (bench/crossval.py's grid)")
            for how, tune_on, tuned in (
                ("grid-head", None, "C, tau and T tuned on the grid's 5 chunks"),
                (f"grid-head_tuned-k{k}", chunk_x, f"C, tau and T tuned on these {k} chunk(s)"),
            ):
                probs, folds = grid_head_crossval(grid_x, chunk_x, y, tracks, len(genres), k,
                                                  tune_on)
                out.append(record(args, k, how, LA.describe(), where, protocol, y, probs, folds,
                                  genres, f"{fitted}; {tuned} of the inner held-out group"))
    return out


def grid_head_crossval(grid_x, score_x, y, tracks, n_classes, k, tune_on=None):
    """Out-of-fold probabilities of train.tune_head's head fitted on the training clips'
    grid chunks (`grid_x`) and read on `k` chunks of `score_x`; its inner predictions
    read the grid's F.MAX_CHUNKS chunks, or `k` of `tune_on` when given."""
    groups = np.array([t.group for t in tracks])
    probs, folds = np.zeros((len(y), n_classes)), []
    for group, test in dataset.group_folds(tracks):
        test, fit = np.array(test), np.flatnonzero(groups != group)
        fit_x = [grid_x[i] for i in fit]
        inner = {} if tune_on is None else {"score_x": [tune_on[i] for i in fit], "max_chunks": k}
        tuned = train.tune_head(fit_x, y[fit], groups[fit], n_classes, **inner)
        head = train.fit_track_head(fit_x, y[fit], n_classes, tuned.param, train.HEAD_BALANCED,
                                    (tuned.setting,))[tuned.setting]
        probs[test] = head.with_temperature(tuned.temperature).track_probs(
            [score_x[i] for i in test], k)
        folds.append(cv.fold_record(group, test, y, probs, c=tuned.param, tau=tuned.setting,
                                    temperature=tuned.temperature, inner=tuned.record))
    return probs, folds


def record(args, k, recipe_name, cand, where, protocol, y, probs, folds, genres, fitted):
    name = f"vgg-msd_k{k}_{recipe_name}"
    rec = cv.result_record(
        name,
        {
            "model": f"head on frozen vgg-msd, {k} chunk(s) per clip ({recipe_name})",
            "arch": SHIPPED if k == SHIPPED_K else "vgg-msd",
            "chunks_per_track": k,
            "candidate": cand,
            "head_fit": fitted,
            "scored_on": f"{where}, decoded and cut as Classifier.classify_file does "
            "(bench/fast_default.py embed)",
            "macs_per_track": k * macs_per_chunk(models.build("vgg-msd", len(genres))),
        },
        protocol,
        y,
        probs,
        folds,
        genres,
        extra={"oof_pred": ",".join(str(k) for k in probs.argmax(1))},  # for `pair`
    )
    cv.write(args.out / f"{name}.json", rec)
    return rec


def grid_choice(chunk_x, choice: tuple[int, ...]) -> list[np.ndarray]:
    """Each clip's chunks at relative grid positions `choice` (of GRID_POSITIONS)."""
    out = []
    for x in chunk_x:
        idx = [round(j * (len(x) - 1) / (GRID_POSITIONS - 1)) for j in choice]
        out.append(x[idx])
    return out


def quick_fit_head(chunk_x, y, n_classes: int, c: float, balanced: bool) -> cv.Head:
    """cv.fit_head's model and objective (train.fit_logistic's) by scipy's L-BFGS-B with
    an analytic gradient to a looser tolerance: about 8x faster, for the thousands of
    fits of the position sweep; `positions` records how far its probabilities are from
    cv.fit_head's."""
    from scipy.optimize import minimize

    means = np.stack([x.mean(0) for x in chunk_x])
    mu, sd = means.mean(0), means.std(0) + 1e-6
    x = (means - mu) / sd
    w = train.balanced_weights(y, n_classes) if balanced else np.ones(len(y))
    onehot = np.eye(n_classes)[y]
    dim = x.shape[1]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weight, bias = theta[: n_classes * dim].reshape(n_classes, dim), theta[n_classes * dim :]
        z = x @ weight.T + bias
        z -= z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        grad = c * w[:, None] * (np.exp(z - lse[:, None]) - onehot)
        loss = 0.5 * (weight**2).sum() + c * (w * (lse - (z * onehot).sum(1))).sum()
        return loss, np.concatenate([(weight + grad.T @ x).ravel(), grad.sum(0)])

    theta = minimize(objective, np.zeros(n_classes * (dim + 1)), jac=True, method="L-BFGS-B",
                     options={"maxiter": 2000, "gtol": 1e-5, "ftol": 1e-10}).x
    return cv.Head(mu, sd, theta[: n_classes * dim].reshape(n_classes, dim),
                   theta[n_classes * dim :])


def fit_score(chunk_x, y, fit, test, n_classes, fit_head=quick_fit_head) -> np.ndarray:
    head = fit_head([chunk_x[i] for i in fit], y[fit], n_classes, RECIPE.c, RECIPE.balanced)
    return head.track_probs([chunk_x[i] for i in test], None)


def positions(args) -> dict:
    """Every position choice of k chunks on the grid: the spread of its CV figures, and
    the choice made inside the training groups."""
    tracks, chunk_x, y, genres, dropped = load_grid(args.cache, args.groups)
    groups = np.array([t.group for t in tracks])
    folds = dataset.group_folds(tracks)
    n_classes = len(genres)
    group, test = folds[0]
    fit, test = np.flatnonzero(groups != group), np.array(test)
    x = grid_choice(chunk_x, (0,))
    quick_vs_exact = float(np.abs(
        fit_score(x, y, fit, test, n_classes) - fit_score(x, y, fit, test, n_classes, cv.fit_head)
    ).max())
    log(f"quick fit against cv.fit_head: largest probability difference {quick_vs_exact:.2g}")
    # Heads that do not depend on the position, fitted once per fold and scored at each
    # choice: on the mean of all a clip's chunks (as `genreq train --arch vgg-msd` fits),
    # and on every chunk as its own sample.
    other_heads = {"all-chunks-mean": {}, "every-chunk": {}}
    for group, _ in folds:
        fit = np.flatnonzero(groups != group)
        other_heads["all-chunks-mean"][group] = cv.fit_head(
            [chunk_x[i] for i in fit], y[fit], n_classes, RECIPE.c, RECIPE.balanced)
        other_heads["every-chunk"][group] = cv.fit_head(
            [row[None] for i in fit for row in chunk_x[i]],
            np.concatenate([np.full(len(chunk_x[i]), y[i]) for i in fit]),
            n_classes, RECIPE.c, RECIPE.balanced)
    out = {}
    for k in [k for k in args.ks if k < GRID_POSITIONS]:
        choices = list(itertools.combinations(range(GRID_POSITIONS), k))
        started = time.perf_counter()
        per_choice, inner_acc = {}, {}
        for choice in choices:
            x = grid_choice(chunk_x, choice)
            probs = np.zeros((len(y), n_classes))
            for group, test in folds:
                fit = np.flatnonzero(groups != group)
                probs[test] = fit_score(x, y, fit, np.array(test), n_classes)
                # Inside the training groups: each scored by a head fitted on the other.
                for inner in {g for g in groups[fit]}:
                    score = np.flatnonzero(groups == inner)
                    inner_fit = np.flatnonzero((groups != inner) & (groups != group))
                    p = fit_score(x, y, inner_fit, score, n_classes)
                    inner_acc.setdefault((group, choice), []).append(
                        (int((p.argmax(1) == y[score]).sum()), len(score))
                    )
            per_choice[choice] = summary(y, probs, genres)
        # Per outer fold the choice with the best pooled inner accuracy, tested once.
        chosen_probs = np.zeros((len(y), n_classes))
        chosen = {}
        for group, test in folds:
            best = max(
                choices,
                key=lambda c, g=group: sum(a for a, _ in inner_acc[(g, c)])
                / sum(n for _, n in inner_acc[(g, c)]),
            )
            chosen[group] = list(best)
            fit = np.flatnonzero(groups != group)
            chosen_probs[test] = fit_score(grid_choice(chunk_x, best), y, fit, np.array(test),
                                           n_classes)
        acc = [s["accuracy"] for s in per_choice.values()]
        bal = [s["balanced_accuracy"] for s in per_choice.values()]
        out[str(k)] = {
            "choices": len(choices),
            "accuracy": spread(acc),
            "balanced_accuracy": spread(bal),
            "chosen_inside_training_groups": {"positions": chosen,
                                              **summary(y, chosen_probs, genres)},
            "per_choice": {"-".join(map(str, c)): s for c, s in per_choice.items()},
            "other_heads": {
                name: scored_at_choices(fitted, chunk_x, choices, y, genres, folds)
                for name, fitted in other_heads.items()
            },
        }
        log(
            f"k={k}: {len(choices)} choices, accuracy mean {100 * statistics.mean(acc):.1f} % "
            f"(sd {100 * statistics.pstdev(acc):.1f}, {100 * min(acc):.1f}-{100 * max(acc):.1f}), "
            f"balanced mean {100 * statistics.mean(bal):.1f} %; chosen inside: "
            f"{100 * out[str(k)]['chosen_inside_training_groups']['accuracy']:.1f} % "
            f"{chosen} ({time.perf_counter() - started:.0f} s)"
        )
    return {
        "schema": "genreq-fast-positions/1",
        "what": "vgg-msd heads (class-weighted, C=1) fitted and scored on k chunks at fixed "
        f"relative positions of each clip's chunk grid ({GRID_POSITIONS} positions: chunk "
        "round(j (n-1) / 9) of a clip's n non-overlapping 3-s chunks), every choice of k "
        "positions; artist-disjoint 3-fold CV pooled over the clips; "
        "'chosen_inside_training_groups': per outer fold the choice with the best inner CV "
        "accuracy on the two training groups, tested on the held-out one",
        "fit": "quick_fit_head: cv.fit_head's objective by scipy L-BFGS-B (gtol 1e-5)",
        "quick_fit_largest_probability_difference": round(quick_vs_exact, 6),
        "protocol": cv.protocol_record(args.groups_name or args.groups, folds, dropped),
        "n": len(y),
        "by_k": out,
    }


def scored_at_choices(heads: dict, chunk_x, choices, y, genres, folds) -> dict:
    """A head per fold (fitted whatever the position) scored at every position choice."""
    figures = []
    for choice in choices:
        x = grid_choice(chunk_x, choice)
        probs = np.zeros((len(y), len(genres)))
        for group, test in folds:
            probs[test] = heads[group].track_probs([x[i] for i in test], None)
        figures.append(summary(y, probs, genres))
    return {
        "accuracy": spread([f["accuracy"] for f in figures]),
        "balanced_accuracy": spread([f["balanced_accuracy"] for f in figures]),
        "per_choice": {"-".join(map(str, c)): f for c, f in zip(choices, figures, strict=True)},
    }


def spread(values: list[float]) -> dict:
    return {
        "mean": round(statistics.mean(values), 4),
        "sd": round(statistics.pstdev(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "median": round(statistics.median(values), 4),
    }


def accuracy(args) -> None:
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    shipped_records(args)


def sweep(args) -> None:
    torch.set_num_threads(1)
    report = positions(args)
    path = RESULTS / "fast_default_positions.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {path}")


def pair(args) -> None:
    """Paired comparison of two result files of the same clips (their `oof_pred`): clips
    the first gets right that the second gets wrong and the reverse, exact McNemar p."""
    a, b = (json.loads(p.read_text()) for p in (args.first, args.second))
    assert a["protocol"] == b["protocol"] and a["n"] == b["n"], "not the same clips"
    z = np.load(args.cache / f"fast-k{a['chunks_per_track']}.npz")
    cached = [dataset.LabelledTrack(Path(n), Path(n).parts[0]) for n in z["names"]]
    tracks, _, genres, _ = cv.grouped_tracks(None, args.groups, cached)
    y = np.array([genres.index(t.genre) for t in tracks])
    right_a, right_b = (np.array([int(k) for k in r["oof_pred"].split(",")]) == y for r in (a, b))
    gained, lost = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    assert abs(right_a.mean() - a["accuracy"]) < 1e-3, "oof_pred is not this file's"
    print(f"{a['name']} against {b['name']}: {gained} right that it got wrong, {lost} wrong "
          f"that it got right, exact McNemar p = {cv.mcnemar_exact(gained, lost):.3g} (n={len(y)})")


# --- the shipped head -------------------------------------------------------------------


def ship(args) -> None:
    """genreq/weights/vgg-msd-fast.pt: vgg-msd.pt's own genre head (its standardisation,
    weights and bias: logit adjustment and temperature folded in), read on SHIPPED_K
    chunks. Its cross-validated figure is the grid-head record: that recipe, refitted
    and tuned inside each fold as `genreq train --arch vgg-msd --tune-head` fits it, read
    on the SHIPPED_K chunks Classifier.classify_file takes. The checkpoint holds the head
    only (the tagger stays in vgg-msd.pt).

    Superseded: the default now levels each track first and has a head fitted on
    levelled clips, which bench/loudness.py ship writes; this head, fitted on clips as
    they are, would not match its features."""
    if models.ARCHITECTURES[SHIPPED].default_features().level_dbfs is not None:
        raise SystemExit(f"{SHIPPED} levels its input now: bench/loudness.py ship writes it")
    tracks, chunk_x, y, genres, dropped = load_shipped(args.cache, SHIPPED_K, args.groups)
    base_path = REPO / "genreq" / "weights" / "vgg-msd.pt"
    base, meta = checkpoint.load(base_path)
    assert meta["genres"] == genres, "vgg-msd.pt's genres differ"
    model = models.build(SHIPPED, len(genres)).eval()
    names = ("embedding_mean", "embedding_std", "head.weight", "head.bias")
    state = base.state_dict()
    model.load_state_dict({**model.state_dict(), **{n: state[n] for n in names}})
    assert train.tagger_digest(model) == train.tagger_digest(base), "not vgg-msd's ears"
    with torch.inference_mode():  # the mean of each clip's chunk probabilities, as classify
        train_probs = np.stack([
            torch.softmax(model.head(model._standardise(torch.from_numpy(x).float())), -1)
            .mean(0).numpy()
            for x in chunk_x
        ])
    result = f"bench/results/fast/vgg-msd_k{SHIPPED_K}_grid-head.json"
    cvrec = json.loads((REPO / result).read_text())
    base_recipe = meta["recipe"]
    metrics_ = {
        "split": "none (all data trained)",
        "groups": args.groups_name or args.groups,
        "dropped": dropped,
        "n_train": len(y),
        "n_val": 0,
        "parameters": models.count_parameters(model),
        "macs_per_chunk": macs_per_chunk(model),
        "chunks_per_track": SHIPPED_K,
        "train_accuracy": round(float((train_probs.argmax(1) == y).mean()), 4),
        "crossval": {
            "result": result,
            "protocol": cvrec["protocol"]["name"],
            **{k: cvrec[k] for k in ("n", "accuracy", "ci95", "balanced_accuracy", "ece")},
        },
    }
    recipe = {
        "head": f"vgg-msd.pt's head ({base_recipe['head']}), read on the mean of the "
        f"probabilities of {SHIPPED_K} 3-s chunks, centred on {SHIPPED_K} equal parts of "
        "the track's middle 90 %",
        "data": base_recipe["data"],
        **{k: base_recipe[k] for k in ("c", "balanced", "logit_adjustment_tau", "temperature")},
        "base": "vgg-msd",
        "base_version": checkpoint.file_digest(base_path),
        "base_tagger_sha256": train.tagger_digest(model),
        "command": "python bench/fast_default.py embed --data ../shared/data/gtzan --cache CACHE "
        f"--ks {SHIPPED_K} && python bench/fast_default.py ship --groups "
        "../shared/data/gtzan/labels.csv:artist_split --groups-name labels.csv:artist_split "
        "--cache CACHE",
    }
    out = REPO / "genreq" / "weights" / f"{SHIPPED}.pt"
    checkpoint.save(out, model, SHIPPED, genres, model.default_features(), metrics_, recipe)
    log(f"wrote {out} ({out.stat().st_size} bytes), train accuracy "
        f"{metrics_['train_accuracy']:.3f}, CV {cvrec['accuracy']:.3f} (n={cvrec['n']})")


# --- speed -------------------------------------------------------------------------------


def speed(args) -> None:
    import pipeline

    torch.set_num_threads(1)
    clips = pipeline.source_clips(args.data)[: args.clips]
    names = args.models
    clfs = {name: Classifier.load(name) for name in names}
    for clf in clfs.values():  # first-call costs are not per-clip costs
        clf.classify_file(clips[0])
    per_clip = {name: [] for name in names}
    stages = {name: {} for name in names}
    ratios = {name: [] for name in names}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for path in clips:
            this = {}
            for name in order:
                times = pipeline_stage_times()
                cpu = time.process_time()
                clfs[name].classify_file(path, on_stage=times)
                this[name] = time.process_time() - cpu
                per_clip[name].append(this[name])
                for stage, s in times.items():
                    stages[name].setdefault(stage, []).append(s)
            for name in names:
                ratios[name].append(this[name] / this["crnn"])
        log(f"round {r}: " + ", ".join(
            f"{n} {1000 * statistics.median(per_clip[n][-len(clips):]):.0f} ms" for n in names))
    inproc = {
        name: {
            "model": clfs[name].model_id,
            "chunks_per_track": clfs[name].max_chunks,
            "cpu_ms_per_clip": spread_ms(per_clip[name]),
            "clips_per_cpu_s": round(1 / statistics.median(per_clip[name]), 2),
            "ratio_to_crnn": spread([round(v, 4) for v in ratios[name]]),
            "stages_ms_median": {
                s: round(1000 * statistics.median(v), 2) for s, v in stages[name].items()
            },
        }
        for name in names
    }
    report = {
        "schema": "genreq-fast-speed/1",
        "what": "Classifier.classify_file per 30-s GTZAN clip (22 kHz mono Ogg), one torch "
        "thread, the models alternating clip by clip (order reversed every round); CPU "
        "seconds of this process; ratio_to_crnn per clip",
        "clips": len(clips),
        "rounds": args.rounds,
        "cores": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "in_process": inproc,
    }
    if args.real:
        report["real_tracks"] = real_tracks(args, clfs)
    if args.e2e:
        report["end_to_end"] = end_to_end(args, pipeline)
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    path = RESULTS / "fast_default_speed.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {path}")


def real_tracks(args, clfs: dict) -> dict:
    """4-minute 44.1 kHz stereo tracks in mp3 (with a cover), m4a/aac, flac and ogg, as
    bench/formats.py --real builds them: CPU ms per track per model, one torch thread,
    the models alternating track by track (order reversed every repeat)."""
    import formats

    library = formats.build_library(args.real_library, args.real, (formats.CLIPS_PER_TRACK,),
                                    formats.REAL_FORMATS)
    names = list(clfs)
    for clf in clfs.values():
        for paths in library.values():
            clf.classify_file(paths[0])
    cpu = {ext: {n: [] for n in names} for ext in library}
    stages = {ext: {n: {} for n in names} for ext in library}
    for rep in range(args.rounds):
        for i in range(args.real):
            for ext, paths in library.items():
                for name in names if rep % 2 == 0 else names[::-1]:
                    times = pipeline_stage_times()
                    started = time.process_time()
                    clfs[name].classify_file(paths[i], on_stage=times)
                    cpu[ext][name].append(time.process_time() - started)
                    for stage, s in times.items():
                        stages[ext][name].setdefault(stage, []).append(s)
        log(f"real tracks, repeat {rep}: " + ", ".join(
            f"{ext} {n} {1000 * statistics.median(cpu[ext][n]):.0f} ms"
            for ext in library for n in names))
    return {
        "tracks_per_format": args.real,
        "minutes": formats.CLIPS_PER_TRACK * 30 / 60,
        "what": "44.1 kHz stereo, bench/formats.py's encodings (mp3 with an embedded cover); "
        "CPU ms per track of Classifier.classify_file, n = tracks x repeats",
        "by_format": {
            ext: {
                name: {
                    "cpu_ms_per_track": spread_ms(cpu[ext][name]),
                    "stages_ms_median": {
                        s: round(1000 * statistics.median(v), 2)
                        for s, v in stages[ext][name].items()
                    },
                }
                for name in names
            }
            for ext in library
        },
    }


def pipeline_stage_times():
    from genreq.predict import StageTimes

    return StageTimes()


def spread_ms(seconds: list[float]) -> dict:
    q = statistics.quantiles(seconds, n=4)
    return {
        "median": round(1000 * statistics.median(seconds), 2),
        "q1": round(1000 * q[0], 2),
        "q3": round(1000 * q[2], 2),
        "min": round(1000 * min(seconds), 2),
        "max": round(1000 * max(seconds), 2),
        "n": len(seconds),
    }


@contextmanager
def with_model(pipeline, name: str):
    """bench/pipeline.py's `genreq run` with `--model NAME` (its runs use the default)."""
    original = pipeline.genreq

    def genreq(args, home, **kwargs):
        if args and args[0] == "run":
            args = [*args, "--model", name]
        return original(args, home, **kwargs)

    pipeline.genreq = genreq
    try:
        yield
    finally:
        pipeline.genreq = original


def end_to_end(args, pipeline) -> dict:
    """`genreq run --model M --workers W` on one library of 30-s clips (pipeline.py's
    clips only), the models alternating run by run, each run on a fresh home."""
    cores = os.cpu_count() or 1
    runs: dict = {}
    with tempfile.TemporaryDirectory(prefix="genreq-fast-") as tmp:
        work = Path(tmp)
        sources = pipeline.source_clips(args.data)
        (work / "library").mkdir()
        lib = pipeline.Library(work / "library")
        for i in range(args.e2e_clips):
            src = sources[i % len(sources)]
            dst = lib.root / f"{i:05d}-{src.name}"
            dst.write_bytes(src.read_bytes())
            lib.clips.append(dst)
        for rep in range(args.e2e_rounds):
            for workers in args.workers:
                order = args.e2e_models if rep % 2 == 0 else args.e2e_models[::-1]
                for name in order:
                    home = work / f"home-{name}-w{workers}-{rep}"
                    with with_model(pipeline, name):
                        run = pipeline.time_genreq_run(lib, workers, home, cores)
                    run["load_average"] = round(os.getloadavg()[0], 2)
                    runs.setdefault(name, {}).setdefault(str(workers), []).append(run)
                    log(f"{name} --workers {workers}: steady "
                        f"{run['clips_per_s_per_core_steady']} clips/s per core, wall "
                        f"{run['clips_per_s']} clips/s")
    out = {"clips": args.e2e_clips, "rounds": args.e2e_rounds, "runs": runs, "summary": {}}
    for name, by_w in runs.items():
        for w, rs in by_w.items():
            out["summary"].setdefault(name, {})[w] = {
                "clips_per_s_per_core_steady": [r["clips_per_s_per_core_steady"] for r in rs],
                "clips_per_s_wall": [r["clips_per_s"] for r in rs],
                "classify_ms_median": [r["classify_ms_median"] for r in rs],
                "worker_rss_mb": max(r["worker_rss_mb"] for r in rs),
            }
    base = args.e2e_models[0]
    for name in args.e2e_models[1:]:
        for w in map(str, args.workers):
            pairs = zip(runs[name][w], runs[base][w], strict=True)
            out["summary"][name][w][f"steady_ratio_to_{base}"] = [
                round(a["clips_per_s_per_core_steady"] / b["clips_per_s_per_core_steady"], 3)
                for a, b in pairs
            ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("embed", help="cache the shipped path's chunk embeddings for each k")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--ks", type=int, nargs="+", default=list(KS))
    p.add_argument("--threads", type=int, default=1)
    for name, helptext in (("accuracy", "CV of each k as shipped"),
                           ("positions", "CV of every position choice on the chunk grid"),
                           ("ship", f"fit and write genreq/weights/{SHIPPED}.pt")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--groups", required=True, metavar="FILE:COLUMN")
        p.add_argument("--groups-name", default=None)
        p.add_argument("--cache", type=Path, required=True)
        p.add_argument("--ks", type=int, nargs="+", default=list(KS))
        p.add_argument("--out", type=Path, default=RESULTS / "fast")
        p.add_argument("--no-grid", dest="grid", action="store_false",
                       help="skip what needs bench/crossval.py's chunk grid (CACHE/taggers.npz)")
    p = sub.add_parser("pair", help="McNemar between two result files of bench/results/fast/")
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    p.add_argument("--groups", required=True, metavar="FILE:COLUMN")
    p.add_argument("--cache", type=Path, required=True)
    p = sub.add_parser("speed", help="per-clip and end-to-end speed against crnn")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "gtzan")
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--models", nargs="+", default=["crnn", SHIPPED, "vgg-msd"])
    p.add_argument("--real", type=int, default=0, metavar="N",
                   help="also N 4-minute 44.1 kHz stereo tracks per format (bench/formats.py)")
    p.add_argument("--real-library", type=Path,
                   default=Path(tempfile.gettempdir()) / "genreq-fast-real",
                   help="where the real-format tracks are built (reused when there)")
    p.add_argument("--e2e", action="store_true", help="also `genreq run` end to end")
    p.add_argument("--e2e-clips", type=int, default=120)
    p.add_argument("--e2e-rounds", type=int, default=2)
    p.add_argument("--e2e-models", nargs="+", default=["crnn", SHIPPED])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    commands = {"embed": embed, "accuracy": accuracy, "positions": sweep, "ship": ship,
                "pair": pair, "speed": speed}
    commands[args.command](args)


if __name__ == "__main__":
    main()
