"""Configuration from the environment, with working local defaults."""
from __future__ import annotations

from genreq import config


def test_defaults_live_in_home(genreq_home):
    assert config.home() == genreq_home
    assert genreq_home.is_dir()
    assert config.database_url() == f"sqlite:///{genreq_home / 'genreq.db'}"
    assert config.database_url_is_default()
    assert config.broker_url() is None
    assert config.model() is None


def test_home_defaults_to_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("GENREQ_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert config.home() == tmp_path / "xdg" / "genreq"


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("GENREQ_DATABASE_URL", "postgresql://u@db/genreq")
    monkeypatch.setenv("GENREQ_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("GENREQ_MODEL", "~/m.pt")
    assert config.database_url() == "postgresql://u@db/genreq"
    assert not config.database_url_is_default()
    assert config.broker_url() == "redis://redis:6379/0"
    assert config.model() == "~/m.pt"


def test_embedded_broker_url_follows_home(genreq_home):
    from genreq.worker import app, broker

    assert app.broker_url() == f"redis+socket://{genreq_home / 'broker' / 'redis.sock'}"
    assert broker.socket_path() == genreq_home / "broker" / "redis.sock"


def test_long_home_gets_a_short_socket_path(tmp_path):
    from genreq.worker import broker

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    sock = broker.socket_path(deep)
    assert len(str(sock)) < broker.MAX_SOCKET_PATH
    assert sock == broker.socket_path(deep)  # every process finds the same one
    assert sock != broker.socket_path(tmp_path / "other")
    sock.parent.rmdir()  # created in the temp dir, outside tmp_path


def test_postgres_urls_use_psycopg3():
    from genreq.db.session import normalize_url

    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
