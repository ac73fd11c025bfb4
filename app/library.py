"""The library as the user sees it: done tracks filtered and labelled (taxonomy, unknown
below a threshold, top K), as export, tag, status and show use it. Streams throughout.

The functions without a `session` argument are the Python API (re-exported by
genreq.app): each opens its own session on the configured database, migrating the
embedded default first. The ones taking a session are their building blocks.

    from genreq import app
    for track in app.tracks(app.TrackFilter(genres=("Rock",)), app.labeller("genres.toml")):
        print(track.path, track.genre, track.confidence)

Once `genreq learn` has kept a head under GENREQ_HOME, every function here labels the
tracks whose embedding it reads with the learned genres (`with_learned_head`; a
Labeller(use_learned=False) keeps the model's), computed from the stored embedding at
read time (genreq.app.learning says why).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING

from genreq.app.taxonomy import LEARNED, MODEL, UNKNOWN, Labeller
from genreq.config import SORTS, TOP_K
from genreq.db import status as db_status
from genreq.db import tracks as db_tracks
from genreq.pretrained.tags import MSD_TAG_NAMES

if TYPE_CHECKING:
    from sqlalchemy import Row
    from sqlalchemy.orm import Session

    from genreq.db.models import Track


@contextmanager
def session() -> Iterator[Session]:
    """A session on the configured database (GENREQ_DATABASE_URL, or the embedded SQLite
    file, migrated here on first use); commits on success."""
    from genreq.db.migrate import ensure_schema
    from genreq.db.session import session_scope

    ensure_schema()
    with session_scope() as db:
        yield db


def labeller(taxonomy: str | None = None, unknown_below: float | None = None,
             top_k: int = TOP_K) -> Labeller:
    """How stored probabilities become what the user sees: `taxonomy` a TOML or YAML file
    (None: $GENREQ_TAXONOMY, else the model's own genres), `unknown_below` a threshold
    under which a track is `unknown`, `top_k` genres listed per track. Raises
    TaxonomyError (a GenreqError) naming the file when it cannot be used."""
    from genreq.app import taxonomy as taxonomy_module

    return Labeller(taxonomy_module.resolve(taxonomy), unknown_below, top_k)


def with_learned_head(labeller: Labeller | None) -> Labeller:
    """LABELLER (None: the model's own genres) with the active learned head, if there is
    one and the labeller does not say use_learned=False. Raises GenreqError when the
    head file is damaged."""
    from genreq.app.learning import active_head

    labeller = labeller if labeller is not None else Labeller()
    if labeller.use_learned and labeller.head is None:
        head = active_head()
        if head is not None:
            labeller = replace(labeller, head=head)
    return labeller


@dataclass(frozen=True)
class TrackFilter:
    genres: tuple[str, ...] = ()  # labelled genres (user genres under a taxonomy)
    min_confidence: float | None = None  # of the labelled genre
    path_glob: str | None = None
    since: datetime | None = None  # finished at or after
    model: str | None = None  # model name, e.g. crnn
    sort: str = "id"  # one of genreq.config.SORTS
    tags: tuple[str, ...] = ()  # a track must have every one, scored min_tag_score or more
    min_tag_score: float | None = None  # None: DEFAULT_MIN_TAG_SCORE

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ValueError(f"sort must be one of {SORTS}, not {self.sort!r}")


@dataclass(frozen=True)
class Record:
    """One classified track as exported: its (labelled) genre and confidence, the top
    genres with their probabilities, duration and the model that classified it."""

    path: str
    genre: str
    confidence: float
    top: list[dict] = field(default_factory=list)  # [{"genre": ..., "probability": ...}]
    duration_s: float | None = None
    model: str | None = None
    model_version: str | None = None
    tags: list[dict] = field(default_factory=list)  # [{"tag": ..., "score": ...}], best first
    genre_source: str = MODEL  # "learned": the learned head's genres; "model": the model's
    file_genre: list[str] = field(default_factory=list)  # the file's own genre values
    artist: str | None = None  # what the file's own tags say, as the worker read them
    album: str | None = None
    title: str | None = None


# A tag "is" a track's when its probability reaches this: the taggers' sigmoid outputs
# run low (MSD tags are sparse), and the score that best marks the clips of a tag's own
# genre is far under 0.5 for most tags (bench/tag_threshold.py,
# bench/results/tag_threshold.json). Export lists at least TAGS_LISTED tags however low.
DEFAULT_MIN_TAG_SCORE = 0.15
TAGS_LISTED = 5


def tag_list(tags: dict[str, float] | None, min_score: float = DEFAULT_MIN_TAG_SCORE
             ) -> list[dict]:
    """Export's `tags`: the TAGS_LISTED best and any others scoring MIN_SCORE or more,
    best first (ties by name); [] for a model without tag outputs."""
    if not tags:
        return []
    # Only the tags that can be listed are sorted with their tie-break: those scoring
    # at least the TAGS_LISTED-th best score, or MIN_SCORE (export's hot loop).
    scores = sorted(tags.values(), reverse=True)
    floor = min(scores[min(TAGS_LISTED, len(scores)) - 1], min_score)
    ranked = sorted(((t, s) for t, s in tags.items() if s >= floor),
                    key=lambda kv: (-kv[1], kv[0]))
    return [{"tag": t, "score": round(s, 4)} for i, (t, s) in enumerate(ranked)
            if i < TAGS_LISTED or s >= min_score]


def _tag_list_fast(tags: dict[str, float], min_score: float = DEFAULT_MIN_TAG_SCORE
                   ) -> list[tuple[float, str]]:
    """tag_list's tags in its order, as (-score, tag) pairs, unrounded: sorted as tuples,
    without a key function (json_lines' hot loop)."""
    ranked = sorted([(-s, t) for t, s in tags.items() if s >= min_score])
    if len(ranked) < TAGS_LISTED:
        # Fewer than TAGS_LISTED reach MIN_SCORE: the TAGS_LISTED best, however low.
        ranked = sorted([(-s, t) for t, s in tags.items()])[:TAGS_LISTED]
    return ranked


def has_tags(track: Track, wanted: tuple[str, ...], min_score: float | None) -> bool:
    threshold = DEFAULT_MIN_TAG_SCORE if min_score is None else min_score
    tags = track.tags or {}
    return all(tags.get(t, 0.0) >= threshold for t in wanted)


def track_record(track: Track, labeller: Labeller | None = None,
                 learned: dict[str, float] | None = None) -> dict:
    """The exported view of a done track (the keys of Record, export's --format json):
    its stored genre and confidence, or with a labeller, the learned genres (under a
    head that reads its embedding) or the user's genre names (taxonomy), `unknown`
    below a threshold, top K; `file_genre` is what the file's own genre tag says.
    LEARNED: the head's probabilities of this track, when the caller has them."""
    if labeller is None:
        genre, confidence = track.genre, track.confidence
        top = sorted((track.probs or {}).items(), key=lambda kv: kv[1], reverse=True)[:TOP_K]
        source = MODEL
    elif learned is not None:
        label = labeller.label_probs(learned, LEARNED)
        genre, confidence, top, source = label.genre, label.confidence, label.top, label.source
    else:
        label = labeller.label_track(track)
        genre, confidence, top, source = label.genre, label.confidence, label.top, label.source
    return {
        "path": track.path,
        "genre": genre,
        "confidence": round(confidence, 4),
        "top": [{"genre": g, "probability": round(p, 4)} for g, p in top],
        "duration_s": round(track.duration_s, 2) if track.duration_s is not None else None,
        "model": track.model_name,
        "model_version": track.model_version,
        "tags": tag_list(track.tags),
        "genre_source": source,
        "file_genre": list(track.file_genres or []),
        "artist": track.artist,
        "album": track.album,
        "title": track.title,
    }


# Tracks labelled together under a learned head: one matrix product for them all.
HEAD_CHUNK = 256


def labelled_tracks(session: Session, flt: TrackFilter, labeller: Labeller,
                    on_track: Callable[[int], None] | None = None
                    ) -> Iterator[tuple[Track, dict]]:
    """(track, record) for every done track the filter keeps. `on_track(n)` is called as
    the n-th track is read, kept or not: n counts to `count_tracks(session, flt, labeller)`.

    Without a taxonomy or threshold, genre and confidence filters run in SQL; with one, a
    track's genre and confidence are its label's (a user genre's probability is the sum
    of its members', so it can differ from the stored top genre), decided here. Sorting
    by confidence here uses the stored (model) confidence; `records` sorts by the
    label's.
    """
    in_sql = labeller.is_identity
    tracks = db_tracks.done_tracks(session, **_sql_filters(flt, labeller), sort=flt.sort,
                                   with_embedding=labeller.head is not None)
    n = 0
    while chunk := list(islice(tracks, HEAD_CHUNK if labeller.head is not None else 1)):
        # Under a head, one product per chunk instead of one per track.
        learned = labeller.learned_probs_of(chunk)
        for track, probs in zip(chunk, learned, strict=True):
            n += 1
            if on_track:
                on_track(n)
            if flt.tags and not has_tags(track, flt.tags, flt.min_tag_score):
                continue
            record = track_record(track, labeller, probs)
            if not in_sql:
                if flt.genres and record["genre"] not in flt.genres:
                    continue
                if flt.min_confidence is not None and record["confidence"] < flt.min_confidence:
                    continue
            yield track, record


# Records held in memory at once when a taxonomy's confidences must be sorted.
SORT_RUN = 10_000


def records(session: Session, flt: TrackFilter, labeller: Labeller,
            on_track: Callable[[int], None] | None = None) -> Iterator[dict]:
    """Exported records in the filter's order (`on_track` as in labelled_tracks). Under a
    taxonomy or a learned head, a label's confidence is not a stored column, so
    `confidence` order is
    an external merge sort (sorted runs spilled to temporary files): memory stays bounded
    by SORT_RUN."""
    if flt.sort == "confidence" and not labeller.confidence_is_stored:
        by_id = replace(flt, sort="id")
        keyed = (((-record["confidence"], track.id), record)
                 for track, record in labelled_tracks(session, by_id, labeller, on_track))
        yield from external_sort(keyed, SORT_RUN)
        return
    for _track, record in labelled_tracks(session, flt, labeller, on_track):
        yield record


def _json_decoder() -> Callable[[str], object]:
    """The fastest JSON decoder here: msgspec's (the same values as json.loads, several
    times faster on a track's fifty tag scores), else json.loads."""
    try:
        import msgspec
    except ImportError:  # an environment without it exports the same lines, slower
        import json

        return json.loads
    return msgspec.json.Decoder().decode


def _number(value) -> str:
    """A number (or None) as json.dumps writes it."""
    if value is None:
        return "null"
    if value != value or value in (float("inf"), float("-inf")):
        import json

        return json.dumps(value)
    return repr(value)


# The stored JSON text of a file without genre values, written as it is.
_NO_FILE_GENRES = ("[]", None)


# What a stored export line holds (tracks.export_line): a change to the line's keys,
# rounding or tag list makes the stored lines stale, and needs a migration that sets
# every export_line to NULL (tests/test_export_lines.py pins a line's text).
EXPORT_LINE_FORMAT = 2


def json_lines(session: Session, flt: TrackFilter, labeller: Labeller,
               on_track: Callable[[int], None] | None = None, *, cached: bool = True,
               fill: bool = False) -> Iterator[str]:
    """The exported records as JSON text, one line each (no newline), in the filter's
    order: json.dumps(record) of each of `records(...)`, byte for byte.

    With a labeller that changes nothing but top K (no taxonomy, threshold or learned
    head), the rows are read with their JSON as stored text (db.tracks.export_pages),
    decoded by a faster decoder, and each line is written directly instead of built as a
    dict and encoded: reading a track's tag scores is most of a row's time. At the
    default top K (and `cached`), a track's line is its stored export_line where it has
    one; with FILL, the lines made here are stored, and the session committed after
    each page (a session the caller hands over for that: the write lock is held for a
    page's UPDATE only). A database that cannot be written is read without filling.
    `on_track(n)` as in labelled_tracks, but once for a page whose lines are all stored."""
    import json

    if not labeller.is_identity:
        for record in records(session, flt, labeller, on_track):
            yield json.dumps(record)
        return
    import logging

    from sqlalchemy.exc import DBAPIError

    decode = _json_decoder()
    make = _line_maker(labeller.top_k, decode)
    wanted = flt.tags
    threshold = DEFAULT_MIN_TAG_SCORE if flt.min_tag_score is None else flt.min_tag_score
    stored = cached and labeller.top_k == TOP_K
    fill = fill and stored
    n = 0
    for page in db_tracks.export_pages(session, **_sql_filters(flt, labeller), sort=flt.sort,
                                       lines=stored, with_tags=bool(wanted)):
        if stored:
            lines = [row[1] for row in page]  # `line`, by position: the faster read
            if None not in lines and not wanted:  # the common case, in one piece
                n += len(lines)
                if on_track:
                    on_track(n)
                yield from lines
                continue
            full = db_tracks.export_rows_by_id(
                session, [row.id for row, line in zip(page, lines, strict=True)
                          if line is None])
        made = []
        for row in page:
            n += 1
            if on_track:
                on_track(n)
            if wanted:
                tags = decode(row.tags) if row.tags else None
                if not all((tags or {}).get(t, 0.0) >= threshold for t in wanted):
                    continue
            if not stored:
                yield make(row)
                continue
            line = row.line
            if line is None:
                row = full[row.id]
                line = make(row)
                if fill:
                    made.append((row, line))
            yield line
        if made:
            try:
                db_tracks.store_export_lines(session, made)
                session.commit()
            except DBAPIError as exc:  # read-only, or locked past the busy timeout
                session.rollback()
                fill = False
                logging.getLogger(__name__).warning(
                    "export: not keeping the lines it made (%s)", exc.orig)


def _line_maker(top_k: int, decode: Callable[[str], object]) -> Callable[[Row], str]:
    """A function that makes an export row's JSON line (EXPORT_COLUMNS of
    db.tracks.export_pages) as json.dumps(track_record(track)) writes it, at TOP_K."""
    import json
    from json.encoder import encode_basestring_ascii as string

    number = _number
    # Encoded once per name: a genre's or tag's list item up to its number, and names.
    genre_items: dict[str, str] = {}
    tag_items: dict[str, str] = {}
    names: dict[str, str] = {}

    def items(ranked: list[tuple[float, str]], prefixes: dict[str, str], key: str,
              field: str) -> str:
        parts = []
        for negated, label in ranked:
            value = round(-negated, 4)
            text = repr(value)
            if text[-1] in "nf":  # nan, inf: json.dumps spells them NaN, Infinity
                text = number(value)
            prefix = prefixes.get(label)
            if prefix is None:
                prefix = prefixes[label] = f'{{"{key}": {string(label)}, "{field}": '
            parts.append(prefix + text + "}")
        return ", ".join(parts)

    def name(value: str | None) -> str:
        if value is None:
            return "null"
        encoded = names.get(value)
        if encoded is None:
            encoded = names[value] = string(value)
        return encoded

    def text(value: str | None) -> str:  # a file's own words: rarely repeated, not kept
        return "null" if value is None else string(value)

    def make(row: Row) -> str:
        tags = decode(row.tags) if row.tags else None
        # The label of the stored probabilities, as Labeller.label_probs makes it.
        probs = sorted([(-float(p), g) for g, p in decode(row.probs).items()]) \
            if row.probs else []
        if probs:
            genre, confidence = name(probs[0][1]), -probs[0][0]
        else:
            genre, confidence = '"unknown"', 0.0
        file_genres = row.file_genres
        file_genre = "[]" if file_genres in _NO_FILE_GENRES else json.dumps(
            list(decode(file_genres) or []))
        duration = row.duration_s
        listed = items(_tag_list_fast(tags), tag_items, "tag", "score") if tags else ""
        return (f'{{"path": {string(row.path)}, "genre": {genre}, '
                f'"confidence": {number(round(confidence, 4))}, '
                f'"top": [{items(probs[:top_k], genre_items, "genre", "probability")}], '
                f'"duration_s": {number(None if duration is None else round(duration, 2))}, '
                f'"model": {name(row.model_name)}, '
                f'"model_version": {name(row.model_version)}, '
                f'"tags": [{listed}], '
                f'"genre_source": "{MODEL}", "file_genre": {file_genre}, '
                f'"artist": {text(row.artist)}, "album": {text(row.album)}, '
                f'"title": {text(row.title)}}}')

    return make


def _sql_filters(flt: TrackFilter, labeller: Labeller) -> dict:
    """The part of `flt` the database applies: genre and confidence only without a
    taxonomy or threshold (see labelled_tracks)."""
    in_sql = labeller.is_identity
    return {"genres": flt.genres if in_sql else (),
            "min_confidence": flt.min_confidence if in_sql else None,
            "path_glob": flt.path_glob, "since": flt.since, "model": flt.model}


def count_tracks(session: Session, flt: TrackFilter, labeller: Labeller) -> int:
    """How many tracks labelled_tracks reads for this filter (a taxonomy's genre and
    confidence filters then apply to these): what export's and tag's progress counts to."""
    return db_tracks.count_done_tracks(session, **_sql_filters(flt, labeller))


def external_sort(items: Iterable[tuple[tuple, dict]], run: int) -> Iterator[dict]:
    """The dicts of (key, dict) pairs in key order, holding at most `run` in memory."""
    import heapq
    import json
    import tempfile

    buffer: list[tuple[tuple, dict]] = []
    spilled: list = []

    def spill() -> None:
        f = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 -- closed below
        for key, item in sorted(buffer, key=lambda kv: kv[0]):
            f.write(json.dumps([list(key), item]) + "\n")
        f.seek(0)
        spilled.append(f)
        buffer.clear()

    def read(f) -> Iterator[tuple[tuple, dict]]:
        for line in f:
            key, item = json.loads(line)
            yield tuple(key), item

    try:
        for pair in items:
            buffer.append(pair)
            if len(buffer) >= run:
                spill()
        if not spilled:
            yield from (item for _key, item in sorted(buffer, key=lambda kv: kv[0]))
            return
        if buffer:
            spill()
        for _key, item in heapq.merge(*(read(f) for f in spilled), key=lambda kv: kv[0]):
            yield item
    finally:
        for f in spilled:
            f.close()


def known_genres(session: Session, labeller: Labeller) -> list[str]:
    """Every genre a track can be labelled with: the models' genres through the taxonomy
    (under a learned head, its genres, and the models' only while some track keeps
    them), and `unknown` when a threshold is set."""
    model_genres = db_tracks.known_genres(session)
    if labeller.head is None:
        return labeller.genres(model_genres)
    from genreq.app.learning import learned_tracks

    _labelled, others = learned_tracks(session, labeller.head)
    return labeller.genres(model_genres, learned_only=others == 0)


def check_genres(session: Session, genres: tuple[str, ...], labeller: Labeller) -> list[str]:
    """The genres among `genres` that no track can have (empty when all are fine)."""
    known = set(known_genres(session, labeller))
    return sorted(set(genres) - known)


def genre_counts(session: Session, labeller: Labeller, batch_id: str | None = None
                 ) -> dict[str, int]:
    """Done tracks (of every batch, or of BATCH_ID) per labelled genre, most first (ties
    by name)."""
    if labeller.is_identity:
        return db_status.status(session, batch_id).genres
    if labeller.head is None:
        counts = Counter(_genres(session, labeller, batch_id))
    else:
        counts = _learned_counts(session, labeller, batch_id)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] == UNKNOWN, kv[0])))


