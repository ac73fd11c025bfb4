"""PNG figures for training curves and confusion matrices (matplotlib, no display)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def training_curve(history: list[dict], path: str | Path, title: str) -> None:
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    if "val_loss" in history[0]:
        ax.plot(epochs, [h["val_loss"] for h in history], label="validation loss (track)")
        ax2 = ax.twinx()
        accuracy = [h["val_accuracy"] for h in history]
        ax2.plot(epochs, accuracy, color="tab:green", label="validation accuracy")
        ax2.set_ylabel("accuracy")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="upper right")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion(cm: list[list[int]], genres: list[str], path: str | Path, title: str) -> None:
    cm_arr = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(genres), 1 + 0.6 * len(genres)))
    ax.imshow(cm_arr, cmap="Blues")
    ax.set_xticks(range(len(genres)), genres, rotation=45, ha="right")
    ax.set_yticks(range(len(genres)), genres)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(genres)):
        for j in range(len(genres)):
            if cm_arr[i, j]:
                colour = "white" if cm_arr[i, j] > cm_arr.max() / 2 else "black"
                ax.text(j, i, int(cm_arr[i, j]), ha="center", va="center", color=colour, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
