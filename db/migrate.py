"""Alembic driven from the installed package, without alembic.ini."""
from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from genreq import config
from genreq.db.session import get_engine, normalize_url
from genreq.errors import GenreqError

log = logging.getLogger(__name__)



def _script_location() -> Path:
    # Installed: genreq/migrations next to genreq/db. Source tree: migrations/ at the
    # root, next to db/. Both resolve through the genreq.migrations package.
    import genreq.migrations

    return Path(genreq.migrations.__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_script_location()))
    cfg.attributes["url"] = normalize_url(url or config.database_url())
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str | None = None) -> str | None:
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def ensure_schema(url: str | None = None) -> None:
    """Make sure the database is at head.

    The embedded default (SQLite in GENREQ_HOME) is migrated automatically, under a
    file lock so that processes starting together migrate it once. A configured
    database is the operator's: it is checked, and left to `genreq db upgrade`.
    """
    head = head_revision()
    if current_revision(url) == head:
        return
    if url is None and config.database_url_is_default():
        with open(config.home() / "migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if current_revision() != head:
                log.info("migrating %s to %s", config.database_url(), head)
                upgrade()
        return
    raise GenreqError(
        "the database schema is not at the current version; run `genreq db upgrade`"
    )
