"""The accurate model (vgg-msd) fast: every candidate against the path genreq had, one thread.

    .venv/bin/python bench/accurate.py --save           # writes bench/results/accurate.json
    .venv/bin/python bench/accurate.py --clips 30       # a quick look (fidelity on 30 clips)
    .venv/bin/python bench/accurate.py --rss-tracks 6   # also a real worker's resident memory
    .venv/bin/python bench/accurate.py --model musicnn-msd --save   # accurate-musicnn-msd.json

With `--model musicnn-msd` the candidates are that tagger's: `reference`, the port as
genreq ran it before its fast path (torch mel, musicnn.Musicnn.reference_embed), and
`shipped`, musicnn.Musicnn.fast_embed (genreq now); both scored on every clip.

The reference is vgg-msd as genreq ran it before this benchmark: librosa's mel
spectrogram (features.musicnn_log_mel_librosa), the tagger's layers as trained
(musicnn.Vgg.reference_embed) in channels-last layout, five 3-s patches per clip in one
forward pass. Each candidate changes one thing, or is the path genreq now ships:

- `nchw`, `jit_freeze`: the reference layers in NCHW layout, and traced + frozen by TorchScript;
- `torch_compile`: torch.compile of the reference layers (inductor, C++ codegen);
- `ort_fp32`, `ort_int8_dynamic`, `ort_int8_static`: the reference graph exported to ONNX
  and run by ONNX Runtime (only if `onnxruntime` and `onnx` import), in float32 and
  quantised to int8 (static: per-channel weights, activations calibrated on CALIBRATION_CLIPS
  clips of the `train` split);
- `torch_features`: the mel front end in torch (features.musicnn_log_mel, now the default);
- `fast_layers`: musicnn.Vgg.fast_embed, the same function computed faster (now the default);
- `ort_fp32_torch_features`: ONNX Runtime's float32 graph with the torch mel front end;
- `shipped`: both, i.e. Classifier.classify_file as genreq runs it now;
- `shipped_batch4`: the same with four clips' patches in one forward pass;
- `shipped_3_patches`, `shipped_4_patches`: fewer, evenly placed patches per clip.

Fidelity, on every clip of DATA/labels.csv (257 shared clips) for the candidates that
change the arithmetic (EVERY_CLIP), on the first OTHERS_CLIPS for the rest (each row
says its n): the largest absolute difference from the reference in any genre or tag
probability of a clip (the mean over its patches, as genreq reports them), and the share
of clips whose top genre is the reference's. Speed: on --time-clips clips, each
candidate's decode + features + model time per clip (wall and this process's CPU),
measured in --rounds rounds with the candidates alternating in every round, so that a
busy moment of the shared machine falls on all of them; the figure is the median over
rounds of the mean per clip, the ratio reference/candidate is taken round by round. The
load average is recorded with the figures.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GTZAN = REPO.parent / "shared" / "data" / "gtzan"
RESULTS = REPO / "bench" / "results" / "accurate.json"  # vgg-msd; other models add -MODEL
MODEL = "vgg-msd"
MODELS = ("vgg-msd", "musicnn-msd")
CALIBRATION_CLIPS = 32
# Scored on every clip: what changes the arithmetic (the shipped path, fewer patches,
# int8). The rest re-run the reference's float32 graph, scored on OTHERS_CLIPS clips.
EVERY_CLIP = ("shipped", "shipped_4_patches", "shipped_3_patches", "ort_int8_static")
OTHERS_CLIPS = 32
TARGETS = {"clips_per_s_per_core": 10.0, "max_abs_deviation": 0.02,
           "top_genre_agreement": 0.98, "worker_rss_mb": 400.0}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Candidate:
    name: str
    description: str
    model: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # chunks -> genre, tag probs
    torch_features: bool = False
    patches: int = 5
    batch_clips: int = 1


# --- the clips and their inputs --------------------------------------------------------------


def read_clips(data: Path) -> list[dict]:
    with open(data / "labels.csv", newline="") as f:
        return [{**r, "path": data / r["path"]} for r in csv.DictReader(f)]


def decode(classifier, path: Path, patches: int) -> list[np.ndarray]:
    from genreq import audio, features

    spec = classifier.features
    windows = features.excerpt_windows(audio.duration_s(path), spec, max_chunks=patches)
    return audio.load_windows(path, windows, spec.sample_rate)


def chunks(classifier, excerpts: list[np.ndarray], torch_features: bool, patches: int):
    from genreq import features

    spec = classifier.features
    log_mel = features.musicnn_log_mel if torch_features else features.musicnn_log_mel_librosa
    per_excerpt = max(1, patches // len(excerpts))
    return np.concatenate([features.chunks(log_mel(e, spec), spec, per_excerpt)
                           for e in excerpts])


# --- the candidates --------------------------------------------------------------------------


def _torch_model(model, embed: str | None = None) -> Callable:
    import torch

    tagger = type(model.tagger)  # musicnn.Vgg or musicnn.Musicnn

    def run(x: np.ndarray):
        patch = mock.patch.object(tagger, "embed", getattr(tagger, embed)) \
            if embed else contextlib.nullcontext()
        with patch, torch.inference_mode():
            out = model.outputs(torch.from_numpy(np.ascontiguousarray(x)))
            return (torch.softmax(out.logits, -1).numpy(), torch.sigmoid(out.tag_logits).numpy())

    return run


class _Outputs:
    """The model's three outputs as a tuple, for tracing and export."""

    @staticmethod
    def module(model):
        import torch

        from genreq.pretrained import musicnn

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x):
                with mock.patch.object(musicnn.Vgg, "embed", musicnn.Vgg.reference_embed):
                    out = self.model.outputs(x)
                return out.logits, out.tag_logits

        return Wrapped().eval()


