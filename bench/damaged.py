"""Damaged files, as real libraries hold them: how much of each track genreq reads, and
what reading healthy files costs, before and after damaged packets were skipped.

    .venv/bin/python bench/damaged.py            # figures on stderr, JSON on stdout
    .venv/bin/python bench/damaged.py --save     # also bench/results/damaged.json

Builds TRACKS tracks per format (mp3, m4a/aac, Ogg Vorbis, flac) of TRACK_S seconds, 44.1
kHz stereo, from GTZAN clips of ../shared/data/gtzan when it is there (noise otherwise),
encoded with the ffmpeg program; and a damaged copy of each, DAMAGE_BYTES random bytes
written over it at each of DAMAGE_AT (fractions of the file), as a bad sector or an
interrupted copy leaves them. Then, in this process, alternating on each file:

- before: genreq.audio as it was (libsndfile's reads taken whatever their length, PyAV's
  decoding ended by the first packet it rejects, the decoders' stderr left alone),
  rebuilt here by swapping those three parts back;
- after: genreq.audio as it is.

Per format and variant: seconds of audio the whole-file read returns (or the error),
whether the default model's excerpt windows come back whole, and for the healthy files
the median ms of an excerpt read (the default's windows) over REPEATS, before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genreq import audio  # noqa: E402
from genreq.errors import AudioError  # noqa: E402
from genreq.predict import Classifier  # noqa: E402

RESULT = REPO / "bench" / "results" / "damaged.json"
DATA = REPO.parent / "shared" / "data" / "gtzan"
TRACKS = 3
TRACK_S = 120
RATE = 44100
DAMAGE_AT = (0.2, 0.6)
DAMAGE_BYTES = 600
REPEATS = 7
CODECS = {"mp3": ["-c:a", "libmp3lame", "-q:a", "2"], "m4a": ["-c:a", "aac", "-b:a", "256k"],
          "ogg": ["-c:a", "libvorbis", "-q:a", "5"], "flac": []}


def source_audio(i: int) -> np.ndarray:
    clips = sorted(DATA.glob("*/*.*"))[i * 4::TRACKS * 4][: TRACK_S // 30] if DATA.is_dir() else []
    if clips:
        x = np.concatenate([audio.load_audio(c, RATE) for c in clips])
    else:
        x = 0.2 * np.random.default_rng(i).standard_normal(TRACK_S * RATE).astype(np.float32)
    x = np.resize(x, TRACK_S * RATE)
    return np.stack([x, np.roll(x, 100)], axis=1)  # stereo, the right channel 2 ms late


def build(folder: Path) -> dict[str, list[tuple[Path, Path]]]:
    files: dict[str, list[tuple[Path, Path]]] = {ext: [] for ext in CODECS}
    rng = np.random.default_rng(0)
    for i in range(TRACKS):
        wav = folder / f"src{i}.wav"
        sf.write(wav, source_audio(i), RATE)
        for ext, options in CODECS.items():
            healthy = folder / f"track{i}.{ext}"
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), *options,
                            str(healthy)], check=True)
            data = bytearray(healthy.read_bytes())
            for at in DAMAGE_AT:
                start = int(at * len(data))
                data[start:start + DAMAGE_BYTES] = rng.integers(0, 256, DAMAGE_BYTES,
                                                                np.uint8).tobytes()
            damaged = folder / f"track{i}-damaged.{ext}"
            damaged.write_bytes(bytes(data))
            files[ext].append((healthy, damaged))
    return files


class _OldFrames(audio._Frames):
    def __iter__(self):
        return iter(self.container.decode(self.stream))

    def check(self) -> None:
        pass


def _old_read_soundfile(path, windows_s):
    with sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        if windows_s is None:
            return [audio._to_mono(f.read(dtype="float32", always_2d=False))], rate
        parts = []
        for start_s, length_s in windows_s:
            f.seek(int(start_s * rate))
            parts.append(audio._to_mono(f.read(int(length_s * rate), dtype="float32",
                                               always_2d=False)))
        return parts, rate


@contextlib.contextmanager
def before():
    """genreq.audio as it was before damaged packets were skipped."""
    saved = audio._Frames, audio._read_soundfile, audio._c_stderr_logged
    audio._Frames, audio._read_soundfile = _OldFrames, _old_read_soundfile
    audio._c_stderr_logged = lambda path: contextlib.nullcontext()
    try:
        yield
    finally:
        audio._Frames, audio._read_soundfile, audio._c_stderr_logged = saved


def read(path: Path, windows) -> dict:
    try:
        whole = audio.load_audio(path).size / audio.SAMPLE_RATE
    except AudioError as err:
        return {"whole_s": None, "error": str(err).split(": ", 1)[1], "windows_whole": False}
    parts = audio.load_windows(path, windows)
    full = all(p.size == round(n * audio.SAMPLE_RATE) for p, (_, n) in zip(parts, windows,
                                                                            strict=True))
    return {"whole_s": round(whole, 2), "error": None, "windows_whole": full}


def excerpt_ms(path: Path, windows) -> float:
    started = time.perf_counter()
    audio.load_windows(path, windows)
    return 1000 * (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    windows = Classifier.load().excerpt_windows(float(TRACK_S))
    out = {"benchmark": "damaged", "track_s": TRACK_S, "tracks_per_format": TRACKS,
           "damage": {"bytes": DAMAGE_BYTES, "at": DAMAGE_AT}, "windows": windows,
           "formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = build(Path(tmp))
        for ext, pairs in files.items():
            rows = {"healthy": {"before": [], "after": []}, "damaged": {"before": [], "after": []}}
            ms = {"before": [], "after": []}
            for healthy, damaged in pairs:
                for variant, path in (("healthy", healthy), ("damaged", damaged)):
                    with before():
                        rows[variant]["before"].append(read(path, windows))
                    rows[variant]["after"].append(read(path, windows))
                for _ in range(REPEATS):
                    with before():
                        ms["before"].append(excerpt_ms(healthy, windows))
                    ms["after"].append(excerpt_ms(healthy, windows))
            speed = {k: round(statistics.median(v), 2) for k, v in ms.items()}
            speed["after_over_before"] = round(speed["after"] / speed["before"], 3)
            out["formats"][ext] = {**rows, "excerpt_read_ms_healthy": speed}
            damaged_whole = {k: [r["whole_s"] for r in v] for k, v in rows["damaged"].items()}
            print(f"{ext}: damaged, seconds read of {TRACK_S}: before {damaged_whole['before']}"
                  f", after {damaged_whole['after']}; healthy excerpt read {speed['before']} "
                  f"-> {speed['after']} ms ({speed['after_over_before']}x)", file=sys.stderr)
    text = json.dumps(out, indent=1)
    print(text)
    if args.save:
        RESULT.write_text(text + "\n")


if __name__ == "__main__":
    main()
