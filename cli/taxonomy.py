"""The user's genre names over the model's: a taxonomy file maps model genres to user
genres, several to one, and a user genre's probability is the sum of its members'.

    # genres.toml
    [genres]
    hiphop = "Hip-Hop"
    metal = "Rock"
    rock = "Rock"

Model genres the file does not name keep their own name. Pure functions, no database:
status, export and tag all label a probability vector through `Labeller.label`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from genreq.errors import GenreqError

TAXONOMY_ENV = "GENREQ_TAXONOMY"
UNKNOWN = "unknown"  # the genre of a track below the --unknown-below threshold


class TaxonomyError(GenreqError):
    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class Taxonomy:
    """model genre -> user genre; unnamed model genres map to themselves."""

    mapping: Mapping[str, str] = field(default_factory=dict)
    source: str | None = None  # the file it came from, for messages

    def user_genre(self, model_genre: str) -> str:
        return self.mapping.get(model_genre, model_genre)

    def map_probs(self, probs: Mapping[str, float]) -> dict[str, float]:
        """User genre -> summed probability of its model genres, most probable first
        (ties by name, so the order never depends on the input's)."""
        summed: dict[str, float] = {}
        for genre, p in probs.items():
            user = self.user_genre(genre)
            summed[user] = summed.get(user, 0.0) + p
        return dict(sorted(summed.items(), key=lambda kv: (-kv[1], kv[0])))

    def user_genres(self, model_genres: list[str]) -> list[str]:
        """The user genres that these model genres map to, sorted."""
        return sorted({self.user_genre(g) for g in model_genres})


IDENTITY = Taxonomy()


def parse(text: str, source: str = "<string>") -> Taxonomy:
    """A Taxonomy from TOML text with a [genres] table of strings."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError as exc:
            raise TaxonomyError(source, "reading TOML on Python 3.10 needs `pip install tomli`") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaxonomyError(source, f"not valid TOML ({exc})") from exc
    genres = data.get("genres")
    if not isinstance(genres, dict):
        raise TaxonomyError(source, 'no [genres] table (e.g. [genres] hiphop = "Hip-Hop")')
    bad = sorted(k for k, v in genres.items() if not isinstance(v, str) or not v.strip())
    if bad:
        raise TaxonomyError(source, f"[genres] values must be non-empty strings: {', '.join(bad)}")
    if UNKNOWN in {v.strip() for v in genres.values()}:
        raise TaxonomyError(source, f"{UNKNOWN!r} is reserved for tracks below --unknown-below")
    return Taxonomy({k: v.strip() for k, v in genres.items()}, source)


def load(path: str | Path) -> Taxonomy:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaxonomyError(path, f"cannot read taxonomy ({getattr(exc, 'strerror', None) or exc})") from exc
    return parse(text, str(path))


def resolve(path: str | Path | None) -> Taxonomy:
    """The taxonomy in `path`, else in $GENREQ_TAXONOMY, else the identity."""
    path = path or os.environ.get(TAXONOMY_ENV) or None
    return load(path) if path else IDENTITY


@dataclass(frozen=True)
class Label:
    genre: str
    confidence: float  # probability of `genre` (of the top genre when genre is unknown)
    top: list[tuple[str, float]]  # user genres, most probable first


@dataclass(frozen=True)
class Labeller:
    """Turns a stored probability vector into what the user sees."""

    taxonomy: Taxonomy = IDENTITY
    unknown_below: float | None = None
    top_k: int = 3

    @property
    def is_identity(self) -> bool:
        """True when labels equal the stored genre and confidence (filters can go to SQL)."""
        return not self.taxonomy.mapping and self.unknown_below is None

    def label(self, probs: Mapping[str, float]) -> Label:
        mapped = self.taxonomy.map_probs(probs)
        items = list(mapped.items())
        if not items:
            return Label(UNKNOWN, 0.0, [])
        genre, confidence = items[0]
        if self.unknown_below is not None and confidence < self.unknown_below:
            genre = UNKNOWN
        return Label(genre, confidence, items[: self.top_k])

    def genres(self, model_genres: list[str]) -> list[str]:
        """Every genre a label can have, given the model genres seen."""
        genres = self.taxonomy.user_genres(model_genres)
        if self.unknown_below is not None:
            genres = sorted({*genres, UNKNOWN})
        return genres
