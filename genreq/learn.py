"""Genres learned from the user's own library: a multinomial logistic head fitted on
stored track embeddings, labelled by the genre strings the files carry (or the names
of their folders), cross-validated by album so that no album is on both sides.

Pure functions over arrays: no database, no audio. The app layer reads the embeddings
and labels, calls `learn`, keeps the `GenreHead` it returns and applies it to every
track's embedding (`GenreHead.probs`) instead of decoding anything again.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genreq.errors import GenreqError

DEFAULT_MIN_TRACKS = 5  # examples a genre needs to be learned
DEFAULT_FOLDS = 5
HEAD_C = 1.0  # inverse L2 strength of the logistic head, as genreq.train's heads
HEAD_FORMAT = 1

# What separates several genres in one tag value: "Rock; Pop", "Rock/Pop", "Rock, Pop",
# and the null separator of ID3v2.4 multi-values when a reader did not split it.
_SEPARATORS = re.compile(r"[;/,\x00]")
# Runs of whitespace, "-" and "_" are one space: "Hip-Hop", "hip hop" and "hip_hop" are
# one genre.
_SPACES = re.compile(r"[\s\-_]+")


class LearnError(GenreqError):
    """Nothing sensible can be learned from what was given (too few genres, no data)."""


def normalise_genre(value: str) -> str:
    """One genre name as learn compares them: lower case, one space between words."""
    return _SPACES.sub(" ", value).strip().lower()


def split_genres(
    values: str | Iterable[str] | None, mapping: Mapping[str, str] | None = None
) -> list[str]:
    """A file's genre values as a list of normalised genres, in the file's order, each
    once. MAPPING (keys compared normalised) renames genres, e.g. a taxonomy file's
    {"hiphop": "hip-hop"}; its values are kept as written. Numbers (numeric ID3v1 codes
    a reader left as they are) and empty values are dropped."""
    return [genre for genre, _spelling in spelled_genres(values, mapping)]


def spelled_genres(
    values: str | Iterable[str] | None, mapping: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """split_genres' genres, each with its spelling in the file (the first, when the
    file spells one genre twice): ("cool jazz", "Cool Jazz"). A renamed genre's
    spelling is the MAPPING's value."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    renamed = {normalise_genre(k): v for k, v in (mapping or {}).items()}
    out: dict[str, str] = {}
    for value in values:
        for part in _SEPARATORS.split(str(value)):
            genre = normalise_genre(part).strip("()")
            if not genre or genre.isdigit():
                continue
            spelling = " ".join(part.split()).strip("()")
            if genre in renamed:
                genre = spelling = renamed[genre]
            out.setdefault(genre, spelling)
    return list(out.items())


