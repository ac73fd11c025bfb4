"""What storing tags and an embedding costs per clip: the model stage of a 30-s clip with
the logits only (Classifier.chunk_probs) against the one pass that also returns the
embedding and the tag probabilities (Classifier.chunk_outputs), on one thread, as a
worker runs it. Writes bench/results/outputs_cost.json.

    python bench/outputs_cost.py [--models crnn vgg-msd] [--repeats 200]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from genreq.predict import Classifier

RESULTS = Path(__file__).parent / "results" / "outputs_cost.json"
CLIP_S = 30.0


def per_clip_ms(fn, batch: np.ndarray, repeats: int) -> list[float]:
    for _ in range(5):  # warm-up: oneDNN picks its kernels on the first calls
        fn(batch)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(batch)
        times.append(1000 * (time.perf_counter() - started))
    return times


def summary(times: list[float]) -> dict:
    q = statistics.quantiles(times, n=20)
    return {"min_ms": round(min(times), 3), "median_ms": round(statistics.median(times), 3),
            "p5_ms": round(q[0], 3), "p95_ms": round(q[-1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["crnn", "vgg-msd"])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    result = {"n": args.repeats, "clip_s": CLIP_S, "threads": 1,
              "cpu": platform.processor() or platform.machine(), "models": {}}
    for name in args.models:
        clf = Classifier.load(name)
        audio = (0.1 * rng.standard_normal(int(CLIP_S * clf.features.sample_rate))).astype(
            np.float32)
        batch = clf.chunks_of_excerpts([audio])
        # Interleaved rounds, so drift of a shared machine falls on both alike.
        plain, both = [], []
        for _ in range(4):
            plain += per_clip_ms(clf.chunk_probs, batch, args.repeats // 4)
            both += per_clip_ms(clf.chunk_outputs, batch, args.repeats // 4)
        entry = {"chunks": int(batch.shape[0]), "logits_only": summary(plain),
                 "with_embedding_and_tags": summary(both),
                 "embedding_dim": int(clf.chunk_outputs(batch)[1].shape[1]),
                 "tags": len(clf.tag_names)}
        # The difference of the fastest runs: on a shared machine the medians carry
        # the neighbours' load as well.
        entry["extra_ms_min"] = round(entry["with_embedding_and_tags"]["min_ms"]
                                      - entry["logits_only"]["min_ms"], 3)
        result["models"][f"{clf.name}@{clf.version}"] = entry
        print(name, json.dumps(entry))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
