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
