"""Alembic driven from the installed package, without alembic.ini. Alembic is imported
only to migrate or to look closer: a command that finds the database at HEAD_REVISION
reads one row and never loads it."""
from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from genreq import config
from genreq.db.session import get_engine, normalize_url
from genreq.errors import GenreqError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

# The newest migration's revision, so that ensure_schema can tell a database at head
# without loading Alembic and parsing every migration (a good part of a quick command's
# start-up). It must be Alembic's head, or a database at this revision would not be
# migrated: tests/test_migrations.py checks it.
HEAD_REVISION = "b3e81f5a7c20"


def _script_location() -> Path:
    # Installed: genreq/migrations next to genreq/db. Source tree: migrations/ at the
    # root, next to db/. Both resolve through the genreq.migrations package.
    import genreq.migrations

    return Path(genreq.migrations.__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_script_location()))
    cfg.attributes["url"] = normalize_url(url or config.database_url())
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def ensure_schema(url: str | None = None) -> None:
    """Make sure the database is at head.

    The embedded default (SQLite in GENREQ_HOME) is migrated automatically, under a
    file lock so that processes starting together migrate it once. A configured
    database is the operator's: it is checked, and left to `genreq db upgrade`.
    """
    if _at(url, HEAD_REVISION):
        return
    head = head_revision()
    if current_revision(url) == head:
        return
    if url is None and config.database_url_is_default():
        with open(config.home() / "migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = current_revision()
            if current != head:
                if current is None:  # a new database: nothing to say
                    log.info("creating %s at %s", config.database_url(), head)
                else:
                    # Said on stderr: a migration that rewrites every row (b3e81f5a7c20's)
                    # takes about a minute on a million tracks, which would look like a hang.
                    log.warning("upgrading the database from schema %s to %s (once; a big "
                                "library takes a minute)", current, head)
                upgrade()
        return
    raise GenreqError(
        "the database schema is not at the current version; run `genreq db upgrade`"
    )


def _at(url: str | None, revision: str) -> bool:
    """Whether the database's alembic_version holds REVISION alone: one SELECT, without
    Alembic (False for a database without the table, which Alembic then looks at)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        with get_engine(url).connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version"))
            return [row[0] for row in versions] == [revision]
    except DBAPIError:
        return False
