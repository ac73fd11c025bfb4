"""Search by sound: the tracks of the library that sound most like a file, from the
stored embeddings (genreq.similarity), never decoding a library track again.

    from genreq import app
    result = app.similar("~/Music/a.flac", limit=5)
    for row in result.rows:
        print(row["similarity"], row["genre"], row["path"])

The query is a done track of the library (its stored embedding) or, for any other audio
file, the embedding of a classification made on the fly with the model that embedded
the library. Its own album is left out unless `same_album`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from genreq.errors import AudioError, GenreqError

if TYPE_CHECKING:
    import numpy as np

    from genreq.app.taxonomy import Labeller

DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class SimilarResult:
    query: dict  # path, genre, duration_s, artist, album, title, in_library
    rows: list[dict] = field(default_factory=list)  # best first
    embedding_model: str = ""
    searched: int = 0  # tracks compared


@dataclass(frozen=True)
class _Query:
    vector: np.ndarray
    embedding_model: str
    record: dict
    track_id: int | None
    artist: str | None
    album: str | None


def _library_query(track, labeller: Labeller) -> _Query:
    import numpy as np

    from genreq.similarity import embedding_from_bytes

    label = labeller.label(track.probs or {}) if track.probs else None
    record = {"path": track.path, "genre": label.genre if label else track.genre,
              "duration_s": track.duration_s, "artist": track.artist, "album": track.album,
              "title": track.title, "in_library": True}
    return _Query(embedding_from_bytes(track.embedding).astype(np.float32),
                  track.embedding_model, record, track.id, track.artist, track.album)


def _classifier_for(models: dict[str, int]):
    """The classifier whose embeddings the library holds: GENREQ_MODEL or the default if
    it made some of them, else the shipped model of the library's most common
    embedding model's name, if its version matches."""
    from genreq.predict import Classifier

    classifier = Classifier.load(None)
    if classifier.model_id in models:
        return classifier
    for model_id in models:
        name = model_id.split("@", 1)[0]
        try:
            candidate = Classifier.load(name)
        except GenreqError:
            continue
        if candidate.model_id in models:
            return candidate
    known = ", ".join(models) or "none"
    raise GenreqError(f"no model here makes the embeddings this library holds ({known}); "
                      f"the loaded model is {classifier.model_id}")


def _file_query(path: str, models: dict[str, int], labeller: Labeller) -> _Query:
    from genreq import filetags

    classifier = _classifier_for(models)
    try:
        prediction = classifier.classify_file(path)
    except AudioError as exc:
        raise GenreqError(f"{path}: not in the library, and not readable audio "
                          f"({exc.reason})") from None
    tags = filetags.read(path)
    label = labeller.label(prediction.probs)
    record = {"path": path, "genre": label.genre, "duration_s": prediction.duration_s,
              "artist": tags.artist, "album": tags.album, "title": tags.title,
              "in_library": False}
    return _Query(prediction.embedding, prediction.embedding_model, record, None,
                  tags.artist, tags.album)


def _cache_base(embedding_model: str):
    from genreq import config

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in embedding_model)
    return config.home() / "cache" / f"embeddings-{safe}"


# The cached arrays, one .npy each: read back memory-mapped, so a query of a million
# tracks maps its matrix instead of reading it whole first.
CACHED = ("ids", "matrix", "albums")


def album_key(album: str | None, artist: str | None) -> str:
    """Tracks of one album share this (album and artist tags, ignoring case); "" for a
    track without an album tag, which shares none."""
    if not album or not album.strip():
        return ""
    return f"{(artist or '').strip().lower()}\x1f{album.strip().lower()}"


@dataclass(frozen=True)
class _Library:
    ids: np.ndarray  # track ids, ascending
    matrix: np.ndarray  # their normalised float16 embeddings, row by row
    albums: np.ndarray  # their album_key


