"""genreq's one evaluation protocol: artist-disjoint three-fold cross-validation.

The groups come from a labels file's column (`--groups labels.csv:artist_split`, the
fault-filtered split of Kereliuk et al. 2015 for GTZAN): each group (train, valid, test)
is tested once by a model fitted on the other two, clips in group `excluded` are
dropped, and every figure is pooled over the out-of-fold predictions of all remaining
clips (n = 238 on ../shared/data/gtzan), with a Wilson 95 % interval, balanced accuracy,
per-genre recall with n, and the expected calibration error (10 bins). Anything tuned
(C of a head, the epoch of early stopping) is tuned inside the two training groups.

    python bench/crossval.py embed --data ../shared/data/gtzan --cache CACHE
    python bench/crossval.py heads --groups LABELS:artist_split --cache CACHE
    python bench/crossval.py teachers --groups LABELS:artist_split --cache CACHE
    python bench/crossval.py compare --groups ... --cache CACHE bench/results/heads/track_*.json
    python bench/crossval.py cite genreq/weights/vgg-msd.pt bench/results/heads/<candidate>.json
    python bench/crossval.py teacher --data ... --groups ... --cache CACHE        # soft targets
    python bench/crossval.py run --archs crnn --data ... --groups ... --cache CACHE \\
        --teacher CACHE/teacher-vgg-msd.npz --set distill=0.5 --epochs 80 --tag _distilled

`embed` runs every chunk of every clip once through both frozen taggers (embedding and
50 tag logits). `heads` fits and scores every pretrained-head candidate on those
(bench/results/heads/<candidate>.json); `teachers` what that grid leaves out (heads on
single chunks, logit adjustment, mixup, MLPs, late fusion with the GRU; same folder) and
`compare` pairs those against the shipped head (`cite` puts a result's figures into a checkpoint
that `genreq train` fitted with its recipe); `run` trains the architectures trained from
scratch (bench/results/<arch><tag>.json). `--cache` also stores decoded features
(log-dB quantised to uint8) so a run can happen where the audio is not.

Every result file has the same schema (RESULT_SCHEMA, "genreq-crossval/2"), also written by
bench/transfer_gru.py:

    schema, name, model, [arch, tag, recipe, candidate, parameters, macs_per_chunk, ...]
    protocol          {name, groups, test_groups, dropped, description}
    n                 clips pooled (238 on ../shared/data/gtzan)
    accuracy, ci95, ci_method ("wilson"), balanced_accuracy, ece     pooled figures
    per_genre         {genre: {recall, n, precision}}
    fold_accuracy     one per test group, in `folds` order; mean_accuracy, std_accuracy
    folds             [{test_group, n, correct, accuracy, ...what was tuned there}]
    pooled            metrics.summarise of the pooled predictions: the figures above with
                      per-genre f1/support, confusion, reliability bins (10), ece_bins
    all_chunks        (heads, GRU) the same folds scored on every chunk of a clip
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

# Run from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genreq import dataset, metrics, models, train
from genreq import features as F

RESULT_SCHEMA = "genreq-crossval/2"
PROTOCOL = (
    "artist-disjoint {k}-fold: each group of {groups} tested once by a model fitted on the "
    "other groups (tuning inside those only), group 'excluded' dropped, pooled over all "
    "out-of-fold predictions"
)
DB_FLOOR = -100.0  # uint8 cache: DB_FLOOR + step × byte
DB_STEPS = {"mel": 0.5, "stft": 1.0}  # dB; the STFT cache must stay small enough to travel
INNER_VAL_FRACTION = 0.15  # the paper's validation share, for recipes that stop early
# The grids are genreq.train's, which `genreq train --tune-head` searches too: inverse L2
# strengths from 0.01 for the heads (a track-mean head's best C lies there), all of them
# for the teachers; the temperatures, likewise tried inside the training groups.
C_GRID = tuple(c for c in train.C_GRID if c >= 0.01)
T_GRID = train.T_GRID
# The taggers' input as every result of these benchmarks was computed: the decoded audio,
# not levelled. vgg-msd levels its input since bench/loudness.py; its default spec would
# silently change what a rerun computes.
UNLEVELLED = replace(models.ARCHITECTURES["vgg-msd"].default_features(), level_dbfs=None)
TAGGERS = ("vgg-msd", "musicnn-msd")
RESULTS = Path(__file__).resolve().parent / "results"


# --- data and the protocol ----------------------------------------------------------------


def grouped_tracks(
    data: Path | None, groups: str, cached: list[dataset.LabelledTrack] | None = None
):
    """(tracks with groups, kept indices into the scanned/cached order, genres, dropped)."""
    if cached is None:
        scanned, genres = dataset.scan(data)
    else:
        scanned, genres = cached, sorted({t.genre for t in cached})
    spec = dataset.read_groups(groups)
    kept, dropped = [], {"excluded": 0}
    tracks = []
    for i, t in enumerate(scanned):
        group = spec.of(t.path)
        if group is None:
            raise SystemExit(f"{groups}: no row for {t.path}")
        if group == dataset.EXCLUDED_GROUP:
            dropped["excluded"] += 1
            continue
        kept.append(i)
        tracks.append(replace(t, group_name=group))
    return tracks, kept, genres, dropped


def protocol_record(groups: str, folds: list[tuple[str, list[int]]], dropped: dict) -> dict:
    return {
        "name": f"artist-disjoint {len(folds)}-fold",
        "groups": groups,
        "test_groups": [g for g, _ in folds],
        "dropped": dropped,
        "description": PROTOCOL.format(k=len(folds), groups=groups),
    }


def result_record(
    name: str,
    model: dict,
    protocol: dict,
    labels: np.ndarray,
    probs: np.ndarray,
    folds: list[dict],
    genres: list[str],
    extra: dict | None = None,
) -> dict:
    """One candidate's result in the shared schema: pooled figures of the out-of-fold
    probabilities `probs` (n, genres), and each fold's accuracy."""
    pred = probs.argmax(1)
    pooled = metrics.summarise(labels, pred, genres, probs)
    fold_acc = [f["accuracy"] for f in folds]
    return {
        "schema": RESULT_SCHEMA,
        "name": name,
        **model,
        "protocol": protocol,
        "n": pooled["n"],
        "accuracy": pooled["accuracy"],
        "ci95": pooled["ci95"],
        "ci_method": pooled["ci_method"],
        "balanced_accuracy": pooled["balanced_accuracy"],
        "ece": pooled["ece"],
        "per_genre": {
            g: {"recall": s["recall"], "n": s["support"], "precision": s["precision"]}
            for g, s in pooled["per_genre"].items()
        },
        "fold_accuracy": fold_acc,
        "mean_accuracy": round(statistics.mean(fold_acc), 4),
        "std_accuracy": round(statistics.stdev(fold_acc), 4) if len(fold_acc) > 1 else 0.0,
        "folds": folds,
        "pooled": pooled,
        **(extra or {}),
    }


def all_chunks_extra(y: np.ndarray, probs: np.ndarray, genres) -> dict:
    """result_record's `extra` for the same folds scored on every chunk of a clip."""
    summary = metrics.summarise(y, probs.argmax(1), genres, probs)
    return {
        "all_chunks": {k: summary[k] for k in ("accuracy", "ci95", "balanced_accuracy", "ece", "n")}
    }


