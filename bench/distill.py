"""The fast default `crnn` distilled from a pretrained head, trained on every clip.

    python bench/crossval.py embed --data DATA --cache CACHE
    python bench/crossval.py teacher --groups DATA/labels.csv:artist_split --cache CACHE \\
        --candidate vgg-msd_embedding_unweighted_c1 --out-npz CACHE/teacher.npz
    python bench/crossval.py run --archs crnn --groups DATA/labels.csv:artist_split --cache CACHE \\
        --epochs 80 --teacher CACHE/teacher.npz --set distill=0.5 --tag _distilled
    python bench/distill.py student --data DATA --groups DATA/labels.csv:artist_split \\
        --teacher CACHE/teacher.npz --out genreq/weights/crnn.pt

The teacher's soft targets are cross-fitted (bench/crossval.py teacher): a student never
learns from a head that saw the clip it labels. The `run` line cross-validates the
student under the artist-disjoint protocol (each outer fold with the teacher re-fitted
inside its training groups); `student` trains the shipped one on every non-excluded
clip with the last row of the teacher file, every clip's out-of-fold probability.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

# Run from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genreq import dataset

STUDENT_EPOCHS, STUDENT_DISTILL = 80, 0.5  # the cross-validated recipe


def student(args) -> None:
    """crnn (IMPROVED recipe, STUDENT_EPOCHS epochs) on every clip, targets
    (1 - STUDENT_DISTILL) x label + STUDENT_DISTILL x the teacher's out-of-fold probability."""
    import torch

    from genreq import checkpoint, models, plots, train

    torch.set_num_threads(args.threads)
    tracks, genres = dataset.scan(args.data)
    tracks, dropped = dataset.apply_groups(tracks, dataset.read_groups(args.groups))
    z = np.load(args.teacher)
    assert list(z["genres"]) == genres, "the teacher's genres differ"
    assert [Path(n).parts[-2:] for n in z["names"]] == [t.path.parts[-2:] for t in tracks], (
        "the teacher's clips differ"
    )
    soft = z["probs"][-1]
    labels = np.array([genres.index(t.genre) for t in tracks])
    spec = models.ARCHITECTURES["crnn"].default_features()
    feats = dataset.load_features(tracks, spec)
    recipe = replace(train.IMPROVED, epochs=STUDENT_EPOCHS, distill=STUDENT_DISTILL)
    result = train.fit(
        "crnn", feats, labels, len(genres), spec, recipe, seed=args.seed, soft_targets=soft
    )
    meta = json.loads(str(z["meta"]))
    run_metrics = {
        "split": "none (all data trained)",
        "groups": args.groups,
        "dropped": dropped,
        "n_train": len(tracks),
        "n_val": 0,
        "seed": args.seed,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "parameters": models.count_parameters(result.model),
        "macs_per_chunk": models.count_macs(result.model),
        "history": result.history,
    }
    recipe_info = {
        **train.recipe_dict(recipe),
        "teacher": f"{meta['teacher']}, out-of-fold probabilities under the artist-disjoint "
        f"protocol (its accuracy there {meta['outer_accuracy']:.3f})",
        "script": "bench/distill.py student",
    }
    checkpoint.save(args.out, result.model, "crnn", genres, spec, run_metrics, recipe_info)
    plots.training_curve(
        result.history, args.out.with_suffix(".png"), f"crnn distilled from {meta['teacher']}"
    )
    print(f"wrote {args.out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("student", help="train the distilled crnn on every clip")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument(
        "--groups", required=True, metavar="FILE:COLUMN", help="e.g. labels.csv:artist_split"
    )
    p.add_argument("--teacher", type=Path, required=True, help="from bench/crossval.py teacher")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    {"student": student}[args.command](args)


if __name__ == "__main__":
    main()
