"""genreq's ports of the MSD taggers against the original musicnn package, side by side.

    .venv/bin/python bench/peer.py --peer-python PEER/bin/python --save   # bench/results/peer.json
    .venv/bin/python bench/peer.py --peer-python PEER/bin/python --clips 4 --rounds 1

PEER is a throwaway environment holding TensorFlow, tf-keras, librosa and the `musicnn`
wheel (bench/README.md builds one); genreq never imports TensorFlow, and this script runs
the package only through that environment's python, in a subprocess (`--worker`, which
imports nothing of genreq).

On the same clips (`--clips` spread over DATA/labels.csv), in every round:
- the package, one TensorFlow thread (intra- and inter-op 1): the model loaded once
  (reported apart), one warm-up clip, then per clip what `musicnn.extractor.extractor`
  does: its own `batch_data` (librosa load at 16 kHz, mel, float16 log, non-overlapping
  3-s patches) cast to float32, and one `sess.run` per `configuration.BATCH_SIZE`
  patches. `peer_batched` is the model part again with all of a clip's patches in one
  session run (not what the package does; no faster here). MSD_musicnn runs the graph
  the package builds (`musicnn.models`); MSD_vgg the trained graph of its checkpoint's `.meta` file,
  because the package's `models.py` pools differently from the trained MSD_vgg (its
  deviation from the trained graph is measured and recorded);
- genreq, one torch thread, in this process: `port_same_patches` does the package's work
  with genreq's parts (decode the whole clip at 16 kHz, torch log-mel, every
  non-overlapping patch, the tagger); `port_shipped` is `Classifier.classify_file` as a
  worker runs it (five patches spread over the clip, genre head and embedding too).

Times are per clip, wall and the process's CPU time (the figure to compare on a shared
machine), median and range over clips and rounds; the ratio is the package's median over
genreq's, per round. Sanity check: the largest difference in any tag probability between
the package and the port, on the package's own patches (the port alone), on each one's
own decode and mel of the same patches, and for the shipped path's five patches against
the package's mean over all of them.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GTZAN = REPO.parent / "shared" / "data" / "gtzan"
RESULTS = REPO / "bench" / "results" / "peer.json"
MODELS = {"musicnn-msd": "MSD_musicnn", "vgg-msd": "MSD_vgg"}  # genreq name -> package's
META_GRAPH = {"MSD_vgg"}  # the package's models.py does not build the trained graph
PROBS_NODE = "model/Sigmoid"  # the tag probabilities in the .meta graphs
TARGET_RATIO = 10.0


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


# --- the package, in the peer environment (no genreq imports) ---------------------------------


def _package_graph(tf, musicnn_dir: Path, name: str, n_frames: int, n_mels: int, sess_config):
    """extractor()'s own model set-up: its graph, a session, the checkpoint restored."""
    from musicnn import models

    graph = tf.Graph()
    with graph.as_default(), tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, n_mels])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y = tf.nn.sigmoid(models.define_model(x, is_training, name, 50)[0])
        sess = tf.compat.v1.Session(graph=graph, config=sess_config)
        sess.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().restore(sess, f"{musicnn_dir}/{name}/")
    return sess, x, is_training, y


def _meta_graph(tf, musicnn_dir: Path, name: str, sess_config):
    """The trained graph from the checkpoint's .meta file, inference nodes only (as
    tools/musicnn_reference.py rebuilds it), with the checkpoint's variables."""
    from tensorflow.core.protobuf import meta_graph_pb2

    prefix = f"{musicnn_dir}/{name}/"
    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString(Path(prefix + ".meta").read_bytes())
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def, [PROBS_NODE])
    for node in graph_def.node:  # stale shape annotations from TF 1.x trip the importer
        node.attr.pop("_output_shapes", None)
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        x = is_training = None
        inits = []
        for op in graph.get_operations():
            if op.type == "Placeholder":
                out = op.outputs[0]
                if out.dtype == tf.bool:
                    is_training = out
                else:
                    x = out
            elif op.type in ("VariableV2", "Variable"):
                inits.append(tf.compat.v1.assign(op.outputs[0], reader.get_tensor(op.name)))
        sess = tf.compat.v1.Session(graph=graph, config=sess_config)
        sess.run(inits)
    return sess, x, is_training, graph.get_tensor_by_name(PROBS_NODE + ":0")