def fold_record(group: str, test_idx, labels: np.ndarray, probs: np.ndarray, **extra) -> dict:
    pred = probs[test_idx].argmax(1)
    correct = int((pred == labels[test_idx]).sum())
    return {
        "test_group": group,
        "n": len(test_idx),
        "correct": correct,
        "accuracy": round(correct / len(test_idx), 4),
        **extra,
    }


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    low, high = record["ci95"]
    print(
        f"{record['name']}: {100 * record['accuracy']:.1f} % ({100 * low:.0f}-{100 * high:.0f}), "
        f"balanced {100 * record['balanced_accuracy']:.1f} %, ECE {record['ece']:.3f}, "
        f"n={record['n']}, folds {record['fold_accuracy']}",
        file=sys.stderr,
        flush=True,
    )


# --- embeddings of the frozen taggers -------------------------------------------------------


def embed(args) -> None:
    """CACHE/taggers.npz: for both taggers every chunk's raw embedding and tag logits, as
    genreq's training path computes them (train.chunk_embeddings), all chunks in order."""
    torch.set_num_threads(args.threads)
    tracks, genres = dataset.scan(args.data)
    spec = UNLEVELLED
    feats = dataset.load_features(tracks, spec)
    if any(f is None for f in feats):
        raise SystemExit("some clips could not be decoded")
    out = {
        "names": np.array([str(t.path.relative_to(t.path.parents[1])) for t in tracks]),
        "genres": np.array(genres),
    }
    for arch in TAGGERS:
        tagger = models.build(arch, len(genres), spec).tagger.eval()
        embs, tags, track = [], [], []
        with torch.inference_mode():
            for i, feat in enumerate(feats):
                x = torch.from_numpy(F.chunks(feat, spec, max_chunks=None))
                emb = tagger.embed(x[:, 0].transpose(1, 2).contiguous())
                embs.append(emb.numpy())
                tags.append(tagger.out(emb).numpy())
                track.append(np.full(len(emb), i))
        out[f"{arch}/embedding"], out[f"{arch}/tag_logits"] = (
            np.concatenate(embs),
            np.concatenate(tags),
        )
        out["track"] = np.concatenate(track)
        print(f"embedded {len(tracks)} clips with {arch}", file=sys.stderr, flush=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(args.cache / "taggers.npz", **out)


def load_taggers(cache: Path) -> tuple[list[dataset.LabelledTrack], dict]:
    z = np.load(cache / "taggers.npz")
    tracks = [dataset.LabelledTrack(Path(n), Path(n).parts[0]) for n in z["names"]]
    return tracks, {k: z[k] for k in z.files}


# --- heads on the frozen taggers ------------------------------------------------------------


@dataclass(frozen=True)
class HeadCandidate:
    """What a genre head reads and how it is fitted."""

    taggers: tuple[str, ...]  # whose outputs are concatenated
    inputs: str  # embedding | tags | both (tags: the 50 sigmoid tag probabilities)
    balanced: bool  # genres weighted equally in the loss
    c: float | None  # inverse L2 strength; None: chosen from C_GRID inside the training groups
    # Logits divided by a temperature chosen (T_GRID, lowest log loss) on the same inner
    # predictions as C: a linear head stays a linear head (weights and bias / T).
    calibrated: bool = False

    @property
    def name(self) -> str:
        c = "c-tuned" if self.c is None else f"c{self.c:g}"
        t = "_t-tuned" if self.calibrated else ""
        weights = "balanced" if self.balanced else "unweighted"
        return f"{'+'.join(self.taggers)}_{self.inputs}_{weights}_{c}{t}"

    def describe(self) -> dict:
        return {
            "taggers": list(self.taggers),
            "inputs": self.inputs,
            "balanced": self.balanced,
            "c": self.c
            if self.c is not None
            else f"tuned over {list(C_GRID)} inside the training groups",
            "temperature": f"tuned over {T_GRID[0]}-{T_GRID[-1]} inside the training groups"
            if self.calibrated
            else 1.0,
        }


def chunk_inputs(z: dict, candidate: HeadCandidate) -> np.ndarray:
    """(all chunks, dim): the per-chunk input of a head of this candidate."""
    parts = []
    for arch in candidate.taggers:
        if candidate.inputs in ("embedding", "both"):
            parts.append(z[f"{arch}/embedding"])
        if candidate.inputs in ("tags", "both"):
            parts.append(1.0 / (1.0 + np.exp(-z[f"{arch}/tag_logits"])))
    return np.concatenate(parts, axis=1).astype(np.float64)


Head = train.LinearHead
log_loss = train.log_loss


def scaled(head: Head, temperature: float) -> Head:
    return head.with_temperature(temperature)


def fit_head(
    chunk_x: list[np.ndarray], y: np.ndarray, n_classes: int, c: float, balanced: bool
) -> Head:
    """train.fit_head's fit on precomputed inputs (train.fit_track_head, no logit
    adjustment): standardised track means, logistic regression by train.fit_logistic."""
    return train.fit_track_head(chunk_x, y, n_classes, c, balanced, (0.0,))[0.0]


def choose_c(
    chunk_x, y, groups: np.ndarray, n_classes: int, balanced: bool, c_grid=C_GRID
) -> tuple[float, float, dict]:
    """C of `c_grid` with the best pooled accuracy (lowest log loss among ties) when each
    training group is scored by a head fitted on the others; and the temperature of
    T_GRID with the lowest log loss of those inner predictions at that C."""
    scores, inner = {}, {}
    for c in c_grid:
        heads = {}
        for g in np.unique(groups):
            fit = np.flatnonzero(groups != g)
            heads[g] = fit_head([chunk_x[i] for i in fit], y[fit], n_classes, c, balanced)

        def inner_probs(t: float, heads=heads) -> np.ndarray:
            probs = np.zeros((len(y), n_classes))
            for g, head in heads.items():
                test = np.flatnonzero(groups == g)
                probs[test] = scaled(head, t).track_probs([chunk_x[i] for i in test], F.MAX_CHUNKS)
            return probs

        probs = inner_probs(1.0)
        scores[c] = (float((probs.argmax(1) == y).mean()), log_loss(probs, y))
        inner[c] = inner_probs
    best = max(c_grid, key=lambda c: (scores[c][0], -scores[c][1]))
    temperature = min(T_GRID, key=lambda t: log_loss(inner[best](t), y))
    record = {
        f"{c:g}": {"accuracy": round(a, 4), "log_loss": round(l_, 4)}
        for c, (a, l_) in scores.items()
    }
    return best, float(temperature), record


def head_crossval(
    candidate: HeadCandidate, chunk_x, y, tracks, n_classes: int, memo: dict | None = None
):
    """Out-of-fold probabilities as shipped (MAX_CHUNKS chunks) and on all chunks, and
    the fold records. `memo` keeps the inner tuning of a fold for the candidate with and
    without temperature (the same fits)."""
    memo = {} if memo is None else memo
    probs = {"shipped": np.zeros((len(y), n_classes)), "all_chunks": np.zeros((len(y), n_classes))}
    groups = np.array([t.group for t in tracks])
    folds = []
    for group, test in dataset.group_folds(tracks):
        test = np.array(test)
        fit = np.flatnonzero(groups != group)
        fit_x = [chunk_x[i] for i in fit]
        tuned, temperature = {}, 1.0
        c = candidate.c
        if c is None or candidate.calibrated:
            grid = C_GRID if c is None else (c,)
            key = (replace(candidate, calibrated=False), group)
            if key not in memo:
                memo[key] = choose_c(
                    fit_x, y[fit], groups[fit], n_classes, candidate.balanced, grid
                )
            c, temperature, tuned = memo[key]
            if not candidate.calibrated:
                temperature = 1.0
        head = scaled(fit_head(fit_x, y[fit], n_classes, c, candidate.balanced), temperature)
        for how, max_chunks in (("shipped", F.MAX_CHUNKS), ("all_chunks", None)):
            probs[how][test] = head.track_probs([chunk_x[i] for i in test], max_chunks)
        folds.append(
            fold_record(
                group,
                test,
                y,
                probs["shipped"],
                c=c,
                temperature=temperature,
                **({"c_scores": tuned} if tuned else {}),
            )
        )
    return probs, folds


def candidates() -> list[HeadCandidate]:
    tagger_sets = [("vgg-msd",), ("musicnn-msd",), ("vgg-msd", "musicnn-msd")]
    return [
        HeadCandidate(t, i, b, c, cal)
        for t, i, b, c, cal in itertools.product(
            tagger_sets, ("embedding", "tags", "both"), (False, True), (1.0, None), (False, True)
        )
    ]


def heads(args) -> None:
    torch.set_num_threads(args.threads)
    cached, z = load_taggers(args.cache)
    tracks, kept, genres, dropped = grouped_tracks(None, args.groups, cached)
    y = np.array([genres.index(t.genre) for t in tracks])
    folds = dataset.group_folds(tracks)
    protocol = protocol_record(args.groups_name or args.groups, folds, dropped)
    chunk_track = z["track"]
    wanted = [c for c in candidates() if not args.only or c.name in args.only]
    memo: dict = {}
    for cand in wanted:
        x = chunk_inputs(z, cand)
        chunk_x = [x[chunk_track == i] for i in kept]
        probs, fold_recs = head_crossval(cand, chunk_x, y, tracks, len(genres), memo)
        record = result_record(
            cand.name,
            {
                "model": f"head on frozen {'+'.join(cand.taggers)} ({cand.inputs})",
                "candidate": cand.describe(),
                "scored_on": f"mean of the probabilities of {F.MAX_CHUNKS} chunks spread over "
                "the clip, "
                "as genreq classifies",
            },
            protocol,
            y,
            probs["shipped"],
            fold_recs,
            genres,
            all_chunks_extra(y, probs["all_chunks"], genres),
        )
        write(args.out / f"{cand.name}.json", record)


def teacher(args) -> None:
    """Soft targets of a head candidate for distillation, never from a head that saw the
    clip: for outer fold k (testing group k), each training clip's probabilities come
    from a head fitted on the other training group(s); the held-out group gets NaN. The
    last row: every clip's out-of-fold probability of the outer protocol itself, for a
    student trained on all clips."""
    cached, z = load_taggers(args.cache)
    tracks, kept, genres, _ = grouped_tracks(None, args.groups, cached)
    y = np.array([genres.index(t.genre) for t in tracks])
    cand = next(c for c in candidates() if c.name == args.candidate)
    x = chunk_inputs(z, cand)
    chunk_x = [x[z["track"] == i] for i in kept]
    groups = np.array([t.group for t in tracks])
    folds = dataset.group_folds(tracks)
    out = np.full((len(folds) + 1, len(tracks), len(genres)), np.nan)
    c = cand.c if cand.c is not None else 1.0
    for k, (group, test) in enumerate(folds):
        for inner in {t for t in groups if t != group}:
            score = np.flatnonzero(groups == inner)
            fit = np.flatnonzero((groups != inner) & (groups != group))
            head = fit_head([chunk_x[i] for i in fit], y[fit], len(genres), c, cand.balanced)
            out[k][score] = head.track_probs([chunk_x[i] for i in score], None)
        head = fit_head(
            [chunk_x[i] for i in np.flatnonzero(groups != group)],
            y[groups != group],
            len(genres),
            c,
            cand.balanced,
        )
        out[-1][test] = head.track_probs([chunk_x[i] for i in test], None)
    args.out_npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out_npz,
        probs=out,
        genres=np.array(genres),
        names=np.array([str(t.path) for t in tracks]),
        groups=np.array([g for g, _ in folds]),
        meta=json.dumps(
            {
                "teacher": cand.name,
                "c": c,
                "groups": args.groups,
                "outer_accuracy": float((out[-1].argmax(1) == y).mean()),
            }
        ),
    )
    print(
        f"wrote {args.out_npz}: outer accuracy of the teacher "
        f"{float((out[-1].argmax(1) == y).mean()):.3f} (n={len(y)})",
        file=sys.stderr,
    )


