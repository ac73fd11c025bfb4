"""Training: class-balanced random chunks, augmentation, early stopping on a
validation split of whole groups (genreq.dataset), track-level metrics.

Works on feature matrices already in memory (see dataset.load_features), so cross-
validation decodes the audio once, and on any torch device.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from genreq import features as F
from genreq import metrics, models

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. Stored in the checkpoint."""

    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw
    schedule: str = "constant"  # constant | onecycle
    crops_per_track: int = 4  # random chunks drawn from each training track per epoch
    # Draw tracks with weights 1/genre count, so an over-represented genre (classical
    # in ../shared/data) is not the prior the model learns.
    balance: bool = True
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(α, α) mixing of chunk pairs; 0 = off
    spec_augment: bool = False  # one random frequency and one time mask per chunk
    gain_db: float = 0.0  # random level change of ±gain_db
    patience: int = 0  # stop after this many epochs without validation gain; 0 = never
    # Knowledge distillation: the target is (1 - distill) x the label + distill x a
    # teacher's genre probabilities for the track (fit's soft_targets); 0 = labels only.
    distill: float = 0.0


# The seed paper's recipe (Adam, batch 32, up to 100 epochs, no augmentation) for the
# three reproduced systems; the shipped CRNN gets the improved one.
PAPER = Recipe(epochs=100, patience=25)
IMPROVED = Recipe(
    epochs=120,
    lr=3e-3,
    weight_decay=1e-2,
    optimizer="adamw",
    schedule="onecycle",
    label_smoothing=0.1,
    mixup=0.3,
    spec_augment=True,
    gain_db=6.0,
    patience=0,
)
RECIPES = {"raw": PAPER, "stft-cnn": PAPER, "crnn-paper": PAPER, "crnn": IMPROVED}


@dataclass
class TrainResult:
    model: models.GenreModel
    history: list[dict]
    best_epoch: int
    val_metrics: dict | None


def _crop(feature: np.ndarray, width: int, rng: np.random.Generator) -> np.ndarray:
    feature = F.fit_width(feature, width)
    start = rng.integers(0, feature.shape[1] - width + 1)
    return feature[:, start : start + width]


