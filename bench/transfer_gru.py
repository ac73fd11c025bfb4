"""A transfer CRNN on frozen pretrained ears: a bidirectional GRU over the sequence of a
clip's 3-s patch embeddings (MSD vgg or musicnn, cached by bench/musicnn_probe.py), with
augmentation (random runs of 3-5 consecutive patches, dropout on the embeddings, label
smoothing), cross-validated on the same artist-aware folds as the linear heads.

    python bench/transfer_gru.py [vgg-msd|musicnn-msd]   # ~1 min on one core

Prints the fold accuracies and writes bench/results/pretrained/transfer_gru_<arch>.json.
The front-end stays frozen: fine-tuning it is out of reach on a CPU.
"""
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from genreq import dataset

CROP_PATCHES = (3, 5)  # a training example is a run of this many consecutive patches
EPOCHS, BATCH, LR, WEIGHT_DECAY = 150, 32, 3e-3, 1e-2
HIDDEN, DROPOUT, LABEL_SMOOTHING = 64, 0.3, 0.1


class GruHead(nn.Module):
    """Standardised patch embeddings (batch, patches, d) -> genre logits."""

    def __init__(self, d: int, n_classes: int):
        super().__init__()
        self.dropout = nn.Dropout(DROPOUT)
        self.gru = nn.GRU(d, HIDDEN, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * HIDDEN, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.dropout(x))
        return self.out(self.dropout(states.mean(1)))


def crop_batch(seqs: list[torch.Tensor], idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    length = int(rng.integers(CROP_PATCHES[0], CROP_PATCHES[1] + 1))
    crops = []
    for i in idx:
        start = int(rng.integers(0, max(1, len(seqs[i]) - length + 1)))
        crops.append(seqs[i][start : start + length])
    shortest = min(len(c) for c in crops)  # 15-s clips have fewer patches
    return torch.stack([c[:shortest] for c in crops])


def fold_accuracy(seqs: list[np.ndarray], y: np.ndarray, train: np.ndarray, test: np.ndarray,
                  n_classes: int, seed: int) -> float:
    patches = np.concatenate([seqs[i] for i in train])
    mean, std = patches.mean(0), patches.std(0) + 1e-6
    standard = [torch.from_numpy((s - mean) / std).float() for s in seqs]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GruHead(seqs[0].shape[1], n_classes)
    opt = torch.optim.AdamW(model.parameters(), LR, weight_decay=WEIGHT_DECAY)
    for _ in range(EPOCHS):
        model.train()
        order = rng.permutation(train)
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            logits = model(crop_batch(standard, idx, rng))
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(y[idx]),
                                               label_smoothing=LABEL_SMOOTHING)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():  # a clip is scored on all its patches at once
        pred = np.array([model(standard[i][None]).argmax(1).item() for i in test])
    return float((pred == y[test]).mean())


def main() -> None:
    arch = sys.argv[1] if len(sys.argv) > 1 else "vgg-msd"
    torch.set_num_threads(1)
    tracks, genres = dataset.scan(REPO.parent / "shared" / "data" / "gtzan")
    y = np.array([genres.index(t.genre) for t in tracks])
    cache = np.load(REPO / "runs" / "musicnn_probe_chunk_embeddings.npz")
    assert [str(n) for n in cache["names"]] == [str(t.path.relative_to(t.path.parents[1])) for t in tracks]
    seqs = [cache[arch][cache["track"] == i] for i in range(len(tracks))]
    accs = []
    for k, test in enumerate(dataset.group_kfold(tracks, 5, 0)):
        test = np.array(test)
        train = np.setdiff1d(np.arange(len(y)), test)
        accs.append(fold_accuracy(seqs, y, train, test, len(genres), seed=k))
    result = {"arch": arch, "model": f"frozen tagger + BiGRU({HIDDEN}) over patch embeddings",
              "n": len(y), "split": "group_kfold(k=5, seed=0)",
              "fold_accuracy": [round(a, 4) for a in accs],
              "mean": round(statistics.mean(accs), 4), "std": round(statistics.stdev(accs), 4)}
    print(json.dumps(result))
    out = REPO / "bench" / "results" / "pretrained" / f"transfer_gru_{arch}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