# --- teacher candidates beyond the linear track-mean heads ---------------------------------
#
# `teachers` cross-validates, by the same protocol and into bench/results/heads/, what the
# grid of `heads` leaves out: heads fitted on individual chunks instead of the track mean,
# logit adjustment with its strength tuned inside the training groups, same-genre mixup
# of chunk embeddings, small MLP heads, and late fusion (averaged probabilities) of
# separately fitted heads and the GRU. Every fitted thing is scored as genreq classifies
# (the mean of the chunk probabilities over F.MAX_CHUNKS chunks) and on all chunks.

# Logit adjustment strengths (Menon et al. 2021): bias - tau * log(training prior).
# Chunk-level heads see each track as many samples of 1/chunks weight; their best C lies
# lower than a track-mean head's, so the grid reaches further down (train.C_GRID whole).
TEACHER_C_GRID = train.C_GRID
TAU_GRID = train.TAU_GRID
MIXUP_ALPHA = 0.4  # Beta(alpha, alpha) mixing weight between two chunks of one genre
MLP_HIDDEN = 128
MLP_DROPOUT = 0.5
MLP_WD_GRID = (1e-3, 1e-1)  # AdamW weight decay, tuned inside the training groups
MLP_EPOCH_GRID = (25, 50, 100, 200)  # snapshots; the epoch count is tuned likewise
MLP_BATCH = 128
MLP_LR = 1e-3
GRU_TAGGER = "vgg-msd"


