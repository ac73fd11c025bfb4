"""The vgg tagger's fast path without the channels that never fire (musicnn.Vgg.live_channels,
genreq/weights/vgg-msd-live.json, bench/pruned.py) computes what the whole tagger computes."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from helpers import SHARED_DATA
from torch import nn

from genreq.pretrained import musicnn

WIDTHS = (musicnn.MusicnnDims().vgg_filters,) * len(musicnn.Vgg.POOLS)
GTZAN = SHARED_DATA / "gtzan"


def _vgg_with_dead_channels(seed: int) -> musicnn.Vgg:
    """A random Vgg whose blocks 1-4 each have channels that can never fire (a
    bias far below anything the input can reach), with batch-norm shifts of both signs,
    so that the constant they pass on is not zero."""
    torch.manual_seed(seed)
    vgg = musicnn.build(musicnn.MusicnnDims(arch="vgg")).eval()
    with torch.no_grad():
        for b, (conv, bn) in enumerate(zip(vgg.convs, vgg.bns, strict=True)):
            bn.weight.copy_(torch.randn(bn.num_features))
            bn.bias.copy_(torch.randn(bn.num_features))
            bn.running_var.copy_(torch.rand(bn.num_features) + 0.5)
            if b < len(WIDTHS) - 1:
                conv.bias[[1, conv.out_channels - 2]] = -1e4
    return vgg


def _live(vgg: musicnn.Vgg, x: torch.Tensor) -> list[list[int]]:
    """Per block but the last, the channels whose ReLU passes anything on X."""
    live, h = [], vgg.input_bn(x.unsqueeze(1))
    with torch.no_grad():
        for conv, bn, pool in zip(vgg.convs, vgg.bns, vgg.POOLS, strict=True):
            pre = conv(h)
            live.append(torch.nonzero(pre.amax((0, 2, 3)) > 0).flatten().tolist())
            h = nn.functional.max_pool2d(bn(torch.relu(pre)), pool)
    return live[:-1]


def _blocks(vgg: musicnn.Vgg) -> list:
    return [(c.weight.detach(), c.bias.detach(), *musicnn._bn_affine(bn))
            for c, bn in zip(vgg.convs, vgg.bns, strict=True)]


def _run(vgg: musicnn.Vgg, blocks: list, x: torch.Tensor) -> torch.Tensor:
    """The reference graph (conv, ReLU, batch norm, max pool) on BLOCKS' weights."""
    h = vgg.input_bn(x.unsqueeze(1))
    for (weight, bias, scale, shift), pool in zip(blocks, vgg.POOLS, strict=True):
        h = torch.relu(nn.functional.conv2d(h, weight, bias, padding=1))
        h = nn.functional.max_pool2d(h * scale[:, None, None] + shift[:, None, None], pool)
    return h.permute(0, 2, 3, 1).flatten(1)


@pytest.mark.parametrize("seed", [0, 1])
def test_dropping_the_channels_that_never_fire_changes_no_output(seed):
    vgg = _vgg_with_dead_channels(seed)
    x = torch.rand(3, musicnn.PATCH_FRAMES, musicnn.N_MELS) * 5
    live = _live(vgg, x)
    assert all(1 not in k for k in live)  # the channels made dead, and any left dead
    small = musicnn.without_dead_channels(_blocks(vgg), live)
    # each pruned block: its live channels and one constant channel; the last whole
    assert [w.shape[0] for w, *_ in small] == [*(len(k) + 1 for k in live), WIDTHS[-1]]
    with torch.no_grad():
        want = vgg.reference_embed(x)
        torch.testing.assert_close(_run(vgg, small, x), want, atol=1e-4, rtol=1e-4)
        with torch.inference_mode():
            full = vgg.fast_embed(x)
            vgg.live_channels = live
            pruned = vgg.fast_embed(x)
    assert [s.shape[0] for _, s, *_ in vgg._fast_layers()[1:]] == [w.shape[0] for w, *_ in small]
    torch.testing.assert_close(pruned, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pruned, full, atol=1e-4, rtol=1e-4)


def test_dropping_them_without_their_constant_would_change_the_outputs():
    """The test above can fail: the dead channels' constant matters, borders included."""
    vgg = _vgg_with_dead_channels(0)
    x = torch.rand(2, musicnn.PATCH_FRAMES, musicnn.N_MELS) * 5
    small = musicnn.without_dead_channels(_blocks(vgg), _live(vgg, x))
    for b in range(1, len(small)):  # the next block's weights on the constant channel
        small[b][0][:, -1] = 0
    with torch.no_grad():
        assert not torch.allclose(_run(vgg, small, x), vgg.reference_embed(x), atol=1e-2)


def test_only_the_weights_the_channels_were_found_in_are_pruned():
    """The shipped list names the weights it holds for: vgg-msd's tagger, which the three
    vgg models share, is pruned, and any other weights (a fine-tuned or converted tagger,
    these random ones) keep every channel."""
    from genreq.predict import Classifier

    shipped = musicnn.shipped_live(Classifier.load("vgg-msd").model.tagger)
    assert shipped is not None and [len(k) for k in shipped] == [71, 53, 88, 81]
    for name in ("vgg-msd-fast", "vgg-msd-gru"):
        assert musicnn.shipped_live(Classifier.load(name).model.tagger) == shipped
    vgg = _vgg_with_dead_channels(0)
    assert musicnn.shipped_live(vgg) is None
    assert [s.shape[0] for _, s, *_ in vgg._fast_layers()[1:]] == list(WIDTHS)


def test_the_default_hears_with_and_without_them_alike():
    """On real clips (or the parity clip where they are absent), the default with its
    tagger pruned and whole: the same genres, tags and embeddings."""
    from genreq.predict import Classifier

    torch.set_num_threads(1)
    pruned, whole = Classifier.load("vgg-msd-fast"), Classifier.load("vgg-msd-fast")
    whole.model.tagger.prune_dead = False
    assert [s.shape[0] for _, s, *_ in pruned.model.tagger._fast_layers()[1:]] == [
        72, 54, 89, 82, 128]
    clips = [musicnn.parity_clip(10.0)]
    if (GTZAN / "labels.csv").exists():
        with open(GTZAN / "labels.csv", newline="") as f:
            clips += [GTZAN / r["path"] for r in list(csv.DictReader(f))[::25]]
    for clip in clips:
        if isinstance(clip, np.ndarray):
            got, want = pruned.classify_audio(clip), whole.classify_audio(clip)
        else:
            got, want = pruned.classify_file(clip), whole.classify_file(clip)
        assert got.genre == want.genre
        for a, b in ((got.probs, want.probs), (got.tags, want.tags)):
            assert a.keys() == b.keys()
            assert max(abs(a[k] - b[k]) for k in a) < 1e-5, clip
        np.testing.assert_allclose(got.embedding, want.embedding, atol=1e-4)