def worker(name: str, clip_list: Path, out: Path) -> None:
    """Time the package's per-clip work on the listed clips; write JSON + the patches."""
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()  # as musicnn.extractor does on import
    import librosa
    import musicnn
    from musicnn import configuration as config
    from musicnn import extractor

    paths = clip_list.read_text().splitlines()
    sess_config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1,
                                           inter_op_parallelism_threads=1)
    n_frames = librosa.time_to_frames(3, sr=config.SR, n_fft=config.FFT_SIZE,
                                      hop_length=config.FFT_HOP) + 1
    musicnn_dir = Path(musicnn.__file__).parent
    t0, c0 = time.perf_counter(), time.process_time()
    if name in META_GRAPH:
        sess, x, is_training, y = _meta_graph(tf, musicnn_dir, name, sess_config)
    else:
        sess, x, is_training, y = _package_graph(tf, musicnn_dir, name, n_frames,
                                                 config.N_MELS, sess_config)
    load = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}

    def run(batch):  # extractor(): BATCH_SIZE patches per session run
        return np.concatenate([
            sess.run(y, {x: batch[i:i + config.BATCH_SIZE], is_training: False})
            for i in range(0, len(batch), config.BATCH_SIZE)])

    warm, _ = extractor.batch_data(paths[0], n_frames, n_frames)
    run(warm.astype(np.float32))
    sess.run(y, {x: warm.astype(np.float32), is_training: False})
    rows, taggrams, batches, nonfinite = [], [], [], 0
    for path in paths:
        t0, c0 = time.perf_counter(), time.process_time()
        batch, _ = extractor.batch_data(path, n_frames, n_frames)
        batch = batch.astype(np.float32)  # float16 from batch_data; TF 2.21 wants float32
        t1, c1 = time.perf_counter(), time.process_time()
        taggram = run(batch)
        t2, c2 = time.perf_counter(), time.process_time()
        sess.run(y, {x: batch, is_training: False})
        rows.append({"patches": len(batch), "wall_s": t2 - t0, "cpu_s": c2 - c0,
                     "batch_data_wall_s": t1 - t0, "batch_data_cpu_s": c1 - c0,
                     "model_wall_s": t2 - t1, "model_cpu_s": c2 - c1,
                     "batched_model_wall_s": time.perf_counter() - t2,
                     "batched_model_cpu_s": time.process_time() - c2})
        nonfinite += int((~np.isfinite(taggram)).any(1).sum())
        # The package's float16 log overflows to inf on loud clips (its taggram is NaN
        # there); the sanity check runs its graph again, untimed, on a float32 log.
        audio, sr = librosa.load(path, sr=config.SR)
        mel = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=config.FFT_HOP,
                                             n_fft=config.FFT_SIZE, n_mels=config.N_MELS).T
        log = np.log10(10000 * mel.astype(np.float32) + 1)
        batch = np.stack([log[s:s + n_frames]
                          for s in range(0, len(log) - n_frames + 1, n_frames)])
        taggrams.append(sess.run(y, {x: batch, is_training: False}))
        batches.append(batch)
    extra = {}
    if name in META_GRAPH:  # how far the package's own models.py graph is from the trained one
        other = _package_graph(tf, musicnn_dir, name, n_frames, config.N_MELS, sess_config)
        theirs = other[0].run(other[3], {other[1]: batches[0], other[2]: False})
        extra["package_models_py_max_abs_dev"] = float(np.abs(theirs - taggrams[0]).max())
    np.savez(out.with_suffix(".npz"), **{f"taggram_{i}": t for i, t in enumerate(taggrams)},
             **{f"batch_{i}": b for i, b in enumerate(batches)})
    out.write_text(json.dumps({
        "model": name, "graph": ".meta (trained)" if name in META_GRAPH else "musicnn.models",
        "tensorflow": tf.__version__, "librosa": librosa.__version__,
        "batch_size": config.BATCH_SIZE, "load": load, "clips": rows,
        "nonfinite_patches": nonfinite, "patches": sum(r["patches"] for r in rows), **extra}))