@dataclass(frozen=True)
class Teacher:
    """A teacher candidate: a head of `kind` on `taggers`' per-chunk `inputs`, or the
    probability average of `members` (each a Teacher name or "gru")."""

    name: str
    kind: str = "linear"  # linear | mlp | fusion | gru
    taggers: tuple[str, ...] = ("vgg-msd",)
    inputs: str = "embedding"  # embedding | tags | both, as HeadCandidate
    level: str = "chunk"  # chunk: every chunk a sample; track: the track's mean chunk
    balanced: bool = True
    mixup: int = 0  # synthetic same-genre chunks per real chunk
    adjust: bool = False  # logit adjustment, tau and C tuned for inner balanced accuracy
    c: float | None = None  # None: tuned over C_GRID
    members: tuple[str, ...] = ()

    def describe(self) -> dict:
        if self.kind == "fusion":
            return {"kind": "fusion", "members": list(self.members),
                    "how": "mean of the members' out-of-fold probabilities, equal weights, "
                    "nothing tuned"}  # fmt: skip
        if self.kind == "gru":
            return {"kind": "gru", "tagger": GRU_TAGGER, "recipe": asdict(train.GRU_RECIPE)}
        out = {
            "kind": self.kind,
            "taggers": list(self.taggers),
            "inputs": self.inputs,
            "level": self.level,
            "balanced": self.balanced,
            "mixup": f"{self.mixup} same-genre Beta({MIXUP_ALPHA}) mixes per chunk"
            if self.mixup
            else None,
        }
        if self.kind == "linear":
            out["c"] = self.c if self.c is not None else f"tuned over {list(TEACHER_C_GRID)}"
            out["logit_adjustment"] = (
                f"tau over {list(TAU_GRID)} with C, for inner balanced accuracy"
                if self.adjust
                else None
            )
        else:
            out.update(hidden=MLP_HIDDEN, dropout=MLP_DROPOUT, lr=MLP_LR, batch=MLP_BATCH,
                       weight_decay=f"tuned over {list(MLP_WD_GRID)}",
                       epochs=f"tuned over {list(MLP_EPOCH_GRID)}")  # fmt: skip
        out["temperature"] = f"tuned over {T_GRID[0]}-{T_GRID[-1]} for inner log loss"
        return out


def teacher_candidates() -> list[Teacher]:
    out = []
    for tagger in TAGGERS:
        for bal in (True, False):
            w = "balanced" if bal else "unweighted"
            out.append(Teacher(f"chunk_{tagger}_embedding_{w}", taggers=(tagger,), balanced=bal))
            out.append(
                Teacher(
                    f"chunk_{tagger}_embedding_{w}_la", taggers=(tagger,), balanced=bal, adjust=True
                )  # fmt: skip
            )
        out.append(Teacher(f"track_{tagger}_embedding_unweighted_la", taggers=(tagger,),
                           level="track", balanced=False, adjust=True))  # fmt: skip
        out.append(Teacher(f"track_{tagger}_embedding_balanced_la", taggers=(tagger,),
                           level="track", adjust=True))  # fmt: skip
        out.append(Teacher(f"chunk_{tagger}_embedding_balanced_mixup", taggers=(tagger,),
                           mixup=1))  # fmt: skip
        out.append(Teacher(f"mlp_{tagger}_embedding_balanced", kind="mlp", taggers=(tagger,)))
        out.append(Teacher(f"mlp_{tagger}_embedding_balanced_mixup", kind="mlp",
                           taggers=(tagger,), mixup=1))  # fmt: skip
    out.append(Teacher("chunk_vgg-msd_both_balanced", inputs="both"))
    out.append(Teacher("chunk_vgg-msd_both_balanced_la", inputs="both", adjust=True))
    # Late fusion of the shipped head recipe (train.HEAD_*: track mean, balanced, C = 1)
    # on each tagger, and the GRU: fixed before any fusion result was seen.
    for tagger in TAGGERS:
        out.append(Teacher(f"track_{tagger}_embedding_balanced_c1", level="track",
                           taggers=(tagger,), c=train.HEAD_C))  # fmt: skip
    out.append(Teacher("gru_vgg-msd", kind="gru"))
    shipped = [f"track_{t}_embedding_balanced_c1" for t in TAGGERS]
    out += [
        Teacher("fusion_vgg+musicnn", kind="fusion", members=tuple(shipped)),
        Teacher("fusion_vgg+gru", kind="fusion", members=(shipped[0], "gru_vgg-msd")),
        Teacher("fusion_vgg+musicnn+gru", kind="fusion", members=(*shipped, "gru_vgg-msd")),
        Teacher("fusion_chunk_vgg+musicnn", kind="fusion",
                members=tuple(f"chunk_{t}_embedding_balanced" for t in TAGGERS)),
        Teacher("fusion_chunk_vgg+musicnn+gru", kind="fusion",
                members=(*(f"chunk_{t}_embedding_balanced" for t in TAGGERS), "gru_vgg-msd")),
        # Added after the first round showed logit adjustment helping each tagger alone.
        Teacher("fusion_la_vgg+musicnn", kind="fusion",
                members=tuple(f"track_{t}_embedding_balanced_la" for t in TAGGERS)),
        Teacher("fusion_la_vgg+musicnn+gru", kind="fusion",
                members=(*(f"track_{t}_embedding_balanced_la" for t in TAGGERS), "gru_vgg-msd")),
    ]  # fmt: skip
    return out


def track_weights(y: np.ndarray, n_classes: int, balanced: bool) -> np.ndarray:
    return train.balanced_weights(y, n_classes) if balanced else np.ones(len(y))


