"""Audio augmentation for vgg-msd's genre head: does a head that also heard every
training clip sped up, pitch-shifted, stretched, tilted in EQ and mixed with another clip
of its genre hear real music better?

    python bench/augment.py embed --data ../shared/data/gtzan \\
        --groups ../shared/data/gtzan/labels.csv:artist_split --cache CACHE --workers 2
    python bench/augment.py accuracy --groups ../shared/data/gtzan/labels.csv:artist_split \\
        --groups-name labels.csv:artist_split --cache CACHE

`embed` decodes each clip at the tagger's rate, makes every variant of VARIANTS (fixed
before any figure was seen; none of them changes a clip's genre), and caches the vgg-msd
embedding of every 3-s chunk of each variant, on the same chunk grid as bench/crossval.py
embed (CACHE/augment.npz). Mixes pair a clip with another of the same genre and the same
`artist_split` partition, so that in every fold a mix is either wholly training or wholly
held out; the held-out partition's variants are never read.

`accuracy` is vgg-msd's own head recipe (`genreq train --arch vgg-msd --tune-head`: the
mean of each clip's grid chunks, class-balanced, C and the logit adjustment tau tuned for
inner balanced accuracy with the two training partitions as inner folds, then T), with
each training clip's variants of one family (or all) added as extra samples of its genre.
A clip and its variants weigh together what the clip alone weighs, so C keeps its scale;
inner folds hold a clip's variants with the clip, and inner scores read originals only.
Each candidate is scored on the held-out partition as vgg-msd reads a clip (the grid's
five chunks, and the five excerpt windows of `genreq classify`) and as the default
vgg-msd-fast does (two excerpt windows: bench/fast_default.py embed's CACHE/fast-k2.npz):
bench/results/augment/<family>.json, one record per reading. The `none` family is the
recipe as shipped and must reproduce bench/results/fast/vgg-msd_k{2,5}_grid-head.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import soxr
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import crossval as cv  # noqa: E402  (bench/ is not a package)
import fast_default as fd  # noqa: E402

from genreq import audio, dataset, models, train  # noqa: E402
from genreq import features as F  # noqa: E402

RESULTS = REPO / "bench" / "results" / "augment"
TAGGER = "vgg-msd"
# family: (kind, amount) of each variant. speed: played r times as fast (pitch and tempo
# together, as a turntable); pitch: semitones, tempo kept; stretch: tempo ×r, pitch kept;
# tilt: dB per octave about 1 kHz (bass-heavy or bright), capped at ±12 dB; mix: an equal
# mix with another clip of the genre (seeded partner).
VARIANTS = {
    "speed": (("speed", 0.9), ("speed", 0.95), ("speed", 1.05), ("speed", 1.1)),
    "pitch": (("pitch", -2), ("pitch", -1), ("pitch", 1), ("pitch", 2)),
    "stretch": (("stretch", 0.9), ("stretch", 1.1)),
    "tilt": (("tilt", -3), ("tilt", 3)),
    "mix": (("mix", 0), ("mix", 1)),
}
FAMILIES = ("none", *VARIANTS, "all")
TILT_PIVOT_HZ = 1000.0
TILT_CAP_DB = 12.0
MIX_SEED = 0


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


def tilt(x: np.ndarray, rate: int, db_per_octave: float) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    hz = np.maximum(np.fft.rfftfreq(len(x), 1 / rate), 20.0)
    gain_db = np.clip(db_per_octave * np.log2(hz / TILT_PIVOT_HZ), -TILT_CAP_DB, TILT_CAP_DB)
    y = np.fft.irfft(spectrum * 10 ** (gain_db / 20), n=len(x))
    return y * (rms(x) / rms(y))


def mixed(x: np.ndarray, partner: np.ndarray) -> np.ndarray:
    partner = np.resize(partner, len(x))  # loops a shorter partner
    y = 0.5 * (x / rms(x) + partner / rms(partner))
    return y * (rms(x) / rms(y))


def variant(x: np.ndarray, rate: int, kind: str, amount: float, partner=None) -> np.ndarray:
    if kind == "speed":
        y = soxr.resample(x, rate * amount, rate)
    elif kind in ("pitch", "stretch"):
        # The phase vocoder loses about 3 dB; the level is put back, as every variant's is,
        # so that loudness (which the log-mel input sees) is not what a family changes.
        if kind == "pitch":
            y = librosa.effects.pitch_shift(x, sr=rate, n_steps=amount)
        else:
            y = librosa.effects.time_stretch(x, rate=amount)
        y = y * (rms(x) / rms(y))
    elif kind == "tilt":
        y = tilt(x, rate, amount)
    elif kind == "mix":
        y = mixed(x, partner)
    else:
        raise ValueError(kind)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def mix_partners(tracks: list[dataset.LabelledTrack]) -> dict[int, list[int]]:
    """Per clip, its two seeded partners: other clips of its genre and partition."""
    rng = np.random.default_rng(MIX_SEED)
    out = {}
    for i, t in enumerate(tracks):
        pool = [j for j, u in enumerate(tracks)
                if j != i and (u.genre, u.group) == (t.genre, t.group)]
        out[i] = [int(rng.choice(pool)) for _ in VARIANTS["mix"]] if pool else []
    return out


def _embed_some(args: tuple) -> list[tuple[int, int, np.ndarray]]:
    """(clip, variant index, (chunks, 256) embeddings) for the clips `todo`."""
    paths, todo, partners, threads = args
    torch.set_num_threads(threads)
    spec = cv.UNLEVELLED
    tagger = models.build(TAGGER, 10, spec).tagger.eval()
    waves: dict[int, np.ndarray] = {}

    def wave(i: int) -> np.ndarray:
        if i not in waves:
            waves[i] = audio.load_audio(paths[i], spec.sample_rate)
        return waves[i]

    out = []
    flat = [v for family in VARIANTS.values() for v in family]
    with torch.inference_mode():
        for i in todo:
            for v, (kind, amount) in enumerate(flat):
                if kind == "mix":
                    if not partners[i]:
                        continue
                    x = variant(wave(i), spec.sample_rate, kind, amount,
                                wave(partners[i][int(amount)]))
                else:
                    x = variant(wave(i), spec.sample_rate, kind, amount)
                chunks = torch.from_numpy(F.chunks(F.extract(x, spec), spec, max_chunks=None))
                emb = tagger.embed(chunks[:, 0].transpose(1, 2).contiguous())
                out.append((i, v, emb.numpy()))
            fd.log(f"augment: clip {i} done")
    return out


def embed(args) -> None:
    tracks, kept, genres, _ = cv.grouped_tracks(args.data, args.groups)
    scanned, _ = dataset.scan(args.data)
    names = [str(scanned[i].path.relative_to(scanned[i].path.parents[1])) for i in kept]
    paths = [scanned[i].path for i in kept]
    partners = mix_partners(tracks)
    started = time.perf_counter()
    jobs = [(paths, list(range(w, len(tracks), args.workers)), partners, args.threads)
            for w in range(args.workers)]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [r for part in pool.map(_embed_some, jobs) for r in part]
    rows.sort(key=lambda r: (r[0], r[1]))
    flat = [f"{k}:{a:g}" for family in VARIANTS.values() for k, a in family]
    np.savez(
        args.cache / "augment.npz",
        names=np.array(names),
        variants=np.array(flat),
        embedding=np.concatenate([r[2] for r in rows]),
        track=np.concatenate([np.full(len(r[2]), r[0]) for r in rows]),
        variant=np.concatenate([np.full(len(r[2]), r[1]) for r in rows]),
        partners=np.array([partners[i] + [-1] * (len(VARIANTS["mix"]) - len(partners[i]))
                           for i in range(len(tracks))]),
    )
    fd.log(f"augment: {len(tracks)} clips × {len(flat)} variants in "
           f"{time.perf_counter() - started:.0f} s")


# --- heads with augmented samples -------------------------------------------------------


def family_variants(family: str, variant_names: list[str]) -> list[int]:
    if family == "none":
        return []
    kinds = {k for k, _ in VARIANTS[family]} if family != "all" else None
    return [v for v, name in enumerate(variant_names)
            if kinds is None or name.split(":")[0] in kinds]


def load_variants(cache: Path, names: list[str], family: str) -> list[list[np.ndarray]]:
    """Per clip (in `names` order), the (chunks, 256) embeddings of its variants of `family`."""
    if family == "none":
        return [[] for _ in names]
    z = np.load(cache / "augment.npz")
    order = {n: i for i, n in enumerate(z["names"])}
    wanted = family_variants(family, list(z["variants"]))
    x = z["embedding"].astype(np.float64)
    out = []
    for n in names:
        i = order[n]
        rows = z["track"] == i
        # a clip with no partner of its genre and partition has no mixes
        out.append([x[rows & (z["variant"] == v)] for v in wanted
                    if (rows & (z["variant"] == v)).any()])
    return out


def fit_augmented(items: list[list[np.ndarray]], y: np.ndarray, n_classes: int, c: float,
                  taus=train.TAU_GRID) -> dict[float, train.LinearHead]:
    """train.fit_track_head with each clip's variants as extra samples of its genre: the
    clip (items[i][0]) and its variants share the clip's balanced weight equally."""
    clip_w = train.balanced_weights(y, n_classes)
    xs, ys, ws = [], [], []
    for item, label, w in zip(items, y, clip_w, strict=True):
        for x in item:
            xs.append(x.mean(0))
            ys.append(label)
            ws.append(w / len(item))
    return train.fit_linear(np.stack(xs), np.array(ys), n_classes, c, np.array(ws), y, taus)