def run_peer(python: str, name: str, paths: list[Path], tmp: Path) -> tuple[dict, dict]:
    listing = tmp / "clips.txt"
    listing.write_text("\n".join(str(p) for p in paths))
    out = tmp / f"{name}.json"
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [python, str(Path(__file__).resolve()), "--worker", name, "--clip-list", str(listing),
           "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
    if done.returncode:
        raise SystemExit(f"{python}: the musicnn worker failed ({done.returncode}):\n"
                         + done.stderr[-3000:])
    import numpy as np

    arrays = np.load(out.with_suffix(".npz"))
    return json.loads(out.read_text()), {k: arrays[k] for k in arrays.files}


# --- genreq's ports, in this process -----------------------------------------------------------


def port_same_patches(tagger, path: Path):
    """The package's per-clip work with genreq's parts: tag probabilities per patch."""
    import numpy as np
    import torch

    from genreq import audio
    from genreq.pretrained import musicnn

    excerpt = audio.load_windows(path, None, musicnn.SAMPLE_RATE)[0]
    x = musicnn.patches(musicnn.log_mel(excerpt))
    with torch.inference_mode():
        return torch.sigmoid(tagger(torch.from_numpy(np.ascontiguousarray(x)))).numpy()


def time_port(classifier, paths: list[Path]) -> dict:
    import numpy as np

    tagger = classifier.model.tagger
    port_same_patches(tagger, paths[0])  # warm-up
    classifier.classify_file(paths[0])
    rows = {"port_same_patches": [], "port_shipped": []}
    probs = {"port_same_patches": [], "port_shipped": []}
    for path in paths:
        for mode in rows:
            t0, c0 = time.perf_counter(), time.process_time()
            if mode == "port_same_patches":
                p = port_same_patches(tagger, path)
                n = len(p)
            else:
                pred = classifier.classify_file(path)
                p = np.array([pred.tags[t] for t in classifier.tag_names])[None]
                n = 5
            rows[mode].append({"patches": n, "wall_s": time.perf_counter() - t0,
                               "cpu_s": time.process_time() - c0})
            probs[mode].append(p)
    return {"rows": rows, "probs": probs}


def _worst(so_far: float, a, b) -> float:
    """The larger of so_far and max |a - b|, a NaN counting as the worst (Python's max
    would drop it)."""
    import numpy as np

    d = np.abs(np.asarray(a, dtype=np.float64) - b)
    return float("inf") if np.isnan(d).any() else max(so_far, float(d.max()))


def fidelity(classifier, peer_arrays: dict, port: dict, n: int) -> dict:
    import torch

    tagger = classifier.model.tagger
    own_input, same_patches, shipped = 0.0, 0.0, 0.0
    for i in range(n):
        taggram, batch = peer_arrays[f"taggram_{i}"], peer_arrays[f"batch_{i}"]
        with torch.inference_mode():
            ours = torch.sigmoid(tagger(torch.from_numpy(batch))).numpy()
        own_input = _worst(own_input, ours, taggram)
        mine = port["probs"]["port_same_patches"][i]
        if mine.shape == taggram.shape:
            same_patches = _worst(same_patches, mine.mean(0), taggram.mean(0))
        shipped = _worst(shipped, port["probs"]["port_shipped"][i][0], taggram.mean(0))
    return {"on_the_packages_patches_per_patch": own_input,
            "own_decode_and_mel_clip_mean": same_patches,
            "shipped_5_patches_vs_package_all_patches_clip_mean": shipped, "clips": n}


# --- the report --------------------------------------------------------------------------------


def read_clips(data: Path, n: int) -> list[Path]:
    with open(data / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    step = max(1, len(rows) // n)
    return [data / r["path"] for r in rows[::step][:n]]


def summarise(name: str, peer_runs: list[dict], port_runs: list[dict]) -> dict:
    def pooled(rows_per_round: list[list[dict]], key: str) -> dict:
        return stats([r[key] for rows in rows_per_round for r in rows])

    peer_rows = [p["clips"] for p in peer_runs]
    out = {
        "package_model": MODELS[name], "package_graph": peer_runs[0]["graph"],
        "package_batch_size": peer_runs[0]["batch_size"],
        "patches_per_clip": {"package": pooled(peer_rows, "patches"),
                             "port_same_patches": pooled([r["rows"]["port_same_patches"]
                                                          for r in port_runs], "patches"),
                             "port_shipped": 5},
        "package_load_s": stats([p["load"]["wall_s"] for p in peer_runs]),
        "package_nonfinite_patches": {"patches": peer_runs[0]["patches"],
                                      "nonfinite": peer_runs[0]["nonfinite_patches"]},
        "peer": {"s_per_clip": pooled(peer_rows, "wall_s"),
                 "cpu_s_per_clip": pooled(peer_rows, "cpu_s"),
                 "batch_data_cpu_s": pooled(peer_rows, "batch_data_cpu_s"),
                 "model_cpu_s": pooled(peer_rows, "model_cpu_s")},
        "peer_batched": {"model_cpu_s": pooled(peer_rows, "batched_model_cpu_s"),
                         "cpu_s_per_clip": stats([r["batch_data_cpu_s"] + r["batched_model_cpu_s"]
                                                  for rows in peer_rows for r in rows])},
        "ratio": {},
    }
    if "package_models_py_max_abs_dev" in peer_runs[0]:
        out["package_models_py_max_abs_dev"] = peer_runs[0]["package_models_py_max_abs_dev"]
    for mode in ("port_same_patches", "port_shipped"):
        rounds = [r["rows"][mode] for r in port_runs]
        out[mode] = {"s_per_clip": pooled(rounds, "wall_s"),
                     "cpu_s_per_clip": pooled(rounds, "cpu_s")}
        for key, field in (("cpu", "cpu_s"), ("wall", "wall_s")):
            per_round = [statistics.median(r[field] for r in peer) /
                         statistics.median(r[field] for r in port)
                         for peer, port in zip(peer_rows, rounds, strict=True)]
            out["ratio"][f"{mode}_{key}"] = stats(per_round)
        batched = [statistics.median(r["batch_data_cpu_s"] + r["batched_model_cpu_s"]
                                     for r in peer) / statistics.median(r["cpu_s"] for r in port)
                   for peer, port in zip(peer_rows, rounds, strict=True)]
        out["ratio"][f"{mode}_cpu_vs_peer_batched"] = stats(batched)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=GTZAN)
    parser.add_argument("--peer-python", help="python of the environment holding musicnn")
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--save", action="store_true", help=f"also write {RESULTS.name}")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--clip-list", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.clip_list, args.out)
    if not args.peer_python:
        parser.error("--peer-python is required (bench/README.md builds the environment)")

    import torch

    from genreq.predict import Classifier

    torch.set_num_threads(1)
    paths = read_clips(args.data, args.clips)
    load_before = os.getloadavg()
    report_models, versions = {}, {}
    with tempfile.TemporaryDirectory(prefix="genreq-peer-") as tmp:
        for name in args.models:
            t0 = time.perf_counter()
            classifier = Classifier.load(name)
            port_load = time.perf_counter() - t0
            peer_runs, port_runs, arrays = [], [], None
            for r in range(args.rounds):
                order = ("peer", "port") if r % 2 == 0 else ("port", "peer")
                for side in order:
                    progress(f"{name}: round {r + 1}/{args.rounds}, {side}, {len(paths)} clips, "
                             f"load average {os.getloadavg()[0]:.1f}")
                    if side == "peer":
                        run, arrays = run_peer(args.peer_python, MODELS[name], paths, Path(tmp))
                        peer_runs.append(run)
                    else:
                        port_runs.append(time_port(classifier, paths))
            versions = {"tensorflow": peer_runs[0]["tensorflow"],
                        "librosa": peer_runs[0]["librosa"]}
            report_models[name] = {**summarise(name, peer_runs, port_runs),
                                   "port_load_s": port_load,
                                   "fidelity": fidelity(classifier, arrays, port_runs[-1],
                                                        len(paths))}
    report = {
        "benchmark": "peer",
        "when": datetime.now(timezone.utc).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": 1, **versions,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "load_average": {"before": load_before, "end": os.getloadavg()}},
        "clips": len(paths), "rounds": args.rounds, "target_ratio": TARGET_RATIO,
        "models": report_models,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        RESULTS.write_text(text + "\n")
    for name, m in report_models.items():
        progress(f"{name}: package {m['peer']['cpu_s_per_clip']['median']:.3f} CPU s/clip; port "
                 f"same patches {m['port_same_patches']['cpu_s_per_clip']['median']:.3f} "
                 f"(x{m['ratio']['port_same_patches_cpu']['median']:.1f}), shipped "
                 f"{m['port_shipped']['cpu_s_per_clip']['median']:.3f} "
                 f"(x{m['ratio']['port_shipped_cpu']['median']:.1f}); max dev "
                 f"{m['fidelity']['on_the_packages_patches_per_patch']:.1e}")


if __name__ == "__main__":
    main()