def same_genre_mixes(
    chunk_x: list[np.ndarray], y: np.ndarray, per_chunk: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per track, `per_chunk` × its chunk count synthetic chunks: each a Beta(MIXUP_ALPHA)
    mix of one of its chunks and a random chunk of another track of the same genre (a
    track alone in its genre mixes with itself)."""
    flat = np.concatenate(chunk_x)
    lengths = np.array([len(x) for x in chunk_x])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    out = []
    for i, x in enumerate(chunk_x):
        mates = np.flatnonzero(y == y[i])
        others = mates[mates != i] if len(mates) > 1 else mates
        n = per_chunk * len(x)
        a = x[rng.integers(0, len(x), n)]
        partners = rng.choice(others, n)
        b = flat[starts[partners] + (rng.random(n) * lengths[partners]).astype(int)]
        lam = rng.beta(MIXUP_ALPHA, MIXUP_ALPHA, (n, 1))
        out.append(lam * a + (1 - lam) * b)
    return out


def chunk_samples(chunk_x, y, n_classes, balanced, mixup, rng):
    """(chunks, labels, weights): every chunk a sample weighing its track's weight / its
    chunk count, so that a track weighs the same whatever its length (and C means what
    it means for a track-mean head); synthetic mixes share the weight with real chunks."""
    tw = track_weights(y, n_classes, balanced)
    per_track = [x for x in chunk_x]
    if mixup:
        mixes = same_genre_mixes(chunk_x, y, mixup, rng)
        per_track = [np.concatenate([x, m]) for x, m in zip(chunk_x, mixes, strict=True)]
    xs = np.concatenate(per_track)
    ys = np.concatenate([np.full(len(x), y[i]) for i, x in enumerate(per_track)])
    ws = np.concatenate([np.full(len(x), tw[i] / len(x)) for i, x in enumerate(per_track)])
    return xs, ys, ws


def fit_linear(t: Teacher, chunk_x, y, n_classes, c: float, seed: int) -> dict:
    """{tau: Head}: a linear head of `t` at C = c, its bias shifted by each tau of
    TAU_GRID when `t.adjust` (tau 0 alone otherwise)."""
    taus = TAU_GRID if t.adjust else (0.0,)
    if t.level == "track":  # genreq train's head (--tune-head tunes this one)
        return train.fit_track_head(chunk_x, y, n_classes, c, t.balanced, taus)
    rng = np.random.default_rng(seed)
    xs, ys, ws = chunk_samples(chunk_x, y, n_classes, t.balanced, t.mixup, rng)
    return train.fit_linear(xs, ys, n_classes, c, ws, y, taus)


class MLPHead:
    """Standardised chunk -> Linear -> ReLU -> Dropout -> Linear: a head genreq's
    checkpoint format does not hold (it holds a linear one)."""

    def __init__(self, mean, std, net: torch.nn.Module, temperature: float = 1.0):
        self.mean, self.std, self.net, self.temperature = mean, std, net, temperature

    def with_temperature(self, temperature: float) -> MLPHead:
        return MLPHead(self.mean, self.std, self.net, temperature)

    def track_probs(self, chunk_x: list[np.ndarray], max_chunks: int | None) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for x in chunk_x:
                z = (x[F.chunk_indices(len(x), max_chunks)] - self.mean) / self.std
                logits = self.net(torch.from_numpy(z).float()) / self.temperature
                p = torch.softmax(logits, -1).numpy()
                out.append(p.mean(0))
        return np.stack(out)


def fit_mlp(t: Teacher, chunk_x, y, n_classes, wd: float, seed: int) -> dict:
    """{epochs: MLPHead} snapshots of one run with AdamW weight decay `wd`; every batch
    draws chunks with probability proportional to their weight (balanced sampling when
    `t.balanced`), with fresh same-genre mixes each epoch when `t.mixup`."""
    import copy

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs, _, _ = chunk_samples(chunk_x, y, n_classes, t.balanced, 0, rng)
    mu, sd = xs.mean(0), xs.std(0) + 1e-6
    net = torch.nn.Sequential(
        torch.nn.Linear(xs.shape[1], MLP_HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Dropout(MLP_DROPOUT),
        torch.nn.Linear(MLP_HIDDEN, n_classes),
    )
    opt = torch.optim.AdamW(net.parameters(), MLP_LR, weight_decay=wd)
    snaps = {}
    for epoch in range(1, max(MLP_EPOCH_GRID) + 1):
        ex, ey, ew = chunk_samples(chunk_x, y, n_classes, t.balanced, t.mixup, rng)
        ex = torch.from_numpy((ex - mu) / sd).float()
        ey = torch.from_numpy(ey.astype(np.int64))
        n_real = len(xs) * (1 + t.mixup)
        order = rng.choice(len(ey), n_real, p=ew / ew.sum())
        net.train()
        for start in range(0, n_real, MLP_BATCH):
            idx = torch.from_numpy(order[start : start + MLP_BATCH])
            loss = torch.nn.functional.cross_entropy(net(ex[idx]), ey[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch in MLP_EPOCH_GRID:
            snaps[epoch] = MLPHead(mu, sd, copy.deepcopy(net).eval())
    return snaps


def fit_teacher(t: Teacher, chunk_x, y, n_classes, param, seed: int) -> dict:
    if t.kind == "linear":
        return fit_linear(t, chunk_x, y, n_classes, param, seed)
    return fit_mlp(t, chunk_x, y, n_classes, param, seed)


def with_temperature(head, temperature: float):
    return head.with_temperature(temperature)


def tune_teacher(t: Teacher, chunk_x, y, groups, n_classes, seed: int):
    """(param, setting, temperature, record): the fit parameter (C, or weight decay) and
    the post-hoc setting (tau, or epochs) chosen on inner predictions by train.tune_inner
    (balanced accuracy for logit adjustment, else accuracy), then the temperature. For a
    track-level linear teacher with logit adjustment this is train.tune_head, what
    `genreq train --tune-head` runs."""
    grid = MLP_WD_GRID if t.kind == "mlp" else TEACHER_C_GRID if t.c is None else (t.c,)
    tuned = train.tune_inner(
        lambda x, labels, param: fit_teacher(t, x, labels, n_classes, param, seed),
        grid,
        chunk_x,
        y,
        groups,
        n_classes,
        by_balanced=t.adjust,
    )
    return tuned.param, tuned.setting, tuned.temperature, tuned.record


def teacher_crossval(t: Teacher, chunk_x, y, tracks, n_classes, seed: int = 0):
    """Out-of-fold probabilities (shipped, all_chunks) and fold records of a head teacher."""
    probs = {"shipped": np.zeros((len(y), n_classes)), "all_chunks": np.zeros((len(y), n_classes))}
    groups = np.array([tr.group for tr in tracks])
    folds = []
    for k, (group, test) in enumerate(dataset.group_folds(tracks)):
        test = np.array(test)
        fit = np.flatnonzero(groups != group)
        fit_x = [chunk_x[i] for i in fit]
        param, setting, temperature, tuned = tune_teacher(
            t, fit_x, y[fit], groups[fit], n_classes, seed + k
        )
        head = with_temperature(
            fit_teacher(t, fit_x, y[fit], n_classes, param, seed + k)[setting], temperature
        )
        for how, max_chunks in (("shipped", F.MAX_CHUNKS), ("all_chunks", None)):
            probs[how][test] = head.track_probs([chunk_x[i] for i in test], max_chunks)
        names = ("weight_decay", "epochs") if t.kind == "mlp" else ("c", "tau")
        folds.append(
            fold_record(
                group,
                test,
                y,
                probs["shipped"],
                **{names[0]: param, names[1]: setting},
                temperature=temperature,
                inner=tuned,
            )
        )
    return probs, folds


def gru_crossval(z, kept, y, tracks, n_classes):
    """The vgg-msd-gru of bench/transfer_gru.py (its recipe, seed = fold index)."""
    emb = z[f"{GRU_TAGGER}/embedding"]
    seqs = [emb[z["track"] == i] for i in kept]
    probs = {"shipped": np.zeros((len(y), n_classes)), "all_chunks": np.zeros((len(y), n_classes))}
    folds = []
    for k, (group, test) in enumerate(dataset.group_folds(tracks)):
        test = np.array(test)
        fit = np.setdiff1d(np.arange(len(y)), test)
        model = train.fit_gru_head(
            f"{GRU_TAGGER}-gru", [seqs[i] for i in fit], y[fit], n_classes, seed=k,
            progress=False,
        ).model  # fmt: skip
        for how, max_chunks in (("shipped", F.MAX_CHUNKS), ("all_chunks", None)):
            probs[how][test] = train.sequence_probs(model, [seqs[i] for i in test], max_chunks)
        folds.append(fold_record(group, test, y, probs["shipped"]))
    return probs, folds


def teachers(args) -> None:
    """Every Teacher of teacher_candidates (or --only), into --out/<name>.json; members of
    a fusion are cross-validated first (and written too)."""
    torch.set_num_threads(args.threads)
    cached, z = load_taggers(args.cache)
    tracks, kept, genres, dropped = grouped_tracks(None, args.groups, cached)
    y = np.array([genres.index(t.genre) for t in tracks])
    folds = dataset.group_folds(tracks)
    protocol = protocol_record(args.groups_name or args.groups, folds, dropped)
    every = {t.name: t for t in teacher_candidates()}
    wanted = [t for t in every.values() if not args.only or t.name in args.only]
    done: dict[str, tuple[dict, list]] = {}

    def oof(t: Teacher):
        if t.name in done:
            return done[t.name]
        started = time.process_time()
        if t.kind == "fusion":
            parts = [oof(every[m]) for m in t.members]
            probs = {
                how: np.mean([p[how] for p, _ in parts], axis=0)
                for how in ("shipped", "all_chunks")
            }
            fold_recs = [fold_record(g, np.array(test), y, probs["shipped"]) for g, test in folds]
        elif t.kind == "gru":
            probs, fold_recs = gru_crossval(z, kept, y, tracks, len(genres))
        else:
            cand = HeadCandidate(t.taggers, t.inputs, t.balanced, 1.0)
            x = chunk_inputs(z, cand)
            chunk_x = [x[z["track"] == i] for i in kept]
            probs, fold_recs = teacher_crossval(t, chunk_x, y, tracks, len(genres), args.seed)
        record = result_record(
            t.name,
            {
                "model": f"{t.kind} teacher: {t.name}",
                "candidate": t.describe(),
                "scored_on": f"mean of the probabilities of {F.MAX_CHUNKS} chunks spread over "
                "the clip, as genreq classifies",
                "cpu_seconds": round(time.process_time() - started, 1),
                # Each clip's predicted genre index, clips in dataset.scan's order (by
                # path), comma-separated: for paired tests between candidates.
                "oof_pred": ",".join(str(k) for k in probs["shipped"].argmax(1)),
            },
            protocol,
            y,
            probs["shipped"],
            fold_recs,
            genres,
            all_chunks_extra(y, probs["all_chunks"], genres),
        )
        write(args.out / f"{t.name}.json", record)
        done[t.name] = (probs, fold_recs)
        return done[t.name]

    for t in wanted:
        oof(t)


def settings(args) -> None:
    """What a head teacher's tuning picks when its training data are all the clips (the
    groups as inner folds): the C (or weight decay), tau (or epochs) and temperature a
    shipped head of that recipe would be fitted with. JSON to stdout."""
    cached, z = load_taggers(args.cache)
    tracks, kept, genres, _ = grouped_tracks(None, args.groups, cached)
    y = np.array([genres.index(t.genre) for t in tracks])
    groups = np.array([t.group for t in tracks])
    every = {t.name: t for t in teacher_candidates()}
    out = {}
    for name in args.only:
        t = every[name]
        x = chunk_inputs(z, HeadCandidate(t.taggers, t.inputs, t.balanced, 1.0))
        chunk_x = [x[z["track"] == i] for i in kept]
        param, setting, temperature, _ = tune_teacher(t, chunk_x, y, groups, len(genres), args.seed)
        names = ("weight_decay", "epochs") if t.kind == "mlp" else ("c", "tau")
        out[name] = {names[0]: param, names[1]: setting, "temperature": temperature, "n": len(y)}
    print(json.dumps(out, indent=1))


def cite(args) -> None:
    """Record a result's pooled figures in a trained checkpoint's metrics as `crossval`
    (result file, protocol, n, accuracy, ci95, balanced accuracy, ECE), which its model
    card and tests repeat; the rest of the checkpoint, weights included, stays as it is.
    For a head `genreq train` fitted with the recipe that result cross-validated."""
    record = json.loads(args.result.read_text())
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    ckpt["metrics"]["crossval"] = {
        "result": args.result.resolve().relative_to(RESULTS.parents[1]).as_posix(),
        "protocol": record["protocol"]["name"],
        **{k: record[k] for k in ("n", "accuracy", "ci95", "balanced_accuracy", "ece")},
    }
    torch.save(ckpt, args.checkpoint)
    print(json.dumps(ckpt["metrics"]["crossval"]))


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p: of the clips two candidates disagree on right/wrong,
    how unlikely a split this uneven is if each side were equally likely."""
    n, k = gained + lost, min(gained, lost)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def balanced(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([(pred[y == k] == k).mean() for k in np.unique(y)]))


