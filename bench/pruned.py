"""vgg-msd's tagger without the channels that never fire: the same outputs for less work.

The frozen MSD vgg tagger that `vgg-msd-fast` (the default), `vgg-msd` and `vgg-msd-gru`
read spends 0.88 GMAC on each 3-s chunk, 74 % of it in its second convolution, whose cost
is the product of the first two blocks' widths. Many of its channels never pass anything
through their ReLU: their output is a constant, the batch norm's shift, whatever the
music. `live` finds them on unlabelled music, the ten Debian game-music packages of
issue 14 (bench/student.py fetch), never GTZAN; `ship` writes the channels that fire to
genreq/weights/vgg-msd-live.json, with the digest of the weights they were found in.
The tagger's fast path (musicnn.Vgg.fast_embed) then leaves the others out and carries
their constant on in one channel that is 1 everywhere, so that the next block computes
what it did, borders included (musicnn.without_dead_channels, tests/test_pruned.py).
Nothing is retrained and no checkpoint changes: what is left out contributes nothing but
a constant, so the models and their versions stay what they were.

    python bench/student.py fetch --out MUSIC                     # the Debian music
    python bench/pruned.py excerpts --music MUSIC --cache CACHE    # levelled excerpts
    python bench/pruned.py live --cache CACHE                      # CACHE/live.json
    python bench/pruned.py ship --cache CACHE                      # vgg-msd-live.json
    python bench/pruned.py evaluate --cache CACHE --data ../shared/data/gtzan --save \
        --groups ../shared/data/gtzan/labels.csv:artist_split --groups-name labels.csv:artist_split
    python bench/pruned.py speed --data ../shared/data/gtzan

`excerpts` reads one 3-s excerpt per SECONDS_PER_EXCERPT of each track (at least 4, at
most MAX_EXCERPTS), spread evenly over 5-95 % of it, levels a track's excerpts together
as `classify` levels a file's, and stores per excerpt the musicnn input with CROP_SLACK
extra frames, which `live` reads at each of CROPS offsets. Tracks are split by a fixed
hash into two sets (VAL_SHARE): `live` finds the channels that fire on the first, and
counts how many of the others fire on the second, tracks it never read.

`evaluate` reads GTZAN as bench/loudness.py --normalised does for the default (the
training clips whole, levelled, every chunk; the held-out clips on the default's two
windows, levelled together), once with every channel and once without those `live`
found dead, and scores both with fd.grid_head_crossval, vgg-msd-fast's tuned head
recipe, under the artist-disjoint protocol: bench/results/pruned.json, with how far the
two taggers' embeddings and tags lie apart on those clips. `speed` times classify_file
per clip for vgg-msd-fast and vgg-msd, each with and without its dead channels,
alternating: bench/results/pruned_speed.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from genreq import audio, checkpoint, models  # noqa: E402
from genreq import features as F  # noqa: E402
from genreq.pretrained import musicnn  # noqa: E402

RESULTS = REPO / "bench" / "results"
SPAN = (0.05, 0.95)
SECONDS_PER_EXCERPT = 8.0
MAX_EXCERPTS = 30
CROP_SLACK = 24  # musicnn frames (16 ms each) of room for a shifted crop
CROPS = (0, 12, 24)  # the offsets into the slack that `live` reads
VAL_SHARE = 0.1
LEVELLED = replace(musicnn.FEATURE_SPEC, level_dbfs=models.LEVEL_DBFS)
LOG_EVERY = 20  # tracks


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def is_validation(path: str) -> bool:
    return int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) / 2**32 < VAL_SHARE


def full_tagger() -> nn.Module:
    model, _ = checkpoint.load(REPO / "genreq" / "weights" / "vgg-msd.pt")
    return model.tagger.eval()


# --- excerpts -------------------------------------------------------------------------------


def excerpt_inputs(path: Path, duration_s: float) -> np.ndarray:
    """(k, 187 + CROP_SLACK, 96) float32 musicnn input of K excerpts of one track, levelled
    together."""
    spec = LEVELLED
    frames = spec.chunk_width + CROP_SLACK
    length = frames * spec.hop_length / spec.sample_rate + spec.n_fft / spec.sample_rate
    k = int(np.clip(duration_s // SECONDS_PER_EXCERPT, 4, MAX_EXCERPTS))
    first, last = SPAN[0] * duration_s, SPAN[1] * duration_s - length
    windows = [(float(s), length) for s in np.linspace(first, max(first, last), k)]
    excerpts = F.levelled(audio.load_windows(path, windows, spec.sample_rate), spec)
    # The musicnn extractor lays a chunk out (mel, time); the tagger reads (time, mel).
    return np.stack([F.fit_width(F.extract(e, spec), frames)[:, :frames].T for e in excerpts])


def excerpts(args) -> None:
    manifest = json.loads((args.music / "manifest.json").read_text())
    out_path = args.cache / "excerpts.npz"
    rows: dict[str, list] = {"x": [], "track": [], "val": []}
    started = time.perf_counter()
    for i, t in enumerate(manifest["tracks"]):
        try:
            x = excerpt_inputs(args.music / t["path"], t["duration_s"])
        except Exception as exc:  # one undecodable track must not stop the rest
            log(f"skipping {t['path']}: {exc}")
            continue
        n = len(x)
        rows["x"].append(x.astype(np.float16))
        rows["track"].append(np.full(n, i))
        rows["val"].append(np.full(n, is_validation(t["path"])))
        if (i + 1) % LOG_EVERY == 0:
            done = sum(len(r) for r in rows["track"])
            log(f"excerpts: {i + 1}/{len(manifest['tracks'])} tracks, {done} excerpts, "
                f"{time.perf_counter() - started:.0f} s")
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(out_path, **{k: np.concatenate(v) for k, v in rows.items()})
    log(f"wrote {out_path}: {sum(len(r) for r in rows['track'])} excerpts of "
        f"{len(rows['track'])} tracks in {time.perf_counter() - started:.0f} s")


# --- prune ----------------------------------------------------------------------------------


def peak_inputs(tagger: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Per block, each channel's largest convolution output (before its ReLU) on X."""
    peaks, h = [], tagger.input_bn(x.unsqueeze(1))
    for conv, bn, pool in zip(tagger.convs, tagger.bns, tagger.POOLS, strict=True):
        pre = conv(h)
        peaks.append(pre.amax((0, 2, 3)))
        h = nn.functional.max_pool2d(bn(torch.relu(pre)), pool)
    return peaks


