"""Configuration from the environment, read at call time so tests and child processes
that change the environment see the new values.

GENREQ_HOME          state of the embedded default: database, broker data and socket, logs
GENREQ_DATABASE_URL  any SQLAlchemy URL; default a SQLite file in GENREQ_HOME
GENREQ_BROKER_URL    a Redis URL; unset means the embedded broker under GENREQ_HOME
GENREQ_MODEL         checkpoint path or shipped model name; unset means the default
GENREQ_TASK_BATCH    most tracks per Celery message (default 8); 1: one track id each
GENREQ_TAXONOMY      genre mapping file for status, export, show, tag and report
GENREQ_MIN_DURATION  seconds: shorter files are skipped, not classified (default below)
GENREQ_LEASE_S       seconds a worker's claim on a track lasts unless renewed (default 30)
GENREQ_HEARTBEAT_S   seconds between lease renewals and expiry scans (default a third of it)
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from genreq.errors import GenreqError

APP_NAME = "genreq"

# Extensions genreq treats as audio; compared in lower case.
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif", ".au"}
)

# What genreq shows unless told otherwise; one home each, for the CLI, the library layer
# and the database alike.
TOP_K = 3  # genres listed with their probabilities per track (export --top, classify --top)
SORTS = ("id", "confidence", "path")  # export --sort: enqueue order, most confident first, path


def home() -> Path:
    """GENREQ_HOME, or the per-user data directory. Created on first use."""
    value = os.environ.get("GENREQ_HOME")
    path = Path(value).expanduser() if value else Path(platformdirs.user_data_dir(APP_NAME))
    path = path.absolute()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url_is_default() -> bool:
    """True when the database is the embedded SQLite file, which genreq migrates itself."""
    return not os.environ.get("GENREQ_DATABASE_URL")


def database_url() -> str:
    """GENREQ_DATABASE_URL, or a SQLite file in GENREQ_HOME."""
    return os.environ.get("GENREQ_DATABASE_URL") or f"sqlite:///{home() / 'genreq.db'}"


def broker_url() -> str | None:
    """GENREQ_BROKER_URL, or None for the embedded broker (see genreq.worker.broker)."""
    return os.environ.get("GENREQ_BROKER_URL") or None


def taxonomy() -> str | None:
    """GENREQ_TAXONOMY (a TOML or YAML genre mapping, see genreq.app.taxonomy), or None
    for the model's own genres."""
    return os.environ.get("GENREQ_TAXONOMY") or None


# Files shorter than this are skipped, not classified: one model input (a 2.97-s chunk),
# below which the model sees mostly padding. Music is still told apart at shorter
# lengths, but the short files of real libraries are mostly sound effects, which get a
# genre at every length, only less confidently (bench/short_clips.py,
# bench/results/short_clips.json); --min-duration 0 classifies them anyway.
DEFAULT_MIN_DURATION_S = 3.0


def min_duration_s() -> float:
    """GENREQ_MIN_DURATION: files shorter than this many seconds are skipped."""
    value = os.environ.get("GENREQ_MIN_DURATION", "").strip()
    if not value:
        return DEFAULT_MIN_DURATION_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise GenreqError(
            f"GENREQ_MIN_DURATION must be a number of seconds, 0 or more, not {value!r}")
    return seconds


def model() -> str | None:
    """GENREQ_MODEL (a checkpoint path or a shipped model's name, resolved by
    genreq.predict.resolve_model), or None for the shipped default."""
    return os.environ.get("GENREQ_MODEL") or None


# Tracks per Celery message. A batch's hard time limit is the per-track limit times its
# length, and must stay under the broker's visibility timeout (genreq.worker.app).
DEFAULT_TASK_BATCH = 8
MAX_TASK_BATCH = 16


def task_batch() -> int:
    """GENREQ_TASK_BATCH: the most tracks enqueue puts in one message, 1 to 16."""
    value = os.environ.get("GENREQ_TASK_BATCH", "").strip()
    if not value:
        return DEFAULT_TASK_BATCH
    if not value.isdigit() or not 1 <= int(value) <= MAX_TASK_BATCH:
        raise GenreqError(
            f"GENREQ_TASK_BATCH must be a whole number from 1 to {MAX_TASK_BATCH}, not {value!r}")
    return int(value)


def logs_dir() -> Path:
    path = home() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


# A claimed track is the worker's for LEASE_S; a live worker renews it every HEARTBEAT_S,
# and any worker (or `genreq run`) sends the track again once the lease has run out
# unrenewed. A dead worker's tracks are thus back in the queue within LEASE_S +
# HEARTBEAT_S; the margin of two missed renewals rides out a busy database or a
# stop-the-world pause (bench/recovery.py measures the recovery).
DEFAULT_LEASE_S = 30.0
HEARTBEATS_PER_LEASE = 3


def _seconds(name: str, default: float | None) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise GenreqError(f"{name} must be a number of seconds above 0, not {value!r}")
    return seconds


def lease_s() -> float:
    """GENREQ_LEASE_S: how long a claim lasts without a renewal."""
    return _seconds("GENREQ_LEASE_S", DEFAULT_LEASE_S)


def heartbeat_s() -> float:
    """GENREQ_HEARTBEAT_S: how often leases are renewed and expired ones sent again; less
    than the lease, or a live worker would lose its tracks. Default: a third of it."""
    lease = lease_s()
    heartbeat = _seconds("GENREQ_HEARTBEAT_S", None)
    if heartbeat is None:
        return lease / HEARTBEATS_PER_LEASE
    if heartbeat >= lease:
        raise GenreqError(f"GENREQ_HEARTBEAT_S ({heartbeat:g}) must be less than "
                          f"GENREQ_LEASE_S ({lease:g})")
    return heartbeat