def compare(args) -> None:
    """Paired comparison of result files that carry `oof_pred` (teachers) against the
    class-weighted C = 1 head (vgg-msd_embedding_balanced_c1, recomputed here; vgg-msd's
    head until it shipped track_vgg-msd_embedding_balanced_la): clips gained and
    lost, exact McNemar p, and the balanced-accuracy difference with a bootstrap 95 %
    interval over clips. Tab-separated rows to stdout."""
    cached, z = load_taggers(args.cache)
    tracks, kept, genres, _ = grouped_tracks(None, args.groups, cached)
    y = np.array([genres.index(t.genre) for t in tracks])
    ref = HeadCandidate(("vgg-msd",), "embedding", True, train.HEAD_C)
    x = chunk_inputs(z, ref)
    probs, _ = head_crossval(ref, [x[z["track"] == i] for i in kept], y, tracks, len(genres))
    ref_pred = probs["shipped"].argmax(1)
    rng = np.random.default_rng(0)
    boots = [rng.integers(0, len(y), len(y)) for _ in range(args.bootstrap)]
    print("candidate\taccuracy\tbalanced\tgained\tlost\tmcnemar_p\tbalanced_delta\tci95")
    for path in args.files:
        r = json.loads(path.read_text())
        pred = np.array([int(k) for k in r["oof_pred"].split(",")])
        right, ref_right = pred == y, ref_pred == y
        gained, lost = int((right & ~ref_right).sum()), int((~right & ref_right).sum())
        delta = balanced(y, pred) - balanced(y, ref_pred)
        deltas = sorted(balanced(y[b], pred[b]) - balanced(y[b], ref_pred[b]) for b in boots)
        low, high = deltas[int(0.025 * len(deltas))], deltas[int(0.975 * len(deltas)) - 1]
        print(
            f"{r['name']}\t{r['accuracy']:.4f}\t{r['balanced_accuracy']:.4f}\t{gained}\t{lost}"
            f"\t{mcnemar_exact(gained, lost):.3f}\t{delta:+.4f}\t{low:+.4f}..{high:+.4f}"
        )


# --- architectures trained from scratch -----------------------------------------------------


def save_cache(path: Path, tracks, genres, spec, feats) -> None:
    step = DB_STEPS[spec.kind]
    arrays = {
        f"f{i}": np.clip(np.round((f - DB_FLOOR) / step), 0, 255).astype(np.uint8)
        for i, f in enumerate(feats)
    }
    meta = {
        "db_step": step,
        "paths": [str(t.path.relative_to(t.path.parents[1])) for t in tracks],
        "genres_of_tracks": [t.genre for t in tracks],
        "genres": genres,
        "spec": spec.to_dict(),
    }
    np.savez_compressed(path, meta=json.dumps(meta), **arrays)


def load_cache(path: Path):
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    tracks = [
        dataset.LabelledTrack(Path(p), g)
        for p, g in zip(meta["paths"], meta["genres_of_tracks"], strict=True)
    ]
    feats = [z[f"f{i}"].astype(np.float32) * meta["db_step"] + DB_FLOOR for i in range(len(tracks))]
    return tracks, meta["genres"], F.FeatureSpec(**meta["spec"]), feats