def augmented_crossval(grid_x, variants, readings: dict, y, tracks, n_classes):
    """{reading: out-of-fold probabilities}, fold records: vgg-msd's tuned head recipe with
    the training clips' variants added, read on each of `readings` (name: (chunks, k))."""
    groups = np.array([t.group for t in tracks])
    items = [[g, *v] for g, v in zip(grid_x, variants, strict=True)]
    probs = {r: np.zeros((len(y), n_classes)) for r in readings}
    folds = {r: [] for r in readings}
    for group, test in dataset.group_folds(tracks):
        test, fit = np.array(test), np.flatnonzero(groups != group)
        tuned = train.tune_inner(
            lambda x, labels, c: fit_augmented(x, labels, n_classes, c),
            train.C_GRID, [items[i] for i in fit], y[fit], groups[fit], n_classes,
            by_balanced=True, score_x=[grid_x[i] for i in fit],
        )
        head = fit_augmented([items[i] for i in fit], y[fit], n_classes, tuned.param,
                             (tuned.setting,))[tuned.setting].with_temperature(tuned.temperature)
        for r, (chunk_x, k) in readings.items():
            probs[r][test] = head.track_probs([chunk_x[i] for i in test], k)
            folds[r].append(cv.fold_record(group, test, y, probs[r], c=tuned.param,
                                           tau=tuned.setting, temperature=tuned.temperature))
    return probs, folds


