"""Broker and database passwords: taken from the environment or a file, handed to the
drivers, and never shown. The end-to-end half runs real processes against a real
redis-server with --requirepass and a real PostgreSQL with password logins, and looks
for the password (plain and percent-encoded) in everything they print and log."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from click.testing import CliRunner
from helpers import GENREQ, genreq, synthesize, wait_until_finished
from servers import postgres_cluster, redis_server

from genreq import config, redact
from genreq.errors import GenreqError

# Every character a URL must escape, and a space: the password reaches the drivers
# intact only if genreq percent-encodes it and they decode it.
BROKER_PASSWORD = "br0ker pw/@:#?&=%"
DATABASE_PASSWORD = "db pa55/@:#?&%"
SECRET_VARS = ("GENREQ_BROKER_PASSWORD", "GENREQ_BROKER_PASSWORD_FILE",
               "GENREQ_DATABASE_PASSWORD", "GENREQ_DATABASE_PASSWORD_FILE")


@pytest.fixture(autouse=True)
def no_caller_secrets(monkeypatch):
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)


def leaks(text: str, *passwords: str) -> list[str]:
    """The forms of `passwords` found in `text`: as given, and percent-encoded."""
    return [form for p in passwords for form in {p, quote(p, safe="")} if form in text]


# --- the URL a driver gets ------------------------------------------------------------

def test_password_from_the_environment_is_percent_encoded(monkeypatch):
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("GENREQ_DATABASE_URL", "postgresql://genreq@db:5432/genreq?sslmode=require")
    monkeypatch.setenv("GENREQ_DATABASE_PASSWORD", DATABASE_PASSWORD)
    url = config.database_url()
    assert url == (f"postgresql://genreq:{quote(DATABASE_PASSWORD, safe='')}"
                   "@db:5432/genreq?sslmode=require")
    parsed = make_url(url)
    assert (parsed.username, parsed.password, parsed.host, parsed.database) == (
        "genreq", DATABASE_PASSWORD, "db", "genreq")


def test_broker_password_from_a_file(monkeypatch, tmp_path):
    from kombu.utils.url import url_to_parts

    secret = tmp_path / "broker-password"
    secret.write_text(BROKER_PASSWORD + "\n")  # as `echo pw > file` writes it
    monkeypatch.setenv("GENREQ_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("GENREQ_BROKER_PASSWORD_FILE", str(secret))
    url = config.broker_url()
    assert url == f"redis://:{quote(BROKER_PASSWORD, safe='')}@redis:6379/0"
    parts = url_to_parts(url)  # what Celery's redis transport reads
    assert (parts.hostname, parts.port, parts.password) == ("redis", 6379, BROKER_PASSWORD)
    assert config.secrets() == (BROKER_PASSWORD,)


def test_a_password_in_the_url_itself_still_works(monkeypatch):
    monkeypatch.setenv("GENREQ_BROKER_URL", "redis://:inline@redis:6379/0")
    assert config.broker_url() == "redis://:inline@redis:6379/0"
    assert config.secrets() == ("inline",)


@pytest.mark.parametrize(("env", "message"), [
    ({"GENREQ_BROKER_URL": "redis://h/0", "GENREQ_BROKER_PASSWORD": "a",
      "GENREQ_BROKER_PASSWORD_FILE": "/nonexistent"},
     "set GENREQ_BROKER_PASSWORD or GENREQ_BROKER_PASSWORD_FILE, not both"),
    ({"GENREQ_BROKER_URL": "redis://:a@h/0", "GENREQ_BROKER_PASSWORD": "b"},
     "GENREQ_BROKER_URL carries a password and GENREQ_BROKER_PASSWORD(_FILE) another: keep one"),
    ({"GENREQ_BROKER_PASSWORD": "b"},
     "GENREQ_BROKER_PASSWORD(_FILE) is set but GENREQ_BROKER_URL is not"),
    ({"GENREQ_DATABASE_PASSWORD": "b"},
     "GENREQ_DATABASE_PASSWORD(_FILE) is set but GENREQ_DATABASE_URL is not"),
])
def test_contradictory_settings_are_errors(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(GenreqError) as error:
        config.broker_url() if "BROKER" in message else config.database_url()
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(("content", "reason"), [
    (None, "cannot read GENREQ_DATABASE_PASSWORD_FILE (No such file or directory)"),
    ("\n", "GENREQ_DATABASE_PASSWORD_FILE is empty"),
    (b"\xff\xfe", "cannot read GENREQ_DATABASE_PASSWORD_FILE (not UTF-8 text)"),
])
def test_an_unusable_password_file_is_named(monkeypatch, tmp_path, content, reason):
    secret = tmp_path / "db-password"
    if isinstance(content, bytes):
        secret.write_bytes(content)
    elif content is not None:
        secret.write_text(content)
    monkeypatch.setenv("GENREQ_DATABASE_URL", "postgresql://u@h/d")
    monkeypatch.setenv("GENREQ_DATABASE_PASSWORD_FILE", str(secret))
    with pytest.raises(GenreqError, match="^" + str(secret) + ": ") as error:
        config.database_url()
    assert str(error.value) == f"{secret}: {reason}"


# --- masking --------------------------------------------------------------------------

@pytest.mark.parametrize(("shown", "masked"), [
    ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
    ("postgresql+psycopg://u:s%40cret@h/db", "postgresql+psycopg://u:***@h/db"),
    ("Cannot connect to redis://:**@h:6379/0: Error 111",
     "Cannot connect to redis://:***@h:6379/0: Error 111"),
    ("rediss://h:6379/0?password=s3cret&db=1", "rediss://h:6379/0?password=***&db=1"),
    (r"host=h user=u password='it\'s' dbname=d", "host=h user=u password=*** dbname=d"),
    ("redis://h:6379/0 is down; mail admin@example.org",
     "redis://h:6379/0 is down; mail admin@example.org"),
    ("sqlite:////home/u/genreq.db", "sqlite:////home/u/genreq.db"),
])
def test_urls_and_connection_strings_are_masked(shown, masked):
    assert redact.text(shown, secrets=()) == masked


def test_configured_passwords_are_masked_anywhere(monkeypatch):
    monkeypatch.setenv("GENREQ_DATABASE_URL", "postgresql://u@h/d")
    monkeypatch.setenv("GENREQ_DATABASE_PASSWORD", DATABASE_PASSWORD)
    echoed = f"FATAL: bad password {DATABASE_PASSWORD!r} (encoded {quote(DATABASE_PASSWORD)})"
    assert not leaks(redact.text(echoed), DATABASE_PASSWORD)
    assert redact.text(echoed).startswith("FATAL: bad password ")


def test_log_records_are_masked_with_their_arguments_and_tracebacks(monkeypatch):
    monkeypatch.setenv("GENREQ_BROKER_URL", "redis://h/0")
    monkeypatch.setenv("GENREQ_BROKER_PASSWORD", BROKER_PASSWORD)
    try:
        raise OSError(f"refused for {BROKER_PASSWORD}")
    except OSError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "connecting to %s",
                                   (config.broker_url(),), sys.exc_info())
    assert redact.RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert not leaks(formatted, BROKER_PASSWORD)
    assert "connecting to redis://:***@h/0" in formatted
    assert "OSError: refused for ***" in formatted


def test_the_cli_error_boundary_masks_what_a_driver_echoed(monkeypatch):
    """Drivers today keep passwords out of their messages (the e2e tests below see to
    that); the boundary masks whatever a future one echoes."""
    from genreq import app
    from genreq.cli.main import cli

    monkeypatch.setenv("GENREQ_DATABASE_URL", "postgresql://u@h/d")
    monkeypatch.setenv("GENREQ_DATABASE_PASSWORD", DATABASE_PASSWORD)

    def status(*_args, **_kwargs):
        raise GenreqError(f"cannot reach {config.database_url()} (password {DATABASE_PASSWORD})")

    monkeypatch.setattr(app, "status", status)
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 1
    assert result.output == "Error: cannot reach postgresql://u:***@h/d (password ***)\n"
    assert isinstance(result.exception, SystemExit)


# --- real processes -------------------------------------------------------------------

def make_library(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        synthesize(root / f"{i}.wav", i)
    return root


@pytest.fixture
def secured(tmp_path, monkeypatch):
    """A password-protected redis-server and PostgreSQL, their passwords in files, the
    URLs in the environment without them."""
    broker_secret = tmp_path / "secrets" / "broker"
    database_secret = tmp_path / "secrets" / "database"
    broker_secret.parent.mkdir()
    broker_secret.write_text(BROKER_PASSWORD + "\n")
    database_secret.write_text(DATABASE_PASSWORD)
    with redis_server(tmp_path / "redis", BROKER_PASSWORD) as port, \
            postgres_cluster(DATABASE_PASSWORD) as postgres:
        monkeypatch.setenv("GENREQ_BROKER_URL", f"redis://127.0.0.1:{port}/0")
        monkeypatch.setenv("GENREQ_BROKER_PASSWORD_FILE", str(broker_secret))
        monkeypatch.setenv("GENREQ_DATABASE_URL", postgres.url)
        monkeypatch.setenv("GENREQ_DATABASE_PASSWORD_FILE", str(database_secret))
        yield {"port": port, "database_url": postgres.url}


def start_worker(log_path: Path, *args: str) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen([*GENREQ, "worker", "--concurrency", "1", *args],
                                stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_log(log_path: Path, text: str, process: subprocess.Popen,
                 timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if text in log:
            return log
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared in the log:\n{log}")
        time.sleep(0.2)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.postgres
def test_pipeline_with_passwords_prints_none(secured, tmp_path):
    """enqueue, a DEBUG-level worker, status (text, --json, --failed), requeue: all work
    through the passwords, and none of them prints or logs one."""
    library = make_library(tmp_path / "library")
    outputs = [genreq("db", "upgrade"), genreq("-v", "enqueue", library)]
    log_path = tmp_path / "worker.log"
    worker = start_worker(log_path, "--loglevel", "DEBUG")
    try:
        wait_until_finished(3)
        outputs += [genreq("status"), genreq("status", "--json", "--failed"),
                    genreq("-v", "requeue", "--stale")]
        cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes().decode(errors="replace")
    finally:
        stop_worker(worker)
    assert json.loads(outputs[3].stdout)["done"] == 3
    log = log_path.read_text(errors="replace")
    shown = "\n".join([cmdline, log] + [o.stdout + o.stderr for o in outputs])
    assert leaks(shown, BROKER_PASSWORD, DATABASE_PASSWORD) == []
    # Celery masks its own URLs ("**"); genreq's filter on Celery's log handlers masks
    # them again ("***"): proof that the filter is on the handlers the worker writes to.
    assert f"Connected to redis://:***@127.0.0.1:{secured['port']}/0" in log
    assert "has no password" not in shown


@pytest.mark.e2e
@pytest.mark.slow
def test_celery_banner_masks_the_broker_url(secured, tmp_path):
    """`celery -A genreq.worker.app worker`, which prints its banner (genreq worker does
    not): the transport line shows the URL without the password."""
    log_path = tmp_path / "celery.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "genreq.worker.app:app", "worker",
             "--concurrency", "1", "--pool", "solo", "--without-mingle", "--without-gossip",
             "--loglevel", "DEBUG"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        text = wait_for_log(log_path, "ready.", process)
    finally:
        stop_worker(process)
    text = log_path.read_text(errors="replace")
    assert f"transport:   redis://:**@127.0.0.1:{secured['port']}/0" in text
    assert leaks(text, BROKER_PASSWORD, DATABASE_PASSWORD) == []


@pytest.mark.e2e
@pytest.mark.slow
def test_connection_errors_do_not_echo_passwords(secured, tmp_path, monkeypatch):
    library = make_library(tmp_path / "library", n=1)
    genreq("db", "upgrade")
    database_url = secured["database_url"]
    wrong_password = tmp_path / "secrets" / "wrong"
    wrong_password.write_text("Wr0ng pa55/@")
    cases = {
        # the right password, a host where nothing listens
        "broker host": ({"GENREQ_BROKER_URL": "redis://127.0.0.1:1/0"},
                        "Error: broker error: Error 111 connecting to 127.0.0.1:1. "
                        "Connection refused."),
        "broker password": ({"GENREQ_BROKER_PASSWORD_FILE": str(wrong_password)},
                            "Error: broker error: invalid username-password pair"),
        "database host": ({"GENREQ_DATABASE_URL": database_url.replace(
            database_url.split("@")[1].split("/")[0], "127.0.0.1:1")},
            "Error: database error: connection failed: connection to server at "
            '"127.0.0.1", port 1 failed: Connection refused'),
        "database password": ({"GENREQ_DATABASE_PASSWORD_FILE": str(wrong_password)},
                              'password authentication failed for user "genreq"'),
    }
    for case, (env, message) in cases.items():
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            for command in (("enqueue", str(library)), ("status", "--json")):
                if "broker" in case and command[0] == "status":
                    continue  # status reads the database only
                result = genreq(*command, check=False)
                shown = result.stdout + result.stderr
                assert result.returncode == 1, (case, shown)
                assert message in result.stderr, (case, shown)
                assert "Traceback" not in shown, (case, shown)
                assert leaks(shown, BROKER_PASSWORD, DATABASE_PASSWORD, "Wr0ng pa55/@") == []


@pytest.mark.e2e
@pytest.mark.slow
def test_a_worker_that_cannot_reach_the_broker_logs_no_password(secured, tmp_path,
                                                                monkeypatch):
    """Celery retries an unreachable broker, logging the URL each time."""
    genreq("db", "upgrade")
    monkeypatch.setenv("GENREQ_BROKER_URL", "redis://127.0.0.1:1/0")
    log_path = tmp_path / "worker.log"
    worker = start_worker(log_path)
    try:
        log = wait_for_log(log_path, "Trying again in", worker)
    finally:
        stop_worker(worker)
    assert "Cannot connect to redis://:***@127.0.0.1:1/0" in log
    assert leaks(log, BROKER_PASSWORD, DATABASE_PASSWORD) == []


# --- a broker anyone can use ----------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.slow
def test_a_tcp_broker_without_password_draws_one_warning(tmp_path, monkeypatch, redis_url):
    library = make_library(tmp_path / "library", n=1)
    with redis_server(tmp_path / "open-redis", password=None) as port:
        monkeypatch.setenv("GENREQ_BROKER_URL", f"redis://127.0.0.1:{port}/0")
        result = genreq("enqueue", library)
    warning = (f"genreq: WARNING: GENREQ_BROKER_URL redis://127.0.0.1:{port}/0 has no "
               f"password: whoever reaches 127.0.0.1:{port} can read the queue")
    assert result.stderr.count(warning) == 1, result.stderr
    assert result.stderr.strip().endswith("queued 1 · already known 0 · ignored 0")

    monkeypatch.setenv("GENREQ_BROKER_URL", redis_url)  # a unix socket: no warning
    result = genreq("enqueue", library)
    assert "WARNING" not in result.stderr, result.stderr


def test_compose_reads_every_password_from_a_secret_file():
    """docker-compose.yml: no password in a URL, an environment value or a command line;
    Redis requires one; every service that needs one reads it from /run/secrets."""
    import yaml
    from helpers import REPO

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("migrate", "worker", "cli"):
        env = services[name]["environment"]
        assert env["GENREQ_BROKER_PASSWORD_FILE"] == "/run/secrets/redis_password"
        assert env["GENREQ_DATABASE_PASSWORD_FILE"] == "/run/secrets/postgres_password"
        for variable in ("GENREQ_BROKER_URL", "GENREQ_DATABASE_URL"):
            assert urlsplit(env[variable]).password is None, env[variable]
        assert set(services[name]["secrets"]) == {"redis_password", "postgres_password"}
    assert "requirepass" in " ".join(services["redis"]["command"])
    assert "/run/secrets/redis_password" in " ".join(services["redis"]["command"])
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == (
        "/run/secrets/postgres_password")
    assert "POSTGRES_PASSWORD" not in services["postgres"]["environment"]
    assert set(compose["secrets"]) == {"redis_password", "postgres_password"}
