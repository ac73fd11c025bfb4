"""The architectures, one registry, one checkpoint format.

- `raw`: 1-D CNN on the waveform (the seed paper's "Raw" row).
- `stft-cnn`: 2-D CNN on a log-magnitude STFT (the "STFT" row, after Elbir et al.).
- `crnn-paper`: the seed paper's CRNN as written: four 3×3 conv blocks 32/64/128/256
  with batch norm before the activation, 2×2 max-pool and dropout, one GRU of 128
  units over time, softmax over the genres.
- `crnn`: the previous default, a leaner CRNN of the same family with frequency-aware
  pooling, a bidirectional GRU and attention pooling over time.
- `musicnn-msd`, `vgg-msd`: the pretrained musicnn taggers (genreq.pretrained), frozen,
  with a linear genre head on their per-chunk embedding; 16 kHz "musicnn" features.
- `vgg-msd-fast`: the default, vgg-msd's frozen tagger read on two chunks per track
  instead of five, each track levelled to one loudness first, with a head of its own.
- `musicnn-msd-gru`, `vgg-msd-gru`: the transfer CRNN, the same frozen taggers with a
  bidirectional GRU over the sequence of a track's chunk embeddings; their checkpoints
  hold the GRU head only and take the tagger from the base model's shipped weights.

Every model takes (batch, 1, n_bins, width) chunks of features in their natural
units (dB, or samples for raw) and returns logits; it normalises its input with the
mean and standard deviation of the training features, kept as buffers. A model with
`per_track = True` reads that batch as the ordered chunks of one track and returns one
row of logits for the track (the mean of one row is that row, so callers that average
chunk probabilities need not know).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from itertools import pairwise
from typing import ClassVar

import torch
from torch import nn

from genreq.errors import ModelError
from genreq.features import MAX_CHUNKS, FeatureSpec
from genreq.model_files import WEIGHTS_DIR
from genreq.pretrained.tags import MSD_TAG_NAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelDims:
    """Hyper-parameters that fix a model's shape. Stored in checkpoints."""

    n_classes: int
    n_bins: int
    width: int  # frames per chunk, or samples for raw
    channels: tuple[int, ...] = ()
    hidden: int = 128
    dropout: float = 0.25
    # crnn only: a distilled student's teacher-space embedding (0: none, the pooled GRU
    # state is the embedding) and its tag outputs (0: none; else the MSD tags).
    n_embed: int = 0
    n_tags: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> ModelDims:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["channels"] = tuple(d.get("channels", ()))
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


@dataclass
class Outputs:
    """Everything one forward pass gives (GenreModel.outputs)."""

    logits: torch.Tensor  # (rows, n_classes): one row per chunk, or one per track (per_track)
    embedding: torch.Tensor  # (rows, n_embed): what the final linear layer reads
    tag_logits: torch.Tensor | None = None  # (chunks, len(tag_names)); None: no tag outputs


class GenreModel(nn.Module):
    """Shared plumbing: input normalisation buffers and the default feature spec.

    A subclass defines `penultimate(x)`, the features its final linear layer (`head`)
    reads, so that callers can have the logits and that embedding from one pass
    (`outputs`). A model with tag outputs names them in `tag_names`."""

    tag_names: tuple[str, ...] = ()
    default_channels: tuple[int, ...] = ()
    default_dims: ClassVar[dict] = {}  # ModelDims fields that differ from the dataclass defaults
    feature_kind = "mel"
    per_track = False  # True: forward maps one track's chunks to one row of logits
    # Chunks classification reads per track (features.excerpt_windows, chunk_indices):
    # what the model's head was fitted and measured on.
    max_chunks: ClassVar[int] = MAX_CHUNKS

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        self.register_buffer("input_mean", torch.zeros(()))
        self.register_buffer("input_std", torch.ones(()))

    @classmethod
    def default_features(cls) -> FeatureSpec:
        return FeatureSpec(kind=cls.feature_kind)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.penultimate(x)))

    def outputs(self, x: torch.Tensor) -> Outputs:
        """Logits and embedding of one pass (in eval mode, forward's logits)."""
        embedding = self.penultimate(x)
        return Outputs(self.head(self.dropout(embedding)), embedding)


