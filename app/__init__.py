"""genreq's Python API: everything the `genreq` command does, for scripts. The CLI
(genreq.cli) is a thin layer over these functions; it parses and prints, they own the
database sessions and the configuration (the GENREQ_* environment variables, see
genreq.config), and none of them prints.

    from genreq import app

    result = app.run(["music"])          # classify every audio file under ./music
    for track in app.tracks():           # the classified tracks, streamed
        print(track.path, track.genre, track.confidence)
    print(app.status().as_dict())        # what `genreq status --json` prints

Under a taxonomy: `app.tracks(labeller=app.labeller("genres.toml"))`; filtered:
`app.tracks(app.TrackFilter(genres=("jazz",), min_confidence=0.6))`.

Errors a user can act on (a model that cannot be loaded, a bad taxonomy, a database
at the wrong schema) are genreq.errors.GenreqError with the reason in the message.
"""
from __future__ import annotations

from genreq.app.classifying import Classified, classify
from genreq.app.library import (
    Failure,
    Record,
    TrackFilter,
    count_records,
    export_records,
    failures,
    genres,
    known_tags,
    labeller,
    show,
    status,
    tracks,
    unknown_genres,
    unknown_tags,
)
from genreq.app.pipeline import (
    EnqueueSummary,
    RequeueSummary,
    RunResult,
    enqueue,
    requeue,
    run,
    stop,
    upgrade_database,
)
from genreq.app.reasons import ReasonCount, reasons
from genreq.app.reporting import report
from genreq.app.similar import SimilarResult, similar
from genreq.app.tagging import TagChange, TagSummary, tag
from genreq.app.taxonomy import Labeller
from genreq.app.workers import serve as serve_worker

__all__ = [
    "Classified",
    "EnqueueSummary",
    "Failure",
    "Labeller",
    "Record",
    "RequeueSummary",
    "ReasonCount",
    "RunResult",
    "SimilarResult",
    "TagChange",
    "TagSummary",
    "TrackFilter",
    "classify",
    "count_records",
    "enqueue",
    "export_records",
    "failures",
    "genres",
    "labeller",
    "reasons",
    "report",
    "requeue",
    "run",
    "serve_worker",
    "show",
    "similar",
    "status",
    "stop",
    "tag",
    "tracks",
    "known_tags",
    "unknown_genres",
    "unknown_tags",
    "upgrade_database",
]
