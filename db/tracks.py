"""The classified tracks as the commands that read them see them: done tracks filtered
and sorted for export and tag, the genres known, one track by path, and the file
bookkeeping of tag writes. Every read pages (db.paging)."""
from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import (
    Float,
    LargeBinary,
    Row,
    Text,
    bindparam,
    cast,
    func,
    null,
    select,
    type_coerce,
    update,
)
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
    Track.artist, Track.album, Track.title,
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


def _line_columns(with_path: bool, with_tags: bool, sort: str) -> tuple:
    """What export_pages reads with LINES: `id`, `line` (the stored export line), and
    `path` and `tags` only when asked for (a glob, a tag filter), and the keys of SORT
    (so that the rows page in place: see db.paging). A row's other columns are read by
    export_rows_by_id only where its line is NULL: in a library whose lines are stored,
    the database sends one text column a track."""
    return (Track.id, Track.export_line.label("line"),
            *([Track.path] if with_path or sort == "path" else []),
            *([cast(Track.tags, Text).label("tags")] if with_tags else []),
            *([Track.confidence] if sort == "confidence" else []))


class _CoreRows:
    """A session's statements run on its connection (Core rows, without the ORM's
    per-row loading: a good part of a stored line's time, and nothing lost for a SELECT
    of columns), on whichever connection it holds now: a caller may commit between
    pages."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def execute(self, statement):
        return self.session.connection().execute(statement)


def export_pages(
    session: Session,
    genres: Sequence[str] = (),
    min_confidence: float | None = None,
    *,
    path_glob: str | None = None,
    since: datetime | None = None,
    model: str | None = None,
    sort: str = "id",
    lines: bool = False,
    with_tags: bool = False,
) -> Iterator[list[Row]]:
    """done_tracks' tracks, filtered and sorted as it does them, a page at a time, as
    rows of EXPORT_COLUMNS: `probs`, `tags` and `file_genres` their stored JSON text (or
    None). With LINES, rows of `id` and `line`, the track's stored export line (or
    None), and `tags` with WITH_TAGS (see _line_columns; export_rows_by_id reads the
    rest of the rows without a line)."""
    columns = (_line_columns(path_glob is not None, with_tags, sort) if lines
               else EXPORT_COLUMNS)
    query, keys = _done_select(columns, sort, genres, min_confidence, since, model, path_glob)
    for page in paging.pages(_CoreRows(session), query, *keys, page_size=EXPORT_PAGE_SIZE):
        if path_glob is None:
            yield page
        else:
            yield [row for row in page if fnmatch.fnmatchcase(row.path, path_glob)]


def export_rows_by_id(session: Session, ids: Sequence[int]) -> dict[int, Row]:
    """The rows of EXPORT_COLUMNS (as export_pages reads them) of the tracks IDS, by id
    (a page's worth at most: one SELECT)."""
    rows = session.connection().execute(select(*EXPORT_COLUMNS).where(Track.id.in_(ids)))
    return {row.id: row for row in rows}


def export_rows(session: Session, *args, **kwargs) -> Iterator[Row]:
    """export_pages' rows, one at a time."""
    for page in export_pages(session, *args, **kwargs):
        yield from page


def store_export_lines(session: Session, made: Sequence[tuple[Row, str]]) -> int:
    """Keep each (row, line) pair's line as its track's export_line, where the track is
    still done and its line NULL and every column the line was made of still holds
    what the row (of export_pages) read: a track rewritten since is left to the next
    export. One executemany UPDATE; returns how many were kept."""
    if not made:
        return 0

    def same(column, name: str, type_) -> object:
        return column.is_not_distinct_from(bindparam(name, type_=type_))

    statement = (
        update(Track)
        .where(Track.id == bindparam("b_id"), Track.state == State.done,
               Track.export_line.is_(None), Track.path == bindparam("b_path", type_=Text),
               same(cast(Track.probs, Text), "b_probs", Text),
               same(cast(Track.tags, Text), "b_tags", Text),
               same(cast(Track.file_genres, Text), "b_file_genres", Text),
               same(Track.duration_s, "b_duration_s", Float),
               same(Track.model_name, "b_model_name", Text),
               same(Track.model_version, "b_model_version", Text))
        .values(export_line=bindparam("b_line", type_=Text))
    )
    # On the session's connection: the ORM's executemany of an UPDATE would take it for
    # a bulk UPDATE by primary key, of other parameters.
    return session.connection().execute(statement, [
        {"b_id": row.id, "b_path": row.path, "b_probs": row.probs, "b_tags": row.tags,
         "b_file_genres": row.file_genres, "b_duration_s": row.duration_s,
         "b_model_name": row.model_name, "b_model_version": row.model_version,
         "b_line": line}
        for row, line in made]).rowcount


# Rows per SELECT of export_pages: larger pages than paging's, fewer queries (a page of
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
