"""Labelled data: a folder per genre, its files, artist-aware groups and splits.

GTZAN's consecutive clip ids (blues.00000–blues.00009, ...) often come from the same
artist or album, so clips are grouped in blocks of ten ids and a group is never split
between training and validation. Files without a trailing number form groups of one.
"""
from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreq import audio, features
from genreq.config import AUDIO_EXTENSIONS
from genreq.errors import AudioError

GROUP_BLOCK = 10  # consecutive clip ids assumed to share an artist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledTrack:
    path: Path
    genre: str

    @property
    def group(self) -> str:
        match = re.search(r"(\d+)$", self.path.stem)
        block = int(match.group(1)) // GROUP_BLOCK if match else self.path.stem
        return f"{self.genre}/{block}"


def scan(data_dir: str | Path) -> tuple[list[LabelledTrack], list[str]]:
    """Every audio file under DATA_DIR/<genre>/, sorted; and the sorted genre names."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    genres = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(genres) == 1:
        # A collection folder holding the genre folders (../shared/data → gtzan/<genre>/).
        inner = root / genres[0]
        if sum(1 for d in inner.iterdir() if d.is_dir() and not d.name.startswith(".")) >= 2:
            return scan(inner)
    tracks = [
        LabelledTrack(p, g)
        for g in genres
        for p in sorted((root / g).rglob("*"))
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    ]
    genres = sorted({t.genre for t in tracks})
    if len(genres) < 2:
        raise ValueError(f"{root}: need audio files in at least two genre folders, found {genres}")
    return tracks, genres


def group_split(tracks: list[LabelledTrack], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val): per genre, whole groups go to validation until it holds
    about `val_fraction` of that genre's tracks."""
    if val_fraction <= 0:
        return list(range(len(tracks))), []
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for genre in sorted({t.genre for t in tracks}):
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(tracks):
            if t.genre == genre:
                groups.setdefault(t.group, []).append(i)
        if len(groups) < 2:
            log.warning("%s: one artist group only; none of it held out for validation", genre)
            continue
        order = rng.permutation(sorted(groups))
        target = val_fraction * sum(len(v) for v in groups.values())
        taken: list[int] = []
        for g in order[:-1]:  # the last group in the order always stays in training
            if len(taken) >= target or len(taken) + len(groups[g]) > max(target * 1.5, 1):
                continue
            taken += groups[g]
        if not taken:  # every group bigger than the target: hold out the smallest
            taken = min((groups[g] for g in order[:-1]), key=len)
        val += taken
    val_set = set(val)
    return [i for i in range(len(tracks)) if i not in val_set], sorted(val_set)


def group_kfold(tracks: list[LabelledTrack], k: int, seed: int) -> list[list[int]]:
    """k folds of track indices, stratified by genre, whole groups kept together."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for genre in sorted({t.genre for t in tracks}):
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(tracks):
            if t.genre == genre:
                groups.setdefault(t.group, []).append(i)
        # Largest groups first, each to the currently smallest fold (for this genre).
        order = sorted(rng.permutation(sorted(groups)), key=lambda g: -len(groups[g]))
        counts = [0] * k
        for g in order:
            f = min(range(k), key=lambda j: (counts[j], rng.random()))
            folds[f] += groups[g]
            counts[f] += len(groups[g])
    return [sorted(f) for f in folds]


def load_features(tracks: list[LabelledTrack], spec: features.FeatureSpec, progress: bool = True) -> list[np.ndarray | None]:
    """Feature matrix of every track (None for a file that cannot be decoded, logged)."""
    out: list[np.ndarray | None] = []
    for n, t in enumerate(tracks, 1):
        try:
            out.append(features.extract(audio.load_audio(t.path, spec.sample_rate), spec))
        except AudioError as exc:
            log.warning("skipping %s", exc)
            out.append(None)
        if progress and (n % 25 == 0 or n == len(tracks)):
            print(f"features: {n}/{len(tracks)}", file=sys.stderr, flush=True)
    return out