def display_names(spellings: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Genre -> the spelling most files give it (ties: the first seen), so that learned
    genres read as the library writes them ("Cool Jazz", not "cool jazz")."""
    counts: dict[str, Counter] = {}
    for genre, spelling in spellings:
        counts.setdefault(genre, Counter())[spelling] += 1
    return {genre: c.most_common(1)[0][0] for genre, c in counts.items()}


def group_key(album: str | None, artist: str | None, folder: str) -> str:
    """What cross-validation keeps together: the album (of its artist: "Greatest Hits"
    of two artists are two albums), else the artist, else the folder."""
    if album and album.strip():
        return f"album:{normalise_genre(artist or '')}/{normalise_genre(album)}"
    if artist and artist.strip():
        return f"artist:{normalise_genre(artist)}"
    return f"folder:{folder}"


@dataclass(frozen=True)
class Labels:
    """Which tracks train which genre, after `--min-tracks`."""

    rows: np.ndarray  # indices of the labelled tracks into the input
    y: np.ndarray  # their genre index into `genres`
    genres: list[str]
    left_out: dict[str, int]  # genre -> tracks, for genres with too few


def choose_labels(genre_lists: Sequence[Sequence[str]], min_tracks: int) -> Labels:
    """A track's label is its first genre (files list the main one first) among those
    with at least MIN_TRACKS tracks whose first genre it is; a track whose genres are
    all too rare is not used. Raises LearnError for fewer than two usable genres."""
    firsts = Counter(genres[0] for genres in genre_lists if genres)
    usable = sorted(g for g, n in firsts.items() if n >= min_tracks)
    left_out = {g: n for g, n in sorted(firsts.items()) if n < min_tracks}
    if len(usable) < 2:
        have = ", ".join(f"{g} ({n})" for g, n in firsts.most_common(10)) or "none"
        raise LearnError(
            f"need at least two genres with {min_tracks} or more tracks each to learn from; "
            f"found {len(usable)} (genres with their tracks: {have})")
    index = {g: i for i, g in enumerate(usable)}
    rows, y = [], []
    for row, genres in enumerate(genre_lists):
        label = next((index[g] for g in genres if g in index), None)
        if label is not None:
            rows.append(row)
            y.append(label)
    return Labels(np.asarray(rows, dtype=np.int64), np.asarray(y, dtype=np.int64), usable,
                  left_out)


def group_folds(groups: Sequence[str], n_folds: int) -> np.ndarray:
    """A fold index per item such that every group lies in one fold: groups, largest
    first, each go to the fold with fewest items so far (ties by fold number), so the
    folds come out about equal. Fewer groups than folds: one fold per group."""
    sizes = Counter(groups)
    n_folds = max(1, min(n_folds, len(sizes)))
    load = [0] * n_folds
    fold_of: dict[str, int] = {}
    for group, size in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        fold = min(range(n_folds), key=lambda f: (load[f], f))
        fold_of[group] = fold
        load[fold] += size
    return np.asarray([fold_of[g] for g in groups], dtype=np.int64)


@dataclass
class GenreHead:
    """A learned genre head over one embedding model's vectors."""

    genres: list[str]
    embedding_model: str  # "name@version" whose embeddings it reads
    mean: np.ndarray  # standardisation of the embeddings it was fitted on
    std: np.ndarray
    weight: np.ndarray  # (genres, dim)
    bias: np.ndarray  # (genres,)
    info: dict = field(default_factory=dict)  # source, counts, cross-validation

    @property
    def dim(self) -> int:
        """The length of the embeddings it reads."""
        return int(self.weight.shape[1])

    def probs(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, genres) probabilities of (n, dim) embeddings (any float dtype)."""
        x = (np.asarray(embeddings, dtype=np.float32) - self.mean) / self.std
        logits = x @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def save(self, path: str | Path) -> None:
        """One .npz of arrays, its metadata as a JSON string: loadable without pickle."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": HEAD_FORMAT, "genres": self.genres,
                "embedding_model": self.embedding_model, "info": self.info}
        with path.open("wb") as f:
            np.savez(f, mean=self.mean, std=self.std, weight=self.weight, bias=self.bias,
                     meta=np.asarray(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | Path) -> GenreHead:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k].astype(np.float32) for k in ("mean", "std", "weight", "bias")}
        except (OSError, ValueError, KeyError) as exc:
            raise LearnError(f"{path}: not a learned genre head ({exc})") from None
        if meta.get("format") != HEAD_FORMAT:
            raise LearnError(f"{path}: not a learned genre head (format {HEAD_FORMAT} expected)")
        return cls(genres=list(meta["genres"]), embedding_model=meta["embedding_model"],
                   info=meta.get("info", {}), **arrays)


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, c: float = HEAD_C,
                 max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Class-weighted multinomial logistic regression: genreq.train.fit_logistic's
    objective (½‖W‖² + C·Σ wᵢ·log-loss, wᵢ balanced), divided by C·Σ wᵢ, which has the
    same minimum, in float32 with tolerances for that scale. train's version solves
    it to 1e-9 in float64 for a few hundred clips; learn fits libraries of 10,000+
    tracks several times over (bench/learn.py) and needs no such precision to rank
    genres."""
    import torch
    from torch import nn

    from genreq.train import balanced_weights

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    w = torch.from_numpy(balanced_weights(y, n_classes).astype(np.float32))
    w = w / w.sum()
    l2 = 0.5 / (c * float(balanced_weights(y, n_classes).sum()))
    weight = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=max_iter, tolerance_grad=1e-6,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        opt.zero_grad()
        loss = l2 * weight.square().sum() + (w * nn.functional.cross_entropy(
            xt @ weight.T + bias, yt, reduction="none")).sum()
        loss.backward()
        return loss

    # One thread: the products are small (tracks × dim × genres), and on a busy machine
    # the threads' synchronisation costs more than they gain (bench/learn.py).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt.step(objective)
    finally:
        torch.set_num_threads(threads)
    return weight.detach().numpy(), bias.detach().numpy()


def fit_head(x: np.ndarray, y: np.ndarray, genres: list[str], embedding_model: str,
             c: float = HEAD_C) -> GenreHead:
    """Standardise, then class-weighted multinomial logistic regression (every genre
    weighs the same however many tracks it has)."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-6
    weight, bias = fit_logistic((x - mean) / std, y, len(genres), c)
    return GenreHead(list(genres), embedding_model, mean, std, weight, bias)


