"""Teacher probabilities for distilling the pretrained vgg-msd model into the fast CRNN.

    python bench/distill.py teacher     # writes runs/distill/teacher-vgg-msd.npz

The teacher is vgg-msd's genre head as `genreq run` scores it ("mean-head" of
bench/musicnn_probe.py: logistic regression on the standardised mean chunk embedding,
a clip scored by the mean of its chunks' probabilities), over the frozen MSD vgg
embeddings that bench/musicnn_probe.py caches (runs/musicnn_probe_chunk_embeddings.npz).

Soft targets are cross-fitted, so that a student never learns from a teacher that saw
the very clip it labels (a head's probabilities on its own training clips are
over-confident):

- for outer fold k of bench/crossval.py's folds (group_kfold, k=5, seed 0): the
  teacher's probability for each training clip comes from a head fitted on the other
  inner folds of the training clips (inner group k-fold, 4 folds); the held-out fold is
  never touched (NaN rows);
- row `folds` (the last): every clip's probability from the outer cross-validation
  itself, for a student trained on all clips.

Then:

    python bench/crossval.py run --archs crnn --cache CACHE_DIR --epochs 80 \
        --teacher runs/distill/teacher-vgg-msd.npz --set distill=0.5 --tag _distill05_e80
    python bench/distill.py student --out genreq/weights/crnn.pt

cross-validate the student (bench/results/crnn_distill05_e80.json) and train the shipped
one on every clip, with the last row's soft targets.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from musicnn_probe import DEFAULT_CACHE, DEFAULT_DATA, _classifier, _track_means

from genreq import dataset

TEACHER = "vgg-msd"
DEFAULT_OUT = REPO / "runs" / "distill" / f"teacher-{TEACHER}.npz"
FOLDS, INNER_FOLDS, SEED = 5, 4, 0


def head_probs(emb: np.ndarray, chunk_track: np.ndarray, y: np.ndarray, train: np.ndarray,
               test: np.ndarray, n_classes: int) -> np.ndarray:
    """(len(test), n_classes) probabilities of the mean-head fitted on `train`."""
    clf = _classifier().fit(_track_means(emb, chunk_track)[train], y[train])
    out = np.zeros((len(test), n_classes))
    for row, t in enumerate(test):
        out[row, clf.classes_] = clf.predict_proba(emb[chunk_track == t]).mean(0)
    return out


def cross_fitted(emb, chunk_track, y, tracks, idx: np.ndarray, n_folds: int, n_classes: int) -> np.ndarray:
    """Out-of-fold probabilities for the clips `idx`, by group k-fold among them."""
    probs = np.full((len(y), n_classes), np.nan)
    sub = [tracks[i] for i in idx]
    for fold in dataset.group_kfold(sub, n_folds, SEED):
        test = idx[np.array(fold)]
        train = np.setdiff1d(idx, test)
        probs[test] = head_probs(emb, chunk_track, y, train, test, n_classes)
    return probs


def teacher(args) -> None:
    tracks, genres = dataset.scan(args.data)
    y = np.array([genres.index(t.genre) for t in tracks])
    z = np.load(args.embeddings)
    names = [str(n) for n in z["names"]]
    assert names == [str(t.path.relative_to(t.path.parents[1])) for t in tracks], "cache order differs"
    emb, chunk_track = z[TEACHER], z["track"]
    everything = np.arange(len(tracks))
    out = np.full((FOLDS + 1, len(tracks), len(genres)), np.nan)
    for k, test in enumerate(dataset.group_kfold(tracks, FOLDS, SEED)):
        train = np.setdiff1d(everything, test)
        out[k] = cross_fitted(emb, chunk_track, y, tracks, train, INNER_FOLDS, len(genres))
        inner_acc = float((out[k][train].argmax(1) == y[train]).mean())
        print(f"fold {k + 1}: soft targets for {len(train)} clips, teacher accuracy on them "
              f"{inner_acc:.3f}", file=sys.stderr)
    out[FOLDS] = cross_fitted(emb, chunk_track, y, tracks, everything, FOLDS, len(genres))
    acc = float((out[FOLDS].argmax(1) == y).mean())
    print(f"teacher {TEACHER}, outer cross-validation: {acc:.3f} (n={len(y)})", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, probs=out, genres=np.array(genres), meta=json.dumps(
        {"teacher": TEACHER, "folds": FOLDS, "inner_folds": INNER_FOLDS, "seed": SEED,
         "outer_cv_accuracy": acc}))
    print(f"wrote {args.out}", file=sys.stderr)


STUDENT_EPOCHS, STUDENT_DISTILL = 80, 0.5  # as cross-validated


def student(args) -> None:
    """The fast default: crnn (IMPROVED recipe, 80 epochs) on every clip, targets half
    label, half the teacher's out-of-fold probability."""
    import torch

    from genreq import checkpoint, models, plots, train

    torch.set_num_threads(args.threads)
    tracks, genres = dataset.scan(args.data)
    z = np.load(args.teacher)
    assert list(z["genres"]) == genres, "the teacher's genres differ"
    soft = z["probs"][FOLDS]
    labels = np.array([genres.index(t.genre) for t in tracks])
    spec = models.ARCHITECTURES["crnn"].default_features()
    feats = dataset.load_features(tracks, spec)
    recipe = replace(train.IMPROVED, epochs=STUDENT_EPOCHS, distill=STUDENT_DISTILL)
    result = train.fit("crnn", feats, labels, len(genres), spec, recipe, seed=args.seed,
                       soft_targets=soft)
    meta = json.loads(str(z["meta"]))
    run_metrics = {
        "split": "none (all data trained)", "n_train": len(tracks), "n_val": 0, "seed": args.seed,
        "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        "parameters": models.count_parameters(result.model),
        "macs_per_chunk": models.count_macs(result.model), "history": result.history,
    }
    recipe_info = {**train.recipe_dict(recipe),
                   "teacher": f"{meta['teacher']} head, out-of-fold probabilities "
                              f"({meta['folds']}-fold, its CV accuracy {meta['outer_cv_accuracy']:.3f})",
                   "script": "bench/distill.py student"}
    checkpoint.save(args.out, result.model, "crnn", genres, spec, run_metrics, recipe_info)
    plots.training_curve(result.history, args.out.with_suffix(".png"), "crnn distilled from vgg-msd")
    print(f"wrote {args.out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("teacher", help="cross-fitted teacher probabilities")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--embeddings", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p = sub.add_parser("student", help="train the distilled crnn on every clip")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--teacher", type=Path, default=DEFAULT_OUT)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    {"teacher": teacher, "student": student}[args.command](args)


if __name__ == "__main__":
    main()
