"""What `genreq train` and `genreq evaluate` do, as functions a script can call."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from genreq import checkpoint, dataset, metrics, models, plots, train
from genreq import features as F
from genreq.errors import AudioError, GenreqError
from genreq.predict import Classifier

log = logging.getLogger(__name__)


def train_directory(
    data_dir: str | Path,
    arch: str,
    out: str | Path,
    epochs: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    device: str = "cpu",
    input_kind: str | None = None,
    n_mfcc: int = F.N_MFCC,
    groups: str | None = None,
    tune_head: bool = False,
) -> dict:
    """Train `arch` on DATA_DIR/<genre>/ files, save the checkpoint at `out` and a
    training-curve PNG beside it; return the checkpoint's metrics.

    `groups` ("labels.csv:artist_split", see dataset.read_groups) gives each file its
    group: the validation split for early stopping takes whole groups (per genre, about
    `val_fraction` of its tracks), so no artist straddles it, and files in group
    `excluded` are not trained on. Without it every file is its own group.
    `input_kind` "mfcc" swaps the CRNNs' log-mel input for `n_mfcc` MFCCs.
    `tune_head` (HEAD_ARCHS only, needs `groups`): C, the logit adjustment tau and a
    temperature are tuned with the training files' groups as inner folds
    (train.tune_head) instead of the fixed train.HEAD_* head."""
    trainable = (*train.RECIPES, *train.HEAD_ARCHS, *train.GRU_ARCHS)
    if arch not in trainable:
        raise GenreqError(f"{arch!r} cannot be trained here; choose from {', '.join(trainable)}")
    check_tune_head(arch, groups, tune_head)
    tracks, genres = dataset.scan(data_dir)
    tracks, dropped = dataset.apply_groups(tracks, dataset.read_groups(groups) if groups else None)
    if dropped:
        log.info("not trained on: %s", dropped)
    spec = models.ARCHITECTURES[arch].default_features()
    if input_kind and input_kind != spec.kind:
        if {input_kind, spec.kind} != {"mel", "mfcc"}:
            raise GenreqError(
                f"{arch} takes {spec.kind} input; only the mel models can take mfcc instead"
            )
        spec = replace(spec, kind=input_kind, n_mfcc=n_mfcc)
    feats = dataset.load_features(tracks, spec)
    keep = [i for i, f in enumerate(feats) if f is not None]
    tracks, feats = [tracks[i] for i in keep], [feats[i] for i in keep]
    labels = np.array([genres.index(t.genre) for t in tracks])
    train_idx, val_idx = dataset.group_split(tracks, val_fraction, seed)
    split = {"groups": groups, "dropped": dropped}
    if arch in train.HEAD_ARCHS:
        return _train_head(
            arch,
            data_dir,
            out,
            tracks,
            genres,
            spec,
            feats,
            labels,
            train_idx,
            val_idx,
            val_fraction,
            seed,
            split,
            tune_head,
        )
    if arch in train.GRU_ARCHS:
        return _train_gru(
            arch,
            data_dir,
            out,
            tracks,
            genres,
            spec,
            feats,
            labels,
            train_idx,
            val_idx,
            val_fraction,
            seed,
            epochs,
            split,
        )
    recipe = train.with_epochs(train.RECIPES[arch], epochs)
    result = train.fit(
        arch,
        [feats[i] for i in train_idx],
        labels[train_idx],
        len(genres),
        spec,
        recipe,
        val_feats=[feats[i] for i in val_idx] or None,
        val_labels=labels[val_idx] if val_idx else None,
        seed=seed,
        device=device,
    )
    out = Path(out)
    run_metrics = _run_metrics(
        result.model, result.val_metrics, genres, train_idx, val_idx, val_fraction, seed, split
    )
    run_metrics.update(
        best_epoch=result.best_epoch, epochs_run=len(result.history), history=result.history
    )
    checkpoint.save(out, result.model, arch, genres, spec, run_metrics, train.recipe_dict(recipe))
    plots.training_curve(
        result.history, out.with_suffix(".png"), f"{arch} on {Path(data_dir).name}"
    )
    return run_metrics


def check_tune_head(arch: str, groups: str | None, tune_head: bool) -> None:
    """Head tuning needs a pretrained head arch and groups to use as inner folds."""
    if not tune_head:
        return
    if arch not in train.HEAD_ARCHS:
        raise GenreqError(
            f"tuning the head needs a pretrained head arch ({', '.join(train.HEAD_ARCHS)}), "
            f"not {arch!r}"
        )
    if not groups:
        raise GenreqError(
            "tuning the head needs --groups FILE:COLUMN: the groups are its inner folds"
        )


def _split_name(val_idx, groups: str | None) -> str:
    if not val_idx:
        return "none (all data trained)"
    if groups:
        return f"hold-out of whole groups of {groups}, per genre"
    return "hold-out of single files, per genre (no groups given)"


def _run_metrics(
    model,
    val_metrics: dict | None,
    genres: list[str],
    train_idx,
    val_idx,
    val_fraction: float,
    seed: int,
    split: dict,
) -> dict:
    """What a checkpoint records of its training run, whatever trained it."""
    run_metrics = {
        "split": _split_name(val_idx, split["groups"]),
        "groups": split["groups"],
        "dropped": split["dropped"],
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "val_fraction": val_fraction,
        "seed": seed,
        "parameters": models.count_parameters(model),
        "macs_per_chunk": models.count_macs(model),
    }
    if val_metrics:
        val_metrics["genres"] = genres
        val_metrics["per_genre"] = dict(zip(genres, val_metrics["per_genre"].values(), strict=True))
        run_metrics["validation"] = val_metrics
    return run_metrics


def _train_head(
    arch,
    data_dir,
    out,
    tracks,
    genres,
    spec,
    feats,
    labels,
    train_idx,
    val_idx,
    val_fraction,
    seed,
    split,
    tune_head=False,
) -> dict:
    """train_directory for a pretrained tagger: only its genre head is fitted (with
    `tune_head`, its C, tau and temperature tuned with the groups as inner folds)."""
    groups = np.array([tracks[i].group for i in train_idx]) if tune_head else None
    result = train.fit_head(
        arch,
        [feats[i] for i in train_idx],
        labels[train_idx],
        len(genres),
        spec,
        val_feats=[feats[i] for i in val_idx] or None,
        val_labels=labels[val_idx] if val_idx else None,
        tune_groups=groups,
    )
    run_metrics = _run_metrics(
        result.model, result.val_metrics, genres, train_idx, val_idx, val_fraction, seed, split
    )
    # A convex fit: no epochs.
    run_metrics.update(best_epoch=None, train_accuracy=round(result.train_accuracy, 4))
    weighting = "genres weighted equally" if train.HEAD_BALANCED else "unweighted"
    if not tune_head:
        recipe = {
            "head": f"logistic regression (C={train.HEAD_C}, L-BFGS, {weighting}, logits / "
            f"{train.HEAD_TEMPERATURE}) on the standardised mean of each track's frozen chunk "
            "embeddings",
            "data": Path(data_dir).name,
            "c": train.HEAD_C,
            "balanced": train.HEAD_BALANCED,
            "temperature": train.HEAD_TEMPERATURE,
            "command": _train_command(data_dir, arch, val_fraction, split["groups"], seed),
        }
    else:
        recipe = _tuned_head_recipe(result, run_metrics, arch, data_dir, groups, weighting,
                                    val_fraction, seed, split)
    checkpoint.save(Path(out), result.model, arch, genres, spec, run_metrics, recipe)
    return run_metrics


def _tuned_head_recipe(result, run_metrics, arch, data_dir, groups, weighting, val_fraction,
                       seed, split) -> dict:
    """The recipe of a head `--tune-head` fitted; its inner figures go into run_metrics."""
    c, tau, temperature = result.c, result.tau, result.temperature
    run_metrics["tuning"] = {
        "inner_folds": f"the {len(np.unique(groups))} groups of {split['groups']}",
        "chosen": {"c": c, "logit_adjustment_tau": tau, "temperature": temperature},
        # Per "C/tau": pooled inner accuracy, balanced accuracy (which chose) and log loss.
        "inner": result.tuning.record,
    }
    return {
        "head": f"logistic regression (C={c:g}, L-BFGS, {weighting}), its bias logit-adjusted "
        f"(bias - {tau:g} log prior), logits / {temperature:.4g}, on the standardised mean of "
        "each track's frozen chunk embeddings; C, tau and the temperature tuned with the "
        "groups as inner folds",
        "data": Path(data_dir).name,
        "c": c,
        "balanced": train.HEAD_BALANCED,
        "logit_adjustment_tau": tau,
        "temperature": temperature,
        "tuned": f"C over {list(train.C_GRID)} and tau over {list(train.TAU_GRID)} for the best "
        f"inner balanced accuracy, then the temperature over {train.T_GRID[0]}-"
        f"{train.T_GRID[-1]} ({len(train.T_GRID)} steps) for the lowest inner log loss",
        "command": _train_command(data_dir, arch, val_fraction, split["groups"], seed,
                                  tune_head=True),
    }


def _train_command(data_dir, arch, val_fraction, groups, seed, epochs=None,
                   tune_head=False) -> str:
    """The `genreq train` command line that reproduces a checkpoint (its recipe's record)."""
    return (f"genreq train {data_dir} --arch {arch} --val-fraction {val_fraction:g}"
            + (f" --groups {groups}" if groups else "")
            + (f" --epochs {epochs}" if epochs else "")
            + (" --tune-head" if tune_head else "")
            + (f" --seed {seed}" if seed else ""))


def _train_gru(
    arch,
    data_dir,
    out,
    tracks,
    genres,
    spec,
    feats,
    labels,
    train_idx,
    val_idx,
    val_fraction,
    seed,
    epochs,
    split,
) -> dict:
    """train_directory for a transfer CRNN: the frozen tagger embeds every chunk once,
    then only the GRU head trains, on those embeddings."""
    tagger = models.build(arch, len(genres), spec)
    seqs = train.chunk_embeddings(tagger, feats, spec)
    recipe = train.with_epochs(train.GRU_RECIPE, epochs)
    result = train.fit_gru_head(
        arch,
        [seqs[i] for i in train_idx],
        labels[train_idx],
        len(genres),
        recipe,
        val_seqs=[seqs[i] for i in val_idx] or None,
        val_labels=labels[val_idx] if val_idx else None,
        seed=seed,
    )
    run_metrics = _run_metrics(
        result.model, result.val_metrics, genres, train_idx, val_idx, val_fraction, seed, split
    )
    run_metrics.update(
        best_epoch=result.best_epoch, epochs_run=len(result.history), history=result.history
    )
    recipe_record = {
        "head": f"bidirectional GRU ({result.model.dims.hidden // 2} units each way) over the "
        "standardised frozen chunk embeddings, mean of its states, linear softmax",
        **train.recipe_dict(recipe),
        "run_chunks": list(recipe.run_chunks),
        "base": result.model.base,  # whose shipped weights/<base>.pt holds the tagger
        "base_tagger_sha256": train.tagger_digest(result.model),
        "data": Path(data_dir).name,
        "command": _train_command(data_dir, arch, val_fraction, split["groups"], seed, epochs),
    }
    out = Path(out)
    checkpoint.save(out, result.model, arch, genres, spec, run_metrics, recipe_record)
    plots.training_curve(
        result.history, out.with_suffix(".png"), f"{arch} on {Path(data_dir).name}"
    )
    return run_metrics


def evaluate_directory(
    data_dir: str | Path,
    model_path: str | Path | None = None,
    confusion_png: str | Path | None = None,
    groups: str | None = None,
    only_groups: tuple[str, ...] = (),
) -> dict:
    """Track-level accuracy (Wilson 95 % interval), balanced accuracy, per-genre scores,
    calibration (ECE) and confusion of a checkpoint on DATA_DIR/<genre>/ files.
    Undecodable files are counted and listed.

    With `groups` ("labels.csv:artist_split"), files in group `excluded` are left out
    and the report adds `per_group` (accuracy of each group); `only_groups` restricts
    the evaluation to files in those groups (e.g. the artist-disjoint `test`)."""
    if only_groups and not groups:
        raise GenreqError(
            "choosing groups to evaluate needs the groups file (--groups FILE:COLUMN)"
        )
    clf = Classifier.load(model_path)
    tracks, _ = dataset.scan(data_dir)
    by_group = dataset.read_groups(groups) if groups else None
    tracks, dropped = dataset.apply_groups(tracks, by_group, set(only_groups) or None)
    unknown = sorted({t.genre for t in tracks} - set(clf.genres))
    if unknown:
        raise GenreqError(
            f"{data_dir}: genres {unknown} are not known to the model (it knows {clf.genres})"
        )
    true, probs, kept, failed = [], [], [], []
    for t in tracks:
        try:
            p = clf.classify_file(t.path)
        except AudioError as exc:
            failed.append({"path": str(t.path), "reason": exc.reason})
            continue
        true.append(clf.genres.index(t.genre))
        probs.append([p.probs[g] for g in clf.genres])
        kept.append(t)
    true_arr = np.array(true, dtype=int)
    prob_arr = np.array(probs, dtype=float).reshape(len(true), len(clf.genres))
    pred = prob_arr.argmax(1)
    report = metrics.summarise(true_arr, pred, clf.genres, prob_arr)
    report.update(model=clf.name, model_version=clf.version, failed=failed)
    if by_group is not None:
        report.update(
            groups=groups,
            only_groups=list(only_groups),
            dropped=dropped,
            per_group=metrics.per_group(true_arr, pred, [t.group for t in kept]),
        )
    if confusion_png:
        plots.confusion(
            report["confusion"], clf.genres, confusion_png, f"{clf.name} on {Path(data_dir).name}"
        )
    return report
