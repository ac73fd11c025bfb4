"""Track-level metrics: accuracy with a Wilson interval, per-genre precision/recall,
confusion matrix. Pure numpy."""
from __future__ import annotations

import math

import numpy as np


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


def summarise(true: np.ndarray, pred: np.ndarray, genres: list[str]) -> dict:
    """The evaluation report: accuracy, interval, n, per-genre scores, confusion."""
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
    return {
        "accuracy": round(correct / n, 4) if n else 0.0,
        "ci95": [round(low, 4), round(high, 4)],
        "balanced_accuracy": round(float(np.mean(recalls)), 4) if recalls else 0.0,
        "n": n,
        "correct": correct,
        "genres": list(genres),
        "per_genre": per_genre,
        "confusion": cm.tolist(),
    }
