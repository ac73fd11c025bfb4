"""The default's pruned ears (bench/pruned.py): vgg's tagger without the channels that
never fire computes what the whole tagger computes."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, SHARED_DATA

from genreq import checkpoint, models
from genreq.pretrained import musicnn

sys.path.insert(0, str(REPO / "bench"))
import pruned  # noqa: E402  (bench/ is not a package)

WIDTHS = (6, 6, 8, 8, 8)
GTZAN = SHARED_DATA / "gtzan"


def _vgg_with_dead_channels(seed: int) -> tuple[musicnn.Vgg, list[list[int]]]:
    """A small random Vgg whose blocks 1-4 each have channels that can never fire (a
    bias far below anything the input can reach), with batch-norm shifts of both signs,
    so that the constant they pass on is not zero."""
    torch.manual_seed(seed)
    vgg = musicnn.build(musicnn.MusicnnDims(arch="vgg", vgg_channels=WIDTHS)).eval()
    live = []
    with torch.no_grad():
        for b, (conv, bn) in enumerate(zip(vgg.convs, vgg.bns, strict=True)):
            bn.weight.copy_(torch.randn(bn.num_features))
            bn.bias.copy_(torch.randn(bn.num_features))
            bn.running_var.copy_(torch.rand(bn.num_features) + 0.5)
            dead = [] if b == len(WIDTHS) - 1 else [1, conv.out_channels - 2]
            conv.bias[dead] = -1e4
            live.append([c for c in range(conv.out_channels) if c not in dead])
    return vgg, live


@pytest.mark.parametrize("seed", [0, 1])
def test_pruning_the_channels_that_never_fire_changes_no_output(seed):
    vgg, killed = _vgg_with_dead_channels(seed)
    x = torch.rand(3, musicnn.PATCH_FRAMES, musicnn.N_MELS) * 5
    with torch.no_grad():
        peaks = pruned.peak_inputs(vgg, x)
    # Found from the input: the channels made dead, and any random weights left dead.
    live = [torch.nonzero(p > 0).flatten().tolist() for p in peaks]
    assert all(set(found) <= set(alive) for found, alive in zip(live, killed, strict=True))
    live[-1] = list(range(WIDTHS[-1]))  # the embedding keeps every channel

    small = pruned.prune(vgg, live)
    # each pruned block: its live channels and one constant channel
    assert small.dims.vgg_widths() == (*(len(k) + 1 for k in live[:-1]), WIDTHS[-1])
    with torch.inference_mode():
        want = vgg.reference_embed(x)
        for got in (small.reference_embed(x), small.fast_embed(x)):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(small.out(want), vgg.out(want))


def test_dropping_them_without_their_constant_would_change_the_outputs():
    """The test above can fail: the dead channels' constant matters, borders included."""
    vgg, live = _vgg_with_dead_channels(0)
    x = torch.rand(2, musicnn.PATCH_FRAMES, musicnn.N_MELS) * 5
    small = pruned.prune(vgg, live)
    with torch.no_grad():
        for b in range(1, len(WIDTHS)):  # the constant channel's weights in each next block
            small.convs[b].weight[:, -1] = 0
        assert not torch.allclose(small.reference_embed(x), vgg.reference_embed(x), atol=1e-2)


def test_the_last_block_is_the_embedding_and_keeps_every_channel():
    vgg, live = _vgg_with_dead_channels(0)
    live[-1] = live[-1][:-1]
    with pytest.raises(ValueError, match="last block"):
        pruned.prune(vgg, live)


# ---------------------------------------------------------------- the shipped default


def _full_ears_default():
    """The shipped vgg-msd-fast head on vgg-msd's whole tagger: the default as it was."""
    from genreq.model_files import WEIGHTS_DIR
    from genreq.predict import Classifier

    path = WEIGHTS_DIR / "vgg-msd-fast.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    full = models.build("vgg-msd-fast", len(ckpt["genres"]), channels=()).eval()
    head = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("tagger.")}
    missing, unexpected = full.load_state_dict(head, strict=False)
    assert not unexpected and all(k.startswith("tagger.") for k in missing)
    return Classifier(full, ckpt, path)


def test_the_shipped_default_hears_what_the_whole_tagger_hears():
    """On real clips (or the parity clip where they are absent) the pruned ears give
    the genres, the 50 tags and the embedding the whole tagger gives with the same head."""
    from genreq.predict import Classifier

    torch.set_num_threads(1)
    shipped, full = Classifier.load("vgg-msd-fast"), _full_ears_default()
    assert shipped.model.tagger.dims.vgg_widths() == models.VggMSDFast.default_channels
    assert full.model.tagger.dims.vgg_widths() == (128,) * 5
    clips = [musicnn.parity_clip(10.0)]
    if (GTZAN / "labels.csv").exists():
        with open(GTZAN / "labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        clips += [GTZAN / r["path"] for r in rows[::25]]
    for clip in clips:
        if isinstance(clip, Path):
            got, want = shipped.classify_file(clip), full.classify_file(clip)
        else:
            got, want = shipped.classify_audio(clip), full.classify_audio(clip)
        assert got.genre == want.genre
        for a, b in ((got.probs, want.probs), (got.tags, want.tags)):
            assert a.keys() == b.keys()
            assert max(abs(a[k] - b[k]) for k in a) < 1e-4, clip
        np.testing.assert_allclose(got.embedding, want.embedding, atol=1e-3)


def test_a_head_only_checkpoint_from_before_still_loads_the_whole_tagger(tmp_path: Path):
    """A vgg-msd-fast head trained before the ears were pruned (channels ()) carries no
    tagger and reads vgg-msd.pt's, as it was trained to."""
    model = models.build("vgg-msd-fast", n_classes=3, channels=()).eval()
    path = tmp_path / "old.pt"
    checkpoint.save(path, model, "vgg-msd-fast", ["a", "b", "c"], model.default_features())
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert not any(k.startswith("tagger.") for k in saved["state_dict"])
    loaded, _ = checkpoint.load(path)
    base = models.build("vgg-msd", n_classes=3).eval()
    chunks = torch.from_numpy(musicnn.parity_patches()).transpose(1, 2)[:, None]
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed(chunks), base.embed(chunks))
