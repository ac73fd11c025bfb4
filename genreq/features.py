"""Time-frequency features and the fixed-size chunks the networks see.

The seed paper's input is the log-amplitude mel spectrogram ("MFC") of 22,050 Hz mono
audio with a 2048-point FFT, hop 512 and 128 mel bands, cut into 128-frame (~3 s)
chunks. MFCC, a log-magnitude STFT and the raw waveform are the alternatives the other
architectures use. A track's prediction is the mean of its chunks' probabilities.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch

from genreq.audio import SAMPLE_RATE

N_FFT = 2048  # samples per analysis window (~93 ms at 22,050 Hz)
HOP_LENGTH = 512  # samples between frames (~23 ms)
N_MELS = 128  # mel bands
N_MFCC = 20  # cepstral coefficients when kind == "mfcc"
CHUNK_FRAMES = 128  # frames per network input (~2.97 s)
# Chunks analysed per track, whatever its length: 5 spread over a 30-s clip score about as
# well as all of its chunks, at half the cost (the pretrained-head results in bench/results
# give their all_chunks accuracy beside the one scored on these).
MAX_CHUNKS = 5
AMIN = 1e-10  # power floor before the log: silence becomes -100 dB, never -inf
EXCERPTS_FROM_S = 20.0  # longer tracks are decoded only where the chunks are, not whole

KINDS = ("mel", "mfcc", "stft", "raw", "musicnn")
# "musicnn": the pretrained taggers' input (genreq.pretrained.musicnn): log10(10000·mel + 1)
# of 16 kHz audio, 512-point frames, hop 256, 96 bands, 187-frame (3 s) chunks.
MUSICNN_LOG_SCALE = 10000.0


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that must match between training and inference. Stored in checkpoints."""

    kind: str = "mel"
    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    n_mfcc: int = N_MFCC
    chunk_frames: int = CHUNK_FRAMES
    # Each track's audio scaled to this RMS (dBFS) before its features (`levelled`);
    # None: as decoded. Checkpoints from before the field read as None.
    level_dbfs: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown feature kind {self.kind!r}; expected one of {KINDS}")

    @property
    def n_bins(self) -> int:
        """Rows of the feature matrix (1 for the raw waveform)."""
        return {"mel": self.n_mels, "mfcc": self.n_mfcc, "stft": self.n_fft // 2 + 1, "raw": 1,
                "musicnn": self.n_mels}[self.kind]

    @property
    def chunk_width(self) -> int:
        """Columns of one chunk: frames, or samples for the raw waveform."""
        return self.chunk_frames * self.hop_length if self.kind == "raw" else self.chunk_frames

    @property
    def chunk_s(self) -> float:
        return self.chunk_frames * self.hop_length / self.sample_rate

    def to_dict(self) -> dict:
        """As stored in checkpoints: a spec without a level is written as it was before
        the field existed."""
        out = asdict(self)
        if out["level_dbfs"] is None:
            del out["level_dbfs"]
        return out


@lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-style mel filterbank, (n_mels, n_fft // 2 + 1), as librosa.filters.mel builds it.

    Written out here so a worker never imports librosa (its numba stack adds memory and
    start-up time to every worker process); tests compare it with librosa's."""
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, np.newaxis] - fft_hz[np.newaxis, :]
    rising = -ramps[:-2] / widths[:-1, np.newaxis]
    falling = ramps[2:] / widths[1:, np.newaxis]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, np.newaxis]  # equal area per band
    return weights.astype(np.float32)


# The Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_MEL_HZ_PER_MEL = 200.0 / 3
_MEL_BREAK_HZ = 1000.0
_MEL_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _MEL_HZ_PER_MEL
    octaves = np.log(np.maximum(hz, 1e-10) / _MEL_BREAK_HZ)
    log = _MEL_BREAK_HZ / _MEL_HZ_PER_MEL + octaves / _MEL_LOG_STEP
    return np.where(hz >= _MEL_BREAK_HZ, log, linear)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    break_mel = _MEL_BREAK_HZ / _MEL_HZ_PER_MEL
    return np.where(mel >= break_mel, _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (mel - break_mel)),
                    _MEL_HZ_PER_MEL * mel)


