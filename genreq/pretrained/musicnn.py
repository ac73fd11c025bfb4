"""The pretrained musicnn taggers (Pons & Serra 2019) as PyTorch modules.

Written from the paper, the upstream TF1 graph and the tensor shapes of the checkpoints
in the `musicnn` 0.1.0 wheel (ISC licence, see genreq/weights/musicnn_LICENSE.md); the
weights are converted by tools/convert_musicnn.py. Both taggers see 3-s patches of a
16 kHz log-mel spectrogram laid out (batch, time, mel) and output 50 tag logits.

Details that must match the trained graph, or the outputs drift:
- every batch norm uses TF's epsilon 1e-3, not PyTorch's 1e-5;
- TF "same" padding puts the extra zero after, not before: (63, 64) for a 128 kernel;
- musicnn's back-end interleaves max and mean pooling (max_0, mean_0, max_1, ...);
- the trained MSD_vgg graph pools (4,1), (1,4), (2,2), (2,2), (4,4), not what the
  package's models.py says, and flattens time x mel x channel before its dense layer.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genreq import features
from genreq.pretrained import tags

SAMPLE_RATE = 16000  # Hz
N_FFT = 512  # samples per analysis window (32 ms)
HOP_LENGTH = 256  # samples between frames (16 ms)
N_MELS = 96  # mel bands
PATCH_FRAMES = 187  # frames per network input (3 s), librosa.time_to_frames(3) + 1
BN_EPS = 1e-3  # TF1 layers.batch_normalization default
FAST_PATCHES = 2  # patches per step of Vgg.fast_embed: lower peak memory, and no slower
WINOGRAD_BLOCKS = 3  # Vgg.fast_embed: blocks 1 and 2 by Winograd, the smaller ones direct
LOG_SCALE = features.MUSICNN_LOG_SCALE  # log10(LOG_SCALE * mel + 1)
FEATURE_SPEC = features.FeatureSpec(
    kind="musicnn", sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS,
    chunk_frames=PATCH_FRAMES,
)

# The tag vocabulary lives apart so that querying tags never loads torch.
MSD_TAGS = tags.MSD_TAGS
MSD_TAG_NAMES = tags.MSD_TAG_NAMES


# ---------------------------------------------------------------------------- input


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) float32 log10(10000·mel + 1) of 16 kHz mono audio, as musicnn was
    trained on (one implementation: genreq.features.musicnn_log_mel)."""
    return features.musicnn_log_mel(audio, FEATURE_SPEC).T


def patches(mel: np.ndarray, max_patches: int | None = None) -> np.ndarray:
    """(n, PATCH_FRAMES, N_MELS) non-overlapping patches of a log-mel, as upstream cuts
    them; a clip shorter than one patch is padded with silence (zeros)."""
    if mel.shape[0] < PATCH_FRAMES:
        mel = np.pad(mel, ((0, PATCH_FRAMES - mel.shape[0]), (0, 0)))
    n = mel.shape[0] // PATCH_FRAMES
    if max_patches is not None and n > max_patches:  # evenly spread over the clip
        starts = np.linspace(0, mel.shape[0] - PATCH_FRAMES, max_patches).round().astype(int)
    else:
        starts = np.arange(n) * PATCH_FRAMES
    return np.stack([mel[s:s + PATCH_FRAMES] for s in starts]).astype(np.float32)


