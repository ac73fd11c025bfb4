"""Labelled data: a folder per genre, its files, the groups that keep an artist on one
side of a split, and the splits.

A track's group names what must not straddle a split (an artist, or a partition of
artist-disjoint clips). Groups come from a column of a labels file (`read_groups`,
`--groups labels.csv:artist_split`); without one every file is its own group, a
clip-level split that is only honest when no artist repeats. Rows whose group is
`excluded` (GTZAN's repeated or mislabelled clips in `artist_split`) are dropped by
whoever applies the groups (`apply_groups`).
"""

from __future__ import annotations

import csv
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from genreq import audio, features
from genreq.config import AUDIO_EXTENSIONS
from genreq.errors import AudioError, GenreqError

EXCLUDED_GROUP = "excluded"  # a group value that drops the row from training and evaluation
PATH_COLUMN = "path"  # labels-file column with each clip's path, relative to the file

log = logging.getLogger(__name__)


class GroupsError(GenreqError):
    """A labels file or column that cannot give groups (a usage error at the CLI)."""


@dataclass(frozen=True)
class LabelledTrack:
    path: Path
    genre: str
    group_name: str | None = None  # from a labels file; None: the file is its own group

    @property
    def group(self) -> str:
        return self.group_name if self.group_name is not None else f"{self.genre}/{self.path.stem}"


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


@dataclass(frozen=True)
class Groups:
    """Each clip's group from one column of a labels file, keyed by the clip's path
    relative to the labels file (its `path` column) and by that path's last two parts
    (`<genre>/<file>`), so a copy of the data elsewhere still matches."""

    source: str  # "labels.csv:artist_split", as given
    by_path: dict[str, str]

    def of(self, path: Path) -> str | None:
        key = Path(path).resolve().as_posix()
        if key in self.by_path:
            return self.by_path[key]
        return self.by_path.get(Path(*Path(path).parts[-2:]).as_posix())


def parse_groups_spec(spec: str) -> tuple[Path, str]:
    """`FILE:COLUMN` → (file, column); the column follows the last colon."""
    path, sep, column = spec.rpartition(":")
    if not sep or not path or not column:
        raise GroupsError(f"{spec!r}: expected LABELS_FILE:COLUMN, e.g. labels.csv:artist_split")
    return Path(path), column


def read_groups(spec: str) -> Groups:
    """The groups of `FILE:COLUMN` (a CSV with a `path` column); the file is read
    relative to the working directory. Raises GroupsError naming the file and what is
    wrong with it."""
    path, column = parse_groups_spec(spec)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            rows = list(reader)
    except FileNotFoundError:
        raise GroupsError(f"{path}: no such labels file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GroupsError(f"{path}: cannot read the labels file ({exc})") from None
    for needed in (PATH_COLUMN, column):
        if needed not in fields:
            raise GroupsError(
                f"{path}: no column {needed!r} (columns: {', '.join(fields) or 'none'})"
            )
    base = path.resolve().parent
    by_path: dict[str, str] = {}
    for row in rows:
        rel, group = (row[PATH_COLUMN] or "").strip(), (row[column] or "").strip()
        if not rel or not group:
            continue
        by_path[(base / rel).resolve().as_posix()] = group
        by_path[Path(*Path(rel).parts[-2:]).as_posix()] = group
    if not by_path:
        raise GroupsError(f"{path}: column {column!r} names no group for any clip")
    return Groups(spec, by_path)


def apply_groups(
    tracks: list[LabelledTrack], groups: Groups | None, keep: set[str] | None = None
) -> tuple[list[LabelledTrack], dict[str, int]]:
    """Tracks with their group set, those in group `excluded` dropped (and, with
    `keep`, those in no kept group); plus how many were dropped, by reason. A track the
    labels file does not list is an error when every track must have a group (no
    `keep`), else simply not kept."""
    if groups is None:
        return list(tracks), {}
    out, dropped = [], {"excluded": 0, "unlisted": 0, "other groups": 0}
    unlisted = []
    for t in tracks:
        group = groups.of(t.path)
        if group is None:
            unlisted.append(t.path)
            dropped["unlisted"] += 1
        elif group == EXCLUDED_GROUP:
            dropped["excluded"] += 1
        elif keep is not None and group not in keep:
            dropped["other groups"] += 1
        else:
            out.append(replace(t, group_name=group))
    if unlisted and keep is None:
        shown = ", ".join(str(p) for p in unlisted[:3])
        raise GroupsError(
            f"{groups.source}: {len(unlisted)} of {len(tracks)} files have no row there "
            f"(e.g. {shown})"
        )
    if not out:
        raise GroupsError(f"{groups.source}: no clip left after dropping {dropped}")
    return out, {k: v for k, v in dropped.items() if v}


def group_split(
    tracks: list[LabelledTrack], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
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
            log.warning("%s: one group only; none of it held out for validation", genre)
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


def group_folds(tracks: list[LabelledTrack]) -> list[tuple[str, list[int]]]:
    """Leave-one-group-out folds, one per group in sorted order: (group, indices of its
    tracks). With `artist_split` these are the three artist-disjoint partitions, each
    tested by a model fitted on the other two."""
    names = sorted({t.group for t in tracks})
    return [(g, [i for i, t in enumerate(tracks) if t.group == g]) for g in names]


def load_features(
    tracks: list[LabelledTrack], spec: features.FeatureSpec, progress: bool = True
) -> list[np.ndarray | None]:
    """Feature matrix of every track (None for a file that cannot be decoded, logged)."""
    out: list[np.ndarray | None] = []
    for n, t in enumerate(tracks, 1):
        try:
            (whole,) = features.levelled([audio.load_audio(t.path, spec.sample_rate)], spec)
            out.append(features.extract(whole, spec))
        except AudioError as exc:
            log.warning("skipping %s", exc)
            out.append(None)
        if progress and (n % 25 == 0 or n == len(tracks)):
            print(f"features: {n}/{len(tracks)}", file=sys.stderr, flush=True)
    return out