def peaks_over(tagger: nn.Module, d: dict, idx: np.ndarray) -> list[torch.Tensor]:
    """peak_inputs over the excerpts IDX, each at every stored crop."""
    width, found = LEVELLED.chunk_width, None
    with torch.no_grad():
        for start in range(0, len(idx), 64):
            rows = d["x"][idx[start:start + 64]]
            for o in CROPS:
                p = peak_inputs(tagger, torch.from_numpy(rows[:, o:o + width].astype(np.float32)))
                found = p if found is None else [torch.maximum(a, b) for a, b in zip(found, p,
                                                                                     strict=True)]
    return found


def live(args) -> None:
    """CACHE/live.json: per block the channels whose ReLU ever passes anything on the
    training excerpts; and how often the others fire on the validation tracks."""
    torch.set_num_threads(args.threads)
    d = load_excerpts(args.cache)
    fit, val = np.flatnonzero(~d["val"]), np.flatnonzero(d["val"])
    full = full_tagger()
    on_fit, on_val = peaks_over(full, d, fit), peaks_over(full, d, val)
    # The last block is the embedding: it keeps every channel.
    keep = [torch.nonzero(p > 0).flatten().tolist() for p in on_fit[:-1]]
    record = {"weights_sha256": musicnn.weights_digest(full),
              "excerpts": int(len(fit)), "crops": list(CROPS),
              "live": keep, "firing": [int((p > 0).sum()) for p in on_fit],
              "dead_firing_on_validation": [int(((v > 0) & (f <= 0)).sum())
                                            for f, v in zip(on_fit, on_val, strict=True)],
              "validation_excerpts": int(len(val))}
    record["validation_embedding_max_abs_difference"] = largest_difference(
        ears(keep), ears(None), d, val)
    (args.cache / "live.json").write_text(json.dumps(record) + "\n")
    log(f"channels firing per block {record['firing']} of {[len(p) for p in on_fit]}; dead ones "
        f"firing on the validation tracks: {record['dead_firing_on_validation']}")