def features_for(arch: str, data: Path | None, cache_dir: Path | None):
    spec = models.ARCHITECTURES[arch].default_features()
    cache = (
        cache_dir / f"{spec.kind}-{spec.n_fft}.npz" if cache_dir and spec.kind != "raw" else None
    )
    if cache and cache.exists():
        tracks, genres, cached_spec, feats = load_cache(cache)
        assert cached_spec == spec, f"{cache} holds {cached_spec}, {arch} needs {spec}"
        return tracks, genres, spec, feats
    tracks, genres = dataset.scan(data)
    feats = dataset.load_features(tracks, spec)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_cache(cache, tracks, genres, spec, feats)
        # What a later run reads back (quantised), so a first run and a rerun train alike.
        return load_cache(cache)
    return tracks, genres, spec, feats


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` recipe overrides, values parsed as JSON where they parse (3e-3, true)."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def fit_and_score(
    arch: str,
    feats: list[np.ndarray],
    y: np.ndarray,
    n_classes: int,
    spec: F.FeatureSpec,
    recipe: train.Recipe,
    fit_idx,
    val_idx,
    test_idx,
    seed: int,
    device: str,
    progress: bool,
    soft: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Train `arch` from scratch on fit_idx (early stopping on val_idx, if any) and the
    probabilities of test_idx as genreq classifies them; plus what a fold record keeps."""
    started, cpu = time.perf_counter(), time.process_time()
    result = train.fit(
        arch,
        [feats[i] for i in fit_idx],
        y[fit_idx],
        n_classes,
        spec,
        recipe,
        val_feats=[feats[i] for i in val_idx] or None,
        val_labels=y[val_idx] if len(val_idx) else None,
        seed=seed,
        device=device,
        progress=progress,
        soft_targets=soft,
    )
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    probs = train.track_probs(
        result.model.to(device), [feats[i] for i in test_idx], spec, torch.device(device)
    )
    return probs, {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "n_fit": len(fit_idx),
        "n_val": len(val_idx),
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
    }


def inner_split(tracks, train_idx: list[int], recipe: train.Recipe, seed: int):
    """(fit, validation) indices inside a fold's training groups: whole groups held out
    for early stopping when the recipe stops early, else every training clip fitted."""
    if not recipe.patience:
        return train_idx, []
    inner_tr, inner_val = dataset.group_split(
        [tracks[i] for i in train_idx], INNER_VAL_FRACTION, seed
    )
    return [train_idx[i] for i in inner_tr], [train_idx[i] for i in inner_val]


def model_fields(arch: str, genres, spec, recipe, device: str, seed: int) -> dict:
    model = models.build(arch, len(genres), spec)
    return {
        "model": arch,
        "arch": arch,
        "recipe": train.recipe_dict(recipe),
        "scored_on": f"mean of the probabilities of {F.MAX_CHUNKS} chunks spread over the clip",
        "parameters": models.count_parameters(model),
        "macs_per_chunk": models.count_macs(model),
        "features": spec.to_dict(),
        "device": device,
        "seed": seed,
    }


def artist_crossval(arch, tracks, feats, y, genres, spec, recipe, args, device, soft_all=None):
    """Out-of-fold probabilities of the artist-disjoint folds and their records."""
    probs = np.zeros((len(y), len(genres)))
    fold_recs = []
    for k, (group, test) in enumerate(dataset.group_folds(tracks)):
        train_idx = [i for i, t in enumerate(tracks) if t.group != group]
        fit_idx, val_idx = inner_split(tracks, train_idx, recipe, args.seed + k)
        soft = None
        if soft_all is not None:
            soft = soft_all[k][fit_idx]
            assert not np.isnan(soft).any(), "the teacher has no soft target for a training clip"
        probs[test], fitted = fit_and_score(
            arch, feats, y, len(genres), spec, recipe, fit_idx, val_idx, test,
            args.seed + k, device, args.progress, soft,
        )  # fmt: skip
        fold_recs.append(fold_record(group, test, y, probs, **fitted))
        print(
            f"{arch} fold {group}: {fold_recs[-1]['accuracy']:.3f} (n={len(test)}), "
            f"{fitted['train_seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return probs, fold_recs


def run(args) -> None:
    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    for arch in args.archs:
        scanned, genres, spec, all_feats = features_for(arch, args.data, args.cache)
        tracks, kept, _, dropped = grouped_tracks(None, args.groups, scanned)
        feats = [all_feats[i] for i in kept]
        y = np.array([genres.index(t.genre) for t in tracks])
        folds = dataset.group_folds(tracks)
        recipe = replace(
            train.with_epochs(train.RECIPES[arch], args.epochs), **parse_overrides(args.set)
        )
        soft_all = None
        if args.teacher:
            zt = np.load(args.teacher)
            assert list(zt["genres"]) == genres, "the teacher's genres differ"
            assert list(zt["groups"]) == [g for g, _ in folds], "the teacher's folds differ"
            assert [Path(n).parts[-2:] for n in zt["names"]] == [
                t.path.parts[-2:] for t in tracks
            ], "the teacher's clips differ"
            soft_all = zt["probs"]
        probs, fold_recs = artist_crossval(
            arch, tracks, feats, y, genres, spec, recipe, args, device, soft_all
        )
        record = result_record(
            f"{arch}{args.tag}",
            {
                **model_fields(arch, genres, spec, recipe, device, args.seed),
                "tag": args.tag,
                "teacher": json.loads(str(np.load(args.teacher)["meta"])) if args.teacher else None,
                "train_seconds_per_fold": round(
                    statistics.mean(f["train_seconds"] for f in fold_recs), 1
                ),
            },
            protocol_record(args.groups_name or args.groups, folds, dropped),
            y,
            probs,
            fold_recs,
            genres,
        )
        write(args.out / f"{arch}{args.tag}.json", record)


# --- the seed paper's three systems under its protocol and under ours -----------------------

# Cheng et al., Table II: accuracy on a random 75/10/15 split of GTZAN's clips.
SEED_SYSTEMS = {"raw": ("Raw", 0.15), "stft-cnn": ("STFT", 0.66), "crnn-paper": ("CRNN", 0.43)}
# train, validation (early stopping), test. The paper's text says "75 % training, 10 %
# test, and 15 % verification"; the larger share is the test here, for a tighter figure.
PAPER_SPLIT = (0.75, 0.10, 0.15)
PAPER_PROTOCOL = (
    "the seed paper's: {splits} random splits of all {n} clips (no artist grouping, nothing "
    "excluded) into 75 % train, 10 % validation (early stopping) and 15 % test; pooled over "
    "the test clips of every split (a clip may be tested in more than one split)"
)
# Epoch caps that fit the three systems under both protocols into about an hour of one
# CPU core (measured per step before sizing: bench/results/seed_*.json keep each
# training's CPU seconds); the epoch with the best validation accuracy is kept.
SEED_EPOCHS = {"raw": 2, "stft-cnn": 8, "crnn-paper": 4}
SEED_PATIENCE = 3


def paper_split(n: int, seed: int) -> tuple[list[int], list[int], list[int]]:
    """(train, validation, test) indices of a random split of n clips by PAPER_SPLIT,
    clip by clip as the paper split them; the same seed gives the same split."""
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(PAPER_SPLIT[2] * n), round(PAPER_SPLIT[1] * n)
    test, val, fit = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return sorted(fit.tolist()), sorted(val.tolist()), sorted(test.tolist())


def paper_protocol(arch, feats, y, genres, spec, recipe, args, device):
    """Labels and probabilities of the test clips of every split, pooled, and the
    per-split records."""
    labels, probs, split_recs = [], [], []
    for k in range(args.splits):
        fit_idx, val_idx, test = paper_split(len(y), args.seed + k)
        p, fitted = fit_and_score(
            arch, feats, y, len(genres), spec, recipe, fit_idx, val_idx, test,
            args.seed + k, device, args.progress,
        )  # fmt: skip
        split_recs.append(
            fold_record(f"split {args.seed + k}", list(range(len(test))), y[test], p, **fitted)
        )
        labels.append(y[test])
        probs.append(p)
        print(
            f"{arch} paper split {args.seed + k}: {split_recs[-1]['accuracy']:.3f} "
            f"(n={len(test)}), {fitted['train_seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return np.concatenate(labels), np.concatenate(probs), split_recs


def seed(args) -> None:
    """Each seed system under the paper's protocol and the artist-disjoint one, from the
    same features, with SEED_EPOCHS caps: bench/results/seed_<arch>_<protocol>.json."""
    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    caps = {**SEED_EPOCHS, **{k: int(v) for k, v in parse_overrides(args.epochs).items()}}
    for arch in args.archs:
        started = time.process_time()
        scanned, genres, spec, all_feats = features_for(arch, args.data, args.cache)
        recipe = replace(train.RECIPES[arch], epochs=caps[arch], patience=SEED_PATIENCE)
        paper_row, paper_accuracy = SEED_SYSTEMS[arch]
        for which in args.protocols:
            if which == "paper":
                y = np.array([genres.index(t.genre) for t in scanned])
                labels, probs, recs = paper_protocol(
                    arch, all_feats, y, genres, spec, recipe, args, device
                )
                protocol = {
                    "name": f"paper random {'/'.join(f'{100 * s:.0f}' for s in PAPER_SPLIT)}",
                    "splits": [f["test_group"] for f in recs],
                    "dropped": {},
                    "description": PAPER_PROTOCOL.format(splits=args.splits, n=len(y)),
                }
            else:
                tracks, kept, _, dropped = grouped_tracks(None, args.groups, scanned)
                labels = np.array([genres.index(t.genre) for t in tracks])
                probs, recs = artist_crossval(
                    arch, tracks, [all_feats[i] for i in kept], labels, genres, spec,
                    recipe, args, device,
                )  # fmt: skip
                protocol = protocol_record(
                    args.groups_name or args.groups, dataset.group_folds(tracks), dropped
                )
            acc = [f["accuracy"] for f in recs]
            record = result_record(
                f"seed_{arch}_{which}",
                {
                    **model_fields(arch, genres, spec, recipe, device, args.seed),
                    "seed_system": {
                        "paper_row": paper_row,
                        "paper_accuracy": paper_accuracy,
                        "paper": "Cheng et al., Table II (random 75/10/15 split of GTZAN)",
                        "epoch_cap": caps[arch],
                        "protocol": which,
                    },
                    "min_accuracy": min(acc),
                    "max_accuracy": max(acc),
                    "train_cpu_seconds": round(sum(f["train_cpu_seconds"] for f in recs), 1),
                },
                protocol,
                labels,
                probs,
                recs,
                genres,
            )
            write(args.out / f"seed_{arch}_{which}.json", record)
        print(
            f"{arch}: {time.process_time() - started:.0f} CPU s in all",
            file=sys.stderr,
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, out: Path) -> None:
        p.add_argument(
            "--data",
            type=Path,
            default=None,
            help="folder per genre (not needed with a full --cache)",
        )
        p.add_argument(
            "--groups", required=True, metavar="FILE:COLUMN", help="e.g. labels.csv:artist_split"
        )
        p.add_argument(
            "--groups-name",
            default=None,
            help="how the result files name the groups (default: --groups as given)",
        )
        p.add_argument(
            "--cache", type=Path, required=True, help="folder of feature and embedding caches"
        )
        p.add_argument("--out", type=Path, default=out)
        p.add_argument("--threads", type=int, default=1, help="torch threads")

    p = sub.add_parser("embed", help="cache both taggers' chunk embeddings and tag logits")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("heads", help="cross-validate every pretrained-head candidate")
    common(p, RESULTS / "heads")
    p.add_argument("--only", nargs="*", default=[], help="candidate names")
    p = sub.add_parser("teachers", help="cross-validate teacher candidates beyond `heads`")
    common(p, RESULTS / "heads")
    p.add_argument("--only", nargs="*", default=[], help="candidate names")
    p.add_argument("--seed", type=int, default=0, help="mixup and MLP seed (+ fold index)")
    p = sub.add_parser("settings", help="what a teacher's tuning picks on all the clips")
    common(p, RESULTS / "heads")
    p.add_argument("--only", nargs="+", required=True, help="candidate names")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("cite", help="put a result's figures into a checkpoint's metrics")
    p.add_argument("checkpoint", type=Path, help="e.g. genreq/weights/vgg-msd.pt")
    p.add_argument("result", type=Path, help="bench/results/heads/<candidate>.json")
    p = sub.add_parser("compare", help="paired comparison of teachers against the shipped head")
    common(p, RESULTS / "heads")
    p.add_argument("files", nargs="+", type=Path, help="result files with oof_pred")
    p.add_argument("--bootstrap", type=int, default=2000, help="resamples of the clips")
    p = sub.add_parser("teacher", help="cross-fitted soft targets of a head candidate")
    common(p, RESULTS)
    p.add_argument("--candidate", default="vgg-msd_embedding_unweighted_c1")
    p.add_argument("--out-npz", type=Path, required=True)
    p = sub.add_parser("run", help="cross-validate architectures trained from scratch")
    common(p, RESULTS)
    p.add_argument("--archs", nargs="+", default=list(train.RECIPES), choices=list(train.RECIPES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override every recipe's epoch count")
    p.add_argument("--device", default=None)
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override"
    )
    p.add_argument("--tag", default="", help="suffix of the result file, for recipe variants")
    p.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="distil: soft targets from `teacher` (with --set distill=W)",
    )
    p.add_argument("--progress", action="store_true", help="print every epoch")
    p = sub.add_parser("seed", help="the seed paper's systems under its protocol and ours")
    common(p, RESULTS)
    p.add_argument("--archs", nargs="+", default=list(SEED_SYSTEMS), choices=list(SEED_SYSTEMS))
    p.add_argument(
        "--protocols", nargs="+", default=["paper", "artist"], choices=["paper", "artist"]
    )
    p.add_argument(
        "--splits", type=int, default=3, help="random paper splits (seeds SEED, SEED+1...)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--epochs", action="append", default=[], metavar="ARCH=N", help="override SEED_EPOCHS"
    )
    p.add_argument("--device", default=None)
    p.add_argument("--progress", action="store_true", help="print every epoch")
    args = parser.parse_args()
    commands = {
        "embed": embed,
        "heads": heads,
        "teachers": teachers,
        "compare": compare,
        "settings": settings,
        "cite": cite,
        "teacher": teacher,
        "run": run,
        "seed": seed,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
