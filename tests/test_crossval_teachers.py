"""bench/crossval.py's teacher candidates: the pure pieces (paired test, logit adjustment,
same-genre mixup, chunk weights), on small synthetic embeddings."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import crossval  # noqa: E402  (bench/ is not a package)


def _clips(n_per_genre=(6, 3, 2), dim=4, seed=0):
    """Chunk embeddings whose first coordinate is the genre index, the rest noise."""
    rng = np.random.default_rng(seed)
    chunk_x, y = [], []
    for genre, count in enumerate(n_per_genre):
        for _ in range(count):
            x = rng.normal(size=(int(rng.integers(3, 7)), dim))
            x[:, 0] = genre
            chunk_x.append(x)
            y.append(genre)
    return chunk_x, np.array(y)


def test_mcnemar_exact_is_the_two_sided_binomial_tail():
    assert crossval.mcnemar_exact(0, 0) == 1.0
    assert crossval.mcnemar_exact(5, 0) == crossval.mcnemar_exact(0, 5) == 2 / 32
    assert crossval.mcnemar_exact(13, 8) == crossval.mcnemar_exact(8, 13)
    assert 0.38 < crossval.mcnemar_exact(13, 8) < 0.39
    assert crossval.mcnemar_exact(3, 3) == 1.0


def test_logit_adjustment_only_shifts_the_bias_by_tau_log_prior():
    chunk_x, y = _clips()
    t = crossval.Teacher("t", level="track", balanced=False, adjust=True)
    heads = crossval.fit_linear(t, chunk_x, y, 3, c=1.0, seed=0)
    assert set(heads) == set(crossval.TAU_GRID)
    log_prior = np.log(np.bincount(y) / len(y))
    for tau, head in heads.items():
        np.testing.assert_array_equal(head.weight, heads[0.0].weight)
        np.testing.assert_allclose(head.bias, heads[0.0].bias - tau * log_prior)
    # The rarest genre gains probability as tau grows.
    rare = [heads[tau].track_probs(chunk_x, None)[:, 2].mean() for tau in crossval.TAU_GRID]
    assert rare == sorted(rare)
    plain = crossval.fit_linear(replace(t, adjust=False), chunk_x, y, 3, c=1.0, seed=0)
    assert list(plain) == [0.0]


def test_same_genre_mixes_stay_inside_their_genre():
    chunk_x, y = _clips()
    mixes = crossval.same_genre_mixes(chunk_x, y, 2, np.random.default_rng(1))
    for x, m, genre in zip(chunk_x, mixes, y, strict=True):
        assert m.shape == (2 * len(x), x.shape[1])
        np.testing.assert_allclose(m[:, 0], genre)  # a mix of two chunks of this genre


def test_chunk_samples_weigh_each_track_as_its_genre_weight():
    chunk_x, y = _clips()
    for mixup in (0, 1):
        xs, ys, ws = crossval.chunk_samples(chunk_x, y, 3, True, mixup, np.random.default_rng(0))
        assert len(xs) == len(ys) == len(ws) == sum(len(x) for x in chunk_x) * (1 + mixup)
        per_genre = [ws[ys == g].sum() for g in range(3)]
        np.testing.assert_allclose(per_genre, len(y) / 3)  # balanced: genres weigh the same


def test_the_track_teacher_with_logit_adjustment_tunes_as_genreq_train_does():
    """bench/crossval.py's track_<tagger>_embedding_balanced_la is genreq train
    --tune-head's head: the same grids (genreq.train's) and the same choice of C, tau and
    temperature with the groups as inner folds."""
    from genreq import train

    assert crossval.TEACHER_C_GRID == train.C_GRID and crossval.TAU_GRID == train.TAU_GRID
    assert crossval.T_GRID == train.T_GRID and set(crossval.C_GRID) < set(train.C_GRID)
    chunk_x, y = _clips((6, 6, 3))
    groups = np.array(["a", "b", "c"] * 5)
    teacher = {t.name: t for t in crossval.teacher_candidates()}[
        "track_vgg-msd_embedding_balanced_la"
    ]
    tuned = train.tune_head(chunk_x, y, groups, 3)
    assert crossval.tune_teacher(teacher, chunk_x, y, groups, 3, seed=0) == (
        tuned.param,
        tuned.setting,
        tuned.temperature,
        tuned.record,
    )
