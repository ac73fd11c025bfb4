"""End to end with real parts: redis-server, `genreq worker` processes, a database file
(or PostgreSQL), and the shipped model. Compared against the model called directly."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from helpers import genreq, wait_until_finished

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def classifier():
    from genreq.predict import Classifier

    return Classifier.load()


def expected_genres(classifier, files: list[Path]) -> dict[str, str]:
    return {str(f): classifier.classify_file(f).genre for f in files}


def export_json(*args: str) -> list[dict]:
    return json.loads(genreq("export", "--format", "json", *args).stdout)


def assert_classified(library: dict, classifier, status: dict) -> None:
    n_audio = len(library["audio"])
    expected = expected_genres(classifier, library["audio"])
    by_genre: dict[str, set[str]] = {}
    for path, genre in expected.items():
        by_genre.setdefault(genre, set()).add(path)

    assert {k: status[k] for k in ("total", "queued", "running", "done", "failed")} == {
        "total": n_audio + 1, "queued": 0, "running": 0, "done": n_audio, "failed": 1,
    }
    assert status["genres"] == {g: len(paths) for g, paths in by_genre.items()}
    for genre, paths in by_genre.items():
        rows = export_json("--genre", genre)
        assert {row["path"] for row in rows} == paths
        for row in rows:
            assert row["genre"] == genre
            assert len(row["top"]) == 3 and row["top"][0]["genre"] == genre
            assert row["model"] == classifier.name
            assert row["model_version"] == classifier.version
    assert {row["path"] for row in export_json()} == set(expected)

    failed = json.loads(genreq("status", "--json", "--failed").stdout)["failures"]
    assert [f["path"] for f in failed] == [str(library["corrupt"])]
    assert failed[0]["error"].startswith(f"{library['corrupt']}: ")


def pipeline_with_worker(library: dict, classifier, start_worker) -> None:
    n_files = len(library["audio"]) + 1
    genreq("db", "upgrade")
    result = genreq("enqueue", library["root"])
    assert result.stderr.strip() == f"queued {n_files} · already known 0 · ignored 1 (.txt 1)"
    assert result.stdout == ""

    worker = start_worker(concurrency=1)
    status = wait_until_finished(n_files, worker=worker)
    assert_classified(library, classifier, status)

    # Idempotent: nothing known is queued again; a changed file is.
    result = genreq("enqueue", library["root"])
    assert result.stderr.strip() == f"queued 0 · already known {n_files} · ignored 1 (.txt 1)"
    changed = library["audio"][0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    result = genreq("enqueue", library["root"])
    assert result.stderr.strip() == f"queued 1 · already known {n_files - 1} · ignored 1 (.txt 1)"
    status = wait_until_finished(n_files, worker=worker)
    assert_classified(library, classifier, status)

    assert worker.stop() == 0, worker.log()
    assert "loaded model" in worker.log()
    # Loaded once, by the worker before its pool forks: not per task, nor per pool process.
    assert worker.log().count("loaded model") == 1


def test_pipeline_sqlite(tmp_path, redis_url, audio_library, classifier, start_worker,
                         monkeypatch):
    monkeypatch.setenv("GENREQ_BROKER_URL", redis_url)
    monkeypatch.setenv("GENREQ_DATABASE_URL", f"sqlite:///{tmp_path / 'library.db'}")
    pipeline_with_worker(audio_library, classifier, start_worker)


@pytest.mark.postgres
def test_pipeline_postgres(postgres_url, redis_url, audio_library, classifier, start_worker,
                           monkeypatch):
    monkeypatch.setenv("GENREQ_BROKER_URL", redis_url)
    pipeline_with_worker(audio_library, classifier, start_worker)


def test_run_embedded_default(genreq_home, audio_library, classifier):
    """No broker or database configured: `genreq run` starts and stops its own."""
    from genreq.worker import broker

    n_files = len(audio_library["audio"]) + 1
    result = genreq("run", audio_library["root"], "--workers", "1", timeout=240)
    assert f"done {n_files - 1} · failed 1 · {n_files} files in " in result.stdout
    assert f"{audio_library['corrupt']}: " in result.stdout
    assert f"queued {n_files} · already known 0 · ignored 1 (.txt 1)" in result.stderr
    assert not broker.is_running(genreq_home), "run must stop the broker it started"
    assert not list((genreq_home / "workers").glob("*.json"))

    status = json.loads(genreq("status", "--json").stdout)
    assert_classified(audio_library, classifier, status)
    assert (genreq_home / "genreq.db").exists()

    # A second run finds everything known and finishes at once.
    result = genreq("run", audio_library["root"], "--workers", "1", timeout=240)
    assert f"queued 0 · already known {n_files} · ignored 1 (.txt 1)" in result.stderr
    assert result.stdout.startswith("done 0 · failed 0 · 0 files in ")  # no empty table


def test_run_reclassify_redoes_what_another_model_did(genreq_home, audio_library,
                                                     classifier):
    """After a run with another model, a plain run keeps its results; `--reclassify`
    classifies the unchanged files again with the default, and once they are the
    default's, a second `--reclassify` finds nothing to do. The failed file stays failed."""
    n_files = len(audio_library["audio"]) + 1
    genreq("run", audio_library["root"], "--workers", "1", "--model", "crnn", timeout=240)
    assert {row["model"] for row in export_json()} == {"crnn"}
    result = genreq("run", audio_library["root"], "--workers", "1", timeout=240)
    n_audio = n_files - 1
    assert (f"queued 0 · already known {n_files} ({n_audio} by another model: --reclassify "
            "redoes them) · ignored 1 (.txt 1)") in result.stderr
    assert {row["model"] for row in export_json()} == {"crnn"}

    result = genreq("run", audio_library["root"], "--workers", "1", "--reclassify",
                    timeout=240)
    assert (f"queued {n_audio} ({n_audio} reclassified) · already known 1 · ignored 1 (.txt 1)"
            in result.stderr)
    assert f"done {n_audio} · failed 0 · " in result.stdout
    status = json.loads(genreq("status", "--json").stdout)
    assert_classified(audio_library, classifier, status)  # the default's, to the version
    result = genreq("run", audio_library["root"], "--workers", "1", "--reclassify",
                    timeout=240)
    assert f"queued 0 · already known {n_files} · ignored 1 (.txt 1)" in result.stderr


