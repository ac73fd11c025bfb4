"""genreq.similarity: exact cosine top-N over a float16 matrix, with exclusions."""
from __future__ import annotations

import numpy as np
import pytest

from genreq.similarity import normalise, top_n


def reference(vectors: np.ndarray, query: np.ndarray, exclude=()) -> list[tuple[int, float]]:
    """float64 cosine of the float16-normalised rows, by sorting everything."""
    m = normalise(vectors).astype(np.float64)
    q = query / np.linalg.norm(query)
    scores = m @ q
    order = sorted((i for i in range(len(m)) if i not in set(exclude)),
                   key=lambda i: (-scores[i], i))
    return [(i, scores[i]) for i in order]


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((5000, 64)).astype(np.float32)


def test_normalise_gives_unit_float16_rows_and_keeps_zero_rows_zero():
    m = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert m.dtype == np.float16
    np.testing.assert_allclose(m.astype(np.float32), [[0.6, 0.8], [0.0, 0.0]], atol=1e-3)


def test_top_n_is_the_exact_ranking(vectors):
    matrix = normalise(vectors)
    rng = np.random.default_rng(1)
    for _ in range(20):
        query = vectors[rng.integers(len(vectors))] + 0.5 * rng.standard_normal(64)
        got = top_n(matrix, query, 10)
        want = reference(vectors, query)[:10]
        assert [n.row for n in got] == [i for i, _ in want]
        assert [n.similarity for n in got] == pytest.approx([s for _, s in want], abs=1e-5)


def test_excluded_rows_never_come_back(vectors):
    matrix = normalise(vectors)
    query = vectors[42]
    assert top_n(matrix, query, 1)[0].row == 42  # itself, similarity 1
    assert top_n(matrix, query, 1)[0].similarity == pytest.approx(1.0, abs=1e-3)
    exclude = [42, *range(100, 200)]
    got = top_n(matrix, query, 25, exclude=exclude)
    assert not {n.row for n in got} & set(exclude)
    assert [n.row for n in got] == [i for i, _ in reference(vectors, query, exclude)[:25]]


def test_limit_beyond_the_library_returns_every_other_row():
    vectors = np.eye(4, dtype=np.float32) + 0.1
    got = top_n(normalise(vectors), vectors[0], 10, exclude=[0])
    assert sorted(n.row for n in got) == [1, 2, 3]
    assert top_n(normalise(vectors), vectors[0], 10, exclude=range(4)) == []
    assert top_n(normalise(vectors), vectors[0], 0) == []
    assert top_n(np.zeros((0, 4), np.float16), vectors[0], 3) == []


def test_a_query_of_another_dimension_is_refused(vectors):
    with pytest.raises(ValueError, match="64"):
        top_n(normalise(vectors), np.ones(32), 3)