def accuracy(args) -> None:
    tracks, grid_x, y, genres, dropped = fd.load_grid(args.cache, args.groups)
    names = [str(t.path) for t in tracks]
    readings = {"grid-5": (grid_x, F.MAX_CHUNKS)}
    where = {"grid-5": "the grid's five chunks, as vgg-msd's figure on the training path"}
    for k in (5, fd.SHIPPED_K):
        shipped_tracks, chunk_x, y_k, _, _ = fd.load_shipped(args.cache, k, args.groups)
        assert [str(t.path) for t in shipped_tracks] == names and (y_k == y).all()
        readings[f"classify-k{k}"] = (chunk_x, k)
        where[f"classify-k{k}"] = (f"{k} excerpt windows, decoded and cut as Classifier."
                                   "classify_file does (bench/fast_default.py embed)")
    protocol = cv.protocol_record(args.groups_name or args.groups, dataset.group_folds(tracks),
                                  dropped)
    for family in args.families:
        started = time.perf_counter()
        variants = load_variants(args.cache, names, family)
        probs, folds = augmented_crossval(grid_x, variants, readings, y, tracks, len(genres))
        line = []
        for r in readings:
            name = f"{family}_{r}"
            rec = cv.result_record(
                name,
                {
                    "model": f"vgg-msd's tuned head, trained with {family} variants",
                    "arch": fd.SHIPPED if r == f"classify-k{fd.SHIPPED_K}" else TAGGER,
                    "augmentation": family,
                    "variants": [f"{k}:{a:g}" for k, a in
                                 (VARIANTS.get(family) or (() if family == "none" else
                                  [v for f in VARIANTS.values() for v in f]))],
                    "head_fit": "train.tune_head's recipe on the mean of each training clip's "
                    "grid chunks, each variant an extra sample sharing its clip's weight",
                    "scored_on": where[r],
                },
                protocol, y, probs[r], folds[r], genres,
                extra={"oof_pred": ",".join(str(p) for p in probs[r].argmax(1))},
            )
            cv.write(args.out / f"{name}.json", rec)
            line.append(f"{r} {rec['accuracy']:.3f} (bal {rec['balanced_accuracy']:.3f})")
        fd.log(f"{family:8s} " + "  ".join(line) + f"  [{time.perf_counter() - started:.0f} s]")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("embed", help="cache the vgg-msd embeddings of every clip's variants")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--groups", required=True, metavar="FILE:COLUMN")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p = sub.add_parser("accuracy", help="CV of vgg-msd's head trained with each family")
    p.add_argument("--groups", required=True, metavar="FILE:COLUMN")
    p.add_argument("--groups-name", default=None)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    {"embed": embed, "accuracy": accuracy}[args.command](args)


if __name__ == "__main__":
    main()