def _learned_counts(session: Session, labeller: Labeller, batch_id: str | None) -> Counter:
    """genre_counts under a learned head: the tracks it reads by their embeddings alone
    (no probability vector decoded), the others by the model's genres, in SQL when
    nothing else relabels them."""
    from sqlalchemy import func, or_, select

    from genreq.app import learning
    from genreq.db import paging
    from genreq.db.models import State, Track

    head = labeller.head
    scope = [Track.state == State.done, *([Track.batch_id == batch_id] if batch_id else [])]
    # The head's own genre counts (before a taxonomy renames them) are kept on disk while
    # neither the head nor its model's embeddings change: reading every embedding is
    # what status would otherwise cost on a large library (bench/learned_apply.py).
    cacheable = batch_id is None and labeller.unknown_below is None \
        and head is learning.active_head()
    raw = learning.cached_counts(session, head) if cacheable else None
    if raw is None:
        raw = Counter()
        plain = replace(labeller, taxonomy=Labeller().taxonomy, unknown_below=None) \
            if cacheable else labeller
        query = select(Track.embedding, Track.genre, Track.confidence).where(
            *scope, Track.embedding_model == head.embedding_model,
            Track.embedding.is_not(None))
        for page in paging.pages(session, query, Track.id):
            # An embedding of another length (never, for one model) keeps the stored genre.
            rows = [({genre or UNKNOWN: confidence or 0.0}, blob, head.embedding_model)
                    for blob, genre, confidence in page]
            raw.update(plain.genres_of_rows(rows))
        if cacheable:
            learning.keep_counts(session, head, raw)
    counts: Counter = Counter()
    for genre, n in raw.items():
        counts[labeller.taxonomy.user_genre(genre) if cacheable else genre] += n
    others = or_(Track.embedding_model.is_(None), Track.embedding_model != head.embedding_model,
                 Track.embedding.is_(None))
    if not labeller.taxonomy.mapping and labeller.unknown_below is None:
        counts.update(dict(session.execute(
            select(Track.genre, func.count()).where(*scope, others).group_by(Track.genre)).all()))
        return counts
    query = select(Track.probs).where(*scope, others)
    counts.update(labeller.label_probs(probs or {}).genre
                  for probs in paging.rows(session, query, Track.id))
    return counts


