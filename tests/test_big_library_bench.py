"""bench/big_library.py on a small library, so that the benchmark keeps working: its
build goes through genreq's migrations and schema, and every command it times runs
and does what the benchmark says (figures are not checked: they are the benchmark's)."""
from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRACKS, TREE = 2_000, 200


@pytest.fixture(scope="module")
def big_library():
    spec = importlib.util.spec_from_file_location("big_library", REPO / "bench" / "big_library.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(big_library, tmp_path_factory):
    directory = tmp_path_factory.mktemp("big")
    return directory, big_library.run(directory, TRACKS, TREE, repeats=1, log=lambda _m: None)


def test_the_library_is_genreqs_schema_with_every_state(result):
    from genreq.db.migrate import head_revision

    directory, r = result
    db = sqlite3.connect(directory / "home" / "genreq.db")
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head_revision()
    states = dict(db.execute("SELECT state, count(*) FROM tracks GROUP BY state").fetchall())
    assert sum(states.values()) == TRACKS
    assert states["done"] > 0.9 * TRACKS
    assert {"failed", "skipped"} <= set(states)
    embedded = db.execute("SELECT count(*) FROM tracks WHERE state = 'done' "
                          "AND length(embedding) = 512 AND tags LIKE '{%'").fetchone()[0]
    assert embedded == states["done"]
    assert r["status"]["counts"]["total"] == TRACKS
    assert r["status"]["counts"]["done"] == states["done"]


def test_export_streams_every_done_track(result):
    _directory, r = result
    export = r["export"]
    assert export["rows"] == r["status"]["counts"]["done"]
    assert export["example_row"]["model"] == "vgg-msd"
    assert len(export["example_row"]["tags"]) >= 5
    assert export["rows_per_s"]["n"] == 1
    # Built without stored lines: the first export stores every one, the next read them.
    done = r["status"]["counts"]["done"]
    assert export["first"]["lines_stored_before"] == 0
    assert export["first"]["lines_stored_after"] == done
    in_process = r["export_in_process"]
    assert in_process["stored_rows"] == in_process["made_rows"] == done
    assert in_process["ratio_cpu"]["n"] == 1


def test_a_second_export_reads_the_stored_lines_and_clearing_them_times_the_first(
        big_library, result):
    directory, r = result
    env, _built = big_library.prepare_library(directory, TRACKS, TREE, None, False,
                                              log=lambda _m: None)
    again = big_library.measure_export(env, 1, r["status"]["counts"]["done"], directory)
    assert "first" not in again and again["rows"] == r["export"]["rows"]
    cleared = big_library.measure_export(env, 1, r["status"]["counts"]["done"], directory,
                                         clear=True)
    assert cleared["first"]["lines_stored_before"] == 0
    assert cleared["example_row"] == r["export"]["example_row"]


def test_result_writes_are_timed_with_and_without_the_trigger(result):
    _directory, r = result
    writes = r["result_writes"]
    assert writes["database"] == "sqlite" and writes["tracks"] > 0
    for case in ("no_line", "line_stored", "no_trigger"):
        assert writes[f"{case}_us_per_result"]["n"] == 1


def test_enqueue_of_the_unchanged_tree_queues_nothing(result):
    _directory, r = result
    assert r["enqueue"]["summary_lines"] == [f"queued 0 · already known {TREE} · ignored 0"]


def test_similar_searches_every_embedded_track(result):
    _directory, r = result
    assert r["similar"]["searched"] == r["status"]["counts"]["done"]
    assert r["similar"]["dim"] == 256
    assert r["similar"]["warm_s"]["n"] == 2


def test_a_second_run_reuses_the_built_library(big_library, result):
    directory, r = result
    env, built = big_library.prepare_library(directory, TRACKS, TREE, None, False,
                                             log=lambda _m: None)
    assert built == r["library"]
    assert env["GENREQ_HOME"] == str(directory / "home")
