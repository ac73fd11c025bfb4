"""bench/similar_precision.py's artist-disjoint scoring (pure logic): a query is answered
only by tracks of other groups, the group `excluded` neither asks nor answers, and chance
is the query's genre share among the tracks it may be answered with."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "similar_precision", REPO / "bench" / "similar_precision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def library():
    genre_of = {"a0": "jazz", "a1": "jazz", "a2": "rock", "a3": "rock", "a4": "rock",
                "b0": "jazz", "b1": "rock", "b2": "rock", "b3": "rock", "b4": "rock",
                "b5": "jazz", "x0": "jazz"}
    group_of = {p: {"a": "A", "b": "B", "x": "excluded"}[p[0]] for p in genre_of}
    # The excluded clip and the query's own group rank nearest: neither may answer.
    ranked = {q: ["x0", *(p for p in genre_of if p[0] == q[0] and p != q),
                  *(p for p in genre_of if p[0] not in (q[0], "x"))] for q in genre_of}
    return genre_of, group_of, ranked


def test_answers_come_from_other_groups_only(bench):
    out = bench.disjoint(*library())
    # A's queries get b0-b4 (1 jazz, 4 rock), B's get a0-a4 (2 jazz, 3 rock).
    assert out["queries"] == 11 and out["n_results"] == 55
    assert out["per_genre"]["jazz"] == {"queries": 4, "precision_at_5": 0.3}
    assert out["per_genre"]["rock"] == {"queries": 7, "precision_at_5": 0.686}
    assert out["precision_at_5"] == pytest.approx(6.0 / 11, abs=1e-4)
    # Chance: a jazz query of A may be answered by 2 jazz of B's 6 tracks, and so on.
    assert out["chance"] == pytest.approx((2 / 3 + 3 * 4 / 6 + 2 * 2 / 5 + 4 * 3 / 5) / 11,
                                          abs=1e-4)
    low, high = out["ci95"]
    assert low <= out["precision_at_5"] <= high and low < high


def test_a_query_without_five_answers_of_other_groups_is_an_error(bench):
    genre_of, group_of, ranked = library()
    for p in ("b3", "b4", "b5"):  # B keeps 3 tracks: A's queries cannot get 5
        group_of[p] = "excluded"
    with pytest.raises(SystemExit, match="a0: only 3 answers"):
        bench.disjoint(genre_of, group_of, ranked)