def parity_clip(seconds: float = 3.2) -> np.ndarray:
    """A deterministic 16 kHz test clip: three harmonic notes over a click track."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    notes = sum(
        0.15 / k * np.sin(2 * np.pi * k * f0 * t) for f0 in (220.0, 277.2, 329.6) for k in (1, 2, 3)
    )
    click_gate = np.where((np.arange(t.size) % (SAMPLE_RATE // 2)) < 64, 0.5, 0.0)
    clicks = click_gate * np.sin(2 * np.pi * 3000 * t)
    return (notes + clicks).astype(np.float32)


def parity_patches() -> np.ndarray:
    """(4, PATCH_FRAMES, N_MELS) fixed inputs for parity checks against TensorFlow: a
    smooth pattern, a hash-like texture and a loud ramp built from integer arithmetic
    (exactly reproducible, in the 0-5 range real log-mels take), then the first patch of
    `log_mel(parity_clip())`, which also depends on librosa's mel filters."""
    t = np.arange(PATCH_FRAMES, dtype=np.int64)[:, None]
    f = np.arange(N_MELS, dtype=np.int64)[None, :]
    smooth = 2.0 + 1.5 * np.sin(2 * np.pi * t / 23.0) * np.cos(2 * np.pi * f / 17.0)
    texture = ((t * 7919 + f * 104729 + t * f * 31) % 1009) / 1009.0 * 4.0
    ramp = 5.0 * (t + f) / (PATCH_FRAMES + N_MELS) + ((t % 8) == 0) * 1.0
    clip = patches(log_mel(parity_clip()))[0]
    return np.stack([smooth, texture, ramp, clip]).astype(np.float32)


# ---------------------------------------------------------------------------- models


@dataclass(frozen=True)
class MusicnnDims:
    arch: str = "musicnn"  # "musicnn" or "vgg"
    n_tags: int = 50
    n_mels: int = N_MELS
    timbral_filters: int = 204  # int(1.6 * 128)
    temporal_filters: int = 51  # int(1.6 * 32)
    midend_filters: int = 64
    backend_units: int = 200
    vgg_filters: int = 128


def _bn2d(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)


def _bn1d(c: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(c, eps=BN_EPS)


class _FrontBranch(nn.Module):
    """Conv over (time, mel) -> ReLU -> BN -> max over mel, giving (batch, channels, time).
    `time_pad` is (before, after): the timbral branches pad 3+3 by hand upstream, the
    temporal ones use TF "same" padding."""

    def __init__(self, filters: int, kernel: tuple[int, int], time_pad: tuple[int, int]):
        super().__init__()
        self.time_pad = time_pad
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _bn2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (0, 0, *self.time_pad))
        return self.bn(torch.relu(self.conv(x))).amax(dim=3)


