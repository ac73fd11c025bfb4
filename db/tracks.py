"""The classified tracks as the commands that read them see them: done tracks filtered
and sorted for export and tag, the genres known, one track by path, and the file
bookkeeping of tag writes. Every read pages (db.paging)."""
from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import LargeBinary, Row, Text, cast, func, null, select, type_coerce, update
from sqlalchemy.orm import Session

from genreq.config import SORTS
from genreq.db import paging
from genreq.db.models import State, Track, as_utc

# The keyset columns of each order in config.SORTS, each ending in a unique column:
# enqueue order, most confident first, path.
SORT_KEYS = {
    "id": (Track.id,),
    "confidence": (Track.confidence.desc(), Track.id),
    "path": (Track.path,),
}


# What done_tracks reads of a track: what export, tag and report use, and no
# timestamps (parsing them cost a large share of a row's time, for nothing).
DONE_COLUMNS = (
    Track.id, Track.path, Track.size_bytes, Track.mtime_ns, Track.genre, Track.confidence,
    Track.probs, Track.duration_s, Track.model_name, Track.model_version, Track.elapsed_s,
    Track.tags, Track.embedding_model, Track.artist, Track.album, Track.title,
    Track.file_genres,
)


# What export_rows reads: export's columns, the JSON ones as their stored text (CAST:
# PostgreSQL's driver would otherwise decode them), so that the caller decodes them with
# a faster decoder than the JSON type's, or not at all.
EXPORT_COLUMNS = (
    Track.id, Track.path, Track.genre, Track.confidence, cast(Track.probs, Text).label("probs"),
    Track.duration_s, Track.model_name, Track.model_version,
    cast(Track.tags, Text).label("tags"), cast(Track.file_genres, Text).label("file_genres"),
)


def known_genres(session: Session) -> list[str]:
    """Every genre the models that classified this library can predict."""
    genres: set[str] = set()
    # One done track per model version is enough: probs holds its full genre vector.
    sample_ids = select(func.min(Track.id)).where(Track.state == State.done).group_by(
        Track.model_version
    )
    for probs in session.scalars(select(Track.probs).where(Track.id.in_(sample_ids))):
        genres.update(probs or {})
    return sorted(genres)


def _done_where(
    genres: Sequence[str] = (),
    min_confidence: float | None = None,
    since: datetime | None = None,
    model: str | None = None,
    path_glob: str | None = None,
) -> list:
    """The SQL conditions of done_tracks and count_done_tracks. A glob only narrows
    here: LIKE portably (SQLite's GLOB is not PostgreSQL's), and fnmatchcase decides
    exactly afterwards, since LIKE ignores case on SQLite and has no [...] classes."""
    where = [Track.state == State.done]
    if genres:
        where.append(Track.genre.in_(genres))
    if min_confidence is not None:
        where.append(Track.confidence >= min_confidence)
    if since is not None:
        where.append(Track.finished_at >= as_utc(since))
    if model is not None:
        where.append(Track.model_name == model)
    if path_glob is not None:
        where.append(Track.path.like(glob_to_like(path_glob), escape="\\"))
    return where


def _done_select(columns, sort: str, *where_args):
    """The SELECT of `columns` over the done tracks _done_where(*where_args) keeps, and
    the sort keys of `sort` (one of config.SORTS) to page it by."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {SORTS}, not {sort!r}")
    return select(*columns).where(*_done_where(*where_args)), SORT_KEYS[sort]


def done_tracks(
    session: Session,
    genres: Sequence[str] = (),
    min_confidence: float | None = None,
    *,
    path_glob: str | None = None,
    since: datetime | None = None,
    model: str | None = None,
    sort: str = "id",
    with_embedding: bool = True,
) -> Iterator[Row]:
    """Done tracks, paged: optionally of some genres, above a confidence, with a path
    matching a glob (`*` also matches `/`), finished at or after `since`, classified by
    the model named `model`. `sort` is one of config.SORTS: enqueue order (id), most confident
    first (confidence), or path.

    Each is a row of DONE_COLUMNS and `embedding`, read by attribute as a Track's
    (`track.path`, `track.probs`); `embedding` is None unless `with_embedding` (only a
    learned head reads it, and it is the widest column)."""
    embedding = (Track.embedding if with_embedding
                 else type_coerce(null(), LargeBinary).label("embedding"))
    query, keys = _done_select((*DONE_COLUMNS, embedding), sort,
                               genres, min_confidence, since, model, path_glob)
    for track in paging.rows(session, query, *keys):
        if path_glob is None or fnmatch.fnmatchcase(track.path, path_glob):
            yield track


def export_rows(
    session: Session,
    genres: Sequence[str] = (),
    min_confidence: float | None = None,
    *,
    path_glob: str | None = None,
    since: datetime | None = None,
    model: str | None = None,
    sort: str = "id",
) -> Iterator[Row]:
    """done_tracks' tracks, filtered and sorted as it does them, as rows of
    EXPORT_COLUMNS: `probs`, `tags` and `file_genres` their stored JSON text (or None)."""
    query, keys = _done_select(EXPORT_COLUMNS, sort,
                               genres, min_confidence, since, model, path_glob)
    for page in paging.pages(session, query, *keys, page_size=EXPORT_PAGE_SIZE):
        if path_glob is None:
            yield from page
        else:
            yield from (row for row in page if fnmatch.fnmatchcase(row.path, path_glob))


# Rows per SELECT of export_rows: larger pages than paging's, fewer queries (a page of
# this many rows without embeddings is a few MB).
EXPORT_PAGE_SIZE = 5000


def count_done_tracks(
    session: Session,
    genres: Sequence[str] = (),
    min_confidence: float | None = None,
    *,
    path_glob: str | None = None,
    since: datetime | None = None,
    model: str | None = None,
) -> int:
    """How many tracks done_tracks yields for the same filters: one COUNT, or with a
    glob one pass over the candidate paths (not the rows)."""
    where = _done_where(genres, min_confidence, since, model, path_glob)
    if path_glob is None:
        return session.scalar(select(func.count()).select_from(Track).where(*where))
    # One streamed SELECT of one column, in no order: no keyset needed to count.
    paths = session.scalars(select(Track.path).where(*where)
                            .execution_options(yield_per=paging.PAGE_SIZE))
    return sum(fnmatch.fnmatchcase(path, path_glob) for path in paths)


def glob_to_like(pattern: str) -> str:
    """A LIKE pattern (escape character backslash) matching at least what the fnmatch
    glob matches: `*` -> `%`, `?` and each [...] class -> `_`."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c == "[":
            # fnmatch's class syntax: [!...] negates; a ] right after [ or [! is literal
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            end = pattern.find("]", j)
            if end == -1:
                out.append("[")
            else:
                out.append("_")
                i = end
        elif c in "%_\\":
            out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def track_by_path(session: Session, path: str) -> Track | None:
    return session.scalars(select(Track).where(Track.path == path)).one_or_none()


def done_probs(session: Session) -> Iterator[dict[str, float]]:
    """The probability vector of every done track, paged by id."""
    query = select(Track.probs).where(Track.state == State.done)
    return (probs or {} for probs in paging.rows(session, query, Track.id))


def record_file_stat(session: Session, track_id: int, size_bytes: int, mtime_ns: int) -> None:
    """Remember a file's new size and mtime after genreq itself changed it (tag writes),
    so that the next enqueue does not take the file for a changed one."""
    session.execute(
        update(Track).where(Track.id == track_id).values(size_bytes=size_bytes, mtime_ns=mtime_ns)
    )
