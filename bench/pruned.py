"""The default's ears without the channels that never fire: the same outputs for less work.

The frozen MSD vgg tagger that `vgg-msd-fast` reads spends 0.88 GMAC on each 3-s chunk,
74 % of it in its second convolution, whose cost is the product of the first two blocks'
widths. Many of its channels never pass anything through their ReLU: their output is a
constant, the batch norm's shift, whatever the music. `live` finds them on unlabelled
music, the ten Debian game-music packages of issue 14 (bench/student.py fetch), never
GTZAN; `prune` removes them and carries their constant on in one channel that is 1
everywhere, so that the next block computes what it did, borders included
(tests/test_pruned.py); `ship` writes genreq/weights/vgg-msd-fast.pt with those ears
and its head as it was. Nothing is retrained: there is no student to distil, because
what is removed contributes nothing but a constant.

    python bench/student.py fetch --out MUSIC                     # the Debian music
    python bench/pruned.py excerpts --music MUSIC --cache CACHE    # levelled excerpts
    python bench/pruned.py live --cache CACHE                      # CACHE/live.json
    python bench/pruned.py evaluate --cache CACHE --data ../shared/data/gtzan --save \
        --groups ../shared/data/gtzan/labels.csv:artist_split --groups-name labels.csv:artist_split
    python bench/pruned.py ship --cache CACHE
    python bench/pruned.py speed --data ../shared/data/gtzan --full OLD_HEAD_ONLY.pt

`excerpts` reads one 3-s excerpt per SECONDS_PER_EXCERPT of each track (at least 4, at
most MAX_EXCERPTS), spread evenly over 5-95 % of it, levels a track's excerpts together
as `classify` levels a file's, and stores per excerpt the musicnn input with CROP_SLACK
extra frames, which `live` reads at each of CROPS offsets. Tracks are split by a fixed
hash into two sets (VAL_SHARE): `live` finds the channels that fire on the first, and
counts how many of the others fire on the second, tracks it never read.

`evaluate` reads GTZAN as bench/loudness.py --normalised does for the default (the
training clips whole, levelled, every chunk; the held-out clips on the default's two
windows, levelled together), once with the full tagger and once with the pruned one,
and scores both with fd.grid_head_crossval, vgg-msd-fast's tuned head recipe, under the
artist-disjoint protocol: bench/results/pruned.json, with how far the two taggers'
embeddings and tags lie apart on those clips. `speed` times classify_file per clip with
the default before (full ears) and after, alternating: bench/results/pruned_speed.json.
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

from genreq import audio, checkpoint, models, train  # noqa: E402
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
    keep = [torch.nonzero(p > 0).flatten().tolist() for p in on_fit[:-1]]
    keep.append(list(range(len(on_fit[-1]))))  # the last block is the embedding: kept whole
    record = {"excerpts": int(len(fit)), "crops": list(CROPS),
              "live": keep, "firing": [int((p > 0).sum()) for p in on_fit],
              "dead_firing_on_validation": [int(((v > 0) & (f <= 0)).sum())
                                            for f, v in zip(on_fit, on_val, strict=True)],
              "validation_excerpts": int(len(val))}
    record["validation_embedding_max_abs_difference"] = largest_difference(
        prune(full, keep), full, d, val)
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


def prune(full: nn.Module, keep: list[list[int]]) -> nn.Module:
    """The FULL tagger with only the channels KEEP of each block, and the same outputs.

    A dropped channel's ReLU passes nothing, so what it gives the next block is a
    constant: its batch norm's shift, everywhere but in the next convolution's zero
    padding. So each block that drops channels gets one channel that is 1 everywhere
    (zero weights, bias 1, a batch norm that passes it unchanged), and the next
    convolution reads it through the sum of the dropped channels' weights, each times
    its shift: border outputs included, the next block computes what it did."""
    widths = tuple(len(k) + (b + 1 < len(keep)) for b, k in enumerate(keep))
    small = musicnn.build(replace(full.dims, vgg_channels=widths)).eval()
    state = {k: v.clone() for k, v in full.state_dict().items()}
    out = dict(state)
    keep_in = torch.arange(1)
    for b, kept in enumerate(keep):
        kept = torch.tensor(kept)
        n_out = state[f"convs.{b}.weight"].shape[0]
        weight = state[f"convs.{b}.weight"][kept][:, keep_in]
        bias = state[f"convs.{b}.bias"][kept]
        bn = {name: state[f"bns.{b}.{name}"][kept]
              for name in ("weight", "bias", "running_mean", "running_var")}
        if b + 1 == len(keep):
            if len(kept) != n_out:
                raise ValueError("the last block is the embedding: it keeps every channel")
        else:
            dropped = torch.ones(n_out, dtype=torch.bool)
            dropped[kept] = False
            scale = state[f"bns.{b}.weight"] / torch.sqrt(state[f"bns.{b}.running_var"]
                                                          + musicnn.BN_EPS)
            shift = state[f"bns.{b}.bias"] - state[f"bns.{b}.running_mean"] * scale
            weight = torch.cat([weight, torch.zeros(1, *weight.shape[1:])])
            bias = torch.cat([bias, torch.ones(1)])
            one = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0,
                   "running_var": 1.0 - musicnn.BN_EPS}
            bn = {name: torch.cat([v, torch.tensor([one[name]])]) for name, v in bn.items()}
            nxt = state[f"convs.{b + 1}.weight"]
            constant = torch.einsum("kchw,c->khw", nxt[:, dropped], shift[dropped])
            # The next block reads the kept channels and, last, the constant one.
            state[f"convs.{b + 1}.weight"] = torch.cat([nxt, constant[:, None]], 1)
        out[f"convs.{b}.weight"], out[f"convs.{b}.bias"] = weight, bias
        for name, v in bn.items():
            out[f"bns.{b}.{name}"] = v
        keep_in = torch.cat([kept, torch.tensor([n_out])]) if b + 1 < len(keep) else kept
    small.load_state_dict(out)
    return small


def load_excerpts(cache: Path) -> dict[str, np.ndarray]:
    z = np.load(cache / "excerpts.npz")
    return {k: z[k] for k in z.files}


def pruned_tagger(cache: Path) -> nn.Module:
    keep = json.loads((cache / "live.json").read_text())["live"]
    return prune(full_tagger(), keep)


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


def tagger_macs(tagger: nn.Module) -> int:
    """Multiply-accumulates of the convolutions and the tag layer on one 3-s chunk."""
    macs = 0

    def hook(module, _inp, out):
        nonlocal macs
        macs += out.numel() * module.weight[0].numel()

    handles = [m.register_forward_hook(hook) for m in tagger.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        tagger.out(tagger.reference_embed(torch.zeros(1, musicnn.PATCH_FRAMES, 96)))
    for h in handles:
        h.remove()
    return macs


def evaluate(args) -> None:
    import crossval as cv
    import fast_default as fd

    from genreq import dataset, metrics

    torch.set_num_threads(args.threads)
    scanned, grid_in, read_in, k = gtzan_inputs(args.data)
    tracks, kept, genres, dropped = cv.grouped_tracks(None, args.groups, scanned)
    y = np.array([genres.index(t.genre) for t in tracks])
    ears = {"full": full_tagger(), "pruned": pruned_tagger(args.cache)}
    record = {"benchmark": "pruned", "chunks_per_track": k,
              "protocol": cv.protocol_record(args.groups_name or args.groups,
                                             dataset.group_folds(tracks), dropped),
              "head": "vgg-msd-fast's recipe per fold (train.tune_head inside the training "
                      "partitions), fitted on the training clips' levelled grid chunks, "
                      "read on the default's two levelled chunks",
              "live": json.loads((args.cache / "live.json").read_text()),
              "candidates": {}}
    preds, tag_probs = {}, {}
    for name, tagger in ears.items():
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
            "tagger_macs_per_chunk": tagger_macs(tagger),  # its 50 tags included
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
            for tagger in (ears["full"], ears["pruned"]))
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


SHIPPED = REPO / "genreq" / "weights" / "vgg-msd-fast.pt"


def ship(args) -> None:
    """genreq/weights/vgg-msd-fast.pt with the pruned ears and the shipped head as it is:
    the head reads the last block's embedding, which the pruning keeps whole."""
    old, ckpt = checkpoint.load(SHIPPED)
    ears = pruned_tagger(args.cache)
    widths = ears.dims.vgg_widths()
    if widths != models.VggMSDFast.default_channels:
        raise SystemExit(f"live widths {widths} are not VggMSDFast.default_channels "
                         f"{models.VggMSDFast.default_channels}: update it first")
    model = models.VggMSDFast(replace(old.dims, channels=widths), tagger=ears).eval()
    head = {k: v for k, v in old.state_dict().items() if not k.startswith("tagger.")}
    missing, unexpected = model.load_state_dict(head, strict=False)
    assert not unexpected and all(k.startswith("tagger.") for k in missing), (missing, unexpected)
    result = json.loads((RESULTS / "pruned.json").read_text())["candidates"]["pruned"]
    metrics = dict(ckpt["metrics"], parameters=models.count_parameters(model),
                   macs_per_chunk=models.count_macs(model),
                   pruned_crossval={"result": "bench/results/pruned.json",
                                    **{k: result[k] for k in ("n", "accuracy", "ci95",
                                                              "balanced_accuracy", "ece")}})
    recipe = dict(ckpt["recipe"], ears=(
        "vgg-msd's tagger without the channels of blocks 1-4 that never fire on the "
        "excerpts of the Debian game music (bench/pruned.py live); the dropped channels' "
        "constant output carried on by one channel of ones in each pruned block"),
        ears_widths=list(widths), ears_sha256=train.tagger_digest(model),
        ears_command="python bench/student.py fetch --out MUSIC && python bench/pruned.py "
        "excerpts --music MUSIC --cache CACHE && python bench/pruned.py live --cache CACHE && "
        "python bench/pruned.py ship --cache CACHE")
    checkpoint.save(SHIPPED, model, "vgg-msd-fast", ckpt["genres"], model.default_features(),
                    metrics, recipe)
    log(f"wrote {SHIPPED}: ears {widths}, {tagger_macs(ears) / 1e9:.3f} GMAC a chunk")