def _genres(session: Session, labeller: Labeller, batch_id: str | None = None):
    """The labelled genre of every done track (of BATCH_ID), a page at a time; the
    embeddings are read only under a learned head."""
    from sqlalchemy import literal, select

    from genreq.db import paging
    from genreq.db.models import State, Track

    embedding = (Track.embedding, Track.embedding_model) if labeller.head is not None \
        else (literal(None), literal(None))
    query = select(Track.probs, *embedding).where(
        Track.state == State.done, *([Track.batch_id == batch_id] if batch_id else []))
    for page in paging.pages(session, query, Track.id):
        yield from labeller.genres_of_rows(page)


def _iso(value: datetime | None) -> str | None:
    from genreq.db.models import as_utc

    return as_utc(value).isoformat() if value is not None else None


def track_detail(session: Session, path: str, labeller: Labeller) -> dict:
    """Everything stored about the track at `path` (as given to enqueue, made absolute);
    the probability vector most probable first. Raises GenreqError if it is not known."""
    import os

    from genreq.errors import GenreqError

    absolute = os.path.abspath(path)
    track = db_tracks.track_by_path(session, absolute)
    if track is None:
        raise GenreqError(f"{absolute}: not in the library (add it with `genreq enqueue`)")
    probs = dict(sorted((track.probs or {}).items(), key=lambda kv: (-kv[1], kv[0])))
    detail = {
        "path": track.path,
        "state": track.state.value,
        "genre": track.genre,
        "confidence": track.confidence,
        "probs": probs,
        "model": track.model_name,
        "model_version": track.model_version,
        "duration_s": track.duration_s,
        "elapsed_s": track.elapsed_s,
        "attempts": track.attempts,
        "queued_at": _iso(track.queued_at),
        "started_at": _iso(track.started_at),
        "finished_at": _iso(track.finished_at),
        # A done track's stored message is a note on how it was read (decoded around
        # damaged packets), not an error.
        "error": None if track.state.value == "done" else track.error,
        "note": track.error if track.state.value == "done" else None,
        "size_bytes": track.size_bytes,
        "mtime_ns": track.mtime_ns,
        # What the file's own tags said when the worker read it.
        "artist": track.artist,
        "album": track.album,
        "title": track.title,
        "file_genre": list(track.file_genres or []),
        # Every tag score the model stored (its 50 MSD tags), best first, and the model
        # whose embedding `similar` and `learn` read for this track.
        "tags": dict(sorted((track.tags or {}).items(), key=lambda kv: (-kv[1], kv[0]))),
        "embedding_model": track.embedding_model,
    }
    if track.probs and not labeller.is_identity:
        learned = labeller.learned_probs(track.embedding, track.embedding_model)
        label = labeller.label(track.probs, track.embedding, track.embedding_model)
        detail["label"] = {"genre": label.genre, "confidence": label.confidence,
                           "probs": labeller.taxonomy.map_probs(
                               track.probs if learned is None else learned),
                           "source": label.source}
    return detail