def conv_block(c_in: int, c_out: int, pool: tuple[int, int], dropout: float) -> nn.Sequential:
    """3×3 conv → batch norm → ReLU → max-pool → dropout (the paper's block)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(pool),
        nn.Dropout(dropout),
    )


class PaperCRNN(GenreModel):
    """Cheng et al.: 4 conv blocks (32/64/128/256, 2×2 pools) → GRU(128) → softmax."""

    default_channels = (32, 64, 128, 256)

    def __init__(self, dims: ModelDims):
        super().__init__(dims)
        chans = (1, *dims.channels)
        self.convs = nn.Sequential(
            *[conv_block(c_in, c_out, (2, 2), dims.dropout) for c_in, c_out in pairwise(chans)]
        )
        freq_out = dims.n_bins // 2 ** (len(chans) - 1)
        self.gru = nn.GRU(chans[-1] * freq_out, dims.hidden, batch_first=True)
        self.dropout = nn.Identity()  # the paper has none before its softmax layer
        self.head = nn.Linear(dims.hidden, dims.n_classes)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(self.normalise(x))  # (B, C, F', T')
        h = h.flatten(1, 2).transpose(1, 2)  # (B, T', C·F')
        _, last = self.gru(h)
        return last[-1]


class CRNN(GenreModel):
    """The shipped model: lean conv blocks that pool frequency harder than time, then a
    bidirectional GRU whose outputs are averaged with learned attention weights.

    As a distilled student (dims.n_embed > 0) a linear projection maps the pooled state
    into the teacher's (standardised) embedding space; that projection is the embedding
    the genre head reads, and with dims.n_tags > 0 a linear tag layer on it gives the
    teacher's MSD tags (bench/student.py)."""

    default_channels = (16, 32, 64, 128)
    # Frequency collapses 128 → 1 over the four blocks while time keeps 16 steps of
    # ~186 ms, enough for the GRU to follow rhythm. The last block pools whatever
    # frequency is left, so fewer input bins (e.g. 20 MFCCs) work too.
    pools = ((2, 2), (2, 2), (4, 2), (None, 1))

    def __init__(self, dims: ModelDims):
        super().__init__(dims)
        chans = (1, *dims.channels)
        freq, pools = dims.n_bins, []
        for f, t in self.pools:
            f = freq if f is None else min(f, freq)
            pools.append((f, t))
            freq //= f
        self.convs = nn.Sequential(
            *[conv_block(chans[i], chans[i + 1], p, dims.dropout / 2) for i, p in enumerate(pools)]
        )
        freq_out = freq
        self.gru = nn.GRU(
            chans[-1] * freq_out, dims.hidden // 2, batch_first=True, bidirectional=True
        )
        self.attention = nn.Linear(dims.hidden, 1)
        self.dropout = nn.Dropout(dims.dropout)
        n_embed = dims.hidden
        if dims.n_embed:
            self.project = nn.Linear(dims.hidden, dims.n_embed)
            n_embed = dims.n_embed
        if dims.n_tags:
            if dims.n_tags != len(MSD_TAG_NAMES):
                raise ModelError(f"crnn: {dims.n_tags} tag outputs, but the MSD tags are "
                                 f"{len(MSD_TAG_NAMES)}")
            self.tags = nn.Linear(n_embed, dims.n_tags)
            self.tag_names = MSD_TAG_NAMES
        self.head = nn.Linear(n_embed, dims.n_classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(self.normalise(x)).flatten(1, 2).transpose(1, 2)  # (B, T', C·F')
        seq, _ = self.gru(h)
        weights = torch.softmax(self.attention(seq), dim=1)  # (B, T', 1)
        return (weights * seq).sum(dim=1)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pooled(x)
        return self.project(h) if self.dims.n_embed else h

    def outputs(self, x: torch.Tensor) -> Outputs:
        out = super().outputs(x)
        if self.dims.n_tags:
            out.tag_logits = self.tags(out.embedding)
        return out


class StftCNN(GenreModel):
    """Elbir et al.'s STFT-CNN shape: conv blocks on the log-magnitude STFT, global
    pooling, one dense layer."""

    default_channels = (16, 32, 64, 128)
    feature_kind = "stft"

    @classmethod
    def default_features(cls) -> FeatureSpec:
        # 512-point frames (23 ms, 43 Hz bins), hop 512: 257 bins × 128 frames per chunk.
        return FeatureSpec(kind="stft", n_fft=512)

    def __init__(self, dims: ModelDims):
        super().__init__(dims)
        chans = (1, *dims.channels)
        # The STFT has 257 bins: pool frequency 4× in the first block to keep cost sane.
        pools = [(4, 2)] + [(2, 2)] * (len(chans) - 2)
        self.convs = nn.Sequential(
            *[
                conv_block(c_in, c_out, pool, dims.dropout / 2)
                for (c_in, c_out), pool in zip(pairwise(chans), pools, strict=True)
            ]
        )
        self.dense = nn.Sequential(
            nn.Linear(2 * chans[-1], dims.hidden), nn.ReLU(inplace=True), nn.Dropout(dims.dropout)
        )
        self.dropout = nn.Identity()  # dense ends with its own
        self.head = nn.Linear(dims.hidden, dims.n_classes)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(self.normalise(x)).flatten(2)
        return self.dense(torch.cat([h.mean(-1), h.amax(-1)], dim=1))


class RawCNN(GenreModel):
    """Sample-level 1-D CNN on the waveform: a strided front conv, then conv/pool
    stages, global max+mean pooling, a dense layer."""

    default_channels = (32, 32, 64, 64, 128, 128)
    feature_kind = "raw"

    def __init__(self, dims: ModelDims):
        super().__init__(dims)
        layers: list[nn.Module] = [
            nn.Conv1d(1, dims.channels[0], 9, stride=3, padding=4, bias=False),
            nn.BatchNorm1d(dims.channels[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3),  # 22,050 Hz → ~2.45 kHz of frames before the costly stages
        ]
        for c_in, c_out in pairwise(dims.channels):
            layers += [
                nn.Conv1d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(4),
            ]
        self.convs = nn.Sequential(*layers)
        self.dense = nn.Sequential(
            nn.Linear(2 * dims.channels[-1], dims.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dims.dropout),
        )
        self.dropout = nn.Identity()  # dense ends with its own
        self.head = nn.Linear(dims.hidden, dims.n_classes)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        # Per-chunk RMS normalisation: loudness is mastering, not genre.
        return x / (x.pow(2).mean(dim=-1, keepdim=True).sqrt() + 1e-4)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(self.normalise(x.flatten(1, 2)))  # (B, C, T')
        return self.dense(torch.cat([h.mean(-1), h.amax(-1)], dim=1))


def _freeze_as_buffers(module: nn.Module, persistent: bool = True) -> None:
    """Turn every parameter of MODULE into a buffer of the same name: the weights move
    with .to(), but are no parameters an optimiser could train. With persistent=False
    its buffers (batch-norm statistics included) also leave the state_dict, so a
    checkpoint of the model does not carry them."""
    for sub in module.modules():
        tensors = list(sub.named_parameters(recurse=False))
        if not persistent:
            tensors += list(sub.named_buffers(recurse=False))
        for name, tensor in tensors:
            sub._parameters.pop(name, None)
            sub._buffers.pop(name, None)
            sub.register_buffer(name, tensor.detach(), persistent=persistent)
        if not persistent and isinstance(sub, nn.modules.batchnorm._BatchNorm):
            # Otherwise loading a state_dict without version metadata (genreq's format)
            # adds a num_batches_tracked key that is unexpected here. Evaluation still
            # uses the running statistics, which are never updated (the tagger stays in eval).
            sub.track_running_stats = False


class PretrainedTagger(GenreModel):
    """A frozen pretrained musicnn tagger (genreq.pretrained.musicnn) as the ears, and a
    linear genre head on its per-chunk embedding. A fresh model's tagger takes the
    pretrained weights of the shipped checkpoint genreq/weights/<name>.pt, or else of
    `genreq models convert-musicnn`'s output; they are buffers, not parameters, and its
    batch norms stay in eval mode. The embedding is
    standardised with buffers a head trainer sets (identity by default)."""

    feature_kind = "musicnn"
    tag_names = MSD_TAG_NAMES  # the tagger's own 50 outputs
    name = ""  # the registry name
    tagger_arch = ""
    # The registry model whose shipped checkpoint genreq/weights/<base>.pt holds the
    # tagger's weights; "" for the model itself, whose checkpoints carry them.
    base = ""
    # dBFS RMS each track is levelled to before its features (features.levelled), so that
    # a quiet master is not heard as classical; None reads the audio as decoded. A
    # checkpoint keeps the spec it was trained with, so this only changes new models.
    level_dbfs: ClassVar[float | None] = None

    @classmethod
    def default_features(cls) -> FeatureSpec:
        from genreq.pretrained.musicnn import FEATURE_SPEC

        return replace(FEATURE_SPEC, level_dbfs=cls.level_dbfs)

    def __init__(self, dims: ModelDims):
        super().__init__(dims)
        from genreq.pretrained import convert, musicnn

        self.tagger = musicnn.build(musicnn.MusicnnDims(arch=self.tagger_arch, n_mels=dims.n_bins))
        source = self.base or self.name
        state = convert.tagger_state(source, WEIGHTS_DIR)  # a checkpoint being loaded overwrites it
        if state is not None:
            self.tagger.load_state_dict(state)
        elif self.base:  # its checkpoints carry no tagger: random ears would pass silently
            raise ModelError(f"{self.name}: no pretrained {source} tagger weights found "
                             f"(genreq/weights/{source}.pt); run `genreq models convert-musicnn`")
        else:
            log.warning(
                "%s: no pretrained tagger weights found; run `genreq models convert-musicnn`",
                self.name,
            )
        _freeze_as_buffers(self.tagger, persistent=not self.base)
        self.tagger.eval()
        n_embed = self.tagger.out.in_features  # the tag layer reads the embedding
        self.register_buffer("embedding_mean", torch.zeros(n_embed))
        self.register_buffer("embedding_std", torch.ones(n_embed))
        self.dropout = nn.Dropout(dims.dropout)
        self.build_head(n_embed)

    def build_head(self, n_embed: int) -> None:
        self.head = nn.Linear(n_embed, self.dims.n_classes)

    def train(self, mode: bool = True) -> PretrainedTagger:
        super().train(mode)
        self.tagger.eval()  # pretrained batch-norm statistics are never updated
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 1, n_mels, frames) chunks -> standardised (batch, n_embed) embeddings."""
        return self._standardise(self._tagger_embed(x))

    def _tagger_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.tagger.embed(x[:, 0].transpose(1, 2).contiguous())

    def _standardise(self, emb: torch.Tensor) -> torch.Tensor:
        return (emb - self.embedding_mean) / self.embedding_std

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)

    def outputs(self, x: torch.Tensor) -> Outputs:
        """The tag logits come from the tagger's own output layer on the raw embedding."""
        raw = self._tagger_embed(x)
        out = self._head_outputs(self._standardise(raw))
        out.tag_logits = self.tagger.out(raw)
        return out

    def _head_outputs(self, emb: torch.Tensor) -> Outputs:
        return Outputs(self.head(self.dropout(emb)), emb)


# The median RMS of the 257 shared GTZAN clips (bench/loudness.py).
LEVEL_DBFS = -19.0


class MusicnnMSD(PretrainedTagger):
    """MSD musicnn's 200-d penultimate layer (~1.3 GMAC per 3-s chunk); each track
    levelled first (bench/loudness.py --model musicnn-msd)."""

    name, tagger_arch = "musicnn-msd", "musicnn"
    level_dbfs: ClassVar[float | None] = LEVEL_DBFS


class VggMSD(PretrainedTagger):
    """MSD vgg's flattened last pool, 256-d (~4x cheaper than musicnn); each track
    levelled first (bench/loudness.py --model vgg-msd)."""

    name, tagger_arch = "vgg-msd", "vgg"
    level_dbfs: ClassVar[float | None] = LEVEL_DBFS


class VggMSDFast(PretrainedTagger):
    """vgg-msd read on two 3-s chunks per track instead of MAX_CHUNKS, each track levelled
    to one RMS first: its frozen ears with vgg-msd's head recipe fitted on levelled clips
    (the mean of every chunk of a clip, so a head for any number of them), the tags and
    the embedding of the MSD tagger at two fifths of its cost (bench/fast_default.py,
    bench/loudness.py). Its checkpoints hold the head only and take the tagger from
    vgg-msd's shipped weights."""

    name, tagger_arch, base = "vgg-msd-fast", "vgg", "vgg-msd"
    max_chunks: ClassVar[int] = 2
    level_dbfs: ClassVar[float | None] = LEVEL_DBFS


class PretrainedGRU(PretrainedTagger):
    """The transfer CRNN: a frozen pretrained tagger embeds each 3-s chunk, and a
    bidirectional GRU (dims.hidden // 2 units each way) reads the track's sequence of
    standardised embeddings; the mean of its states goes to a linear softmax layer.
    Dropout acts on the embeddings and on the pooled state. forward() takes one track's
    chunks in time order; trainers call classify_embeddings on batches of sequences.
    The tagger's weights come from the base model's shipped checkpoint and are not
    saved with this model's."""

    per_track = True
    default_dims: ClassVar[dict] = {"hidden": 128, "dropout": 0.3}

    def build_head(self, n_embed: int) -> None:
        self.gru = nn.GRU(n_embed, self.dims.hidden // 2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(self.dims.hidden, self.dims.n_classes)

    def pooled_state(self, seq: torch.Tensor) -> torch.Tensor:
        """(batch, chunks, n_embed) standardised embeddings -> (batch, hidden): what the
        output layer reads."""
        states, _ = self.gru(self.dropout(seq))
        return states.mean(1)

    def classify_embeddings(self, seq: torch.Tensor) -> torch.Tensor:
        """(batch, chunks, n_embed) standardised embeddings -> (batch, n_classes) logits."""
        return self.out(self.dropout(self.pooled_state(seq)))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled_state(self.embed(x)[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(chunks, 1, n_mels, frames) of one track, in time order -> (1, n_classes)."""
        return self.classify_embeddings(self.embed(x)[None])

    def _head_outputs(self, emb: torch.Tensor) -> Outputs:
        pooled = self.pooled_state(emb[None])
        return Outputs(self.out(self.dropout(pooled)), pooled)


class MusicnnMSDGRU(PretrainedGRU):
    name, tagger_arch, base = "musicnn-msd-gru", "musicnn", "musicnn-msd"


class VggMSDGRU(PretrainedGRU):
    name, tagger_arch, base = "vgg-msd-gru", "vgg", "vgg-msd"
    level_dbfs: ClassVar[float | None] = LEVEL_DBFS  # bench/loudness.py --model vgg-msd-gru


ARCHITECTURES: dict[str, type[GenreModel]] = {
    "raw": RawCNN,
    "stft-cnn": StftCNN,
    "crnn-paper": PaperCRNN,
    "crnn": CRNN,
    "musicnn-msd": MusicnnMSD,
    "vgg-msd": VggMSD,
    "vgg-msd-fast": VggMSDFast,
    "musicnn-msd-gru": MusicnnMSDGRU,
    "vgg-msd-gru": VggMSDGRU,
}


def build(
    arch: str, n_classes: int, features: FeatureSpec | None = None, **overrides
) -> GenreModel:
    """A fresh, untrained model of a registered architecture."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise ValueError(f"unknown architecture {arch!r}; choose from {known}") from None
    features = features or cls.default_features()
    dims = ModelDims(
        n_classes=n_classes,
        n_bins=features.n_bins,
        width=features.chunk_width,
        channels=tuple(overrides.pop("channels", cls.default_channels)),
        **{**cls.default_dims, **overrides},
    )
    return cls(dims)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: GenreModel) -> int:
    """Multiply-accumulates of one forward pass on one chunk (conv, linear and GRU layers)."""
    macs = 0

    def conv_hook(module, _inp, out):
        nonlocal macs
        k = module.weight[0].numel()  # in_channels/groups × kernel
        macs += out.numel() * k

    def linear_hook(module, _inp, out):
        nonlocal macs
        macs += out.numel() * module.in_features

    def gru_hook(module, inp, _out):
        nonlocal macs
        steps = inp[0].shape[1]
        directions = 2 if module.bidirectional else 1
        h = module.hidden_size
        macs += steps * directions * 3 * h * (module.input_size + h)

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, nn.GRU):
            hooks.append(m.register_forward_hook(gru_hook))
    was_training = model.training
    model.eval()
    # With gradients on: under no_grad a pretrained tagger takes its fast path
    # (fast_embed), whose kernels are no nn.Conv2d calls these hooks see; the layers as
    # trained do the same arithmetic, and the hooks count them.
    with torch.enable_grad():
        model(torch.zeros(1, 1, model.dims.n_bins, model.dims.width))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return macs