def largest_difference(small: nn.Module, full: nn.Module, d: dict, idx: np.ndarray) -> float:
    """The largest difference between SMALL's and FULL's embeddings of the excerpts IDX
    (their first crop)."""
    width, worst = LEVELLED.chunk_width, 0.0
    with torch.inference_mode():
        for start in range(0, len(idx), 64):
            x = torch.from_numpy(d["x"][idx[start:start + 64], :width].astype(np.float32))
            worst = max(worst, float((small.embed(x) - full.embed(x)).abs().max()))
    return worst


def ears(live: list[list[int]] | None) -> nn.Module:
    """vgg-msd's tagger whose fast path drops the channels not in LIVE (None: none)."""
    tagger = full_tagger()
    tagger.live_channels, tagger.prune_dead = live, live is not None
    return tagger


def fast_macs(tagger: nn.Module, live: list[list[int]] | None) -> int:
    """Multiply-accumulates of the convolutions and the tag layer on one 3-s chunk, with
    the channels LIVE keeps and one constant channel in each pruned block."""
    widths = [len(k) + 1 for k in live or []]
    widths += [c.out_channels for c in tagger.convs][len(widths):]
    t, f, c_in, macs = musicnn.PATCH_FRAMES, tagger.dims.n_mels, 1, 0
    for (pt, pf), c_out in zip(tagger.POOLS, widths, strict=True):
        macs += t * f * 9 * c_in * c_out
        t, f, c_in = t // pt, f // pf, c_out
    return macs + tagger.out.in_features * tagger.out.out_features


def load_excerpts(cache: Path) -> dict[str, np.ndarray]:
    z = np.load(cache / "excerpts.npz")
    return {k: z[k] for k in z.files}


def cached_live(cache: Path) -> list[list[int]]:
    return json.loads((cache / "live.json").read_text())["live"]


# --- evaluate -------------------------------------------------------------------------------


def gtzan_inputs(data: Path):
    """Per GTZAN clip: every chunk of the clip decoded whole and levelled (the grid a
    head is fitted on), and the default's two chunks of its excerpt windows, levelled
    together (what `classify` reads)."""
    from genreq import dataset
    from genreq.predict import Classifier

    scanned, _ = dataset.scan(data)
    clf = Classifier.load("vgg-msd-fast")
    assert clf.features.level_dbfs == LEVELLED.level_dbfs
    grid, read = [], []
    for t in scanned:
        (whole,) = F.levelled([audio.load_audio(t.path, LEVELLED.sample_rate)], LEVELLED)
        grid.append(F.chunks(F.extract(whole, LEVELLED), LEVELLED, None)[:, 0].transpose(0, 2, 1))
        windows = clf.excerpt_windows(audio.duration_s(t.path))
        excerpts = audio.load_windows(t.path, windows, LEVELLED.sample_rate)
        read.append(clf.chunks_of_excerpts(excerpts)[:, 0].transpose(0, 2, 1))
    return scanned, grid, read, clf.max_chunks


