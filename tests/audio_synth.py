"""Synthesized audio for the model tests: two "genres" a tiny network can tell apart."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 22050


def tone(seconds: float, seed: int) -> np.ndarray:
    """A few steady sine partials at random pitches."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    freqs = rng.uniform(200, 1200, size=3)
    return (sum(np.sin(2 * np.pi * f * t) for f in freqs) * 0.2).astype(np.float32)


def noise(seconds: float, seed: int) -> np.ndarray:
    """Bursts of white noise: a crude drum machine."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    envelope = (np.arange(n) % (RATE // 4) < RATE // 16).astype(np.float32)
    return (rng.standard_normal(n) * 0.3 * envelope).astype(np.float32)


def write_labelled(root: Path, per_genre: int, seconds: float = 4.0, seed: int = 0) -> Path:
    """root/tone/*.wav and root/noise/*.wav."""
    for genre, make in (("tone", tone), ("noise", noise)):
        (root / genre).mkdir(parents=True, exist_ok=True)
        for i in range(per_genre):
            # ids 10 apart: each clip is its own artist group (see genreq.dataset)
            name = f"{genre}.{seed * 1000 + 10 * i:05d}.wav"
            sf.write(root / genre / name, make(seconds, seed * 1000 + i), RATE)
    return root