def _augment(x: np.ndarray, recipe: Recipe, kind: str, rng: np.random.Generator) -> np.ndarray:
    """In-place augmentation of a batch (B, bins, width) in the features' own units."""
    if recipe.gain_db and kind in ("mel", "stft"):
        x += rng.uniform(-recipe.gain_db, recipe.gain_db, size=(len(x), 1, 1)).astype(np.float32)
    if recipe.spec_augment and kind in ("mel", "stft"):
        bins, width = x.shape[1:]
        for chunk in x:
            fill = chunk.mean()
            f = rng.integers(0, bins // 8 + 1)
            f0 = rng.integers(0, bins - f + 1)
            chunk[f0 : f0 + f] = fill
            t = rng.integers(0, width // 8 + 1)
            t0 = rng.integers(0, width - t + 1)
            chunk[:, t0 : t0 + t] = fill
    return x


def track_probs(
    model: models.GenreModel,
    feats: list[np.ndarray],
    spec: F.FeatureSpec,
    device: torch.device,
    max_chunks: int | None = F.MAX_CHUNKS,
) -> np.ndarray:
    """(tracks, genres) probabilities: mean of each track's chunk probabilities."""
    model.eval()
    out = []
    with torch.inference_mode():
        for feat in feats:
            x = torch.from_numpy(F.chunks(feat, spec, max_chunks)).to(device)
            out.append(torch.softmax(model(x), dim=-1).mean(0).cpu().numpy())
    return np.stack(out)


def input_stats(feats: list[np.ndarray]) -> tuple[float, float]:
    sample = np.concatenate([f[:, :: max(1, f.shape[1] // 64)].ravel() for f in feats])
    return float(sample.mean()), float(sample.std() + 1e-6)


class BestEpoch:
    """Keeps the model state of the epoch with the best validation accuracy (lowest
    validation loss among ties), and what that epoch scored."""

    def __init__(self, val_labels: np.ndarray | None, n_classes: int):
        self.val_labels = val_labels
        self.n_classes = n_classes
        self.score = (-1.0, float("inf"))  # accuracy, loss
        self.state: dict | None = None
        self.epoch = 0
        self.metrics = None

    def offer(self, epoch: int, model: nn.Module, probs: np.ndarray) -> dict:
        """Score the epoch's validation probabilities; keep the model's state if best.
        Returns the epoch's validation figures for the history."""
        labels = self.val_labels
        pred = probs.argmax(1)
        acc = float((pred == labels).mean())
        loss = float(-np.log(probs[np.arange(len(labels)), labels] + 1e-9).mean())
        if (acc, -loss) > (self.score[0], -self.score[1]):
            self.score = (acc, loss)
            self.state = copy.deepcopy(model.state_dict())
            self.epoch = epoch
            self.metrics = metrics.summarise(labels, pred, [str(i) for i in range(self.n_classes)])
        return {"val_accuracy": round(acc, 4), "val_loss": round(loss, 4)}

    def restore(self, model: nn.Module, epochs_run: int) -> int:
        """Load the best state into `model` (no validation: the last epoch's stays);
        the epoch it came from."""
        if self.state is None:
            return epochs_run
        model.load_state_dict(self.state)
        return self.epoch


def fit(
    arch: str,
    feats: list[np.ndarray],
    labels: np.ndarray,
    n_classes: int,
    spec: F.FeatureSpec,
    recipe: Recipe,
    val_feats: list[np.ndarray] | None = None,
    val_labels: np.ndarray | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    soft_targets: np.ndarray | None = None,
) -> TrainResult:
    """Train one model from scratch; keep the epoch with the best validation accuracy
    (lowest validation loss among ties), or the last epoch without validation data.

    `soft_targets` (n_tracks, n_classes): a teacher's probabilities per training track,
    mixed into the targets with weight recipe.distill."""
    if recipe.distill and soft_targets is None:
        raise ValueError("recipe.distill needs soft_targets from a teacher")
    teacher = None
    if soft_targets is not None and recipe.distill:
        teacher = torch.from_numpy(np.asarray(soft_targets, dtype=np.float32))
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = models.build(arch, n_classes, spec).to(device)
    if spec.kind != "raw":
        mean, std = input_stats(feats)
        model.input_mean.fill_(mean)
        model.input_std.fill_(std)

    counts = np.bincount(labels, minlength=n_classes).astype(float)
    weights = (1.0 / counts[labels]) if recipe.balance else np.ones(len(labels))
    weights /= weights.sum()
    steps_per_epoch = max(1, len(feats) * recipe.crops_per_track // recipe.batch_size)

    opt_cls = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = None
    if recipe.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch, pct_start=0.2
        )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    history: list[dict] = []
    best = BestEpoch(val_labels, n_classes)
    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        model.train()
        total = 0.0
        for _ in range(steps_per_epoch):
            idx = rng.choice(len(feats), size=recipe.batch_size, p=weights)
            x = np.stack([_crop(feats[i], spec.chunk_width, rng) for i in idx])
            x = _augment(x, recipe, spec.kind, rng)
            xb = torch.from_numpy(x[:, None]).to(device)
            yb = torch.nn.functional.one_hot(torch.from_numpy(labels[idx]), n_classes).float()
            if teacher is not None:
                yb = (1 - recipe.distill) * yb + recipe.distill * teacher[torch.from_numpy(idx)]
            yb = yb.to(device)
            if recipe.mixup:
                lam = float(rng.beta(recipe.mixup, recipe.mixup))
                perm = torch.randperm(len(xb), device=device)
                xb = lam * xb + (1 - lam) * xb[perm]
                yb = lam * yb + (1 - lam) * yb[perm]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item()
        row = {
            "epoch": epoch,
            "train_loss": round(total / steps_per_epoch, 4),
            "seconds": round(time.perf_counter() - started, 2),
        }
        if val_feats:
            row.update(best.offer(epoch, model, track_probs(model, val_feats, spec, device)))
        history.append(row)
        if progress:
            print(
                f"epoch {epoch}/{recipe.epochs} "
                + " ".join(f"{k}={v}" for k, v in row.items() if k != "epoch"),
                file=sys.stderr,
                flush=True,
            )
        if val_feats and recipe.patience and epoch - best.epoch >= recipe.patience:
            break
    best_epoch = best.restore(model, len(history))
    model.eval()
    return TrainResult(
        model=model.cpu(), history=history, best_epoch=best_epoch, val_metrics=best.metrics
    )


def with_epochs(recipe: Recipe, epochs: int | None) -> Recipe:
    return replace(recipe, epochs=epochs) if epochs else recipe


def recipe_dict(recipe: Recipe) -> dict:
    return asdict(recipe)


# --- heads on frozen pretrained ears -------------------------------------------------

# The pretrained taggers are not trained here: a genre head is fitted on their frozen
# embeddings. The head's inputs (embedding, tags or both; one tagger or both), class
# weights, C and a temperature were compared under the artist-disjoint protocol by
# `bench/crossval.py heads` (bench/results/heads/): the class-weighted head on the
# embedding with C = 1 is what these constants give; tags, both taggers, a tuned C or a
# tuned temperature did not do better there.
HEAD_ARCHS = ("musicnn-msd", "vgg-msd")
HEAD_C = 1.0  # inverse L2 strength, as sklearn's LogisticRegression(C=...)
HEAD_BALANCED = True  # weight each track by 1/its genre's count, as class_weight="balanced"
HEAD_TEMPERATURE = 1.0  # the fitted logits are divided by it (calibration; 1 = as fitted)
# Logit adjustment (Menon et al. 2021): the bias becomes bias - tau * log(training prior),
# which favours the rarer genres of the training data; 0 = the head as fitted.
HEAD_TAU = 0.0

# What tune_head (`genreq train --tune-head`) and bench/crossval.py's teachers search,
# each choice made on inner predictions with the --groups as folds. The C grid reaches
# down to 0.001 for bench/crossval.py's chunk-level heads (every chunk a sample of
# 1/chunks weight), whose best C lies lower than a track-mean head's.
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
TAU_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
T_GRID = tuple(float(t) for t in np.round(np.geomspace(0.25, 4.0, 25), 4))  # temperatures


@dataclass
class HeadResult:
    model: models.GenreModel
    train_accuracy: float
    val_accuracy: float | None
    val_metrics: dict | None
    c: float = HEAD_C  # what the head was fitted with (chosen, with tuning)
    tau: float = HEAD_TAU
    temperature: float = HEAD_TEMPERATURE
    tuning: Tuning | None = None


def chunk_embeddings(
    model: models.PretrainedTagger, feats: list[np.ndarray], spec: F.FeatureSpec
) -> list[np.ndarray]:
    """Per track, the (chunks, n_embed) raw tagger embeddings of all its chunks in time
    order: the frozen ears run once, and heads train on these."""
    out = []
    with torch.inference_mode():
        for feat in feats:
            x = torch.from_numpy(F.chunks(feat, spec, max_chunks=None))
            out.append(model.tagger.embed(x[:, 0].transpose(1, 2).contiguous()).numpy())
    return out


def track_embeddings(
    model: models.PretrainedTagger, feats: list[np.ndarray], spec: F.FeatureSpec
) -> np.ndarray:
    """(tracks, n_embed) raw tagger embeddings, each the mean over all the track's chunks."""
    return np.stack([e.mean(0) for e in chunk_embeddings(model, feats, spec)])


def genre_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per genre, n / (genres present × its count), as sklearn's class_weight="balanced"
    (0 for a genre absent from `y`): every genre weighs the same in the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    present = int((counts > 0).sum())
    return np.where(counts > 0, len(y) / (present * np.maximum(counts, 1)), 0.0)


def balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample weights: each track weighs what genre_weights gives its genre."""
    return genre_weights(y, n_classes)[y]


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    c: float = HEAD_C,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with sklearn's objective (½‖W‖² + C·Σ wᵢ·log-loss),
    by L-BFGS: (weight (classes, features), bias (classes,))."""
    xt, yt = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(y)
    wt = torch.from_numpy(
        np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    )
    weight = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        max_iter=500,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        opt.zero_grad()
        loss = (
            0.5 * weight.square().sum()
            + c
            * (wt * nn.functional.cross_entropy(xt @ weight.T + bias, yt, reduction="none")).sum()
        )
        loss.backward()
        return loss

    opt.step(objective)
    return weight.detach().float().numpy(), bias.detach().float().numpy()


@dataclass
class LinearHead:
    """A linear genre head on standardised per-chunk inputs, in numpy: what a pretrained
    tagger's head computes, so heads are fitted and scored on embeddings computed once."""

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray  # (classes, features)
    bias: np.ndarray

    def track_probs(self, chunk_x: list[np.ndarray], max_chunks: int | None) -> np.ndarray:
        """Per track the mean of its chunks' probabilities over the chunks classification
        reads (F.chunk_indices, as genreq classifies), or all chunks with None."""
        out = []
        for x in chunk_x:
            logits = (
                (x[F.chunk_indices(len(x), max_chunks)] - self.mean) / self.std
            ) @ self.weight.T + self.bias
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits)
            out.append((p / p.sum(1, keepdims=True)).mean(0))
        return np.stack(out)

    def with_temperature(self, temperature: float) -> LinearHead:
        """The logits divided by `temperature`: still a linear head (weights and bias / T)."""
        return LinearHead(self.mean, self.std, self.weight / temperature, self.bias / temperature)


def log_prior(y: np.ndarray, n_classes: int) -> np.ndarray:
    """log of each genre's share of `y` (a genre absent from it: log 1e-6)."""
    prior = np.bincount(y, minlength=n_classes) / len(y)
    return np.log(np.maximum(prior, 1e-6))


def fit_linear(
    xs: np.ndarray,
    ys: np.ndarray,
    n_classes: int,
    c: float,
    sample_weight: np.ndarray | None,
    prior_labels: np.ndarray,
    taus: tuple[float, ...] = (HEAD_TAU,),
) -> dict[float, LinearHead]:
    """{tau: head}: logistic regression (fit_logistic) on the standardised samples `xs`,
    its bias logit-adjusted by each tau of `taus` with the prior of `prior_labels` (the
    tracks' labels, whatever the samples are)."""
    mu, sd = xs.mean(0), xs.std(0) + 1e-6
    weight, bias = fit_logistic((xs - mu) / sd, ys, n_classes, c, sample_weight)
    weight, bias = weight.astype(np.float64), bias.astype(np.float64)
    shift = log_prior(prior_labels, n_classes)
    return {tau: LinearHead(mu, sd, weight, bias - tau * shift) for tau in taus}


def fit_track_head(
    chunk_x: list[np.ndarray],
    y: np.ndarray,
    n_classes: int,
    c: float = HEAD_C,
    balanced: bool = HEAD_BALANCED,
    taus: tuple[float, ...] = (HEAD_TAU,),
) -> dict[float, LinearHead]:
    """fit_head's fit on per-track chunk inputs (chunk_embeddings): one sample per track,
    the mean of its chunks, each genre weighing the same when `balanced`; {tau: head}
    for each logit adjustment of `taus`."""
    means = np.stack([x.mean(0) for x in chunk_x])
    weights = balanced_weights(y, n_classes) if balanced else None
    return fit_linear(means, y, n_classes, c, weights, y, taus)


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(probs[np.arange(len(y)), y] + 1e-9).mean())


@dataclass(frozen=True)
class Tuning:
    """What tune_inner chose: the fit parameter (C), the post-hoc setting (tau), the
    temperature, and every (param, setting)'s inner figures ("C/tau": {accuracy, ...})."""

    param: float
    setting: float
    temperature: float
    record: dict


def tune_inner(fit, grid, chunk_x, y: np.ndarray, groups: np.ndarray, n_classes: int,
               by_balanced: bool, score_x=None, max_chunks: int | None = F.MAX_CHUNKS,
               ) -> Tuning:  # fmt: skip
    """Choose a head's settings on inner predictions: each group of `groups` scored (on
    `max_chunks` chunks of `score_x`, by default F.MAX_CHUNKS of `chunk_x`, as genreq
    classifies) by heads `fit(chunk_x, y, param)` fitted on the other groups, for each
    `param` of `grid`; fit returns {setting: head} (head with track_probs and
    with_temperature). `score_x` gives the same tracks other inputs, for a head fitted on
    one cut of the audio and used on another (vgg-msd's head on one chunk). The (param,
    setting) with the best pooled balanced accuracy when `by_balanced` (logit adjustment),
    else accuracy, ties by the other, then by log loss; then the temperature of T_GRID
    with the lowest log loss of those inner predictions."""
    score_x = chunk_x if score_x is None else score_x
    scores, heads_at = {}, {}
    for param in grid:
        inner: dict = {}
        for g in np.unique(groups):
            fit_idx, test = np.flatnonzero(groups != g), np.flatnonzero(groups == g)
            fitted = fit([chunk_x[i] for i in fit_idx], y[fit_idx], param)
            for setting, head in fitted.items():
                heads_at.setdefault((param, setting), []).append((test, head))
                inner.setdefault(setting, np.zeros((len(y), n_classes)))[test] = head.track_probs(
                    [score_x[i] for i in test], max_chunks
                )
        for setting, probs in inner.items():
            pred = probs.argmax(1)
            acc = float((pred == y).mean())
            bal = float(np.mean([(pred[y == k] == k).mean() for k in np.unique(y)]))
            scores[(param, setting)] = (acc, bal, log_loss(probs, y))
    if by_balanced:
        best = max(scores, key=lambda k: (scores[k][1], scores[k][0], -scores[k][2]))
    else:
        best = max(scores, key=lambda k: (scores[k][0], -scores[k][2]))

    def inner_loss(temperature: float) -> float:
        probs = np.zeros((len(y), n_classes))
        for test, head in heads_at[best]:
            probs[test] = head.with_temperature(temperature).track_probs(
                [score_x[i] for i in test], max_chunks
            )
        return log_loss(probs, y)

    temperature = float(min(T_GRID, key=inner_loss))
    record = {
        f"{p:g}/{s:g}": {"accuracy": round(a, 4), "balanced": round(b, 4), "log_loss": round(l_, 4)}
        for (p, s), (a, b, l_) in scores.items()
    }
    return Tuning(best[0], best[1], temperature, record)


def tune_head(
    chunk_x: list[np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    n_classes: int,
    balanced: bool = HEAD_BALANCED,
    score_x=None,
    max_chunks: int | None = F.MAX_CHUNKS,
) -> Tuning:
    """C over C_GRID and the logit adjustment tau over TAU_GRID of a track-mean head
    (fit_track_head) for the best inner balanced accuracy, then its temperature over
    T_GRID for the lowest inner log loss, with `groups` as the inner folds: what
    bench/crossval.py's teacher track_<tagger>_embedding_balanced_la tunes inside each
    fold's training groups. Inner predictions read `max_chunks` chunks of `score_x`
    (tune_inner)."""
    return tune_inner(
        lambda x, labels, c: fit_track_head(x, labels, n_classes, c, balanced, TAU_GRID),
        C_GRID,
        chunk_x,
        y,
        groups,
        n_classes,
        by_balanced=True,
        score_x=score_x,
        max_chunks=max_chunks,
    )


def fit_head(
    arch: str,
    feats: list[np.ndarray],
    labels: np.ndarray,
    n_classes: int,
    spec: F.FeatureSpec,
    val_feats: list[np.ndarray] | None = None,
    val_labels: np.ndarray | None = None,
    c: float = HEAD_C,
    balanced: bool = HEAD_BALANCED,
    temperature: float = HEAD_TEMPERATURE,
    tau: float = HEAD_TAU,
    tune_groups: np.ndarray | None = None,
) -> HeadResult:
    """A pretrained tagger of HEAD_ARCHS with a genre head fitted on its frozen
    embeddings: standardised mean chunk embedding per track, logistic regression with
    inverse L2 strength `c`, each genre weighing the same when `balanced`, its bias
    logit-adjusted by `tau`, its logits divided by `temperature`. With `tune_groups`
    (each training track's group), c, tau and temperature are chosen by tune_head with
    those groups as inner folds instead."""
    if arch not in HEAD_ARCHS:
        raise ValueError(f"{arch!r} has no pretrained ears; choose from {', '.join(HEAD_ARCHS)}")
    model = models.build(arch, n_classes, spec).eval()
    # In float64, as bench/crossval.py reads its cache of the same embeddings: the head
    # genreq trains is the one that was cross-validated, to the last bit of its inputs.
    seqs = [s.astype(np.float64) for s in chunk_embeddings(model, feats, spec)]
    tuning = None
    if tune_groups is not None:
        tuning = tune_head(seqs, labels, np.asarray(tune_groups), n_classes, balanced)
        c, tau, temperature = tuning.param, tuning.setting, tuning.temperature
    head = fit_track_head(seqs, labels, n_classes, c, balanced, (tau,))[tau]
    head = head.with_temperature(temperature)
    with torch.no_grad():
        model.embedding_mean.copy_(torch.from_numpy(head.mean))
        model.embedding_std.copy_(torch.from_numpy(head.std))
        model.head.weight.copy_(torch.from_numpy(head.weight))
        model.head.bias.copy_(torch.from_numpy(head.bias))
    train_acc = float((head.track_probs(seqs, F.MAX_CHUNKS).argmax(1) == labels).mean())
    val_acc = val_metrics = None
    if val_feats:
        pred = track_probs(model, val_feats, spec, torch.device("cpu")).argmax(1)
        val_acc = float((pred == val_labels).mean())
        val_metrics = metrics.summarise(val_labels, pred, [str(i) for i in range(n_classes)])
    return HeadResult(
        model=model,
        train_accuracy=train_acc,
        val_accuracy=val_acc,
        val_metrics=val_metrics,
        c=c,
        tau=tau,
        temperature=temperature,
        tuning=tuning,
    )


# --- the transfer CRNN: a GRU head on frozen pretrained ears --------------------------

# What bench/transfer_gru.py cross-validates: a bidirectional GRU over the sequence of a
# track's frozen chunk embeddings (models.PretrainedGRU), trained on embeddings computed
# once, so an epoch costs milliseconds rather than a pass of the tagger.
GRU_ARCHS = ("musicnn-msd-gru", "vgg-msd-gru")


@dataclass(frozen=True)
class SequenceRecipe:
    """How a GRU head is trained on cached chunk embeddings. Stored in the checkpoint."""

    epochs: int = 150
    batch_size: int = 32
    lr: float = 3e-3  # AdamW, constant
    weight_decay: float = 1e-2
    # A training example is a random run of this many consecutive chunks (one length
    # per batch); the model's dropout (dims.dropout) acts on the embeddings.
    run_chunks: tuple[int, int] = (3, 5)
    label_smoothing: float = 0.1
    # Each genre weighs the same in the loss (genre_weights), as in the linear heads:
    # unweighted, a third of the shared clips being classical pulls the GRU toward it
    # (bench/loudness.py --head balanced; False is the recipe before issue 14's fix).
    balanced: bool = True


GRU_RECIPE = SequenceRecipe()


def embedding_stats(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation over every chunk of every track."""
    chunks = np.concatenate(seqs)
    return chunks.mean(0), chunks.std(0) + 1e-6


def _run_batch(
    seqs: list[torch.Tensor], idx: np.ndarray, recipe: SequenceRecipe, rng: np.random.Generator
) -> torch.Tensor:
    """(batch, length, n_embed): a random run of consecutive chunks from each track."""
    length = int(rng.integers(recipe.run_chunks[0], recipe.run_chunks[1] + 1))
    runs = []
    for i in idx:
        start = int(rng.integers(0, max(1, len(seqs[i]) - length + 1)))
        runs.append(seqs[i][start : start + length])
    shortest = min(len(r) for r in runs)  # a short track has fewer chunks
    return torch.stack([r[:shortest] for r in runs])


def sequence_probs(
    model: models.PretrainedGRU, seqs: list[np.ndarray], max_chunks: int | None = F.MAX_CHUNKS
) -> np.ndarray:
    """(tracks, genres) probabilities from raw chunk embeddings (chunk_embeddings), each
    track read on the chunks classification picks (F.chunk_indices): what the model
    gives for the track's features, without running the tagger again."""
    model.eval()
    mean, std = model.embedding_mean.numpy(), model.embedding_std.numpy()
    out = []
    with torch.inference_mode():
        for seq in seqs:
            x = (seq[F.chunk_indices(len(seq), max_chunks)] - mean) / std
            out.append(
                torch.softmax(model.classify_embeddings(torch.from_numpy(x).float()[None]), -1)[
                    0
                ].numpy()
            )
    return np.stack(out)


def fit_gru_head(
    arch: str,
    seqs: list[np.ndarray],
    labels: np.ndarray,
    n_classes: int,
    recipe: SequenceRecipe = GRU_RECIPE,
    val_seqs: list[np.ndarray] | None = None,
    val_labels: np.ndarray | None = None,
    seed: int = 0,
    progress: bool = True,
) -> TrainResult:
    """A GRU_ARCHS model whose GRU head is trained on raw chunk embeddings SEQS (one
    (chunks, n_embed) array per track, from chunk_embeddings with the same tagger).
    Standardisation comes from the training chunks. With validation data, the epoch
    with the best validation accuracy (lowest loss among ties) is kept, as in fit;
    otherwise the last."""
    if arch not in GRU_ARCHS:
        raise ValueError(f"{arch!r} has no GRU head; choose from {', '.join(GRU_ARCHS)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = models.build(arch, n_classes)
    mean, std = embedding_stats(seqs)
    with torch.no_grad():
        model.embedding_mean.copy_(torch.from_numpy(mean))
        model.embedding_std.copy_(torch.from_numpy(std))
    standard = [torch.from_numpy((s - mean) / std).float() for s in seqs]
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    opt = torch.optim.AdamW(model.parameters(), recipe.lr, weight_decay=recipe.weight_decay)
    weight = None
    if recipe.balanced:
        weight = torch.from_numpy(genre_weights(np.asarray(labels), n_classes)).float()
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=recipe.label_smoothing)

    history: list[dict] = []
    best = BestEpoch(val_labels, n_classes)
    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = rng.permutation(len(seqs))
        total, steps = 0.0, 0
        for start in range(0, len(order), recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            loss = loss_fn(
                model.classify_embeddings(_run_batch(standard, idx, recipe, rng)), targets[idx]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        row = {
            "epoch": epoch,
            "train_loss": round(total / steps, 4),
            "seconds": round(time.perf_counter() - started, 3),
        }
        if val_seqs:
            row.update(best.offer(epoch, model, sequence_probs(model, val_seqs)))
        history.append(row)
        if progress and (epoch % 10 == 0 or epoch == recipe.epochs):
            print(
                f"epoch {epoch}/{recipe.epochs} "
                + " ".join(f"{k}={v}" for k, v in row.items() if k != "epoch"),
                file=sys.stderr,
                flush=True,
            )
    best_epoch = best.restore(model, len(history))
    model.eval()
    return TrainResult(
        model=model, history=history, best_epoch=best_epoch, val_metrics=best.metrics
    )


def tagger_digest(model: models.PretrainedTagger) -> str:
    """Short sha256 of the frozen tagger's weights: names the exact ears a head was
    trained on (a GRU checkpoint does not carry them)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.tagger.named_buffers()):
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:12]