def evaluate(args) -> None:
    import crossval as cv
    import fast_default as fd

    from genreq import dataset, metrics

    torch.set_num_threads(args.threads)
    scanned, grid_in, read_in, k = gtzan_inputs(args.data)
    tracks, kept, genres, dropped = cv.grouped_tracks(None, args.groups, scanned)
    y = np.array([genres.index(t.genre) for t in tracks])
    live = cached_live(args.cache)
    taggers = {"full": ears(None), "pruned": ears(live)}
    record = {"benchmark": "pruned", "chunks_per_track": k,
              "protocol": cv.protocol_record(args.groups_name or args.groups,
                                             dataset.group_folds(tracks), dropped),
              "head": "vgg-msd-fast's recipe per fold (train.tune_head inside the training "
                      "partitions), fitted on the training clips' levelled grid chunks, "
                      "read on the default's two levelled chunks",
              "live": json.loads((args.cache / "live.json").read_text()),
              "candidates": {}}
    preds, tag_probs = {}, {}
    for name, tagger in taggers.items():
        with torch.inference_mode():
            grid = [tagger.embed(torch.from_numpy(grid_in[i])).double().numpy() for i in kept]
            read = [tagger.embed(torch.from_numpy(read_in[i])) for i in kept]
            tag_probs[name] = np.concatenate([torch.sigmoid(tagger.out(r)).numpy() for r in read])
            read = [r.double().numpy() for r in read]
        probs, _folds = fd.grid_head_crossval(grid, read, y, tracks, len(genres), k)
        pred = probs.argmax(1)
        s = metrics.summarise(y, pred, genres, probs)
        preds[name] = pred
        record["candidates"][name] = {
            "tagger_macs_per_chunk": fast_macs(tagger, live if name == "pruned" else None),
            "n": s["n"], "accuracy": s["accuracy"], "ci95": s["ci95"],
            "balanced_accuracy": s["balanced_accuracy"], "ece": s["ece"],
            "recall": {g: s["per_genre"][g]["recall"] for g in genres},
        }
        log(f"{name}: {100 * s['accuracy']:.1f} % ({100 * s['ci95'][0]:.1f}-"
            f"{100 * s['ci95'][1]:.1f}), balanced {100 * s['balanced_accuracy']:.1f} %, "
            f"ECE {s['ece']:.3f}, n = {s['n']}")
    (a, pa), (b, pb) = preds.items()
    gained, lost = int(((pb == y) & (pa != y)).sum()), int(((pb != y) & (pa == y)).sum())
    ta, tb = tag_probs.values()
    with torch.inference_mode():
        full_emb, pruned_emb = (
            np.concatenate([tagger.embed(torch.from_numpy(read_in[i])).numpy() for i in kept])
            for tagger in (taggers["full"], taggers["pruned"]))
    record["pruned_against_full"] = {
        "embedding_max_abs_difference": float(np.abs(full_emb - pruned_emb).max()),
        "embedding_mean_abs": float(np.abs(full_emb).mean()),
        "same_genre": round(float((pa == pb).mean()), 4), "clips_gained": gained,
        "clips_lost": lost, "mcnemar_p": round(cv.mcnemar_exact(gained, lost), 4),
        "tag_probability_max_abs_difference": float(np.abs(ta - tb).max()),
        "same_top_tag": round(float((ta.argmax(1) == tb.argmax(1)).mean()), 4),
    }
    text = json.dumps(record, indent=1)
    print(text)
    if args.save:
        (RESULTS / "pruned.json").write_text(text + "\n")


# --- ship and speed -------------------------------------------------------------------------


def ship(args) -> None:
    """genreq/weights/vgg-msd-live.json: CACHE/live.json's channels, which every vgg model
    whose tagger has these weights (vgg-msd, vgg-msd-fast, vgg-msd-gru) then drops the
    others of."""
    record = json.loads((args.cache / "live.json").read_text())
    if record["weights_sha256"] != musicnn.weights_digest(full_tagger()):
        raise SystemExit("live.json was found in other weights than vgg-msd.pt's")
    shipped = {"weights_sha256": record["weights_sha256"], "live": record["live"],
               "found_by": "bench/pruned.py live", "music": "the Debian game-music packages "
               "of issue 14 (bench/student.py fetch), never GTZAN",
               **{k: record[k] for k in ("excerpts", "crops", "firing",
                                         "dead_firing_on_validation", "validation_excerpts",
                                         "validation_embedding_max_abs_difference")}}
    musicnn.LIVE_CHANNELS_FILE.write_text(json.dumps(shipped) + "\n")
    log(f"wrote {musicnn.LIVE_CHANNELS_FILE}: {[len(k) for k in record['live']]} live channels")


