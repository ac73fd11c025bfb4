"""The library as the user sees it: done tracks filtered and labelled (taxonomy, unknown
below a threshold, top K), as export, tag, status and show use it. Streams throughout.

    from genreq.app.library import TrackFilter, records
    from genreq.app.taxonomy import Labeller, load
    with session_scope() as session:
        for r in records(session, TrackFilter(genres=("Rock",)), Labeller(load("genres.toml"))):
            print(r["path"], r["genre"], r["confidence"])
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from genreq.cli.output import track_record
from genreq.app.taxonomy import UNKNOWN, Labeller
from genreq.db import queries

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from genreq.db.models import Track


@dataclass(frozen=True)
class TrackFilter:
    genres: tuple[str, ...] = ()  # labelled genres (user genres under a taxonomy)
    min_confidence: float | None = None  # of the labelled genre
    path_glob: str | None = None
    since: datetime | None = None  # finished at or after
    model: str | None = None  # model name, e.g. crnn
    sort: str = "id"  # one of queries.SORTS


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
    tracks = queries.done_tracks(session, **_sql_filters(flt, labeller), sort=flt.sort)
    for n, track in enumerate(tracks, 1):
        if on_track:
            on_track(n)
        record = track_record(track, labeller)
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
    taxonomy, a user genre's confidence is not a stored column, so `confidence` order is
    an external merge sort (sorted runs spilled to temporary files): memory stays bounded
    by SORT_RUN."""
    if flt.sort == "confidence" and labeller.taxonomy.mapping:
        by_id = TrackFilter(flt.genres, flt.min_confidence, flt.path_glob, flt.since,
                            flt.model, "id")
        keyed = (((-record["confidence"], track.id), record)
                 for track, record in labelled_tracks(session, by_id, labeller, on_track))
        yield from external_sort(keyed, SORT_RUN)
        return
    for _track, record in labelled_tracks(session, flt, labeller, on_track):
        yield record


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
    return queries.count_done_tracks(session, **_sql_filters(flt, labeller))


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
    """Every genre a track can be labelled with: the models' genres through the taxonomy,
    and `unknown` when a threshold is set."""
    return labeller.genres(queries.known_genres(session))


def check_genres(session: Session, genres: tuple[str, ...], labeller: Labeller) -> list[str]:
    """The genres among `genres` that no track can have (empty when all are fine)."""
    known = set(known_genres(session, labeller))
    return sorted(set(genres) - known)


def genre_counts(session: Session, labeller: Labeller) -> dict[str, int]:
    """Done tracks per labelled genre, most first (ties by name)."""
    if labeller.is_identity:
        return queries.status(session).genres
    counts = Counter(labeller.label(probs).genre for probs in queries.done_probs(session))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] == UNKNOWN, kv[0])))


def _iso(value: datetime | None) -> str | None:
    return queries._to_utc(value).isoformat() if value is not None else None


def track_detail(session: Session, path: str, labeller: Labeller) -> dict:
    """Everything stored about the track at `path` (as given to enqueue, made absolute);
    the probability vector most probable first. Raises GenreqError if it is not known."""
    import os

    from genreq.errors import GenreqError

    absolute = os.path.abspath(path)
    track = queries.track_by_path(session, absolute)
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
        "error": track.error,
        "size_bytes": track.size_bytes,
        "mtime_ns": track.mtime_ns,
    }
    if track.probs and not labeller.is_identity:
        label = labeller.label(track.probs)
        detail["label"] = {"genre": label.genre, "confidence": label.confidence,
                           "probs": labeller.taxonomy.map_probs(track.probs)}
    return detail


def format_detail(detail: dict) -> str:
    """The text view of track_detail: one `field  value` line each, then the vectors."""
    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"{'path':<13}{detail['path']}", f"{'state':<13}{detail['state']}"]
    if detail["genre"] is not None:
        lines.append(f"{'genre':<13}{detail['genre']} ({detail['confidence']:.4f})")
    if "label" in detail:
        lines.append(f"{'label':<13}{detail['label']['genre']} "
                     f"({detail['label']['confidence']:.4f})")
    if detail["model"]:
        lines.append(f"{'model':<13}{detail['model']} {detail['model_version'] or ''}".rstrip())
    lines += [
        f"{'duration_s':<13}{number(detail['duration_s'], 2)}",
        f"{'elapsed_s':<13}{number(detail['elapsed_s'], 3)}",
        f"{'attempts':<13}{detail['attempts']}",
        f"{'queued_at':<13}{detail['queued_at'] or '-'}",
        f"{'started_at':<13}{detail['started_at'] or '-'}",
        f"{'finished_at':<13}{detail['finished_at'] or '-'}",
    ]
    if detail["error"]:
        lines.append(f"{'error':<13}{detail['error']}")
    for title, probs in (("probabilities", detail["probs"]),
                         ("label probabilities", detail.get("label", {}).get("probs"))):
        if probs:
            lines.append(title)
            lines += [f"  {genre:<14}{p:.4f}" for genre, p in probs.items()]
    return "\n".join(lines)
