"""Track-level metrics: accuracy with a Wilson interval, per-genre precision/recall,
confusion matrix, and calibration (expected calibration error, reliability bins). Pure
numpy."""

from __future__ import annotations

import math

import numpy as np

ECE_BINS = 10  # equal-width confidence bins over [0, 1]
CI_METHOD = "wilson"  # how every ci95 here is computed


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sound for small n and p near 0 or 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true genre; columns: predicted genre."""
    cm = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(cm, (true, pred), 1)
    return cm


def reliability(probs: np.ndarray, true: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width bin of top-class confidence: [low, high), n, mean confidence and
    accuracy of the tracks in it (the last bin includes 1.0). Empty bins are listed with
    n = 0."""
    conf = probs.max(1)
    right = probs.argmax(1) == true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        out.append(
            {
                "low": round(float(edges[b]), 2),
                "high": round(float(edges[b + 1]), 2),
                "n": n,
                "confidence": round(float(conf[mask].mean()), 4) if n else None,
                "accuracy": round(float(right[mask].mean()), 4) if n else None,
            }
        )
    return out


def expected_calibration_error(probs: np.ndarray, true: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the n-weighted mean gap |accuracy − mean confidence| over the confidence
    bins of `reliability` (0 = a model whose confidence is its hit rate)."""
    n = len(true)
    if n == 0:
        return 0.0
    return float(
        sum(
            b["n"] * abs(b["accuracy"] - b["confidence"])
            for b in reliability(probs, true, bins)
            if b["n"]
        )
        / n
    )


def summarise(
    true: np.ndarray, pred: np.ndarray, genres: list[str], probs: np.ndarray | None = None
) -> dict:
    """The evaluation report: accuracy, interval, n, per-genre scores, confusion; with
    the track probabilities `probs` (n, genres) also calibration: `ece` and the
    `reliability` bins."""
    cm = confusion_matrix(true, pred, len(genres))
    n = int(cm.sum())
    correct = int(np.trace(cm))
    low, high = wilson_interval(correct, n)
    per_genre = {}
    for i, g in enumerate(genres):
        tp, support, predicted = cm[i, i], cm[i].sum(), cm[:, i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_genre[g] = {
            "precision": round(float(precision), 4),
            "recall": round(float(recall), 4),
            "f1": round(float(f1), 4),
            "support": int(support),
        }
    recalls = [v["recall"] for v in per_genre.values() if v["support"]]
    report = {
        "accuracy": round(correct / n, 4) if n else 0.0,
        "ci95": [round(low, 4), round(high, 4)],
        "ci_method": CI_METHOD,
        "balanced_accuracy": round(float(np.mean(recalls)), 4) if recalls else 0.0,
        "n": n,
        "correct": correct,
        "genres": list(genres),
        "per_genre": per_genre,
        "confusion": cm.tolist(),
    }
    if probs is not None:
        probs = np.asarray(probs, dtype=float)
        report["ece"] = round(expected_calibration_error(probs, true), 4)
        report["ece_bins"] = ECE_BINS
        report["reliability"] = reliability(probs, true)
    return report


def per_group(true: np.ndarray, pred: np.ndarray, groups: list[str]) -> dict:
    """Accuracy with n and Wilson interval of each group's tracks, groups sorted."""
    out = {}
    names = np.array(groups)
    for g in sorted(set(groups)):
        mask = names == g
        n, correct = int(mask.sum()), int((true[mask] == pred[mask]).sum())
        low, high = wilson_interval(correct, n)
        out[g] = {
            "n": n,
            "correct": correct,
            "accuracy": round(correct / n, 4),
            "ci95": [round(low, 4), round(high, 4)],
        }
    return out
