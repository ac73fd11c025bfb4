"""Classify audio with a trained checkpoint: decode → features → chunks → mean of the
chunks' probabilities. No queue, no database: the worker and `genreq classify` both
call this."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from genreq import audio, checkpoint, config, features
from genreq.errors import AudioError, TooShort
from genreq.model_files import (  # noqa: F401  (callers import them from predict too)
    DEFAULT_MODEL,
    WEIGHTS_DIR,
    resolve_model,
    shipped_models,
)

# What Classifier.classify_file reports to an `on_stage` hook, in this order: the header
# read and excerpt windows, decoding, resampling to the model's rate, log-mel chunks, the
# forward pass.
STAGES = ("probe", "decode", "resample", "features", "model")
StageHook = Callable[[str, float], None]  # on_stage(stage, seconds)


@dataclass(frozen=True)
class Prediction:
    genre: str
    confidence: float
    probs: dict[str, float]  # every genre the model knows → probability
    duration_s: float  # of the whole file (from its header when known)
    # Readable tag name → probability (the mean over chunks of each tag's sigmoid), in
    # the model's output order; empty for a model without tag outputs.
    tags: dict[str, float] = field(default_factory=dict)
    # The track's embedding: the mean over chunks of what the model's final linear layer
    # reads (float32, 1-D), and "name@version" of the model that produced it. Vectors
    # of different models are not comparable.
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    embedding_model: str = ""
    # How the audio was read when that is worth telling: audio.Damage.note() for a file
    # decoded around damaged packets; "" otherwise.
    note: str = ""

    def top(self, k: int = config.TOP_K) -> list[tuple[str, float]]:
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]


class StageTimes(dict[str, float]):
    """An on_stage hook that keeps the seconds of each stage (summed over calls):

        times = StageTimes()
        classifier.classify_file(path, on_stage=times)
        times["decode"], times.total_s
    """

    def __call__(self, stage: str, seconds: float) -> None:
        self[stage] = self.get(stage, 0.0) + seconds

    @property
    def total_s(self) -> float:
        return sum(self.values())


class _Laps:
    """Tells on_stage the time since the previous lap; does nothing without a hook."""

    def __init__(self, on_stage: StageHook | None):
        self.on_stage = on_stage
        self.last = time.perf_counter() if on_stage is not None else 0.0

    def __call__(self, stage: str) -> None:
        if self.on_stage is not None:
            now = time.perf_counter()
            self.on_stage(stage, now - self.last)
            self.last = now

    def restart(self) -> None:
        """After a step that reported its own stages."""
        if self.on_stage is not None:
            self.last = time.perf_counter()


class Classifier:
    """A loaded model with its feature recipe. Build once per process, reuse per file."""

    def __init__(self, model: torch.nn.Module, ckpt: dict, path: Path):
        # channels-last lets oneDNN pick its faster CPU kernels for these small 2-D
        # CNNs; 1-D layers are left as they are.
        self.model = model.to(memory_format=torch.channels_last)
        self.path = path
        self.name: str = ckpt["arch"]
        self.version: str = checkpoint.file_digest(path)
        self.genres: list[str] = list(ckpt["genres"])
        self.features = features.FeatureSpec(**ckpt["features"])
        self.metrics: dict = ckpt.get("metrics", {})
        # Chunks read per track, as the model's head was fitted (GenreModel.max_chunks).
        self.max_chunks: int = model.max_chunks

    @classmethod
    def load(cls, model: str | Path | None = None) -> Classifier:
        """From a checkpoint path or a shipped model's name; None: $GENREQ_MODEL or the default."""
        path = resolve_model(model)
        network, ckpt = checkpoint.load(path)
        return cls(network, ckpt, path)

    @property
    def tag_names(self) -> tuple[str, ...]:
        """The model's tag outputs (readable names), () when it has none."""
        return tuple(self.model.tag_names)

    @property
    def model_id(self) -> str:
        """"name@version": what stored embeddings record as their producer."""
        return f"{self.name}@{self.version}"

    def chunk_outputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One forward pass over a track's chunks: (genre probabilities (rows, genres),
        embeddings (rows, n_embed), tag probabilities (chunks, tags) or None). Rows are
        chunks, or one for a `per_track` model."""
        with torch.inference_mode():
            out = self.model.outputs(torch.from_numpy(np.ascontiguousarray(x)))
            tags = None if out.tag_logits is None else torch.sigmoid(out.tag_logits).numpy()
            return torch.softmax(out.logits, dim=-1).numpy(), out.embedding.float().numpy(), tags

    def chunk_probs(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities of a track's chunks (n, 1, bins, width) → (n, genres), or
        (1, genres) for a model that reads the chunks as one sequence (`per_track`)."""
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(np.ascontiguousarray(x)))
            return torch.softmax(logits, dim=-1).numpy()

    def excerpt_windows(self, duration_s: float | None) -> audio.Windows:
        """(start_s, length_s) windows of a track of `duration_s` that are decoded, or
        None to decode it whole (features.excerpt_windows for this model's chunks)."""
        return features.excerpt_windows(duration_s, self.features, self.max_chunks)

    def chunks_of_excerpts(self, excerpts: list[np.ndarray]) -> np.ndarray:
        """The model's input for a track: at most `max_chunks` feature chunks, shared
        evenly by the excerpts; a track decoded whole (one excerpt) is read at the
        positions excerpt_windows gives a long one (features.centred_starts)."""
        spec = self.features
        per_excerpt = max(1, self.max_chunks // len(excerpts))
        return np.concatenate([
            features.chunks(features.extract(e, spec), spec, per_excerpt, centred=True)
            for e in features.levelled(excerpts, spec)
        ])

    def probs_of_excerpts(self, excerpts: list[np.ndarray]) -> np.ndarray:
        """Track probabilities: the mean over the chunks of all excerpts."""
        return self.chunk_probs(self.chunks_of_excerpts(excerpts)).mean(axis=0)

    def classify_audio(self, samples: np.ndarray, duration_s: float | None = None) -> Prediction:
        outputs = self.chunk_outputs(self.chunks_of_excerpts([samples]))
        return self._prediction(outputs, duration_s or samples.size / self.features.sample_rate)

    def classify_file(self, path: str | Path, on_stage: StageHook | None = None,
                      min_duration_s: float = 0.0) -> Prediction:
        """Raises AudioError (with the path and the reason) for anything not classifiable,
        and its TooShort for a file shorter than `min_duration_s` (told by its header
        before anything is decoded, else by the decoded audio) or than
        audio.MIN_DURATION_S.

        `on_stage(stage, seconds)`, if given, is called once per stage of STAGES, in
        order, as each ends (a StageTimes collects them); a file that fails stops the
        reports at the stage that failed.
        """
        lap = _Laps(on_stage)
        total_s = audio.duration_s(path)
        if total_s is not None and total_s < min_duration_s:
            raise TooShort(path, total_s, min_duration_s)
        windows = self.excerpt_windows(total_s)
        lap("probe")
        damage = audio.Damage()
        excerpts = audio.load_windows(path, windows, self.features.sample_rate, on_stage,
                                      damage)
        lap.restart()  # load_windows reported decode and resample
        if not excerpts:
            raise AudioError(path, "no audio could be decoded")
        if total_s is None:  # no header duration: the decoded audio is the whole file
            decoded_s = sum(e.size for e in excerpts) / self.features.sample_rate
            if decoded_s < min_duration_s:
                raise TooShort(path, decoded_s, min_duration_s)
        batch = self.chunks_of_excerpts(excerpts)
        lap("features")
        outputs = self.chunk_outputs(batch)
        lap("model")
        if not np.all(np.isfinite(outputs[0])):
            raise AudioError(path, "the model produced no finite probabilities for this audio")
        if total_s is None:
            total_s = sum(e.size for e in excerpts) / self.features.sample_rate
        prediction = self._prediction(outputs, total_s)
        return replace(prediction, note=damage.note()) if damage.damaged else prediction

    def _prediction(
        self, outputs: tuple[np.ndarray, np.ndarray, np.ndarray | None], duration_s: float
    ) -> Prediction:
        chunk_probs, chunk_embeddings, chunk_tags = outputs
        probs = chunk_probs.mean(axis=0)
        best = int(np.argmax(probs))
        tags = {} if chunk_tags is None else {
            name: float(p)
            for name, p in zip(self.tag_names, chunk_tags.mean(axis=0), strict=True)
        }
        return Prediction(
            genre=self.genres[best],
            confidence=float(probs[best]),
            probs={g: float(p) for g, p in zip(self.genres, probs, strict=True)},
            duration_s=float(duration_s),
            tags=tags,
            embedding=chunk_embeddings.mean(axis=0).astype(np.float32),
            embedding_model=self.model_id,
        )
