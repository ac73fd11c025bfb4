"""Artist-aware k-fold cross-validation of genreq's architectures on a labelled folder.

    python bench/crossval.py run --data ../shared/data/gtzan --out bench/results
    python bench/crossval.py table --results bench/results   # adds CPU inference ms, writes the table

`run` trains every architecture on k-1 folds and scores whole tracks of the held-out
fold; folds are stratified by genre and keep GTZAN's blocks of ten consecutive clip ids
together (they often share an artist). Recipes with early stopping (the paper's) hold
out a further 15 % of the training folds, again by whole groups, for it; the test fold
is never looked at before scoring. `--cache` stores the decoded features (log-dB
quantised to 0.5 dB steps, uint8) so a run can happen where the audio is not.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from genreq import dataset, metrics, models, train
from genreq import features as F

DB_FLOOR = -100.0  # uint8 cache: DB_FLOOR + step × byte
DB_STEPS = {"mel": 0.5, "stft": 1.0}  # dB; the STFT cache must stay small enough to travel
INNER_VAL_FRACTION = 0.15  # the paper's validation share


def save_cache(path: Path, tracks, genres, spec, feats) -> None:
    step = DB_STEPS[spec.kind]
    arrays = {f"f{i}": np.clip(np.round((f - DB_FLOOR) / step), 0, 255).astype(np.uint8) for i, f in enumerate(feats)}
    meta = {"db_step": step, "paths": [str(t.path.relative_to(t.path.parents[1])) for t in tracks],
            "genres_of_tracks": [t.genre for t in tracks], "genres": genres, "spec": spec.to_dict()}
    np.savez_compressed(path, meta=json.dumps(meta), **arrays)


def load_cache(path: Path):
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    tracks = [dataset.LabelledTrack(Path(p), g) for p, g in zip(meta["paths"], meta["genres_of_tracks"])]
    feats = [z[f"f{i}"].astype(np.float32) * meta["db_step"] + DB_FLOOR for i in range(len(tracks))]
    return tracks, meta["genres"], F.FeatureSpec(**meta["spec"]), feats


def features_for(arch: str, data: Path | None, cache_dir: Path | None):
    spec = models.ARCHITECTURES[arch].default_features()
    cache = cache_dir / f"{spec.kind}-{spec.n_fft}.npz" if cache_dir and spec.kind != "raw" else None
    if cache and cache.exists():
        tracks, genres, cached_spec, feats = load_cache(cache)
        assert cached_spec == spec, f"{cache} holds {cached_spec}, {arch} needs {spec}"
        return tracks, genres, spec, feats
    tracks, genres = dataset.scan(data)
    feats = dataset.load_features(tracks, spec)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_cache(cache, tracks, genres, spec, feats)
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


def run_fold(arch: str, k: int, args) -> dict:
    """Train on every fold but k, score fold k. Returns per-track predictions."""
    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tracks, genres, spec, feats = features_for(arch, args.data, args.cache)
    labels = np.array([genres.index(t.genre) for t in tracks])
    test_idx = dataset.group_kfold(tracks, args.folds, args.seed)[k]
    test_set = set(test_idx)
    train_idx = [i for i in range(len(tracks)) if i not in test_set]
    recipe = replace(train.with_epochs(train.RECIPES[arch], args.epochs), **parse_overrides(args.set))
    if recipe.patience:
        inner_tr, inner_val = dataset.group_split([tracks[i] for i in train_idx], INNER_VAL_FRACTION, args.seed + k)
        fit_idx, val_idx = [train_idx[i] for i in inner_tr], [train_idx[i] for i in inner_val]
    else:
        fit_idx, val_idx = train_idx, []
    soft = None
    if args.teacher:
        # Cross-fitted for this outer fold (bench/distill.py): never from a head that saw
        # the clip, and nothing for the held-out fold.
        z = np.load(args.teacher)
        assert list(z["genres"]) == genres, "the teacher's genres differ"
        soft = z["probs"][k][fit_idx]
        assert not np.isnan(soft).any(), "the teacher has no soft target for a training clip"
    started = time.perf_counter()
    result = train.fit(
        arch, [feats[i] for i in fit_idx], labels[fit_idx], len(genres), spec, recipe,
        val_feats=[feats[i] for i in val_idx] or None, val_labels=labels[val_idx] if val_idx else None,
        seed=args.seed + k, device=device, progress=args.progress, soft_targets=soft,
    )
    seconds = time.perf_counter() - started
    probs = train.track_probs(result.model.to(device), [feats[i] for i in test_idx], spec, torch.device(device))
    pred = probs.argmax(1)
    acc = float((pred == labels[test_idx]).mean())
    # The same fold model scored with fewer chunks per track (cheaper inference).
    pred_by_chunks = {
        n: train.track_probs(result.model, [feats[i] for i in test_idx], spec, torch.device(device), n)
        .argmax(1).tolist()
        for n in args.eval_chunks
    }
    print(f"{arch}{args.tag} fold {k + 1}/{args.folds}: accuracy {acc:.3f} (n={len(test_idx)}), "
          f"best epoch {result.best_epoch}, {seconds:.0f} s", file=sys.stderr, flush=True)
    return {"fold": k, "test_idx": test_idx, "pred": pred.tolist(), "pred_by_chunks": pred_by_chunks,
            "accuracy": acc, "seconds": seconds,
            "best_epoch": result.best_epoch, "device": device, "recipe": train.recipe_dict(recipe)}


def run(args) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(arch, k) for arch in args.archs for k in range(args.folds)]
    if args.jobs > 1:
        # Folds are independent: run them side by side (small batches leave a GPU idle).
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
            results = list(pool.map(run_fold, *zip(*jobs), [args] * len(jobs)))
    else:
        results = [run_fold(arch, k, args) for arch, k in jobs]
    for arch in args.archs:
        folds = sorted((r for (a, _), r in zip(jobs, results) if a == arch), key=lambda r: r["fold"])
        tracks, genres, spec, _ = features_for(arch, args.data, args.cache)
        labels = np.array([genres.index(t.genre) for t in tracks])
        pred = np.full(len(tracks), -1)
        for r in folds:
            pred[r["test_idx"]] = r["pred"]
        summary = metrics.summarise(labels, pred, genres)
        fold_acc = [r["accuracy"] for r in folds]
        by_chunks = {}
        for n in args.eval_chunks:
            pred_n = np.full(len(tracks), -1)
            for r in folds:
                pred_n[r["test_idx"]] = r["pred_by_chunks"][n]
            s_n = metrics.summarise(labels, pred_n, genres)
            accs = [float((pred_n[r["test_idx"]] == labels[r["test_idx"]]).mean()) for r in folds]
            by_chunks[str(n)] = {"mean_accuracy": round(statistics.mean(accs), 4),
                                 "std_accuracy": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
                                 "pooled_accuracy": s_n["accuracy"], "ci95": s_n["ci95"],
                                 "balanced_accuracy": s_n["balanced_accuracy"]}
        model = models.build(arch, len(genres), spec)
        out = {
            "arch": arch, "tag": args.tag, "folds": args.folds, "seed": args.seed, "device": folds[0]["device"],
            "split": "stratified group k-fold, groups = blocks of 10 consecutive clip ids",
            "recipe": folds[0]["recipe"],
            "fold_accuracy": [round(a, 4) for a in fold_acc],
            "mean_accuracy": round(statistics.mean(fold_acc), 4),
            "std_accuracy": round(statistics.stdev(fold_acc), 4) if len(fold_acc) > 1 else 0.0,
            "pooled": summary,
            "by_max_chunks": by_chunks,
            "train_seconds_per_fold": round(statistics.mean(r["seconds"] for r in folds), 1),
            "best_epochs": [r["best_epoch"] for r in folds],
            "parameters": models.count_parameters(model),
            "macs_per_chunk": models.count_macs(model),
            "features": spec.to_dict(),
        }
        (args.out / f"{arch}{args.tag}.json").write_text(json.dumps(out, indent=1))
        print(f"{arch}{args.tag}: {out['mean_accuracy']:.3f} ± {out['std_accuracy']:.3f} over {args.folds} folds; "
              f"pooled {summary['accuracy']:.3f} {summary['ci95']} n={summary['n']}", file=sys.stderr, flush=True)


def inference_ms(arch: str, n_genres: int, repeats: int = 7) -> float:
    """Median ms to turn 30 s of decoded audio into track probabilities, one CPU thread."""
    torch.set_num_threads(1)
    spec = models.ARCHITECTURES[arch].default_features()
    # as genreq.predict.Classifier runs it: channels-last, inference mode
    model = models.build(arch, n_genres, spec).eval().to(memory_format=torch.channels_last)
    audio = np.random.default_rng(0).standard_normal(30 * spec.sample_rate).astype(np.float32) * 0.1
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        x = torch.from_numpy(F.chunks(F.extract(audio, spec), spec))
        with torch.inference_mode():
            torch.softmax(model(x), -1).mean(0)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[1:])


PAPER = {"raw": "15 %", "stft-cnn": "66 %", "crnn-paper": "43 %", "crnn": "—"}


def table(args) -> None:
    """table.md from every result file: the four architectures first, then recipe variants."""
    results = [json.loads(p.read_text()) for p in sorted(args.results.glob("*.json"))]
    results = [r for r in results if "arch" in r and "pooled" in r]  # other benchmarks live here too
    order = list(train.RECIPES)
    results.sort(key=lambda r: (bool(r.get("tag")), order.index(r["arch"]), r.get("tag", "")))
    rows = []
    for r in results:
        if not r.get("tag"):
            r["inference_ms"] = round(inference_ms(r["arch"], len(r["pooled"]["genres"])), 1)
            (args.results / f"{r['arch']}.json").write_text(json.dumps(r, indent=1))
        name = f"`{r['arch']}`" + (f" {r['tag'].lstrip('_')}" if r.get("tag") else "")
        low, high = r["pooled"]["ci95"]
        ms = f"{r['inference_ms']:.0f}" if "inference_ms" in r else "—"
        rows.append(
            f"| {name} | {PAPER[r['arch']] if not r.get('tag') else ''} "
            f"| {100 * r['mean_accuracy']:.1f} ± {100 * r['std_accuracy']:.1f} "
            f"| {100 * r['pooled']['accuracy']:.1f} ({100 * low:.0f}–{100 * high:.0f}) "
            f"| {100 * r['pooled']['balanced_accuracy']:.1f} | {r['pooled']['n']} "
            f"| {r['parameters'] / 1e6:.2f} M | {r['macs_per_chunk'] * F.MAX_CHUNKS / 1e9:.2f} | {ms} "
            f"| {r['recipe']['epochs']} | {r['train_seconds_per_fold']:.0f} s ({r['device']}) |"
        )
    header = (
        "| model | paper (random split) | accuracy, 5-fold mean ± std (%) | pooled accuracy (95 % CI) "
        "| balanced accuracy (%) | n | parameters | GMAC per 30-s clip | CPU ms per 30-s clip "
        "| max epochs | training time per fold |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    md = header + "\n" + "\n".join(rows) + "\n"
    (args.results / "table.md").write_text(md)
    print(md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="cross-validate architectures")
    p_run.add_argument("--data", type=Path, default=None, help="folder per genre (not needed with a full --cache)")
    p_run.add_argument("--archs", nargs="+", default=list(train.RECIPES), choices=list(train.RECIPES))
    p_run.add_argument("--folds", type=int, default=5)
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--epochs", type=int, default=None, help="override every recipe's epoch count")
    p_run.add_argument("--cache", type=Path, default=None, help="folder of feature caches")
    p_run.add_argument("--device", default=None)
    p_run.add_argument("--out", type=Path, default=Path("bench/results"))
    p_run.add_argument("--jobs", type=int, default=1, help="folds trained side by side")
    p_run.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p_run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    p_run.add_argument("--tag", default="", help="suffix of the result file, for recipe variants")
    p_run.add_argument("--eval-chunks", type=int, nargs="*", default=[],
                       help="also score each fold with at most this many chunks per track")
    p_run.add_argument("--teacher", type=Path, default=None,
                       help="distil: per-fold soft targets from bench/distill.py (with --set distill=W)")
    p_run.add_argument("--progress", action="store_true", help="print every epoch")
    p_table = sub.add_parser("table", help="add CPU inference time and write table.md")
    p_table.add_argument("--results", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    {"run": run, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