# --- the Python API: each call opens its own session ---------------------------------


@dataclass(frozen=True)
class Failure:
    path: str
    error: str  # the path and the reason, e.g. "<path>: not decodable audio (...)"


def status(labeller: Labeller | None = None, batch_id: str | None = None) -> db_status.Status:
    """Counts by state and by genre (labelled by `labeller`, e.g. under a taxonomy), with
    throughput and ETA while work is pending: of every track, or of one enqueue batch
    (`batch_id`, as in run's result). `.as_dict()` is `genreq status --json`."""
    labeller = with_learned_head(labeller)
    with session() as db:
        counts = db_status.status(db, batch_id)
        if not labeller.is_identity:
            counts.genres = genre_counts(db, labeller, batch_id)
    return counts


def learned_batch_genres(batch_id: str) -> dict[str, int] | None:
    """The done tracks of one enqueue batch per learned genre, while a learned head is
    active (None without one): what `genreq run` prints under a head."""
    labeller = with_learned_head(None)
    if labeller.head is None:
        return None
    with session() as db:
        return genre_counts(db, labeller, batch_id)


def failures(batch_id: str | None = None) -> Iterator[Failure]:
    """The failed tracks (of every batch, or of `batch_id`) in enqueue order, and why."""
    with session() as db:
        for track in db_status.failures(db, batch_id):
            yield Failure(track.path, track.error or "unknown error")