def _probs(logits: np.ndarray, tag_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True), 1 / (1 + np.exp(-tag_logits))


def _jit(model, example: np.ndarray) -> Callable:
    import torch

    traced = torch.jit.freeze(torch.jit.trace(_Outputs.module(model), torch.from_numpy(example)))

    def run(x):
        with torch.inference_mode():
            logits, tags = traced(torch.from_numpy(np.ascontiguousarray(x)))
        return _probs(logits.numpy(), tags.numpy())

    return run


def _compiled(model, example: np.ndarray) -> Callable:
    import torch

    compiled = torch.compile(_Outputs.module(model), dynamic=False)

    def run(x):
        with torch.inference_mode():
            logits, tags = compiled(torch.from_numpy(np.ascontiguousarray(x)))
        return _probs(logits.numpy(), tags.numpy())

    run(example)  # compile now, not inside a timed call
    return run


def _ort_sessions(model, example: np.ndarray, calibration: list[np.ndarray],
                  tmp: Path) -> dict[str, Callable]:
    import onnxruntime as ort
    import torch
    from onnxruntime import quantization as q

    fp32 = tmp / "vgg.onnx"
    torch.onnx.export(_Outputs.module(model), (torch.from_numpy(example),), str(fp32),
                      input_names=["x"], output_names=["logits", "tags"], opset_version=17,
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}, "tags": {0: "n"}},
                      dynamo=False)
    pre = tmp / "vgg-pre.onnx"
    q.quant_pre_process(str(fp32), str(pre))
    dynamic, static = tmp / "vgg-int8-dynamic.onnx", tmp / "vgg-int8-static.onnx"
    q.quantize_dynamic(str(pre), str(dynamic), weight_type=q.QuantType.QInt8,
                       per_channel=True)
    feeds = iter([{"x": c} for c in calibration])

    class Reader(q.CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    q.quantize_static(str(pre), str(static), Reader(), quant_format=q.QuantFormat.QDQ,
                      per_channel=True, weight_type=q.QuantType.QInt8,
                      activation_type=q.QuantType.QUInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    runs = {}
    for name, path in (("ort_fp32", fp32), ("ort_int8_dynamic", dynamic),
                       ("ort_int8_static", static)):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run(x, session=session):
            logits, tags = session.run(None, {"x": np.ascontiguousarray(x)})
            return _probs(logits, tags)

        runs[name] = run
    return runs


def musicnn_candidates(classifier) -> list[Candidate]:
    """musicnn-msd: its port before the fast path and now, both with the torch mel."""
    model = classifier.model
    return [
        Candidate("reference", "torch mel, Musicnn layers as trained (the port before)",
                  _torch_model(model, "reference_embed"), torch_features=True),
        Candidate("shipped", "torch mel + Musicnn.fast_embed (genreq now)",
                  _torch_model(model, "fast_embed"), torch_features=True),
    ]


def candidates(classifier, example: np.ndarray, calibration: list[np.ndarray],
               tmp: Path) -> tuple[list[Candidate], dict[str, str]]:
    import copy

    import torch

    model = classifier.model  # channels-last, as Classifier keeps it
    nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    found = [
        Candidate("reference", "librosa mel, layers as trained, channels-last (the old path)",
                  _torch_model(model, "reference_embed")),
        Candidate("nchw", "reference, NCHW layout", _torch_model(nchw, "reference_embed")),
    ]
    skipped = {}
    optional = {
        "jit_freeze": ("reference, torch.jit.trace + freeze", lambda: _jit(model, example)),
        "torch_compile": ("reference, torch.compile (inductor)",
                          lambda: _compiled(model, example)),
    }
    for name, (text, make) in optional.items():
        try:
            found.append(Candidate(name, text, make()))
        except Exception as err:  # a candidate that cannot run here is reported, not fatal
            skipped[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    try:
        texts = {"ort_fp32": "reference graph in ONNX Runtime, float32",
                 "ort_int8_dynamic": "ONNX Runtime, int8 weights, dynamic activations",
                 "ort_int8_static": f"ONNX Runtime, int8 QDQ, calibrated on "
                                    f"{CALIBRATION_CLIPS} train clips"}
        for name, run in _ort_sessions(model, example, calibration, tmp).items():
            found.append(Candidate(name, texts[name], run))
    except ImportError as err:
        skipped["ort"] = f"onnxruntime/onnx not installed ({err.name})"
    fast = _torch_model(model, "fast_embed")
    found += [
        Candidate("torch_features", "reference layers, mel front end in torch",
                  _torch_model(model, "reference_embed"), torch_features=True),
        Candidate("fast_layers", "librosa mel, Vgg.fast_embed", fast),
        *[Candidate(f"{c.name}_torch_features", f"{c.description}, mel in torch", c.model,
                    torch_features=True) for c in found if c.name == "ort_fp32"],
        Candidate("shipped", "torch mel + Vgg.fast_embed (genreq now)", fast,
                  torch_features=True),
        Candidate("shipped_batch4", "shipped, 4 clips per forward pass", fast,
                  torch_features=True, batch_clips=4),
        Candidate("shipped_4_patches", "shipped, 4 patches per clip", fast,
                  torch_features=True, patches=4),
        Candidate("shipped_3_patches", "shipped, 3 patches per clip", fast,
                  torch_features=True, patches=3),
    ]
    return found, skipped


# --- measurement -------------------------------------------------------------------------------


def fidelity(classifier, clips: list[dict], found: list[Candidate], every_clip: set[str],
             first_n: int) -> dict[str, dict]:
    """Each candidate's largest deviation from the reference and top-genre agreement:
    on every clip for the candidates named in every_clip, on the first first_n for the
    others (float32 re-runs of the reference graph, whose deviations are rounding)."""
    reference, others = found[0], found[1:]
    stats = {c.name: {"genre": 0.0, "tag": 0.0, "agree": 0, "n": 0} for c in others}
    decoded: dict[int, list[np.ndarray]] = {}
    for i, clip in enumerate(clips):
        decoded = {5: decode(classifier, clip["path"], 5)}
        x = chunks(classifier, decoded[5], reference.torch_features, 5)
        ref_g, ref_t = (p.mean(0) for p in reference.model(x))
        for c in others:
            if i >= first_n and c.name not in every_clip:
                continue
            if c.patches not in decoded:
                decoded[c.patches] = decode(classifier, clip["path"], c.patches)
            x = chunks(classifier, decoded[c.patches], c.torch_features, c.patches)
            g, t = (p.mean(0) for p in c.model(x))
            s = stats[c.name]
            s["genre"] = max(s["genre"], float(np.abs(g - ref_g).max()))
            s["tag"] = max(s["tag"], float(np.abs(t - ref_t).max()))
            s["agree"] += int(g.argmax() == ref_g.argmax())
            s["n"] += 1
        if (i + 1) % 25 == 0:
            progress(f"  fidelity: {i + 1}/{len(clips)} clips")
    return {name: {"max_abs_dev_genre": s["genre"], "max_abs_dev_tag": s["tag"],
                   "top_genre_agreement": s["agree"] / s["n"], "n": s["n"]}
            for name, s in stats.items()}


def _time_clips(classifier, c: Candidate, paths: list[Path]) -> dict[str, float]:
    """Seconds per clip of one candidate over the clips: decode, features, model."""
    spent = {"decode": 0.0, "features": 0.0, "model": 0.0}
    cpu_started = time.process_time()
    for start in range(0, len(paths), c.batch_clips):
        batch = []
        for path in paths[start:start + c.batch_clips]:
            t0 = time.perf_counter()
            excerpts = decode(classifier, path, c.patches)
            t1 = time.perf_counter()
            batch.append(chunks(classifier, excerpts, c.torch_features, c.patches))
            spent["decode"] += t1 - t0
            spent["features"] += time.perf_counter() - t1
        t2 = time.perf_counter()
        c.model(np.concatenate(batch))
        spent["model"] += time.perf_counter() - t2
    spent["cpu"] = time.process_time() - cpu_started
    return {k: v / len(paths) for k, v in spent.items()}


def speed(classifier, paths: list[Path], found: list[Candidate], rounds: int) -> dict[str, dict]:
    runs: dict[str, list[dict]] = {c.name: [] for c in found}
    for r in range(rounds):
        order = found[r % len(found):] + found[:r % len(found)]  # who goes first rotates
        for c in order:
            per_clip = _time_clips(classifier, c, paths)
            wall = per_clip["decode"] + per_clip["features"] + per_clip["model"]
            runs[c.name].append({**per_clip, "total": wall, "load": os.getloadavg()[0]})
        progress(f"  speed: round {r + 1}/{rounds}, load average {os.getloadavg()[0]:.1f}")
    base = runs["reference"]
    out = {}
    for name, rows in runs.items():
        totals = [row["total"] for row in rows]
        ratios = [b["total"] / row["total"] for b, row in zip(base, rows, strict=True)]
        cpu = [row["cpu"] for row in rows]
        cpu_ratios = [b["cpu"] / row["cpu"] for b, row in zip(base, rows, strict=True)]
        out[name] = {
            "s_per_clip": {"median": statistics.median(totals), "min": min(totals),
                           "max": max(totals)},
            # CPU seconds of this process: what the shared machine's waits leave out.
            "cpu_s_per_clip": {"median": statistics.median(cpu), "min": min(cpu),
                               "max": max(cpu)},
            "cpu_speedup_vs_reference": {"median": statistics.median(cpu_ratios),
                                         "min": min(cpu_ratios), "max": max(cpu_ratios)},
            "stage_s_per_clip": {k: statistics.median(row[k] for row in rows)
                                 for k in ("decode", "features", "model")},
            "speedup_vs_reference": {"median": statistics.median(ratios), "min": min(ratios),
                                     "max": max(ratios)},
            "rounds": len(rows), "clips": len(paths),
            "load_average_1min": [row["load"] for row in rows],
        }
    return out


# --- a real worker's memory ------------------------------------------------------------------


def _rss_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def worker_memory(clips: list[dict], n_tracks: int, root: Path, model: str = MODEL) -> dict:
    """`genreq run --workers 1 --model vgg-msd` over n_tracks clips: the resident memory
    (VmHWM, peak) of the worker's main process and of its pool process, sampled until
    the run ends."""
    library = root / "rss-library"
    library.mkdir()
    for clip in clips[:n_tracks]:
        os.link(clip["path"], library / clip["path"].name)
    env = {**os.environ, "GENREQ_HOME": str(root / "rss-home")}
    for name in ("GENREQ_DATABASE_URL", "GENREQ_BROKER_URL", "GENREQ_MODEL"):
        env.pop(name, None)
    run = subprocess.Popen([sys.executable, "-m", "genreq.cli", "run", str(library),
                            "--workers", "1", "--model", model], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peaks: dict[int, dict] = {}
    while run.poll() is None:
        for pid, cmd, parent in _descendants(run.pid):
            with contextlib.suppress(OSError):
                hwm = _rss_kb(pid).get("VmHWM")  # absent once the process is a zombie
                if hwm is not None:
                    seen = peaks.get(pid, {}).get("VmHWM", 0)
                    peaks[pid] = {"cmd": cmd, "parent": parent, "VmHWM": max(hwm, seen)}
        time.sleep(0.2)
    out = run.stdout.read()
    if f"done {n_tracks}" not in out:
        raise RuntimeError(f"genreq run did not classify the clips:\n{out}")
    # `genreq run` starts the worker's main process, which forks its pool.
    main_pids = {pid for pid, p in peaks.items() if p["parent"] == run.pid and "python" in p["cmd"]}
    mains = [peaks[pid] for pid in main_pids]
    pool = [p for p in peaks.values() if p["parent"] in main_pids and "python" in p["cmd"]]
    return {
        "tracks": n_tracks,
        "main_peak_mb": max((p["VmHWM"] for p in mains), default=0) / 1024,
        "pool_peak_mb": max((p["VmHWM"] for p in pool), default=0) / 1024,
        "processes": len(mains) + len(pool),
    }


def _descendants(root: int) -> list[tuple[int, str, int]]:
    """(pid, command line, parent pid) of every process under root."""
    children: dict[int, list[int]] = {}
    cmds = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
            cmds[int(entry.name)] = ((entry / "cmdline").read_bytes().replace(b"\0", b" ")
                                     .decode(errors="replace"), parent)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append((child, *cmds[child]))
            todo.append(child)
    return found


# --- the report ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=GTZAN)
    parser.add_argument("--model", default=MODEL, choices=MODELS)
    parser.add_argument("--clips", type=int, default=None, help="fidelity on the first N clips")
    parser.add_argument("--every-clip", default=",".join(EVERY_CLIP),
                        help="candidates scored on every clip (comma-separated)")
    parser.add_argument("--others-clips", type=int, default=OTHERS_CLIPS,
                        help="clips the other candidates are scored on")
    parser.add_argument("--time-clips", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rss-tracks", type=int, default=0,
                        help="also measure a real worker's memory over N clips (0: skip)")
    parser.add_argument("--save", action="store_true",
                        help=f"also write {RESULTS.name} (accurate-MODEL.json for another model)")
    args = parser.parse_args()

    import torch

    from genreq.predict import Classifier

    torch.set_num_threads(1)
    clips = read_clips(args.data)
    classifier = Classifier.load(args.model)
    results = RESULTS if args.model == MODEL else RESULTS.with_stem(f"accurate-{args.model}")
    every_clip = set(args.every_clip.split(","))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="genreq-accurate-") as tmp:
        if args.model == MODEL:
            train = [c for c in clips if c.get("artist_split") == "train"][:CALIBRATION_CLIPS]
            calibration = [chunks(classifier, decode(classifier, c["path"], 5), False, 5)
                           for c in train]
            found, skipped = candidates(classifier, calibration[0], calibration, Path(tmp))
        else:
            found, skipped = musicnn_candidates(classifier), {}
            every_clip = {c.name for c in found}
        for name, why in skipped.items():
            progress(f"skipped {name}: {why}")
        step = max(1, len(clips) // args.time_clips)
        timed = [c["path"] for c in clips[::step][: args.time_clips]]
        progress(f"speed: {len(found)} candidates x {len(timed)} clips x {args.rounds} rounds")
        speeds = speed(classifier, timed, found, args.rounds)
        load_after_speed = os.getloadavg()
        scored = clips[: args.clips] if args.clips else clips
        progress(f"fidelity: {len(found) - 1} candidates against the reference, "
                 f"{len(scored)} clips")
        fid = fidelity(classifier, scored, found, every_clip, args.others_clips)
        memory = (worker_memory(clips, args.rss_tracks, Path(tmp), args.model)
                  if args.rss_tracks else None)
    rows = {}
    for c in found:
        rows[c.name] = {"description": c.description, "patches": c.patches,
                        "batch_clips": c.batch_clips, **speeds[c.name],
                        **fid.get(c.name, {"max_abs_dev_genre": 0.0, "max_abs_dev_tag": 0.0,
                                           "top_genre_agreement": 1.0, "n": len(scored)})}
    report = {
        "benchmark": "accurate",
        "when": datetime.now(timezone.utc).isoformat(),
        "model": args.model,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": 1,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "load_average": {"before": load_before, "after_speed": load_after_speed,
                                     "end": os.getloadavg()}},
        "targets": TARGETS,
        "candidates": rows,
        "skipped": skipped,
        "worker_memory": memory,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        results.write_text(text + "\n")
    for name, r in rows.items():
        progress(f"{name:<18} {1000 * r['s_per_clip']['median']:6.0f} ms/clip  "
                 f"x{r['speedup_vs_reference']['median']:.2f}  cpu "
                 f"{1000 * r['cpu_s_per_clip']['median']:6.0f} ms "
                 f"x{r['cpu_speedup_vs_reference']['median']:.2f}  dev genre "
                 f"{r['max_abs_dev_genre']:.4f} tag {r['max_abs_dev_tag']:.4f}  agree "
                 f"{100 * r['top_genre_agreement']:.1f} %")


if __name__ == "__main__":
    main()
