"""Genres learned from the library itself (`genreq learn`): a head fitted on the stored
embeddings of done tracks, labelled by their files' own genre tags or by their
folders' names, cross-validated by album (genreq.learn), kept under GENREQ_HOME.
Learning reads the database only: no file is decoded and none is written.

The head at `head_path()` is the active one: status, export, tag, report and show
label every done track whose embedding it reads by it (`active_head`, applied in
genreq.app.taxonomy.Labeller at read time), untagged tracks and tracks classified
later included. Read time rather than stored results: nothing to backfill or keep in
step when the head changes or goes (`reset`), and the float16 embedding every done
track already has is all it reads.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genreq import config
from genreq.errors import GenreqError

HEAD_FILE = "learned-genres.npz"
FROM_TAGS, FROM_FOLDERS = "tags", "folders"


def head_path() -> Path:
    return config.home() / HEAD_FILE


# The active head, kept while its file is unchanged: export calls several API functions
# per command, each of which asks for it.
_cache: dict[Path, tuple[tuple[int, int], object]] = {}


def active_head():
    """The learned head (genreq.learn.GenreHead) at head_path(), or None when there is
    none. Raises LearnError (a GenreqError) naming the file when it is not a head."""
    path = head_path()
    try:
        info = path.stat()
    except FileNotFoundError:
        _cache.pop(path, None)
        return None
    except OSError as exc:
        raise GenreqError(f"{path}: cannot read the learned head ({exc.strerror})") from exc
    key = (info.st_mtime_ns, info.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    from genreq.learn import GenreHead  # numpy: only once there is a head to load

    try:
        head = GenreHead.load(path)
    except GenreqError as exc:
        raise GenreqError(f"{exc} (`genreq learn --reset` removes it)") from None
    _cache[path] = (key, head)
    return head


COUNTS_FILE = "learned-genre-counts.json"


def _counts_key(session, head) -> list:
    """What the active head's genre counts depend on: the head file and its model's
    stored embeddings (db.embeddings.fingerprint: count, largest id, latest finish)."""
    from genreq.db import embeddings as db_embeddings

    info = head_path().stat()
    return [info.st_mtime_ns, info.st_size, head.embedding_model,
            *db_embeddings.fingerprint(session, head.embedding_model)]


def cached_counts(session, head) -> Counter | None:
    """The active head's genre counts over every done track it reads, as last kept,
    while they still hold; None otherwise."""
    import json

    try:
        kept = json.loads((config.home() / "cache" / COUNTS_FILE).read_text("utf-8"))
        if kept["key"] == json.loads(json.dumps(_counts_key(session, head))):
            return Counter(kept["counts"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none kept yet, or a damaged file: count again
    return None


def keep_counts(session, head, counts: Counter) -> None:
    import json

    path = config.home() / "cache" / COUNTS_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": _counts_key(session, head), "counts": counts}),
                       "utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: counted again next time


@dataclass(frozen=True)
class LearnedSummary:
    """What `status` says of the active head: which tracks it labels and which keep the
    model's genres. `.as_dict()` is status --json's `learned`."""

    head: str  # its file
    source: str | None  # FROM_TAGS or FROM_FOLDERS
    embedding_model: str  # "name@version" whose embeddings it reads
    genres: list[str]
    tracks: int  # done tracks it labels
    model_genre_tracks: int  # done tracks without that model's embedding: model's genres

    def as_dict(self) -> dict:
        return {"head": self.head, "source": self.source,
                "embedding_model": self.embedding_model, "genres": self.genres,
                "tracks": self.tracks, "model_genre_tracks": self.model_genre_tracks}


def learned_tracks(session, head) -> tuple[int, int]:
    """(done tracks HEAD labels, done tracks that keep the model's genres)."""
    from sqlalchemy import func, select

    from genreq.db import embeddings as db_embeddings
    from genreq.db.models import State, Track

    done = session.scalar(select(func.count()).select_from(Track).where(
        Track.state == State.done))
    labelled = db_embeddings.embedding_models(session).get(head.embedding_model, 0)
    return labelled, done - labelled


def summary(session, head=None) -> LearnedSummary | None:
    """HEAD (default: the active head) and the tracks it labels; None without one."""
    active = head is None
    head = active_head() if active else head
    if head is None:
        return None
    labelled, others = learned_tracks(session, head)
    return LearnedSummary(str(head_path()) if active else "", head.info.get("source"),
                          head.embedding_model, list(head.genres), labelled, others)


def learned_summary() -> LearnedSummary | None:
    """The Python API of status's learned-genres line (`app.learned()`)."""
    from genreq.app.library import session

    with session() as db:
        return summary(db)


def _rows(session, embedding_model: str):
    from sqlalchemy import select

    from genreq.db import paging
    from genreq.db.models import State, Track

    query = select(Track.id, Track.path, Track.embedding, Track.file_genres, Track.artist,
                   Track.album).where(Track.state == State.done,
                                      Track.embedding_model == embedding_model,
                                      Track.embedding.is_not(None))
    return paging.rows(session, query, Track.id)


def learn_genres(session, source: str = FROM_TAGS, min_tracks: int = 5,
                 mapping: dict[str, str] | None = None, output: str | Path | None = None,
                 on_message: Callable[[str], None] | None = None):
    """Fit, cross-validate and save a genre head (genreq.learn.Learned). SOURCE: the
    files' genre tags (FROM_TAGS) or their parent folders' names (FROM_FOLDERS).
    Uses the embeddings of the model that embedded most of the library."""
    import numpy as np

    from genreq import learn
    from genreq.db import embeddings as db_embeddings
    from genreq.similarity import STORED_DTYPE

    models = db_embeddings.embedding_models(session)
    if not models:
        raise GenreqError("no track in the library has an embedding yet "
                          "(run `genreq run` on it with this version of genreq)")
    embedding_model = next(iter(models))
    blobs, spelled_lists, groups = [], [], []
    for _id, path, blob, file_genres, artist, album in _rows(session, embedding_model):
        folder = os.path.dirname(path)
        values = os.path.basename(folder) if source == FROM_FOLDERS else file_genres or []
        blobs.append(blob)
        spelled_lists.append(learn.spelled_genres(values, mapping))
        groups.append(learn.group_key(album, artist, folder))
    # Genres compare normalised ("Cool Jazz" and "cool jazz" are one) and are named as
    # most files spell them: what export shows and tag writes.
    names = learn.display_names(pair for spelled in spelled_lists for pair in spelled)
    genre_lists = [[names[genre] for genre, _ in spelled] for spelled in spelled_lists]
    x = np.frombuffer(b"".join(blobs), dtype=STORED_DTYPE).reshape(len(blobs), -1)
    learned = learn.learn(x, genre_lists, groups, embedding_model, min_tracks)
    if learned.labels.left_out and on_message:
        rare = ", ".join(f"{g} ({n})" for g, n in learned.labels.left_out.items())
        on_message(f"left out, fewer than {min_tracks} tracks: {rare}")
    if on_message:
        for genre in _untestable_genres(learned.labels, groups):
            on_message(f"{genre}: all its tracks share one album, artist or folder, so "
                       "cross-validation cannot test it on an unseen one (its accuracy "
                       "there is 0 by construction); tag albums or artists to measure it")
    learned.head.info["source"] = source
    learned.head.save(output or head_path())
    return learned


def _untestable_genres(labels, groups: list[str]) -> list[str]:
    """Genres whose labelled tracks all sit in one group: a grouped fold never trains
    on them while it tests them."""
    groups_of: dict[int, set[str]] = {}
    for row, y in zip(labels.rows, labels.y, strict=True):
        groups_of.setdefault(int(y), set()).add(groups[row])
    return [labels.genres[y] for y, seen in sorted(groups_of.items()) if len(seen) == 1]


def learn_api(source: str = FROM_TAGS, min_tracks: int = 5, taxonomy: str | None = None,
              output: str | Path | None = None,
              on_message: Callable[[str], None] | None = None):
    """The Python API of `genreq learn`."""
    from genreq.app import taxonomy as taxonomy_module
    from genreq.app.library import session

    mapping = dict(taxonomy_module.resolve(taxonomy).mapping) if taxonomy else None
    with session() as db:
        return learn_genres(db, source, min_tracks, mapping, output, on_message)


def reset() -> bool:
    """Back to the model's own genres: the learned head goes. True if there was one."""
    path = head_path()
    if path.exists():
        path.unlink()
        return True
    return False