class _MidConv(nn.Module):
    """Conv1d over time (k=7, zero padding 3) -> ReLU -> BN."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 7, padding=3)
        self.bn = _bn1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.relu(self.conv(x)))


def _same_pad(kernel: int) -> tuple[int, int]:
    """TF "same" padding for stride 1: the odd zero goes after."""
    return (kernel - 1) // 2, kernel // 2


class Musicnn(nn.Module):
    """musicnn: musically motivated front-end (timbral + temporal filters), a residual
    mid-end of 1-D convolutions, global max/mean pooling and a dense back-end."""

    def __init__(self, dims: MusicnnDims = MusicnnDims()):
        super().__init__()
        self.dims = dims
        m = dims.n_mels
        self.input_bn = _bn2d(1)
        self.front = nn.ModuleList([
            _FrontBranch(dims.timbral_filters, (7, int(0.4 * m)), (3, 3)),
            _FrontBranch(dims.timbral_filters, (7, int(0.7 * m)), (3, 3)),
            _FrontBranch(dims.temporal_filters, (128, 1), _same_pad(128)),
            _FrontBranch(dims.temporal_filters, (64, 1), _same_pad(64)),
            _FrontBranch(dims.temporal_filters, (32, 1), _same_pad(32)),
        ])
        front_channels = 2 * dims.timbral_filters + 3 * dims.temporal_filters
        self.mid = nn.ModuleList([
            _MidConv(front_channels, dims.midend_filters),
            _MidConv(dims.midend_filters, dims.midend_filters),
            _MidConv(dims.midend_filters, dims.midend_filters),
        ])
        pooled = 2 * (front_channels + 3 * dims.midend_filters)
        self.pool_bn = _bn1d(pooled)
        self.dense = nn.Linear(pooled, dims.backend_units)
        self.dense_bn = _bn1d(dims.backend_units)
        self.out = nn.Linear(dims.backend_units, dims.n_tags)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, mel) log-mel patches -> (batch, backend_units) "penultimate"
        features (after the dense layer's ReLU and batch norm, as upstream returns them).

        Inference (eval mode, no autograd) takes the fast path, `fast_embed`; training
        and anything that needs gradients the layers as written, `reference_embed`."""
        if self.training or torch.is_grad_enabled():
            return self.reference_embed(x)
        return self.fast_embed(x)

    def reference_embed(self, x: torch.Tensor) -> torch.Tensor:
        """The graph as trained."""
        x = self.input_bn(x.unsqueeze(1))
        front = torch.cat([branch(x) for branch in self.front], dim=1)  # (B, 561, T)
        return self._mid_and_back(front)

    def _mid_and_back(self, front: torch.Tensor) -> torch.Tensor:
        h1 = self.mid[0](front)
        h2 = self.mid[1](h1) + h1
        h3 = self.mid[2](h2) + h2
        feats = torch.cat([front, h1, h2, h3], dim=1)  # (B, 753, T)
        pooled = torch.stack([feats.amax(dim=2), feats.mean(dim=2)], dim=2).flatten(1)
        return self.dense_bn(torch.relu(self.dense(self.pool_bn(pooled))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, mel) -> (batch, n_tags) logits."""
        return self.out(self.embed(x))

    def fast_embed(self, x: torch.Tensor) -> torch.Tensor:
        """`reference_embed`'s function (equal to float rounding, tests/test_accurate.py),
        computed in less time on a CPU. Only the front end changes (the mid-end and
        back-end cost little):
        - each branch takes its max over mel first: as in `Vgg.fast_embed`, the max
          commutes with ReLU and with the batch norm's affine map (a min where its scale
          is negative, folded into the filters' sign), so ReLU and batch norm run on
          (batch, time, channels) instead of a tensor 30 to 96 times larger;
        - the timbral filters (7 x 38 and 7 x 67 over time x mel, one input channel)
          are products in the frequency domain of the mel axis: a real FFT of each input
          row, per frequency bin one matrix product over the 7 time taps, then the
          inverse transform, only at the mel positions the valid convolution has, as one
          matrix product: about a third of the direct convolution's multiplications;
        - the temporal filters (128, 64, 32 x 1) are one matrix product each over a
          strided view of the input (no copy per mel band).
        """
        layers = self._fast_layers()
        return torch.cat([self._fast_patches(x[i:i + FAST_PATCHES], layers)
                          for i in range(0, x.shape[0], FAST_PATCHES)])

    def _fast_layers(self) -> dict:
        """fast_embed's weights, prepared once and again whenever a weight changes."""
        key = _weights_key(self.input_bn, *self.front)
        cached = getattr(self, "_fast_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        layers: dict = {"input": _bn_affine(self.input_bn), "timbral": [], "temporal": []}
        for branch in self.front:
            scale, shift = _bn_affine(branch.bn)
            sign = torch.where(scale < 0, -1.0, 1.0)
            weight = branch.conv.weight[:, 0] * sign[:, None, None]  # (K, time, mel)
            post = (branch.conv.bias * sign, sign, scale, shift)
            if weight.shape[2] > 1:
                layers["timbral"].append((*_timbral_weights(weight, self.dims.n_mels), *post))
            else:
                taps = weight[:, :, 0].t().contiguous()  # (time taps, K)
                layers["temporal"].append((taps, branch.time_pad, *post))
        object.__setattr__(self, "_fast_cache", (key, layers))  # not a module attribute
        return layers

    def _fast_patches(self, x: torch.Tensor, layers: dict) -> torch.Tensor:
        scale0, shift0 = layers["input"]
        x = x * scale0 + shift0  # (batch, time, mel); one channel
        b, t, m = x.shape
        outs = []
        kt = layers["timbral"][0][0].shape[1] // 2  # time taps of the timbral filters
        padded = nn.functional.pad(x, (0, 0, (kt - 1) // 2, kt // 2))
        spectrum = torch.view_as_real(torch.fft.rfft(padded, dim=-1))  # (b, t + 6, F, 2)
        n_bins, st = spectrum.shape[2], spectrum.stride()
        rows = spectrum.as_strided((n_bins, b, t, kt, 2), (st[2], st[0], st[1], st[1], 1))
        rows = rows.reshape(n_bins, b * t, 2 * kt)  # per bin, the 7 time taps (re, im)
        for w_re, w_im, inverse, bias, sign, scale, shift in layers["timbral"]:
            k = w_re.shape[2]
            y = torch.empty(2, n_bins, b * t, k)
            torch.bmm(rows, w_re, out=y[0])
            torch.bmm(rows, w_im, out=y[1])
            pooled = (inverse @ y.reshape(2 * n_bins, -1)).amax(0).reshape(b, t, k)
            outs.append(torch.relu((pooled + bias) * sign) * scale + shift)
        by_band = x.transpose(1, 2)  # (b, mel, time)
        for taps, pad, bias, sign, scale, shift in layers["temporal"]:
            kt = taps.shape[0]
            p = nn.functional.pad(by_band, pad).contiguous()
            sp = p.stride()
            windows = p.as_strided((b, m, t, kt), (sp[0], sp[1], 1, 1)).reshape(-1, kt)
            pooled = (windows @ taps).reshape(b, m, t, -1).amax(1)  # (b, time, K)
            outs.append(torch.relu((pooled + bias) * sign) * scale + shift)
        front = torch.cat(outs, -1).transpose(1, 2)  # (b, 561, time)
        return self._mid_and_back(front.contiguous())


class Vgg(nn.Module):
    """The musicnn package's VGG-like baseline: five 3x3 conv blocks with max pooling."""

    POOLS = ((4, 1), (1, 4), (2, 2), (2, 2), (4, 4))  # (time, mel), from the trained graph
    # fast_embed drops the channels that never fire: those not in live_channels (per
    # block but the last, the output channels kept), or when that is None, not in the
    # list shipped for these very weights (shipped_live). False: every channel.
    prune_dead = True
    live_channels: list[list[int]] | None = None

    def __init__(self, dims: MusicnnDims = MusicnnDims(arch="vgg")):
        super().__init__()
        self.dims = dims
        c = dims.vgg_filters
        self.input_bn = _bn2d(1)
        self.convs = nn.ModuleList(
            [nn.Conv2d(1 if i == 0 else c, c, 3, padding=1) for i in range(len(self.POOLS))]
        )
        self.bns = nn.ModuleList([_bn2d(c) for _ in self.POOLS])
        t, f = PATCH_FRAMES, dims.n_mels
        for pt, pf in self.POOLS:
            t, f = t // pt, f // pf
        self.out = nn.Linear(t * f * c, dims.n_tags)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, mel) -> (batch, time' * mel' * channels) flattened last pool.

        Inference (eval mode, no autograd) takes the fast path, `fast_embed`; training
        and anything that needs gradients the layers as written, `reference_embed`."""
        if self.training or torch.is_grad_enabled():
            return self.reference_embed(x)
        return self.fast_embed(x)

    def reference_embed(self, x: torch.Tensor) -> torch.Tensor:
        """The graph as trained: conv -> ReLU -> batch norm -> max pool, five times."""
        x = self.input_bn(x.unsqueeze(1))
        for conv, bn, pool in zip(self.convs, self.bns, self.POOLS, strict=True):
            x = nn.functional.max_pool2d(bn(torch.relu(conv(x))), pool)
        return x.permute(0, 2, 3, 1).flatten(1)  # TF flattens NHWC: time, mel, channel

    def fast_embed(self, x: torch.Tensor) -> torch.Tensor:
        """`reference_embed`'s function (equal to float rounding, tests/test_accurate.py),
        computed in less time on a CPU:
        - every activation stays (batch, time, mel, channel), the layout the flatten
          wants, so no layer copies it into another;
        - each block pools first: a max over a pool window commutes with ReLU and with
          the batch norm's per-channel affine map where its scale is positive, and turns
          into a min where it is negative, so the convolution's output is pooled (with
          the sign of those channels folded into its weights) and ReLU and batch norm
          run on a tensor 4 to 16 times smaller;
        - the first convolution, with one input channel, is one matrix product over the
          nine shifted copies of the input (oneDNN's direct kernel is slow for it);
        - the 3x3 convolutions with 128 channels are Winograd F(4x4, 3x3) products, with
          36 multiplications per 16 outputs instead of 144;
        - the channels that never fire are left out (without_dead_channels), where these
          weights' live channels are known: for the shipped MSD vgg tagger, 3.7 times
          fewer multiplications.
        """
        layers = self._fast_layers()
        # A few patches at a time: the first block's activations are 9 MB per patch, and
        # a worker's peak memory grows with them, not its speed.
        return torch.cat([self._fast_patches(x[i:i + FAST_PATCHES], layers)
                          for i in range(0, x.shape[0], FAST_PATCHES)])

    def _fast_layers(self) -> list:
        """fast_embed's weights, prepared once and again whenever a weight changes:
        per block the convolution (sign-folded; Winograd-transformed where it runs so),
        the pooled channels' sign, and the batch norm's scale and shift; without the
        channels that never fire where they are known (live_channels)."""
        key = (_weights_key(self.input_bn, *self.convs, *self.bns), self.prune_dead,
               id(self.live_channels))
        cached = getattr(self, "_fast_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        blocks = [(conv.weight, conv.bias, *_bn_affine(bn))
                  for conv, bn in zip(self.convs, self.bns, strict=True)]
        if self.prune_dead:
            live = self.live_channels if self.live_channels is not None else shipped_live(self)
            if live:
                blocks = without_dead_channels(blocks, live)
        layers = [_bn_affine(self.input_bn)]
        for i, (conv_weight, conv_bias, scale, shift) in enumerate(blocks):
            sign = torch.where(scale < 0, -1.0, 1.0)
            weight, bias = conv_weight * sign[:, None, None, None], conv_bias * sign
            if i == 0:
                run = partial(_conv1_nhwc, weight=weight.reshape(-1, 9).t().contiguous(),
                              bias=bias)
            elif i < WINOGRAD_BLOCKS:
                run = partial(_conv3x3_nhwc, u=_winograd_weights(weight), bias=bias)
            else:  # a few tiles per patch: oneDNN's direct kernel is as fast
                run = partial(_conv_direct_nhwc, weight=weight.contiguous(), bias=bias)
            layers.append((run, sign, scale, shift))
        object.__setattr__(self, "_fast_cache", (key, layers))  # not a module attribute
        return layers

    def _fast_patches(self, x: torch.Tensor, layers: list) -> torch.Tensor:
        (scale0, shift0), *blocks = layers
        x = x * scale0 + shift0  # (batch, time, mel); one channel
        for (conv, sign, scale, shift), pool in zip(blocks, self.POOLS, strict=True):
            x = torch.relu(_max_pool_nhwc(conv(x), pool) * sign) * scale + shift
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(x))


def _weights_key(*modules: nn.Module) -> tuple:
    """Changes whenever a weight of the modules is replaced or changed in place."""
    return tuple((t.data_ptr(), t._version) for m in modules
                 for t in (*m.parameters(), *m.buffers()))


def _timbral_weights(weight: torch.Tensor, n_mels: int):
    """(K, time, mel) filters -> Musicnn.fast_embed's frequency-domain form: per bin of
    an n_mels-point real FFT, the matrices from (time tap, re/im) to the real and to
    the imaginary part of the output, each (bins, 2 * time, K), and the inverse
    transform at the valid convolution's mel positions, (positions, 2 * bins). Computed
    in float64, then rounded."""
    # A correlation: the input's spectrum times the filters' conjugate spectrum.
    w = torch.fft.rfft(weight.double(), n=n_mels, dim=-1).conj().permute(2, 1, 0)
    n_bins, n_taps, k = w.shape
    w_re = torch.stack([w.real, -w.imag], 2).reshape(n_bins, 2 * n_taps, k)
    w_im = torch.stack([w.imag, w.real], 2).reshape(n_bins, 2 * n_taps, k)
    positions = n_mels - weight.shape[2] + 1
    freq = torch.arange(n_bins, dtype=torch.float64)
    angle = 2 * torch.pi * freq * torch.arange(positions, dtype=torch.float64)[:, None] / n_mels
    twice = torch.where((freq == 0) | (2 * freq == n_mels), 1.0, 2.0)  # bins seen once
    inverse = torch.cat([twice * torch.cos(angle), -twice * torch.sin(angle)], 1) / n_mels
    return (w_re.float().contiguous(), w_im.float().contiguous(), inverse.float())


# The channels of the MSD vgg tagger that ever fire on a few hours of music (bench/pruned.py
# live writes it), with the digest of the weights they were found in.
LIVE_CHANNELS_FILE = Path(__file__).resolve().parents[1] / "weights" / "vgg-msd-live.json"


def weights_digest(vgg: nn.Module) -> str:
    """Short sha256 of a vgg tagger's convolutions and batch norms."""
    digest = hashlib.sha256()
    # Parameters and buffers both: a genreq model freezes its tagger's weights into
    # buffers, some of them not saved in its state_dict.
    tensors = {**dict(vgg.named_parameters()), **dict(vgg.named_buffers())}
    for name, tensor in sorted(tensors.items()):
        if name.startswith(("convs.", "bns.", "input_bn.")) and not name.endswith("_tracked"):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


@lru_cache(maxsize=1)
def _live_file() -> dict:
    try:
        return json.loads(LIVE_CHANNELS_FILE.read_text())
    except FileNotFoundError:
        return {}


def shipped_live(vgg: nn.Module) -> list[list[int]] | None:
    """The shipped live channels of VGG's blocks, if they were found in these weights."""
    shipped = _live_file()
    if shipped.get("weights_sha256") != weights_digest(vgg):
        return None
    return shipped["live"]


def without_dead_channels(blocks: list, live: list[list[int]]) -> list:
    """BLOCKS, (conv weight, conv bias, batch-norm scale, shift) per block, without the
    output channels not in LIVE (one list per block but the last, which is the
    embedding and keeps every channel), computing the same.

    A channel that never fires passes 0 through its ReLU, so what it gives the next block
    is a constant, its batch norm's shift, everywhere but in the next convolution's zero
    padding. Each pruned block gets instead one channel that is 1 everywhere (zero
    weights, bias 1, scale 1, shift 0), which the next convolution reads through the sum
    of the dropped channels' weights times their shifts: borders included, every later
    layer computes what it did (tests/test_pruned.py)."""
    blocks = [list(b) for b in blocks]
    keep_in = torch.arange(1)
    for b, block in enumerate(blocks):
        weight, bias, scale, shift = block
        weight = weight[:, keep_in]
        if b < len(live):
            kept = torch.tensor(live[b], dtype=torch.long)
            dropped = torch.ones(weight.shape[0], dtype=torch.bool)
            dropped[kept] = False
            nxt = blocks[b + 1][0]
            constant = torch.einsum("kchw,c->khw", nxt[:, dropped], shift[dropped])
            blocks[b + 1][0] = torch.cat([nxt, constant[:, None]], 1)
            one = torch.ones(1)
            weight = torch.cat([weight[kept], torch.zeros(1, *weight.shape[1:])])
            bias, scale = torch.cat([bias[kept], one]), torch.cat([scale[kept], one])
            shift = torch.cat([shift[kept], torch.zeros(1)])
            keep_in = torch.cat([kept, torch.tensor([len(dropped)])])
        else:
            keep_in = torch.arange(weight.shape[0])
        blocks[b] = (weight, bias, scale, shift)
    return blocks


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode batch norm as scale * x + shift, per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _max_pool_nhwc(x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
    """max_pool2d of (batch, time, mel, channel) with stride = window, floor mode."""
    b, h, w, c = x.shape
    (pt, pf), h, w = pool, h // pool[0], w // pool[1]
    x = x[:, : h * pt, : w * pf].reshape(b, h, pt, w, pf, c)
    return x.amax(dim=(2, 4))


def _conv1_nhwc(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """3x3 "same" convolution of one-channel (batch, time, mel) to (batch, time, mel, K);
    `weight` is (9, K)."""
    b, h, w = x.shape
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    taps = torch.stack([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], -1)
    return torch.addmm(bias, taps.reshape(-1, 9), weight).reshape(b, h, w, -1)


def _conv_direct_nhwc(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """3x3 "same" convolution of (batch, H, W, C) by torch's own kernel (channels-last)."""
    out = nn.functional.conv2d(x.permute(0, 3, 1, 2), weight, bias, padding=1)
    return out.permute(0, 2, 3, 1)


# Winograd F(4x4, 3x3) (Lavin & Gray 2016): input, filter and output transforms.
_WINOGRAD_BT = torch.tensor([
    [4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1],
], dtype=torch.float32)
_WINOGRAD_G = torch.tensor([
    [1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1],
], dtype=torch.float64)
_WINOGRAD_AT = torch.tensor([
    [1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1],
], dtype=torch.float32)
_TILE, _PATCH = 4, 6  # outputs and inputs per tile side


def _winograd_weights(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, 3, 3) filters -> (36, C, K), transformed in float64 and then rounded."""
    k, c = weight.shape[:2]
    g = _WINOGRAD_G
    u = (g @ weight.double() @ g.T).reshape(k, c, _PATCH ** 2)
    return u.permute(2, 1, 0).float().contiguous()


def _conv3x3_nhwc(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """3x3 "same" convolution, (batch, H, W, C) -> (batch, H, W, K), as Winograd tiles
    with the filters `u` of _winograd_weights. The transforms are small matrix products
    over the tile axes, with the channels innermost so that every copy moves contiguous
    rows."""
    b, h, w, c = x.shape
    k = u.shape[2]
    th, tw = -(-h // _TILE), -(-w // _TILE)
    hp, wp = th * _TILE + 2, tw * _TILE + 2
    padded = nn.functional.pad(x, (0, 0, 1, wp - w - 1, 1, hp - h - 1)).contiguous()
    tiles = padded.as_strided(  # (row, col) in the patch, batch, tile row, tile col, channel
        (_PATCH, _PATCH, b, th, tw, c),
        (wp * c, c, hp * wp * c, _TILE * wp * c, _TILE * c, 1),
    )
    n = b * th * tw
    bt, at = _WINOGRAD_BT, _WINOGRAD_AT
    v = (bt @ tiles.reshape(_PATCH, -1)).reshape(_PATCH, _PATCH, n * c)
    v = torch.matmul(bt, v).reshape(_PATCH ** 2, n, c)
    m = torch.bmm(v, u)  # (36, tiles, K): one product per patch position
    y = (at @ m.reshape(_PATCH, -1)).reshape(_TILE, _PATCH, n * k)
    y = torch.matmul(at, y).reshape(_TILE, _TILE, b, th, tw, k)
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(b, th * _TILE, tw * _TILE, k)
    return y[:, :h, :w] + bias


ARCHITECTURES: dict[str, type[nn.Module]] = {"musicnn": Musicnn, "vgg": Vgg}


def build(dims: MusicnnDims) -> nn.Module:
    return ARCHITECTURES[dims.arch](dims)


# ---------------------------------------------------------------------------- weights


def _bn_state(prefix: str, tf: dict[str, np.ndarray], scope: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.weight": tf[f"{scope}/gamma"],
        f"{prefix}.bias": tf[f"{scope}/beta"],
        f"{prefix}.running_mean": tf[f"{scope}/moving_mean"],
        f"{prefix}.running_var": tf[f"{scope}/moving_variance"],
    }


def _conv2d(kernel: np.ndarray) -> np.ndarray:
    return kernel.transpose(3, 2, 0, 1)  # TF (h, w, in, out) -> torch (out, in, h, w)


def _conv1d(kernel: np.ndarray) -> np.ndarray:
    # upstream's mid-end is a 2-D conv whose width spans all channels: (7, C, 1, out)
    return kernel[:, :, 0, :].transpose(2, 1, 0)  # -> (out, C, 7)


def state_dict_from_tf(tf: dict[str, np.ndarray], arch: str) -> dict[str, torch.Tensor]:
    """Map TF1 checkpoint variables (names as tf.compat.v1.layers made them) to the
    state_dict of `Musicnn` or `Vgg`. Optimiser slots (Adam) are ignored."""
    sd: dict[str, np.ndarray] = {}
    sd.update(_bn_state("input_bn", tf, "batch_normalization"))
    if arch == "musicnn":
        for i in range(5):  # timbral 7x38, 7x67, then temporal 128, 64, 32
            scope = f"conv2d_{i}" if i else "conv2d"
            sd[f"front.{i}.conv.weight"] = _conv2d(tf[f"{scope}/kernel"])
            sd[f"front.{i}.conv.bias"] = tf[f"{scope}/bias"]
            sd.update(_bn_state(f"front.{i}.bn", tf, f"batch_normalization_{i + 1}"))
        for i in range(3):
            sd[f"mid.{i}.conv.weight"] = _conv1d(tf[f"conv2d_{i + 5}/kernel"])
            sd[f"mid.{i}.conv.bias"] = tf[f"conv2d_{i + 5}/bias"]
            sd.update(_bn_state(f"mid.{i}.bn", tf, f"batch_normalization_{i + 6}"))
        sd.update(_bn_state("pool_bn", tf, "batch_normalization_9"))
        sd["dense.weight"], sd["dense.bias"] = tf["dense/kernel"].T, tf["dense/bias"]
        sd.update(_bn_state("dense_bn", tf, "batch_normalization_10"))
        sd["out.weight"], sd["out.bias"] = tf["dense_1/kernel"].T, tf["dense_1/bias"]
    elif arch == "vgg":
        for i in range(5):
            sd[f"convs.{i}.weight"] = _conv2d(tf[f"{i + 1}CNN/kernel"])
            sd[f"convs.{i}.bias"] = tf[f"{i + 1}CNN/bias"]
            sd.update(_bn_state(f"bns.{i}", tf, f"batch_normalization_{i + 1}"))
        sd["out.weight"], sd["out.bias"] = tf["dense/kernel"].T, tf["dense/bias"]
    else:
        raise ValueError(
            f"unknown musicnn architecture {arch!r}; expected one of {tuple(ARCHITECTURES)}"
        )
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}
    for k in list(state):
        if k.endswith(".running_var"):
            state[k.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    return state


def checkpoint(model: nn.Module, tags: tuple[str, ...], source: str) -> dict:
    """The file format tools/convert_musicnn.py writes (loadable with weights_only=True)."""
    return {
        "dims": asdict(model.dims),
        "tags": list(tags),
        "features": {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop_length": HOP_LENGTH,
                     "n_mels": N_MELS, "patch_frames": PATCH_FRAMES, "log_scale": LOG_SCALE},
        "source": source,
        "state_dict": model.state_dict(),
    }


def load(path) -> tuple[nn.Module, dict]:
    """A converted tagger in eval mode, and its checkpoint's metadata."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build(MusicnnDims(**ckpt["dims"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, {k: v for k, v in ckpt.items() if k != "state_dict"}
