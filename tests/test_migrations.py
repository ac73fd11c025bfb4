"""Alembic: models and migrations do not drift; upgrade from empty and downgrade to base."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from genreq.db import migrate
from genreq.db.session import get_engine

REPO = Path(__file__).resolve().parents[1]


def tables(url: str) -> set[str]:
    engine = get_engine(url)
    engine.dispose()  # fresh metadata after DDL from another connection
    return set(inspect(engine).get_table_names())


@pytest.fixture
def empty_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'empty.db'}"


def test_upgrade_from_empty_and_downgrade_to_base(db_url):
    # db_url arrives at head; go down and up again
    assert migrate.current_revision(db_url) == migrate.head_revision()
    migrate.downgrade(db_url, "base")
    assert migrate.current_revision(db_url) is None
    assert tables(db_url) <= {"alembic_version"}
    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()
    assert "tracks" in tables(db_url)


@pytest.mark.skipif(not (REPO / "alembic.ini").exists(), reason="needs the source tree")
def test_alembic_check_finds_no_drift(db_url):
    alembic = shutil.which("alembic", path=os.path.dirname(sys.executable)) or "alembic"
    result = subprocess.run(
        [alembic, "check"], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GENREQ_DATABASE_URL": db_url}, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_db_upgrade_command(empty_url, monkeypatch):
    from click.testing import CliRunner

    from genreq.cli.main import cli

    monkeypatch.setenv("GENREQ_DATABASE_URL", empty_url)
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert result.stderr == f"database at {migrate.head_revision()}\n"
    assert "tracks" in tables(empty_url)


def test_sqlite_is_in_wal_mode_with_busy_timeout(sqlite_url):
    from sqlalchemy import text

    with get_engine(sqlite_url).connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30_000


def test_head_revision_constant_is_alembics_head():
    # ensure_schema trusts HEAD_REVISION to skip Alembic: a stale one would leave a
    # database at the old head unmigrated.
    assert migrate.head_revision() == migrate.HEAD_REVISION


def test_ensure_schema_migrates_an_older_embedded_database(tmp_path, monkeypatch, caplog):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("GENREQ_HOME", str(home))
    monkeypatch.delenv("GENREQ_DATABASE_URL", raising=False)
    url = f"sqlite:///{home / 'genreq.db'}"
    migrate.upgrade(url, "ca7c6c02de8c")
    caplog.set_level("INFO", logger="genreq.db.migrate")
    migrate.ensure_schema()
    assert migrate.current_revision(url) == migrate.head_revision()
    # Said, since an upgrade of a big library takes a while; a new database is not.
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [f"upgrading the database from schema ca7c6c02de8c to "
                      f"{migrate.head_revision()} (once; a big library takes a minute)"]
    caplog.clear()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.setenv("GENREQ_HOME", str(fresh))
    migrate.ensure_schema()
    assert migrate.current_revision(f"sqlite:///{fresh / 'genreq.db'}") == migrate.head_revision()
    assert [r.levelname for r in caplog.records] == ["INFO"]  # created, quietly


def test_lines_of_the_older_export_format_are_cleared(db_url):
    # b3e81f5a7c20: export lines gained the file's artist, album and title, so a line kept
    # in format 1 is stale; the trigger that clears a line now watches those columns.
    from sqlalchemy import text

    migrate.downgrade(db_url, "a7d2f9c41b36")
    engine = get_engine(db_url)

    def lines() -> list:
        with engine.begin() as c:
            return c.execute(text("SELECT export_line FROM tracks ORDER BY id")).scalars().all()

    artists = iter(["One", "Two", "Three"])

    def keep_lines_then_set_artist() -> list:
        with engine.begin() as c:
            c.execute(text("UPDATE tracks SET export_line = 'kept'"))
            c.execute(text("UPDATE tracks SET artist = :a WHERE id = 1"), {"a": next(artists)})
        return lines()

    with engine.begin() as c:
        c.execute(text("INSERT INTO tracks (path, size_bytes, mtime_ns, state, attempts, "
                       "queued_at, export_line) VALUES ('/m/a.mp3', 1, 1, 'done', 0, "
                       "CURRENT_TIMESTAMP, 'a format-1 line'), ('/m/b.mp3', 1, 1, 'done', "
                       "0, CURRENT_TIMESTAMP, NULL)"))
    assert keep_lines_then_set_artist() == ["kept", "kept"]  # format 1: not watched
    migrate.upgrade(db_url)
    assert lines() == [None, None]
    assert keep_lines_then_set_artist() == [None, "kept"]
    migrate.downgrade(db_url, "a7d2f9c41b36")
    assert lines() == [None, None]  # format 2's lines are stale to format 1 too
    assert keep_lines_then_set_artist() == ["kept", "kept"]
    migrate.upgrade(db_url)
