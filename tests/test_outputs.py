"""One forward pass gives the genre logits, the embedding the head reads and, for the
pretrained taggers, their 50 MSD tag probabilities under readable names; a Classifier's
Prediction carries them for every model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genreq import features, models
from genreq.predict import Classifier
from genreq.pretrained import musicnn

SMALL = {"channels": (4, 4, 8, 8)}  # the conv architectures, built small and untrained


def _inputs(model: models.GenreModel, n: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    scale = 0.1 if model.feature_kind == "raw" else 10.0
    return scale * torch.randn(n, 1, model.dims.n_bins, model.dims.width)


@pytest.mark.parametrize("arch", ["raw", "stft-cnn", "crnn-paper", "crnn"])
def test_outputs_are_forward_plus_what_the_head_reads(arch):
    kwargs = {"channels": (4, 4, 4, 4, 8, 8)} if arch == "raw" else SMALL
    model = models.build(arch, n_classes=4, **kwargs).eval()
    x = _inputs(model)
    with torch.no_grad():
        out = model.outputs(x)
        torch.testing.assert_close(out.logits, model(x))
        assert out.embedding.shape == (3, model.head.in_features)
        torch.testing.assert_close(model.head(out.embedding), out.logits)
    assert out.tag_logits is None and model.tag_names == ()


@pytest.mark.parametrize("arch", ["vgg-msd", "musicnn-msd", "vgg-msd-gru"])
def test_pretrained_models_give_the_taggers_own_tag_outputs(arch):
    model = models.build(arch, n_classes=3).eval()
    chunks = torch.from_numpy(musicnn.parity_patches()).transpose(1, 2)[:, None]
    with torch.no_grad():
        out = model.outputs(chunks)
        torch.testing.assert_close(out.logits, model(chunks))
        # the tagger on its own, as upstream lays the input out: (batch, time, mel)
        torch.testing.assert_close(out.tag_logits, model.tagger(chunks[:, 0].transpose(1, 2)))
    assert out.tag_logits.shape == (4, 50)
    final = model.out if model.per_track else model.head
    assert out.embedding.shape == (out.logits.shape[0], final.in_features)


def test_readable_tag_names():
    names = musicnn.MSD_TAG_NAMES
    assert len(names) == len(set(names)) == 50
    for readable in ("hip-hop", "progressive rock", "female vocalists", "house", "r&b", "mellow"):
        assert readable in names
    assert all(name == name.lower() for name in names)
    assert names.index("hip-hop") == musicnn.MSD_TAGS.index("Hip-Hop")  # output order kept


@pytest.fixture(scope="module")
def crnn() -> Classifier:
    return Classifier.load("crnn")


def _song(seconds: float = 30.0, rate: int = features.SAMPLE_RATE) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * rate)) / rate
    beat = (np.sin(2 * np.pi * 2 * t) > 0.9) * rng.standard_normal(t.size)
    return (0.2 * np.sin(2 * np.pi * 220 * t) + 0.2 * beat).astype(np.float32)


def test_the_default_prediction_carries_its_embedding(crnn):
    audio = _song()
    prediction = crnn.classify_audio(audio)
    batch = crnn.chunks_of_excerpts([audio])
    probs, embeddings, tags = crnn.chunk_outputs(batch)
    np.testing.assert_allclose(probs, crnn.chunk_probs(batch), atol=1e-6)  # the same pass
    assert tags is None and prediction.tags == {}
    assert prediction.embedding.dtype == np.float32
    assert prediction.embedding.shape == (crnn.model.head.in_features,)
    np.testing.assert_allclose(prediction.embedding, embeddings.mean(0), atol=1e-6)
    assert prediction.embedding_model == f"crnn@{crnn.version}"
    # the prediction itself did not change: the mean of the chunks' probabilities
    assert list(prediction.probs.values()) == pytest.approx(list(probs.mean(0)), abs=1e-6)


def test_a_tagger_prediction_carries_readable_tags():
    clf = Classifier.load("vgg-msd")
    clip = musicnn.parity_clip(10.0)
    prediction = clf.classify_audio(clip)
    assert list(prediction.tags) == list(musicnn.MSD_TAG_NAMES)
    with torch.no_grad():
        x = torch.from_numpy(clf.chunks_of_excerpts([clip]))
        expected = torch.sigmoid(clf.model.tagger(x[:, 0].transpose(1, 2))).mean(0)
    np.testing.assert_allclose(list(prediction.tags.values()), expected.numpy(), atol=1e-5)
    assert prediction.embedding.shape == (256,)
    assert prediction.embedding_model.startswith("vgg-msd@")


def test_different_sounds_get_different_embeddings(crnn):
    rate = features.SAMPLE_RATE
    t = np.arange(30 * rate) / rate
    low = (0.3 * np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    a, b = crnn.classify_audio(_song()).embedding, crnn.classify_audio(low).embedding
    again = crnn.classify_audio(_song()).embedding
    np.testing.assert_allclose(a, again, atol=1e-6)  # deterministic
    assert np.linalg.norm(a - b) > 0.1 * np.linalg.norm(a)