def export_records(flt: TrackFilter | None = None, labeller: Labeller | None = None,
                   on_track: Callable[[int], None] | None = None) -> Iterator[dict]:
    """The done tracks `flt` keeps, as export writes them (dicts with Record's keys), in
    the filter's order; streamed, so a library of any size fits. `on_track(n)` is called
    as the n-th candidate is read, up to `count_records(flt, labeller)`."""
    with session() as db:
        yield from records(db, flt or TrackFilter(), with_learned_head(labeller), on_track)


def export_lines(flt: TrackFilter | None = None, labeller: Labeller | None = None,
                 on_track: Callable[[int], None] | None = None) -> Iterator[str]:
    """export_records as JSON text, one record a line (without its newline):
    `json.dumps` of each, written faster (json_lines), and the lines of tracks without
    a stored one kept for the next call. What `export --format ndjson` and `--format
    json` write."""
    with session() as db:
        yield from json_lines(db, flt or TrackFilter(), with_learned_head(labeller), on_track,
                              fill=True)


def tracks(flt: TrackFilter | None = None, labeller: Labeller | None = None
           ) -> Iterator[Record]:
    """export_records as Record objects: `for t in tracks(): print(t.path, t.genre)`."""
    for record in export_records(flt, labeller):
        yield Record(**record)


