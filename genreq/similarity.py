"""Search by sound: cosine similarity between track embeddings, brute force.

The library's embeddings are kept as one float16 matrix of L2-normalised rows (half
the memory of float32, and more precision than cosine rankings need); a query is one
matrix-vector product, done in float32 over blocks of rows so that no float32 copy of
the whole matrix is ever made, and an argpartition for the top N. Brute force is
exact, needs no index to build or keep in step with the database, and is fast enough
for the libraries genreq is for (bench/similar.py, bench/results/similar.json).
No database here: the app layer loads the matrix and maps rows back to tracks.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# Candidates re-scored exactly per result asked for: the float16 pass ranks to about
# 1e-3, so the true top N lies well inside its top N + RESCORE_MARGIN.
RESCORE_MARGIN = 64


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float16; an all-zero row stays zero (it is
    similar to nothing)."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None]
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0).astype(np.float16)


# How an embedding is stored (the tracks table's `embedding` column): float16, little
# endian, no header; its length gives the dimension.
STORED_DTYPE = np.dtype("<f2")


def embedding_bytes(vector: np.ndarray) -> bytes:
    """A 1-D embedding as stored: float16 bytes (not normalised)."""
    return np.asarray(vector, dtype=np.float32).ravel().astype(STORED_DTYPE).tobytes()


def embedding_from_bytes(data: bytes) -> np.ndarray:
    """A stored embedding back as a 1-D float16 array."""
    return np.frombuffer(data, dtype=STORED_DTYPE)


def matrix_from_bytes(blobs: list[bytes]) -> np.ndarray:
    """Stored embeddings of one model as the normalised float16 matrix top_n reads."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float16)
    return normalise(np.frombuffer(b"".join(blobs), dtype=STORED_DTYPE).reshape(len(blobs), -1))


@dataclass(frozen=True)
class Neighbour:
    row: int  # index into the matrix
    similarity: float  # cosine: 1 = same direction, 0 = unrelated, -1 = opposite


def _unit(query: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(query, dtype=np.float32).ravel()
    if q.size != dim:
        raise ValueError(f"query has {q.size} dimensions, the matrix {dim}")
    norm = float(np.linalg.norm(q))
    return q / norm if norm > 0 else q


def rough_scores(matrix: np.ndarray, unit_query: np.ndarray) -> np.ndarray:
    """Cosine of every row with the query, computed in float16 (to about 1e-3).

    torch does this product: numpy has no vectorised float16 arithmetic, so its float16
    matrix-vector product, and even converting the matrix to float32 first, run several
    times slower than the whole query may take."""
    import torch

    product = torch.mv(torch.from_numpy(matrix), torch.from_numpy(unit_query.astype(np.float16)))
    return product.numpy().astype(np.float32)


def top_n(
    matrix: np.ndarray, query: np.ndarray, limit: int, exclude: Iterable[int] = ()
) -> list[Neighbour]:
    """The LIMIT rows most similar to QUERY (any 1-D vector), most similar first (ties
    by row), never a row of EXCLUDE (e.g. the query's own track and its album).
    MATRIX holds normalised float16 rows (see normalise); similarities are exact
    float32 cosines of those rows."""
    n_rows = matrix.shape[0]
    if limit <= 0 or n_rows == 0:
        return []
    q = _unit(query, matrix.shape[1])
    scores = rough_scores(matrix, q)
    excluded = np.unique(np.fromiter(exclude, dtype=np.int64))
    excluded = excluded[(excluded >= 0) & (excluded < n_rows)]
    scores[excluded] = -np.inf
    n_candidates = min(n_rows, limit + RESCORE_MARGIN)
    if n_candidates < n_rows:
        candidates = np.argpartition(-scores, n_candidates - 1)[:n_candidates]
    else:
        candidates = np.arange(n_rows)
    candidates = candidates[np.isfinite(scores[candidates])]
    exact = matrix[candidates].astype(np.float32) @ q
    order = np.lexsort((candidates, -exact))[:limit]
    return [Neighbour(int(candidates[i]), float(exact[i])) for i in order]
