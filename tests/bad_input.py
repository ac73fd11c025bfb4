"""The bad-input corpus: what real music libraries hold besides clean audio.

`write_corpus(root)` generates every case under `root` (no audio is committed) and
returns what each file must end as: ("done", None), ("done", words its note must
contain) or ("failed", words the reason must contain). Cases that are not tracks at all
(a directory named .wav, a symlink loop, a file deleted before a worker reaches it) are
made by the tests themselves.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 22050
ONE_HOUR_RATE = 8000  # keeps the hour-long file at 58 MB on disk


def _music(seconds: float, rate: int = RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A few partials with a beat: something any genre model can chew on."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    signal = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 2000, size=4)) * 0.15
    signal = signal * (0.6 + 0.4 * (np.arange(t.size) % (rate // 2) < rate // 8))
    if channels > 1:
        signal = np.stack([signal * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    return signal.astype(np.float32)


def write_corpus(root: Path, one_hour: bool = True) -> dict[Path, tuple[str, str | None]]:
    """Write the corpus; return {path: (expected state, word the failure reason must hold)}."""
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[Path, tuple[str, str | None]] = {}

    def case(name: str, state: str, reason: str | None = None) -> Path:
        path = root / name
        expected[path] = (state, reason)
        return path

    case("empty.wav", "failed", "empty").write_bytes(b"")
    full = _music(2.0)
    wav_bytes_path = root / "_whole.wav"
    sf.write(wav_bytes_path, full, RATE, subtype="PCM_16")
    case("truncated header.wav", "failed", "not decodable").write_bytes(
        wav_bytes_path.read_bytes()[:30])
    wav_bytes_path.unlink()
    case("lyrics.flac", "failed", "not decodable").write_text(
        "This is not audio, just the lyrics someone saved with the wrong extension.\n" * 20)
    case("random bytes.mp3", "failed", "not decodable").write_bytes(
        np.random.default_rng(7).integers(0, 256, 64_000, dtype=np.uint8).tobytes())
    sf.write(case("one millisecond.wav", "skipped", "too short"), _music(0.001), RATE)
    sf.write(case("digital silence.wav", "done"), np.zeros(30 * RATE, np.float32), RATE)
    sf.write(case("dc offset only.wav", "done"), np.full(30 * RATE, 0.5, np.float32), RATE)
    sf.write(case("8ch 96k 24bit.wav", "done"), _music(6.0, rate=96_000, channels=8), 96_000,
             subtype="PCM_24")
    if one_hour:
        sf.write(case("one hour mix.wav", "done"), _music(3600.0, rate=ONE_HOUR_RATE),
                 ONE_HOUR_RATE, subtype="PCM_16")
    for name in ('name with spaces and "quotes".wav', "it's a 'single'.wav",
                 "new\nline.wav", "日本語の曲.wav", "Ελληνικά.flac", "русский.ogg", "عربي.wav"):
        sf.write(case(name, "done"), _music(3.0, seed=len(name)), RATE)
    if shutil.which("ffmpeg"):
        m4a = case("cover art named.m4a", "failed", "not decodable")
        # A PNG saved with an audio extension: ffmpeg opens it and finds no audio stream.
        png = root / "_cover.png"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                        "color=c=red:s=32x32", "-frames:v", "1", str(png)], check=True)
        png.rename(m4a)
        # 20 s of aac with 600 bytes overwritten a third of the way in, as a bad sector or
        # an interrupted copy leaves them: classified around the damage, and said so.
        damaged = case("damaged in the middle.m4a", "done", "damaged packets")
        source = root / "_source.wav"
        sf.write(source, _music(20.0, rate=44100), 44100)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(source), "-c:a", "aac",
                        "-b:a", "128k", str(damaged)], check=True)
        source.unlink()
        data = bytearray(damaged.read_bytes())
        at = len(data) // 3
        data[at:at + 600] = np.random.default_rng(3).integers(0, 256, 600, np.uint8).tobytes()
        damaged.write_bytes(bytes(data))
    return expected