def test_enqueue_then_stop_embedded_broker(genreq_home, audio_library):
    """enqueue starts the embedded broker and leaves it for workers; stop stops it."""
    import redis

    from genreq.worker import broker
    from genreq.worker.app import QUEUE

    genreq("enqueue", audio_library["root"])
    assert broker.is_running(genreq_home)
    assert (genreq_home / "broker" / "appendonlydir").is_dir()  # persisted under HOME
    result = genreq("stop")
    assert result.stderr.strip() == "stopped 0 workers; embedded broker stopped"
    assert not broker.is_running(genreq_home)
    # The queue survived in the append-only file: a restarted broker still holds it.
    n_files = len(audio_library["audio"]) + 1
    assert broker.ensure_running(genreq_home)
    assert redis.Redis(unix_socket_path=str(broker.socket_path(genreq_home))).llen(QUEUE) == n_files
    # The tracks are still pending: enqueue sends them again.
    result = genreq("enqueue", audio_library["root"])
    assert result.stderr.strip() == (
        f"queued 0 · still pending {n_files} (sent again) · already known 0 · ignored 1 (.txt 1)"
    )
    genreq("stop")


def test_enqueue_reclassify_uses_the_model_named_for_the_workers(genreq_home, audio_library):
    """enqueue cannot know what model workers elsewhere run: named with --model, done
    tracks of another version are counted; with --reclassify (the default model unless
    named) queued again. A model that cannot be read is an error before anything."""
    import sqlite3

    from genreq.app.pipeline import model_version

    n_files = len(audio_library["audio"]) + 1
    genreq("enqueue", audio_library["root"])
    with sqlite3.connect(genreq_home / "genreq.db") as db:
        db.execute("UPDATE tracks SET state = 'done', model_name = 'crnn', "
                   "model_version = ?", (model_version("crnn"),))
    result = genreq("enqueue", audio_library["root"])  # no model named: nothing to compare
    assert f"queued 0 · already known {n_files} · ignored 1 (.txt 1)" in result.stderr
    result = genreq("enqueue", audio_library["root"], "--model", "crnn")
    assert f"queued 0 · already known {n_files} · ignored 1 (.txt 1)" in result.stderr
    result = genreq("enqueue", audio_library["root"], "--model", "vgg-msd-fast")
    assert (f"already known {n_files} ({n_files} by another model: --reclassify redoes "
            "them)") in result.stderr
    missing = audio_library["root"] / "nowhere.pt"
    result = genreq("enqueue", audio_library["root"], "--reclassify", "--model", missing,
                    check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: {missing}: cannot read the checkpoint")
    result = genreq("enqueue", audio_library["root"], "--reclassify")
    assert f"queued {n_files} ({n_files} reclassified) · already known 0" in result.stderr
    genreq("stop")


def test_enqueue_progress_has_a_total_rate_and_eta(tmp_path, sqlite_url, redis_url,
                                                   monkeypatch):
    """enqueue counts the files first, so its progress lines (stderr, one per batch of
    500 here) say how far it got of how many, how fast and how long is left."""
    monkeypatch.setenv("GENREQ_BROKER_URL", redis_url)
    monkeypatch.setenv("GENREQ_PROGRESS_EVERY_S", "0")
    music = tmp_path / "music"
    for disc in range(3):
        (music / f"disc{disc}").mkdir(parents=True)
        for n in range(400):  # enqueue only stats files: empty ones will do
            (music / f"disc{disc}" / f"{n:03d}.mp3").touch()
    (music / "cover.jpg").touch()
    result = genreq("enqueue", music)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 5, lines
    for line, done in zip(lines, (500, 1000), strict=False):
        assert re.fullmatch(rf"\[[#-]{{24}}\] {done}/1200  \d+\.\d files/s  "
                            rf"ETA \d:\d\d:\d\d  queued {done} · already known 0", line), line
    assert re.fullmatch(r"\[#{24}\] 1200/1200  \d+\.\d files/s  ETA --  queued 1200 · "
                        r"already known 0", lines[2])
    assert re.fullmatch(r"\[#{24}\] 1200/1200  \d+\.\d files/s  in \d:\d\d:\d\d  "
                        r"queued 1200 · already known 0", lines[3])
    assert lines[4] == "queued 1200 · already known 0 · ignored 1 (.jpg 1)"


def test_run_without_a_usable_model_fails_clearly(genreq_home, audio_library, tmp_path,
                                                  monkeypatch):
    """A missing checkpoint is not a per-file failure: the run stops with the reason,
    before any worker starts (run reads the checkpoint's version first)."""
    monkeypatch.setenv("GENREQ_MODEL", str(tmp_path / "missing.pt"))
    result = genreq("run", audio_library["root"], "--workers", "1", check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: {tmp_path / 'missing.pt'}: cannot read the checkpoint (No such file or "
        "directory)")
    assert not (genreq_home / "logs" / "run-workers.log").exists()
    status = json.loads(genreq("status", "--json").stdout)
    assert status["failed"] == 0 and status["done"] == 0  # no track blamed


def test_stop_stops_registered_workers_and_broker(genreq_home, start_worker):
    import time

    from genreq.worker import broker

    worker = start_worker(concurrency=1)
    deadline = time.monotonic() + 60
    while not list((genreq_home / "workers").glob("*.json")):
        assert worker.process.poll() is None, worker.log()
        assert time.monotonic() < deadline, "worker never registered"
        time.sleep(0.1)
    result = genreq("stop")
    assert result.stderr.strip() == "stopped 1 worker; embedded broker stopped"
    assert worker.process.wait(30) == 0, worker.log()
    assert not broker.is_running(genreq_home)
    assert not list((genreq_home / "workers").glob("*.json"))


def test_run_follows_moved_files_and_prune_forgets_deleted_ones(genreq_home, audio_library):
    """Files moved or renamed inside the library keep their track and result; a deleted
    one stays known, counted as gone, until `prune` forgets it (after a dry run)."""
    n_files = len(audio_library["audio"]) + 1
    genreq("run", audio_library["root"], "--workers", "1", timeout=240)
    before = {row["path"]: row for row in export_json()}
    first, second, deleted = audio_library["audio"][:3]
    (audio_library["root"] / "sorted").mkdir()
    moves = {first: audio_library["root"] / "sorted" / first.name,
             second: second.with_name("renamed " + second.name)}
    for old, new in moves.items():
        old.rename(new)
    deleted.unlink()

    result = genreq("run", audio_library["root"], "--workers", "1", timeout=240)
    assert (f"queued 0 · already known {n_files - 1} · moved 2 (found at a new path, kept)"
            " · gone 1 (genreq prune forgets them) · ignored 1 (.txt 1)") in result.stderr
    after = {row["path"]: row for row in export_json()}
    for old, new in moves.items():
        assert after[str(new)] == {**before[str(old)], "path": str(new)}
    assert str(deleted) in after  # known until pruned

    result = genreq("prune", audio_library["root"], "--dry-run")
    assert result.stdout == f"{deleted}\n"
    assert result.stderr == (
        f"would forget 1 track whose files are gone · {n_files - 1} still there\n")
    result = genreq("prune", audio_library["root"])
    assert result.stdout == f"{deleted}\n"
    assert set(after) - {row["path"] for row in export_json()} == {str(deleted)}
    assert json.loads(genreq("status", "--json").stdout)["total"] == n_files - 1
    assert genreq("prune", audio_library["root"]).stderr.startswith("forgot 0 tracks ")


@pytest.mark.parametrize("command", ["run", "enqueue"])
def test_a_library_that_does_not_exist_is_an_error_before_anything_starts(
        genreq_home, audio_library, command):
    # A mistyped path (`genreq run ~/Musik`) used to walk nothing, start the workers and
    # say `done 0`, exit 0. Now nothing is queued, even from the paths that exist.
    missing = audio_library["root"] / "Musik"
    result = genreq(command, audio_library["root"], missing, check=False)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip() == f"Error: {missing}: no such file or directory; nothing queued"
    assert json.loads(genreq("status", "--json").stdout)["total"] == 0
    assert not (genreq_home / "broker" / "redis.sock").exists()  # no broker, no workers


def test_prune_refuses_a_missing_path_or_one_whose_every_track_is_gone(genreq_home,
                                                                       audio_library):
    genreq("enqueue", audio_library["root"])
    genreq("stop")
    missing = audio_library["root"] / "nowhere"
    result = genreq("prune", missing, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: {missing}: no such file or directory; nothing forgotten "
        "(is its drive mounted?)")
    more = audio_library["root"] / "more"
    for path in more.iterdir():
        path.unlink()  # an empty mount point looks like this
    result = genreq("prune", more, check=False)
    assert result.returncode == 1 and "every track genreq knows there (2) is gone" in result.stderr
    result = genreq("prune", more, "--force")
    assert result.stdout.splitlines() == sorted(
        str(p) for p in (audio_library["corrupt"], audio_library["audio"][-1]))
