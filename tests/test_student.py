"""The distilled crnn student (bench/student.py): a crnn whose embedding is a projection
into its teacher's embedding space and which outputs the teacher's 50 MSD tags, stored
and served by the ordinary checkpoint and prediction paths."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers import REPO

from genreq import checkpoint, features, models
from genreq.errors import ModelError
from genreq.predict import Classifier
from genreq.pretrained.musicnn import MSD_TAG_NAMES

sys.path.insert(0, str(REPO / "bench"))
import crossval  # noqa: E402  (bench/ is not a package)
import student  # noqa: E402

SMALL = {"channels": (4, 4, 4, 8), "hidden": 16}


def _student(n_embed: int = 12, n_tags: int = 50) -> models.CRNN:
    torch.manual_seed(0)
    return models.build("crnn", 3, n_embed=n_embed, n_tags=n_tags, **SMALL).eval()


def _song(seconds: float = 8.0) -> np.ndarray:
    rate = features.SAMPLE_RATE
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


def test_a_student_reads_its_projection_and_gives_the_msd_tags():
    model = _student()
    x = torch.randn(2, 1, model.dims.n_bins, model.dims.width) * 20 - 40
    with torch.no_grad():
        out = model.outputs(x)
        torch.testing.assert_close(out.logits, model(x))
        torch.testing.assert_close(out.embedding, model.project(model.pooled(x)))
        torch.testing.assert_close(out.tag_logits, model.tags(out.embedding))
    assert out.embedding.shape == (2, 12) == (2, model.head.in_features)
    assert out.tag_logits.shape == (2, 50) and model.tag_names == MSD_TAG_NAMES


def test_a_student_with_another_tag_count_is_refused():
    with pytest.raises(ModelError, match="MSD tags"):
        models.build("crnn", 3, n_embed=8, n_tags=7, **SMALL)


def test_a_student_checkpoint_serves_tags_and_its_embedding(tmp_path):
    model = _student()
    path = tmp_path / "student.pt"
    checkpoint.save(path, model, "crnn", ["a", "b", "c"], features.FeatureSpec())
    assert torch.load(path, weights_only=True)["dims"]["n_tags"] == 50
    clf = Classifier.load(path)
    prediction = clf.classify_audio(_song())
    assert clf.name == "crnn" and list(prediction.tags) == list(MSD_TAG_NAMES)
    assert all(0.0 < p < 1.0 for p in prediction.tags.values())
    batch = clf.chunks_of_excerpts([_song()])
    with torch.no_grad():
        expected = torch.sigmoid(model.tags(model.penultimate(torch.from_numpy(batch)))).mean(0)
    np.testing.assert_allclose(list(prediction.tags.values()), expected.numpy(), atol=1e-5)
    assert prediction.embedding.shape == (12,)


def test_a_crnn_checkpoint_without_student_dims_loads_as_before(tmp_path):
    torch.manual_seed(0)
    plain = models.build("crnn", 3, **SMALL).eval()
    path = tmp_path / "plain.pt"
    checkpoint.save(path, plain, "crnn", ["a", "b", "c"], features.FeatureSpec())
    ckpt = torch.load(path, weights_only=True)
    for key in ("n_embed", "n_tags"):  # as a checkpoint written before they existed
        del ckpt["dims"][key]
    torch.save(ckpt, path)
    loaded, _ = checkpoint.load(path)
    assert not hasattr(loaded, "project") and loaded.tag_names == ()
    x = torch.randn(2, 1, plain.dims.n_bins, plain.dims.width)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), plain(x))
        assert loaded.outputs(x).tag_logits is None


def test_the_folded_head_classifies_as_the_cross_validated_one():
    rng = np.random.default_rng(0)
    chunk_x = [rng.normal(size=(5, 6)) + (i % 3) for i in range(30)]
    y = np.arange(30) % 3
    head = crossval.fit_head(chunk_x, y, 3, c=1.0, balanced=True)
    weight, bias = student.fold_head(head, temperature=1.7)
    want = crossval.scaled(head, 1.7).track_probs(chunk_x, None)
    for x, expected in zip(chunk_x, want, strict=True):
        logits = x @ weight.T + bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose((p / p.sum(1, keepdims=True)).mean(0), expected, atol=1e-9)


def test_excerpts_are_spread_over_the_middle_of_a_track():
    starts = student.excerpt_starts(200.0, 3.6, 12)
    assert len(starts) == 12 and starts[0] == pytest.approx(10.0)
    assert starts[-1] + 3.6 == pytest.approx(190.0)
    assert np.all(np.diff(starts) > 0)
    short = student.excerpt_starts(4.0, 3.6, 4)  # nothing to spread: all at the start
    assert np.all(short == short[0])


def test_the_student_recipe_stays_under_one_gmac_per_clip():
    model = student.build_student(10, 256, 50)
    assert model.tag_names == MSD_TAG_NAMES and model.head.in_features == 256
    assert models.count_macs(model) * 10 < 1e9  # 10 chunks of a 30-s clip
