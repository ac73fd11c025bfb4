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

# Two functions share their module's name: importing such a module sets the package
# attribute to the module, so these two are bound now, after their modules (both light).
from genreq.app.reasons import ReasonCount, reasons
from genreq.app.similar import SimilarResult, similar

# What each public name is, and where it lives. The modules are imported on first use
# (PEP 562), so that a command reading the database does not pay for the pipeline, the
# broker and Alembic at start-up.
_EXPORTS = {
    "Classified": ("classifying", "Classified"),
    "classify": ("classifying", "classify"),
    "Failure": ("library", "Failure"),
    "Record": ("library", "Record"),
    "TrackFilter": ("library", "TrackFilter"),
    "count_records": ("library", "count_records"),
    "export_lines": ("library", "export_lines"),
    "export_records": ("library", "export_records"),
    "failures": ("library", "failures"),
    "genres": ("library", "genres"),
    "known_tags": ("library", "known_tags"),
    "labeller": ("library", "labeller"),
    "show": ("library", "show"),
    "status": ("library", "status"),
    "tracks": ("library", "tracks"),
    "unknown_genres": ("library", "unknown_genres"),
    "unknown_tags": ("library", "unknown_tags"),
    "EnqueueSummary": ("pipeline", "EnqueueSummary"),
    "PruneResult": ("pipeline", "PruneResult"),
    "RequeueSummary": ("pipeline", "RequeueSummary"),
    "RunResult": ("pipeline", "RunResult"),
    "enqueue": ("pipeline", "enqueue"),
    "prune": ("pipeline", "prune"),
    "requeue": ("pipeline", "requeue"),
    "run": ("pipeline", "run"),
    "stop": ("pipeline", "stop"),
    "upgrade_database": ("pipeline", "upgrade_database"),
    "report": ("reporting", "report"),
    "TagChange": ("tagging", "TagChange"),
    "TagSummary": ("tagging", "TagSummary"),
    "tag": ("tagging", "tag"),
    "Labeller": ("taxonomy", "Labeller"),
    "serve_worker": ("workers", "serve"),
}


def __getattr__(name: str):
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module_name}"), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "Classified",
    "EnqueueSummary",
    "Failure",
    "Labeller",
    "PruneResult",
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
    "export_lines",
    "export_records",
    "failures",
    "genres",
    "labeller",
    "prune",
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