def count_records(flt: TrackFilter | None = None, labeller: Labeller | None = None) -> int:
    """How many tracks export_records reads for this filter (what progress counts to)."""
    with session() as db:
        return count_tracks(db, flt or TrackFilter(), with_learned_head(labeller))


def genres(labeller: Labeller | None = None) -> list[str]:
    """Every genre a track in this library can be labelled with, sorted."""
    with session() as db:
        return known_genres(db, with_learned_head(labeller))


def unknown_genres(names: Iterable[str], labeller: Labeller | None = None) -> list[str]:
    """Those of `names` that no track can be labelled with (empty when all are fine)."""
    names = tuple(names)
    if not names:
        return []
    with session() as db:
        return check_genres(db, names, with_learned_head(labeller))


def known_tags() -> tuple[str, ...]:
    """The tags a track can carry: the outputs of the shipped taggers, as stored."""
    return MSD_TAG_NAMES


def unknown_tags(names: Iterable[str]) -> list[str]:
    """Those of `names` (any case) that no tagger outputs."""
    names = list(names)
    if not names:
        return []  # the taggers' names are read by importing one (and torch): not for none
    vocabulary = set(known_tags())
    return [name for name in names if name.lower() not in vocabulary]


def show(path: str, labeller: Labeller | None = None) -> dict:
    """Everything stored about the track at `path` (`genreq show --json`). Raises
    GenreqError when it is not in the library."""
    with session() as db:
        return track_detail(db, str(path), with_learned_head(labeller))