@dataclass(frozen=True)
class CrossValidation:
    n_folds: int
    n_groups: int
    accuracy: float
    balanced_accuracy: float
    n: int
    per_genre: dict[str, dict]  # genre -> {"n": tracks, "correct": ..., "accuracy": ...}

    def to_dict(self) -> dict:
        return {"folds": self.n_folds, "groups": self.n_groups, "n": self.n,
                "accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy,
                "per_genre": self.per_genre}


def cross_validate(x: np.ndarray, y: np.ndarray, groups: Sequence[str], genres: list[str],
                   n_folds: int = DEFAULT_FOLDS, c: float = HEAD_C) -> CrossValidation:
    """Grouped k-fold: each fold is predicted by a head fitted on the other folds, whose
    groups it shares none of; figures pool the out-of-fold predictions."""
    folds = group_folds(groups, n_folds)
    k = int(folds.max()) + 1
    if k < 2:
        raise LearnError("every labelled track is in one album (or artist, or folder): "
                         "cross-validation needs at least two")
    pred = np.empty_like(y)
    for fold in range(k):
        test = folds == fold
        head = fit_head(x[~test], y[~test], genres, "", c)
        pred[test] = head.probs(x[test]).argmax(axis=1)
    per_genre = {}
    for i, genre in enumerate(genres):
        mask = y == i
        correct = int((pred[mask] == i).sum())
        n = int(mask.sum())
        per_genre[genre] = {"n": n, "correct": correct, "accuracy": correct / n if n else None}
    recalls = [g["accuracy"] for g in per_genre.values() if g["accuracy"] is not None]
    return CrossValidation(n_folds=k, n_groups=len(set(groups)),
                           accuracy=float((pred == y).mean()),
                           balanced_accuracy=float(np.mean(recalls)), n=int(y.size),
                           per_genre=per_genre)


@dataclass(frozen=True)
class Learned:
    head: GenreHead
    cv: CrossValidation
    labels: Labels


def learn(
    embeddings: np.ndarray,
    genre_lists: Sequence[Sequence[str]],
    groups: Sequence[str],
    embedding_model: str,
    min_tracks: int = DEFAULT_MIN_TRACKS,
    n_folds: int = DEFAULT_FOLDS,
    c: float = HEAD_C,
) -> Learned:
    """Fit a head on the tracks that carry genres (GENRE_LISTS[i]: track i's normalised
    genres, [] for none; GROUPS[i]: its group_key), cross-validated by group, and the
    final head on all of them. Tracks without genres take no part."""
    embeddings = np.asarray(embeddings)
    if not (len(embeddings) == len(genre_lists) == len(groups)):
        raise ValueError("embeddings, genre_lists and groups must have one row per track")
    labels = choose_labels(genre_lists, min_tracks)
    x = embeddings[labels.rows].astype(np.float32)
    g = [groups[i] for i in labels.rows]
    cv = cross_validate(x, labels.y, g, labels.genres, n_folds, c)
    head = fit_head(x, labels.y, labels.genres, embedding_model, c)
    head.info = {"tracks": int(labels.y.size), "left_out": labels.left_out, "cv": cv.to_dict()}
    return Learned(head, cv, labels)