@lru_cache(maxsize=8)
def _window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft)


def _power(audio: np.ndarray, spec: FeatureSpec) -> torch.Tensor:
    # torch.stft is faster than librosa.stft on one thread (bench/results/pipeline.json:
    # the naive loop on librosa's kernels against the one on genreq's) and gives the same
    # frames: centred, zero-padded, periodic Hann window (librosa's defaults).
    stft = torch.stft(
        torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
        spec.n_fft,
        spec.hop_length,
        window=_window(spec.n_fft),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return stft.real.square() + stft.imag.square()


def _db(power: torch.Tensor) -> np.ndarray:
    return (10.0 * torch.log10(torch.clamp(power, min=AMIN))).numpy()


def log_mel(audio: np.ndarray, spec: FeatureSpec = FeatureSpec()) -> np.ndarray:
    """Log-amplitude mel spectrogram in dB, shape (n_mels, frames)."""
    basis = torch.from_numpy(_mel_basis(spec.sample_rate, spec.n_fft, spec.n_mels))
    return _db(basis @ _power(audio, spec))


def mfcc(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """MFCC (DCT-II of the log-mel, as librosa computes it), shape (n_mfcc, frames)."""
    # Imported here: only MFCC models need scipy, and a worker serving a log-mel model
    # (every shipped one) should not pay its import time and memory in every process.
    import scipy.fft

    return scipy.fft.dct(log_mel(audio, spec), axis=0, type=2, norm="ortho")[: spec.n_mfcc]


def musicnn_log_mel(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """log10(10000·mel + 1) in float32, shape (n_mels, frames): what the musicnn taggers
    were trained on. Frames are centred with reflect padding (librosa's default when they
    were trained) rather than genreq's zero padding; upstream's float16 log, which
    overflows on loud clips, is not reproduced. Computed with torch.stft and genreq's
    own Slaney filterbank, as librosa.feature.melspectrogram computes it (to float32
    rounding: tests/test_accurate.py), in less time and without importing librosa."""
    # Padded by numpy, which reflects any length as librosa does (torch's reflect padding
    # refuses a signal shorter than the padding).
    samples = np.pad(np.asarray(audio, dtype=np.float32), spec.n_fft // 2, mode="reflect")
    stft = torch.stft(
        torch.from_numpy(samples), spec.n_fft, spec.hop_length, window=_window(spec.n_fft),
        center=False, return_complex=True,
    )
    power = stft.real.square() + stft.imag.square()
    basis = torch.from_numpy(_mel_basis(spec.sample_rate, spec.n_fft, spec.n_mels))
    mel = basis @ power
    return torch.log10(mel * MUSICNN_LOG_SCALE + 1.0).numpy()


def musicnn_log_mel_librosa(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """musicnn_log_mel as genreq computed it before, with librosa: the reference the
    tests and bench/accurate.py compare the torch version with."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=np.asarray(audio, dtype=np.float32), sr=spec.sample_rate, n_fft=spec.n_fft,
        hop_length=spec.hop_length, n_mels=spec.n_mels, pad_mode="reflect",
    ).astype(np.float32)
    return np.log10(np.float32(MUSICNN_LOG_SCALE) * mel + np.float32(1.0))


MAX_LEVEL_GAIN_DB = 40.0  # a near-silent track is raised at most this much


def levelled(parts: list[np.ndarray], spec: FeatureSpec) -> list[np.ndarray]:
    """The decoded parts of one track (a whole clip, or a file's excerpts together) scaled
    by one gain so that their RMS is spec.level_dbfs, by at most MAX_LEVEL_GAIN_DB;
    unchanged when the spec sets no level, or for digital silence. Real libraries are
    mastered 20 dB apart and the taggers' log-mel input is not gain-invariant: without
    this, the default loses a third of its accuracy on a copy of GTZAN 24 dB quieter, and
    quiet tracks turn classical (bench/loudness.py)."""
    if spec.level_dbfs is None:
        return parts
    samples = sum(p.size for p in parts)
    power = sum(float(np.dot(p, p)) for p in parts) / max(1, samples)
    if power <= 0:
        return parts
    gain_db = min(spec.level_dbfs - 10 * np.log10(power), MAX_LEVEL_GAIN_DB)
    gain = np.float32(10 ** (gain_db / 20))
    return [p * gain for p in parts]


def extract(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The feature matrix of one excerpt, shape (n_bins, frames) — (1, samples) for raw."""
    if spec.kind == "mel":
        return log_mel(audio, spec)
    if spec.kind == "mfcc":
        return mfcc(audio, spec).astype(np.float32)
    if spec.kind == "stft":
        return _db(_power(audio, spec))
    if spec.kind == "musicnn":
        return musicnn_log_mel(audio, spec)
    return audio[np.newaxis, :].astype(np.float32)


def chunk_indices(n: int, max_chunks: int | None = MAX_CHUNKS) -> np.ndarray:
    """Which of N consecutive chunks are analysed: all, or `max_chunks` spread evenly."""
    if max_chunks is not None and n > max_chunks:
        if max_chunks == 1:  # a linspace of one point is its start; one chunk is the middle's
            return np.array([(n - 1) // 2])
        return np.linspace(0, n - 1, max_chunks).round().astype(int)
    return np.arange(n)


def chunk_starts(width: int, chunk: int, max_chunks: int | None = MAX_CHUNKS) -> np.ndarray:
    """Starts of non-overlapping chunks, at most `max_chunks`, spread evenly across `width`."""
    return chunk_indices(max(1, width // chunk), max_chunks) * chunk


def centred_starts(width: int, chunk: int, max_chunks: int) -> np.ndarray:
    """Starts of `max_chunks` chunks of a whole track `width` frames long by
    excerpt_windows' rule (each centred on one of `max_chunks` equal parts of the middle
    90 %, kept inside the track), so that a short track decoded whole is read where a long
    one is, not on its intro and outro; every non-overlapping chunk when it holds no more."""
    if max(1, width // chunk) <= max_chunks:
        return chunk_starts(width, chunk, None)
    part = 0.9 * width / max_chunks
    centres = 0.05 * width + part * (np.arange(max_chunks) + 0.5)
    return np.clip(np.round(centres - chunk / 2), 0, width - chunk).astype(int)


def fit_width(feature: np.ndarray, width: int) -> np.ndarray:
    """Tile a feature matrix shorter than one chunk up to `width` columns."""
    if feature.shape[1] >= width:
        return feature
    reps = -(-width // feature.shape[1])
    return np.tile(feature, (1, reps))[:, :width]


def chunks(
    feature: np.ndarray, spec: FeatureSpec, max_chunks: int | None = MAX_CHUNKS,
    centred: bool = False,
) -> np.ndarray:
    """Cut a feature matrix into network inputs, shape (n, 1, n_bins, chunk_width): at
    most `max_chunks` of them, spread evenly from end to end (chunk_starts, the training
    grid's), or where `centred` puts them (centred_starts, as genreq classifies)."""
    width = spec.chunk_width
    feature = fit_width(feature, width)
    if centred and max_chunks is not None:
        starts = centred_starts(feature.shape[1], width, max_chunks)
    else:
        starts = chunk_starts(feature.shape[1], width, max_chunks)
    return np.stack([feature[:, s : s + width] for s in starts])[:, np.newaxis]


def excerpt_windows(duration_s: float | None, spec: FeatureSpec, max_chunks: int = MAX_CHUNKS):
    """(start_s, length_s) windows to decode from a track, or None to decode it whole.

    A track longer than EXCERPTS_FROM_S is represented by `max_chunks` chunk-sized
    excerpts, one at the centre of each of `max_chunks` equal parts of its middle 90 %
    (intros and fade-outs say little about the genre): one excerpt is the track's middle,
    two sit at 27.5 and 72.5 %, five at 14 to 86 %. A 30-s clip decodes half its audio,
    and an hour-long mix costs the same.
    """
    if duration_s is None or duration_s <= EXCERPTS_FROM_S:
        return None
    # One extra hop of audio so the centred STFT yields a full chunk of frames.
    length_s = spec.chunk_s + spec.n_fft / spec.sample_rate
    part_s = 0.9 * duration_s / max_chunks
    centres = 0.05 * duration_s + part_s * (np.arange(max_chunks) + 0.5)
    return [(float(c - length_s / 2), length_s) for c in centres]