def speed(args) -> None:
    """Classifier.classify_file per GTZAN clip, one torch thread, for the default and for
    vgg-msd, each with every channel of its tagger and without those that never fire,
    the four alternating clip by clip, the order reversed every round: CPU seconds of
    this process."""
    import os
    import statistics

    from genreq import dataset
    from genreq.predict import Classifier, StageTimes

    torch.set_num_threads(1)
    scanned = dataset.scan(args.data)[0]
    clips = [t.path for t in scanned][:: max(1, len(scanned) // args.clips)][: args.clips]
    clfs = {}
    for model in ("vgg-msd-fast", "vgg-msd"):  # the models whose tagger is vgg-msd's
        for pruned in (False, True):
            clf = Classifier.load(model)
            assert musicnn.shipped_live(clf.model.tagger), "no live channels for these weights"
            clf.model.tagger.prune_dead = pruned
            clfs[f"{model}{' pruned' if pruned else ''}"] = clf
    for clf in clfs.values():  # first-call costs are not per-clip costs
        clf.classify_file(clips[0])
    cpu = {name: [] for name in clfs}
    stages: dict[str, dict[str, list]] = {name: {} for name in clfs}
    models_ = ("vgg-msd-fast", "vgg-msd")
    same = dict.fromkeys(models_, 0)
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        for path in clips:
            tops = {}
            for name in (list(clfs) if r % 2 == 0 else list(clfs)[::-1]):
                times, start = StageTimes(), time.process_time()
                tops[name] = clfs[name].classify_file(path, on_stage=times)
                cpu[name].append(time.process_time() - start)
                for stage, seconds in times.items():
                    stages[name].setdefault(stage, []).append(seconds)
            for model in models_:
                same[model] += tops[model].genre == tops[f"{model} pruned"].genre
    ratios = {model: [f / p for f, p in zip(cpu[model], cpu[f"{model} pruned"], strict=True)]
              for model in models_}

    def ms(values):
        q = np.quantile(values, [0.1, 0.5, 0.9])
        return {"p10": round(1000 * q[0], 1), "median": round(1000 * q[1], 1),
                "p90": round(1000 * q[2], 1)}

    report = {
        "benchmark": "pruned speed", "clips": len(clips), "rounds": args.rounds,
        "what": " ".join(speed.__doc__.split()),
        "load_average_before": round(load_before, 2),
        "cpu_ms_per_clip": {name: ms(v) for name, v in cpu.items()},
        "clips_per_cpu_s": {name: round(1 / statistics.median(v), 2) for name, v in cpu.items()},
        "stages_ms_median": {name: {stage: round(1000 * statistics.median(v), 2)
                                    for stage, v in by_stage.items()}
                             for name, by_stage in stages.items()},
        "ratio_full_to_pruned": {model: {"median": round(statistics.median(r), 3),
                                         "p10": round(float(np.quantile(r, 0.1)), 3),
                                         "p90": round(float(np.quantile(r, 0.9)), 3)}
                                 for model, r in ratios.items()},
        "same_genre": {model: f"{same[model]} of {len(r)}" for model, r in ratios.items()},
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    text = json.dumps(report, indent=1)
    print(text)
    (RESULTS / "pruned_speed.json").write_text(text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("excerpts", help="levelled excerpts of the Debian music")
    p.add_argument("--music", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p = sub.add_parser("live", help="the channels that ever fire: CACHE/live.json")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("evaluate", help="full and pruned ears under the protocol: pruned.json")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--groups", required=True)
    p.add_argument("--groups-name")
    p.add_argument("--save", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("ship", help="write genreq/weights/vgg-msd-live.json")
    p.add_argument("--cache", type=Path, required=True)
    p = sub.add_parser("speed", help="classify_file per clip, full against pruned ears")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    {"excerpts": excerpts, "live": live, "evaluate": evaluate, "ship": ship,
     "speed": speed}[args.cmd](args)


if __name__ == "__main__":
    main()
