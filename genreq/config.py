"""Configuration from the environment, read at call time so tests and child processes
that change the environment see the new values.

GENREQ_HOME          state of the embedded default: database, broker data and socket, logs
GENREQ_DATABASE_URL  any SQLAlchemy URL; default a SQLite file in GENREQ_HOME
GENREQ_BROKER_URL    a Redis URL; unset means the embedded broker under GENREQ_HOME
GENREQ_DATABASE_PASSWORD[_FILE], GENREQ_BROKER_PASSWORD[_FILE]
                     the password of that URL, or a file holding it (a secret mount),
                     so that the URL itself carries none; never shown (genreq.redact)
GENREQ_MODEL         checkpoint path or shipped model name; unset means the default
GENREQ_TASK_BATCH    most tracks per Celery message (default 8); 1: one track id each
GENREQ_TAXONOMY      genre mapping file for status, export, show, tag and report
GENREQ_MIN_DURATION  seconds: shorter files are skipped, not classified (default below)
GENREQ_LEASE_S       seconds a worker's claim on a track lasts unless renewed (default 30)
GENREQ_HEARTBEAT_S   seconds between lease renewals and expiry scans (default a third of it)
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from urllib.parse import quote, urlsplit

import platformdirs

from genreq.errors import GenreqError

log = logging.getLogger(__name__)

APP_NAME = "genreq"

# Extensions genreq treats as audio; compared in lower case. Each is decoded in-process
# (libsndfile or the FFmpeg inside PyAV) and classified in tests/test_formats.py. Not
# here: video containers (.mp4, .webm, .mkv), audiobooks (.m4b), and Monkey's Audio
# (.ape) and Musepack (.mpc), which FFmpeg decodes but nothing here can encode a file of
# to test.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif", ".au",
    ".wma", ".aac", ".wv", ".tta", ".mka", ".oga", ".aifc", ".mp2", ".caf",
})

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
    """GENREQ_DATABASE_URL with the password of GENREQ_DATABASE_PASSWORD[_FILE], or a
    SQLite file in GENREQ_HOME."""
    url = os.environ.get("GENREQ_DATABASE_URL")
    password = _password("GENREQ_DATABASE")
    if not url:
        if password:
            raise GenreqError("GENREQ_DATABASE_PASSWORD(_FILE) is set but GENREQ_DATABASE_URL "
                              "is not: name the database it is for")
        return f"sqlite:///{home() / 'genreq.db'}"
    return _with_password(url, password, "GENREQ_DATABASE")


def broker_url() -> str | None:
    """GENREQ_BROKER_URL with the password of GENREQ_BROKER_PASSWORD[_FILE], or None for
    the embedded broker (see genreq.worker.broker). A TCP URL without a password draws a
    warning, once per process."""
    url = os.environ.get("GENREQ_BROKER_URL")
    password = _password("GENREQ_BROKER")
    if not url:
        if password:
            raise GenreqError("GENREQ_BROKER_PASSWORD(_FILE) is set but GENREQ_BROKER_URL is "
                              "not: the embedded broker takes no password")
        return None
    url = _with_password(url, password, "GENREQ_BROKER")
    _warn_if_open(url)
    return url


def secrets() -> tuple[str, ...]:
    """The passwords in effect (from the variables, the files and the URLs), for
    genreq.redact to mask. Never raises: it runs while an error is being reported."""
    found = []
    for prefix in ("GENREQ_DATABASE", "GENREQ_BROKER"):
        try:
            password = _password(prefix)
        except GenreqError:
            password = None
        if password:
            found.append(password)
        try:
            in_url = urlsplit(os.environ.get(f"{prefix}_URL", "")).password
        except ValueError:  # e.g. a port that is not a number
            in_url = None
        if in_url:
            found.append(in_url)
    return tuple(found)


def _password(prefix: str) -> str | None:
    """PREFIX_PASSWORD, or the contents of the file PREFIX_PASSWORD_FILE (one trailing
    newline, as `echo` and editors write one, is not part of the password)."""
    value = os.environ.get(f"{prefix}_PASSWORD")
    path = os.environ.get(f"{prefix}_PASSWORD_FILE")
    if value and path:
        raise GenreqError(f"set {prefix}_PASSWORD or {prefix}_PASSWORD_FILE, not both")
    if not path:
        return value or None
    try:
        value = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise GenreqError(f"{path}: cannot read {prefix}_PASSWORD_FILE ({reason})") from None
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise GenreqError(f"{path}: {prefix}_PASSWORD_FILE is empty")
    return value


def _with_password(url: str, password: str | None, prefix: str) -> str:
    """`url` with `password` (percent-encoded) in its user info."""
    if not password:
        return url
    head, sep, rest = url.partition("://")
    if not sep:
        raise GenreqError(f"{prefix}_URL is not a URL (scheme://host/...)")
    netloc_end = len(rest)
    for delimiter in "/?#":
        if delimiter in rest:
            netloc_end = min(netloc_end, rest.index(delimiter))
    netloc, path = rest[:netloc_end], rest[netloc_end:]
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo and userinfo.split(":", 1)[1]:
        raise GenreqError(f"{prefix}_URL carries a password and {prefix}_PASSWORD(_FILE) "
                          "another: keep one")
    user = userinfo.split(":", 1)[0]
    return f"{head}://{user}:{quote(password, safe='')}@{hostport}{path}"


_TCP_BROKERS = ("redis", "rediss")
_QUERY_PASSWORD = re.compile(r"[?&]password=[^&#]", re.IGNORECASE)
_warned_open: set[str] = set()


def _warn_if_open(url: str) -> None:
    """Warn once per process about a broker on TCP that takes no password: anyone who can
    reach the port can read the queue and send the workers tasks."""
    try:
        parts = urlsplit(url)
        has_password = bool(parts.password) or bool(_QUERY_PASSWORD.search(url))
    except ValueError:
        return  # the broker client reports the malformed URL
    if parts.scheme.lower() not in _TCP_BROKERS or has_password or url in _warned_open:
        return
    _warned_open.add(url)
    log.warning("GENREQ_BROKER_URL %s has no password: whoever reaches %s can read the "
                "queue and send tasks to the workers; set GENREQ_BROKER_PASSWORD or "
                "GENREQ_BROKER_PASSWORD_FILE (and requirepass on the server)",
                url, parts.netloc or "it")


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
# length (genreq.worker.app).
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
