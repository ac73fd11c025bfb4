"""Alembic environment. The URL comes from the caller (genreq.db.migrate passes it in
config.attributes) or, for the `alembic` command line, from GENREQ_DATABASE_URL."""
from __future__ import annotations

from alembic import context

from genreq import config as genreq_config
from genreq.db.models import metadata
from genreq.db.session import make_engine

config = context.config


def run_migrations_offline() -> None:
    context.configure(
        url=config.attributes.get("url") or genreq_config.database_url(),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(config.attributes.get("url") or genreq_config.database_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
                render_as_batch=True,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
