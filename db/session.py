"""Engines and sessions. One engine per (URL, process): engines must not cross a fork,
and Celery's prefork pool forks."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from genreq import config
from genreq.errors import GenreqError

# Writers wait this long for a SQLite lock before "database is locked" (then the
# task retries with backoff): several worker processes share one file.
SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[tuple[str, int], Engine] = {}


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (status, export) run while workers write; NORMAL is durable
    # enough in WAL mode and avoids an fsync per task.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """A new engine for `url`, with SQLite set up for several writing processes."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:  # e.g. psycopg, an optional extra
        raise GenreqError(
            f"{make_url(url).drivername} needs the Python package {exc.name!r}"
            " (PostgreSQL: pip install 'genreq[postgres]')"
        ) from exc


def get_engine(url: str | None = None) -> Engine:
    """The engine for `url` (default: config.database_url()) in this process."""
    url = url or config.database_url()
    key = (url, os.getpid())
    if key not in _engines:
        _engines[key] = make_engine(url)
    return _engines[key]


def dispose_engines() -> None:
    """Forget engines inherited from a parent process (call right after a fork)."""
    for (_url, pid), engine in list(_engines.items()):
        if pid != os.getpid():
            engine.dispose(close=False)
            del _engines[(_url, pid)]


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def transaction(url: str | None = None) -> Iterator[Connection]:
    """A Core connection in one transaction (commit on success): for the worker's small
    per-track writes, which need no ORM session."""
    with get_engine(url).begin() as connection:
        yield connection
