"""The user's genre names over the model's: a taxonomy file maps model genres to user
genres, several to one, and a user genre's probability is the sum of its members'.

    # genres.toml                # genres.yaml (or .yml): the same mapping
    [genres]                     genres:
    hiphop = "Hip-Hop"             hiphop: Hip-Hop
    metal = "Rock"                 metal: Rock
    rock = "Rock"                  rock: Rock

The file's suffix says which format it is. Model genres the file does not name keep
their own name. Pure functions, no database:
status, export and tag all label a track through `Labeller.label`.

Genres learned from the library (`genreq learn`, genreq.learn.GenreHead) are applied
here too, at read time: a labeller holding a head labels a track by the head's
probabilities of its stored embedding when the head reads that embedding model's
vectors, and by the model's stored probabilities otherwise. Nothing is decoded again and
nothing is stored, so a new head, `learn --reset` and tracks classified later all take
effect at once.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from genreq import config
from genreq.config import TOP_K
from genreq.errors import GenreqError

if TYPE_CHECKING:
    import numpy as np

    from genreq.learn import GenreHead

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


def _read_toml(text: str, source: str) -> object:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError as exc:
            raise TaxonomyError(
                source, "reading TOML on Python 3.10 needs `pip install tomli`") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaxonomyError(source, f"not valid TOML ({exc})") from exc


def _read_yaml(text: str, source: str) -> object:
    import yaml

    try:
        return yaml.safe_load(text)  # plain data only: a taxonomy file runs no constructors
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise TaxonomyError(source, f"not valid YAML ({problem}{where})") from exc


@dataclass(frozen=True)
class _Format:
    name: str
    read: Callable[[str, str], object]
    table: str  # how the format spells the genres table, for messages
    example: str


FORMATS = {
    ".toml": _Format("TOML", _read_toml, "[genres]", '[genres] hiphop = "Hip-Hop"'),
    ".yaml": _Format("YAML", _read_yaml, "genres:", "genres: {hiphop: Hip-Hop}"),
}
FORMATS[".yml"] = FORMATS[".yaml"]


def _format(suffix: str, source: str) -> _Format:
    try:
        return FORMATS[suffix.lower()]
    except KeyError:
        raise TaxonomyError(source, f"unknown taxonomy format {suffix or '(no suffix)'!r}; "
                                    "name the file .toml, .yaml or .yml") from None


def parse(text: str, source: str = "<string>", suffix: str = ".toml") -> Taxonomy:
    """A Taxonomy from TOML (suffix .toml) or YAML (.yaml, .yml) text holding a `genres`
    table of strings."""
    fmt = _format(suffix, source)
    data = fmt.read(text, source)
    genres = data.get("genres") if isinstance(data, dict) else None
    if not isinstance(genres, dict):
        raise TaxonomyError(source, f"no {fmt.table} table (e.g. {fmt.example})")
    # YAML reads unquoted yes/no/on/off/null and numbers as other types, keys included.
    bad_keys = sorted(repr(k) for k in genres if not isinstance(k, str) or not k.strip())
    if bad_keys:
        raise TaxonomyError(source, f"{fmt.table} keys must be model genre names"
                                    + (" (quote them)" if fmt.name == "YAML" else "")
                                    + f": {', '.join(bad_keys)}")
    bad = sorted(k for k, v in genres.items() if not isinstance(v, str) or not v.strip())
    if bad:
        raise TaxonomyError(source, f"{fmt.table} values must be non-empty strings: "
                                    + ", ".join(bad))
    if UNKNOWN in {v.strip() for v in genres.values()}:
        raise TaxonomyError(source, f"{UNKNOWN!r} is reserved for tracks below --unknown-below")
    return Taxonomy({k: v.strip() for k, v in genres.items()}, source)


def load(path: str | Path) -> Taxonomy:
    """The taxonomy in a .toml, .yaml or .yml file."""
    path = Path(path)
    _format(path.suffix, str(path))  # an unknown suffix is named before the file is read
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise TaxonomyError(path, f"cannot read taxonomy ({reason})") from exc
    return parse(text, str(path), path.suffix)


def resolve(path: str | Path | None) -> Taxonomy:
    """The taxonomy in `path`, else in $GENREQ_TAXONOMY, else the identity."""
    path = path or config.taxonomy()
    return load(path) if path else IDENTITY


# Where a label's genres come from (export's `genre_source`).
MODEL, LEARNED = "model", "learned"


@dataclass(frozen=True)
class Label:
    genre: str
    confidence: float  # probability of `genre` (of the top genre when genre is unknown)
    top: list[tuple[str, float]]  # user genres, most probable first
    source: str = MODEL  # MODEL: the classifier's genres; LEARNED: the learned head's


@dataclass(frozen=True)
class Labeller:
    """Turns a stored track (its probability vector, or its embedding under a learned
    head) into what the user sees."""

    taxonomy: Taxonomy = IDENTITY
    unknown_below: float | None = None
    top_k: int = TOP_K
    # The learned genre head applied to the tracks whose embeddings it reads. The app
    # layer fills it in from GENREQ_HOME when `use_learned` (genreq.app.library);
    # use_learned=False keeps the model's genres while a head is saved.
    head: GenreHead | None = None
    use_learned: bool = True

    @property
    def is_identity(self) -> bool:
        """True when labels equal the stored genre and confidence (filters can go to SQL)."""
        return not self.taxonomy.mapping and self.unknown_below is None and self.head is None

    @property
    def confidence_is_stored(self) -> bool:
        """True when a label's confidence is the stored column (SQL can sort by it)."""
        return not self.taxonomy.mapping and self.head is None

    def learned_probs(self, embedding: bytes | None, embedding_model: str | None
                      ) -> dict[str, float] | None:
        """The head's genre probabilities of a stored embedding (float16 bytes), or None
        when there is no head or it does not read this embedding model's vectors."""
        head = self.head
        if head is None or embedding is None or embedding_model != head.embedding_model:
            return None
        from genreq.similarity import embedding_from_bytes

        vector = embedding_from_bytes(embedding)
        if vector.size != head.dim:
            return None
        return dict(zip(head.genres, head.probs(vector[None])[0].tolist(), strict=True))

    def label(self, probs: Mapping[str, float], embedding: bytes | None = None,
              embedding_model: str | None = None) -> Label:
        """The label of a track's stored PROBS, or under a head that reads
        EMBEDDING_MODEL, of its stored EMBEDDING."""
        learned = self.learned_probs(embedding, embedding_model)
        return self.label_probs(probs if learned is None else learned,
                                MODEL if learned is None else LEARNED)

    def label_track(self, track) -> Label:
        """The label of a stored track (a genreq.db.models.Track or any object with its
        probs, embedding and embedding_model)."""
        return self.label(track.probs or {}, track.embedding, track.embedding_model)

    def _learned_rows(self, rows: list[tuple]) -> tuple[list[int], np.ndarray | None]:
        """The indices of the (probs, embedding, embedding_model) rows the head reads,
        and its probabilities of them, (rows, genres), in one product."""
        import numpy as np

        from genreq.similarity import STORED_DTYPE

        head = self.head
        if head is None:
            return [], None
        size = head.dim * STORED_DTYPE.itemsize
        mine = [i for i, (_p, blob, model) in enumerate(rows)
                if blob is not None and model == head.embedding_model and len(blob) == size]
        if not mine:
            return [], None
        x = np.frombuffer(b"".join(rows[i][1] for i in mine), dtype=STORED_DTYPE)
        return mine, head.probs(x.reshape(len(mine), head.dim))

    def learned_probs_of(self, tracks: list) -> list[dict[str, float] | None]:
        """learned_probs of each stored track (anything with embedding and
        embedding_model), the head applied to them all in one product."""
        if self.head is None:
            return [None] * len(tracks)
        mine, probs = self._learned_rows(
            [(None, t.embedding, t.embedding_model) for t in tracks])
        out: list[dict[str, float] | None] = [None] * len(tracks)
        for i, p in zip(mine, [] if probs is None else probs.tolist(), strict=True):
            out[i] = dict(zip(self.head.genres, p, strict=True))
        return out

    def label_rows(self, rows: list[tuple]) -> list[Label]:
        """The labels of (probs, embedding, embedding_model) rows, the head applied to
        all of its rows in one product."""
        mine, probs = self._learned_rows(rows)
        learned = {} if probs is None else {
            i: dict(zip(self.head.genres, p, strict=True))
            for i, p in zip(mine, probs.tolist(), strict=True)}
        return [self.label_probs(learned[i], LEARNED) if i in learned
                else self.label_probs(row[0] or {}) for i, row in enumerate(rows)]

    def genres_of_rows(self, rows: list[tuple]) -> list[str]:
        """Only the labelled genre of each row (status's counts, which read a page of rows
        at a time): under a head and no taxonomy, an argmax per row, not a label."""
        if self.head is None or self.taxonomy.mapping:
            return [label.genre for label in self.label_rows(rows)]
        import numpy as np

        mine, probs = self._learned_rows(rows)
        out = [""] * len(rows)
        if probs is not None:
            best = probs.argmax(axis=1)
            sure = np.ones(len(mine), dtype=bool) if self.unknown_below is None \
                else probs.max(axis=1) >= self.unknown_below
            for i, b, ok in zip(mine, best.tolist(), sure.tolist(), strict=True):
                out[i] = self.head.genres[b] if ok else UNKNOWN
        taken = set(mine)
        for i, row in enumerate(rows):
            if i not in taken:
                out[i] = self.label_probs(row[0] or {}).genre
        return out

    def label_probs(self, probs: Mapping[str, float], source: str = MODEL) -> Label:
        mapped = self.taxonomy.map_probs(probs)
        items = list(mapped.items())
        if not items:
            return Label(UNKNOWN, 0.0, [], source)
        genre, confidence = items[0]
        if self.unknown_below is not None and confidence < self.unknown_below:
            genre = UNKNOWN
        return Label(genre, confidence, items[: self.top_k], source)

    def genres(self, model_genres: list[str], learned_only: bool = False) -> list[str]:
        """Every genre a label can have, given the model genres seen; under a head, its
        genres too, and only those when LEARNED_ONLY (every track is the head's)."""
        seen = [] if self.head is not None and learned_only else list(model_genres)
        if self.head is not None:
            seen += self.head.genres
        genres = self.taxonomy.user_genres(seen)
        if self.unknown_below is not None:
            genres = sorted({*genres, UNKNOWN})
        return genres
