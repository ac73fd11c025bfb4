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

import numpy as np

from genreq.errors import AudioError, GenreqError

if TYPE_CHECKING:
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


def find_similar(session, path: str, limit: int = DEFAULT_LIMIT, same_album: bool = False,
                 labeller: Labeller | None = None) -> SimilarResult:
    """The LIMIT tracks most similar to the file at PATH; see the module docstring.
    Raises GenreqError for a PATH neither in the library (done, with an embedding) nor
    readable audio, or a library without embeddings."""
    from genreq.app.taxonomy import Labeller
    from genreq.db import embeddings as db_embeddings
    from genreq.db import tracks as db_tracks
    from genreq.db.models import State
    from genreq.similarity import matrix_from_bytes, top_n

    labeller = labeller or Labeller()
    absolute = os.path.abspath(os.path.expanduser(str(path)))
    models = db_embeddings.embedding_models(session)
    if not models:
        raise GenreqError("no track in the library has an embedding yet "
                          "(run `genreq run` on it with this version of genreq)")
    track = db_tracks.track_by_path(session, absolute)
    if track is not None and track.state == State.done and track.embedding is not None:
        query = _library_query(track, labeller)
    elif os.path.isfile(absolute):
        query = _file_query(absolute, models, labeller)
    else:
        raise GenreqError(f"{absolute}: not in the library and no such file")

    ids, blobs = [], []
    for track_id, blob in db_embeddings.embeddings(session, query.embedding_model):
        ids.append(track_id)
        blobs.append(blob)
    if not ids:
        raise GenreqError(f"no track in the library was embedded by {query.embedding_model}")
    row_of = {track_id: row for row, track_id in enumerate(ids)}
    exclude = set()
    if query.track_id is not None:
        exclude.add(query.track_id)
    same_path = db_tracks.track_by_path(session, absolute)
    if same_path is not None:
        exclude.add(same_path.id)
    if query.album and not same_album:
        exclude.update(db_embeddings.album_ids(session, query.album, query.artist))
    neighbours = top_n(matrix_from_bytes(blobs), query.vector, limit,
                       exclude=[row_of[i] for i in exclude if i in row_of])
    found = db_embeddings.tracks_by_id(session, [ids[n.row] for n in neighbours])
    rows = []
    for n in neighbours:
        t = found[ids[n.row]]
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
    return SimilarResult(query.record, rows, query.embedding_model, len(ids))


def similar(path: str, limit: int = DEFAULT_LIMIT, same_album: bool = False,
            labeller: Labeller | None = None) -> SimilarResult:
    """The Python API of `genreq similar`: find_similar on the configured database."""
    from genreq.app.library import session

    with session() as db:
        return find_similar(db, path, limit, same_album, labeller)