def speed(args) -> None:
    """Classifier.classify_file per GTZAN clip, one torch thread, the full ears (ARGS.full,
    the head-only checkpoint as it shipped before) and the shipped pruned ones alternating
    clip by clip, the order reversed every round: CPU seconds of this process."""
    import os
    import statistics

    from genreq import dataset
    from genreq.predict import Classifier, StageTimes

    torch.set_num_threads(1)
    scanned = dataset.scan(args.data)[0]
    clips = [t.path for t in scanned][:: max(1, len(scanned) // args.clips)][: args.clips]
    clfs = {"full": Classifier.load(args.full), "pruned": Classifier.load(SHIPPED)}
    for clf in clfs.values():  # first-call costs are not per-clip costs
        clf.classify_file(clips[0])
    cpu = {name: [] for name in clfs}
    stages: dict[str, dict[str, list]] = {name: {} for name in clfs}
    same = 0
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
            same += tops["full"].genre == tops["pruned"].genre
    ratios = [f / p for f, p in zip(cpu["full"], cpu["pruned"], strict=True)]

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
        "ratio_full_to_pruned": {"median": round(statistics.median(ratios), 3),
                                 "p10": round(float(np.quantile(ratios, 0.1)), 3),
                                 "p90": round(float(np.quantile(ratios, 0.9)), 3)},
        "same_genre": f"{same} of {len(ratios)}",
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
    p = sub.add_parser("ship", help="write genreq/weights/vgg-msd-fast.pt with the pruned ears")
    p.add_argument("--cache", type=Path, required=True)
    p = sub.add_parser("speed", help="classify_file per clip, full against pruned ears")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--full", type=Path, required=True, help="the head-only checkpoint of before")
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    {"excerpts": excerpts, "live": live, "evaluate": evaluate, "ship": ship,
     "speed": speed}[args.cmd](args)


if __name__ == "__main__":
    main()