def _library_matrix(session, embedding_model: str) -> _Library:
    """Track ids, the normalised float16 matrix of their embeddings and their album
    keys. Reading a library's embeddings from the database costs many times the search
    itself, so the arrays are kept under GENREQ_HOME (CACHED, and a stamp written last)
    and read again only when the embedded tracks changed (db.embeddings.fingerprint)."""
    import numpy as np

    from genreq.db import embeddings as db_embeddings
    from genreq.similarity import matrix_from_bytes

    base = _cache_base(embedding_model)
    stamp_path = base.with_name(base.name + ".stamp")
    stamp = repr(db_embeddings.fingerprint(session, embedding_model))
    try:
        if stamp_path.read_text(encoding="utf-8") == stamp:
            # Copy-on-write maps: writable arrays (torch takes them as they are) that
            # never write to the files.
            arrays = {name: np.load(base.with_name(f"{base.name}.{name}.npy"),
                                    mmap_mode="c", allow_pickle=False) for name in CACHED}
            return _Library(**arrays)
    except (OSError, ValueError):
        pass  # no cache yet, or a damaged one: read the database
    ids, blobs, albums = [], [], []
    for track_id, blob, album, artist in db_embeddings.embeddings(session, embedding_model):
        ids.append(track_id)
        blobs.append(blob)
        albums.append(album_key(album, artist))
    library = _Library(np.asarray(ids, dtype=np.int64), matrix_from_bytes(blobs),
                       np.asarray(albums, dtype=str))
    base.parent.mkdir(parents=True, exist_ok=True)
    stamp_path.unlink(missing_ok=True)  # the arrays change first: no reader trusts them
    for name in CACHED:
        path = base.with_name(f"{base.name}.{name}.npy")
        partial = path.with_suffix(".partial")
        with partial.open("wb") as f:  # written whole, then renamed: readers never see half
            np.save(f, getattr(library, name), allow_pickle=False)
        partial.replace(path)
    partial = stamp_path.with_suffix(".partial")
    partial.write_text(stamp, encoding="utf-8")
    partial.replace(stamp_path)
    return library


def find_similar(session, path: str, limit: int = DEFAULT_LIMIT, same_album: bool = False,
                 labeller: Labeller | None = None) -> SimilarResult:
    """The LIMIT tracks most similar to the file at PATH; see the module docstring.
    Raises GenreqError for a PATH neither in the library (done, with an embedding) nor
    readable audio, or a library without embeddings."""
    import numpy as np

    from genreq.app.taxonomy import Labeller
    from genreq.db import embeddings as db_embeddings
    from genreq.db import tracks as db_tracks
    from genreq.db.models import State
    from genreq.similarity import top_n

    labeller = labeller or Labeller()
    absolute = os.path.abspath(os.path.expanduser(str(path)))
    track = db_tracks.track_by_path(session, absolute)
    if track is not None and track.state == State.done and track.embedding is not None:
        query = _library_query(track, labeller)
    else:
        models = db_embeddings.embedding_models(session)
        if not models:
            raise GenreqError("no track in the library has an embedding yet "
                              "(run `genreq run` on it with this version of genreq)")
        if not os.path.isfile(absolute):
            raise GenreqError(f"{absolute}: not in the library and no such file")
        query = _file_query(absolute, models, labeller)

    library = _library_matrix(session, query.embedding_model)
    if not library.ids.size:
        raise GenreqError(f"no track in the library was embedded by {query.embedding_model}")
    exclude = []
    if track is not None:  # PATH itself, whatever its state
        row = int(np.searchsorted(library.ids, track.id))
        if row < library.ids.size and library.ids[row] == track.id:
            exclude.append(row)
    key = album_key(query.album, query.artist)
    if key and not same_album:
        exclude.extend(np.flatnonzero(library.albums == key).tolist())
    neighbours = top_n(library.matrix, query.vector, limit, exclude=exclude)
    ids = library.ids
    found = db_embeddings.tracks_by_id(session, [int(ids[n.row]) for n in neighbours])
    rows = []
    for n in neighbours:
        t = found[int(ids[n.row])]
        label = labeller.label(t.probs) if t.probs else None
        rows.append({
            "path": t.path,
            "similarity": round(n.similarity, 4),
            "genre": label.genre if label else t.genre,
            "confidence": round(label.confidence, 4) if label else t.confidence,
            "duration_s": round(t.duration_s, 2) if t.duration_s is not None else None,
            "artist": t.artist,
            "album": t.album,
            "title": t.title,
        })
    return SimilarResult(query.record, rows, query.embedding_model, int(ids.size))


def similar(path: str, limit: int = DEFAULT_LIMIT, same_album: bool = False,
            labeller: Labeller | None = None) -> SimilarResult:
    """The Python API of `genreq similar`: find_similar on the configured database."""
    from genreq.app.library import session

    with session() as db:
        return find_similar(db, path, limit, same_album, labeller)
