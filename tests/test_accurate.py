"""vgg-msd's fast inference path against the reference path it replaces: the torch mel
front end against librosa's, Vgg.fast_embed against the layers as trained, and a whole
classification on real clips (tolerances, never timings: bench/accurate.py measures speed)."""
from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from genreq import features
from genreq.pretrained import musicnn

REPO = Path(__file__).resolve().parents[1]
GTZAN = REPO.parent / "shared" / "data" / "gtzan"


def _clips(n: int) -> list[Path]:
    if not (GTZAN / "labels.csv").exists():
        pytest.skip(f"shared clips not found at {GTZAN}")
    with open(GTZAN / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [GTZAN / r["path"] for r in rows[:: len(rows) // n][:n]]


@pytest.mark.parametrize("seconds", [3.024, 30.0, 0.01, 0.3])
def test_torch_log_mel_is_librosas(seconds):
    rate = musicnn.SAMPLE_RATE
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    audio = (0.4 * np.sin(2 * np.pi * 330 * t) + 0.1 * rng.standard_normal(t.size))
    audio = audio.astype(np.float32)
    ours = features.musicnn_log_mel(audio, musicnn.FEATURE_SPEC)
    with pytest.warns(UserWarning) if seconds < 0.05 else contextlib.nullcontext():
        theirs = features.musicnn_log_mel_librosa(audio, musicnn.FEATURE_SPEC)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_musicnn_features_do_not_import_librosa():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from genreq import features as F; "
            "from genreq.pretrained.musicnn import FEATURE_SPEC as S; "
            "F.extract(np.zeros(16000, np.float32), S); print('librosa' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _random_vgg(seed: int) -> musicnn.Vgg:
    """A Vgg with random weights and batch norms whose scales have both signs, so that
    the pooled-first min/max folding is exercised on every block."""
    torch.manual_seed(seed)
    vgg = musicnn.Vgg().eval()
    for bn in (vgg.input_bn, *vgg.bns):
        n = bn.num_features
        bn.weight.data = torch.randn(n)  # negative scales included
        bn.bias.data = torch.randn(n) * 0.1
        bn.running_mean.data = torch.randn(n) * 0.1
        bn.running_var.data = torch.rand(n) + 0.5
    return vgg


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_fast_embed_is_the_reference_on_random_weights(batch):
    vgg = _random_vgg(batch)
    assert any((bn.weight < 0).any() and (bn.weight > 0).any() for bn in vgg.bns)
    x = torch.rand(batch, musicnn.PATCH_FRAMES, musicnn.N_MELS) * 5
    with torch.inference_mode():
        ref, fast = vgg.reference_embed(x), vgg.fast_embed(x)
        assert vgg.embed(x).equal(fast)  # inference takes the fast path
    assert fast.shape == ref.shape
    scale = ref.abs().max().item()
    torch.testing.assert_close(fast, ref, atol=1e-5 * max(1.0, scale), rtol=1e-4)


def test_training_and_gradients_take_the_reference_layers():
    vgg = _random_vgg(7)
    x = torch.rand(2, musicnn.PATCH_FRAMES, musicnn.N_MELS)
    with mock.patch.object(musicnn.Vgg, "fast_embed", side_effect=AssertionError):
        vgg.embed(x)  # autograd on: the reference
        vgg.train()
        with torch.no_grad():
            vgg.embed(x)  # training mode: the reference


def test_fast_embed_follows_new_weights():
    vgg = _random_vgg(3)
    x = torch.rand(2, musicnn.PATCH_FRAMES, musicnn.N_MELS) * 5
    with torch.inference_mode():
        before = vgg.fast_embed(x)
    vgg.load_state_dict(_random_vgg(4).state_dict())
    with torch.no_grad():
        vgg.convs[1].weight.mul_(0.5)  # an in-place change, too
        after, ref = vgg.fast_embed(x), vgg.reference_embed(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, ref, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def vgg_msd():
    from genreq.predict import Classifier

    torch.set_num_threads(1)
    return Classifier.load("vgg-msd")


def _reference_path():
    """Classification as genreq ran vgg-msd before the fast path."""
    return (mock.patch.object(musicnn.Vgg, "embed", musicnn.Vgg.reference_embed),
            mock.patch.object(features, "musicnn_log_mel", features.musicnn_log_mel_librosa))


def test_vgg_msd_outputs_are_unchanged_on_real_clips(vgg_msd):
    for path in _clips(4):
        fast = vgg_msd.classify_file(path)
        patches = _reference_path()
        with patches[0], patches[1]:
            ref = vgg_msd.classify_file(path)
        assert fast.genre == ref.genre, path
        for got, want in ((fast.probs, ref.probs), (fast.tags, ref.tags)):
            assert got.keys() == want.keys()
            assert max(abs(got[k] - want[k]) for k in got) < 1e-4, path
        np.testing.assert_allclose(fast.embedding, ref.embedding, atol=1e-3)


def _random_musicnn(seed: int) -> musicnn.Musicnn:
    """A Musicnn with random weights and front-end batch norms of both signs, so that
    the min/max folding is exercised on every branch."""
    torch.manual_seed(seed)
    model = musicnn.Musicnn().eval()
    for bn in (model.input_bn, *(branch.bn for branch in model.front)):
        n = bn.num_features
        bn.weight.data = torch.randn(n)
        bn.bias.data = torch.randn(n) * 0.1
        bn.running_mean.data = torch.randn(n) * 0.1
        bn.running_var.data = torch.rand(n) + 0.5
    return model


@pytest.mark.parametrize("batch", [1, 3])
def test_musicnn_fast_embed_is_the_reference_on_random_weights(batch):
    model = _random_musicnn(batch)
    x = torch.rand(batch, musicnn.PATCH_FRAMES, musicnn.N_MELS) * 5
    with torch.inference_mode():
        ref, fast = model.reference_embed(x), model.fast_embed(x)
        assert model.embed(x).equal(fast)  # inference takes the fast path
    scale = ref.abs().max().item()
    torch.testing.assert_close(fast, ref, atol=1e-5 * max(1.0, scale), rtol=1e-4)


def test_musicnn_fast_embed_follows_new_weights_and_training_takes_the_reference():
    model = _random_musicnn(5)
    x = torch.rand(2, musicnn.PATCH_FRAMES, musicnn.N_MELS) * 5
    with torch.inference_mode():
        before = model.fast_embed(x)
    with torch.no_grad():
        model.front[0].conv.weight.mul_(0.5)
        after, ref = model.fast_embed(x), model.reference_embed(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, ref, atol=1e-4, rtol=1e-4)
    with mock.patch.object(musicnn.Musicnn, "fast_embed", side_effect=AssertionError):
        model.embed(x)  # autograd on: the reference


def test_musicnn_msd_outputs_are_unchanged_on_real_clips():
    from genreq.predict import Classifier

    torch.set_num_threads(1)
    classifier = Classifier.load("musicnn-msd")
    for path in _clips(4):
        fast = classifier.classify_file(path)
        with mock.patch.object(musicnn.Musicnn, "embed", musicnn.Musicnn.reference_embed):
            ref = classifier.classify_file(path)
        assert fast.genre == ref.genre, path
        for got, want in ((fast.probs, ref.probs), (fast.tags, ref.tags)):
            assert max(abs(got[k] - want[k]) for k in got) < 1e-5, path
        np.testing.assert_allclose(fast.embedding, ref.embedding, atol=1e-4)
