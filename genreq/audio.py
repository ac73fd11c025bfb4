"""Decoding audio files to mono float32 at a fixed sample rate.

soundfile (libsndfile) decodes WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF and AU directly
and can seek; anything else (m4a/aac, odd containers) goes through ffmpeg. Every
failure leaves this module as an AudioError naming the file and the cause.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from genreq.errors import AudioError

SAMPLE_RATE = 22050  # Hz, the rate every model in genreq is trained at
MIN_DURATION_S = 1.0  # shorter clips carry too little music to classify
FFMPEG_TIMEOUT_S = 300


def _to_mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.ndim == 2 else data


def _resample(audio: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    if source_rate == rate:
        return audio
    return soxr.resample(audio, source_rate, rate, quality="HQ").astype(np.float32)


def _check(path: Path, audio: np.ndarray, rate: int) -> np.ndarray:
    if audio.size < MIN_DURATION_S * rate:
        seconds = audio.size / rate
        raise AudioError(
            path, f"too short to classify ({seconds:.3f} s; at least {MIN_DURATION_S:g} s needed)"
        )
    if not np.all(np.isfinite(audio)):
        # Rare, but a NaN would poison every feature downstream.
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    return audio


def duration_s(path: str | Path) -> float | None:
    """Duration from the file header, or None when soundfile cannot read the header."""
    try:
        info = sf.info(str(path))
    except Exception:  # a header probe only: decoding the file reports the real error
        return None
    return info.frames / info.samplerate if info.samplerate else None


def _read_soundfile(
    path: Path, windows_s: list[tuple[float, float]] | None
) -> tuple[list[np.ndarray], int]:
    with sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        if windows_s is None:
            return [_to_mono(f.read(dtype="float32", always_2d=False))], rate
        parts = []
        for start_s, length_s in windows_s:
            f.seek(int(start_s * rate))
            parts.append(_to_mono(f.read(int(length_s * rate), dtype="float32", always_2d=False)))
        return parts, rate


def _read_ffmpeg(path: Path, rate: int, window_s: tuple[float, float] | None = None) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(
            path, "this format needs ffmpeg to decode; install ffmpeg (e.g. apt-get install ffmpeg)"
        )
    # -ss/-t before -i: ffmpeg seeks in the container instead of decoding up to the window.
    seek = ["-ss", f"{window_s[0]:.3f}", "-t", f"{window_s[1]:.3f}"] if window_s else []
    cmd = [ffmpeg, "-nostdin", "-v", "error", *seek, "-i", str(path),
           "-f", "f32le", "-ac", "1", "-ar", str(rate), "-"]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError(path, f"ffmpeg did not finish within {FFMPEG_TIMEOUT_S} s") from None
    if out.returncode != 0:
        message = out.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = message[-1] if message else "failed"
        raise AudioError(path, f"not decodable audio (ffmpeg: {reason})")
    return np.frombuffer(out.stdout, dtype=np.float32).copy()


def load_audio(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole file as mono float32 at `rate` Hz."""
    return load_windows(path, None, rate)[0]


def load_windows(
    path: str | Path,
    windows_s: list[tuple[float, float]] | None,
    rate: int = SAMPLE_RATE,
    on_stage: Callable[[str, float], None] | None = None,
) -> list[np.ndarray]:
    """Mono float32 excerpts (start_s, length_s) of a file at `rate` Hz.

    With `windows_s=None`, one excerpt: the whole file. Seekable formats decode only
    the excerpts, so a one-hour mix costs about as much as a 30-s clip. `on_stage`, if
    given, is told the seconds spent on "decode" and on "resample" (inside decode when
    ffmpeg does both at once), as Classifier.classify_file reports its stages.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    # Three clock reads per file whether or not anyone listens: nothing beside a decode.
    started = time.perf_counter()
    try:
        parts, source_rate = _read_soundfile(path, windows_s)
        decoded = time.perf_counter()
        parts = [_resample(p, source_rate, rate) for p in parts]
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        # libsndfile does not know the container (m4a, ...) or the file is damaged:
        # ffmpeg decides which.
        if windows_s is None:
            parts = [_read_ffmpeg(path, rate)]
        else:
            parts = [_read_ffmpeg(path, rate, w) for w in windows_s]
        decoded = time.perf_counter()
    if on_stage is not None:
        on_stage("decode", decoded - started)
        on_stage("resample", time.perf_counter() - decoded)
    if windows_s is None:
        return [_check(path, p, rate) for p in parts]
    return [p for p in parts if p.size]

