import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreq import audio
from genreq.errors import AudioError


def test_stereo_44k_is_mixed_down_and_resampled(tmp_path):
    t = np.arange(44100 * 2) / 44100
    left = np.sin(2 * np.pi * 220 * t)
    sf.write(tmp_path / "a.flac", np.stack([left, -left * 0 + left], axis=1), 44100)
    samples = audio.load_audio(tmp_path / "a.flac")
    assert samples.dtype == np.float32
    assert abs(samples.size - 2 * audio.SAMPLE_RATE) <= 2
    assert 0.9 < np.abs(samples).max() < 1.1


def test_windows_decode_only_the_excerpts(tmp_path):
    rate = audio.SAMPLE_RATE
    ramp = np.linspace(-1, 1, rate * 60, dtype=np.float32)
    sf.write(tmp_path / "long.wav", ramp, rate, subtype="FLOAT")
    parts = audio.load_windows(tmp_path / "long.wav", [(10.0, 2.0), (50.0, 2.0)])
    assert [p.size for p in parts] == [2 * rate, 2 * rate]
    np.testing.assert_allclose(parts[1][0], ramp[50 * rate], atol=1e-6)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.wav", b"", "empty file"),
        ("text.flac", b"this is not audio, it is a text file\n" * 20, "not decodable audio"),
        ("noise.mp3", np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes(),
         "not decodable"),
    ],
)
def test_unreadable_files_raise_an_error_naming_file_and_cause(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError, match=reason) as err:
        audio.load_audio(path)
    assert err.value.path == str(path)
    assert str(path) in str(err.value)


def test_a_1_ms_clip_is_too_short(tmp_path):
    sf.write(tmp_path / "blip.wav", np.ones(22, dtype=np.float32) * 0.1, audio.SAMPLE_RATE)
    with pytest.raises(AudioError, match="too short to classify"):
        audio.load_audio(tmp_path / "blip.wav")


def test_missing_file_and_directory_are_reported(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        audio.load_audio(tmp_path / "gone.wav")
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(AudioError, match="not a regular file"):
        audio.load_audio(tmp_path / "dir.wav")


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="the ffmpeg program makes the test's files")


def encode(source: Path, target: Path, *options: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), *options,
                    str(target)], check=True)
    return target


@needs_ffmpeg
def test_m4a_and_opus_decode_without_the_ffmpeg_program(tmp_path, monkeypatch):
    sf.write(tmp_path / "src.wav", np.sin(np.arange(44100 * 2) / 10).astype(np.float32) * 0.3,
             44100)
    files = [encode(tmp_path / "src.wav", tmp_path / f"a.{ext}") for ext in ("m4a", "opus")]
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for path in files:
        samples = audio.load_audio(path)
        assert abs(samples.size / audio.SAMPLE_RATE - 2.0) < 0.1, path
        assert audio.duration_s(path) == pytest.approx(2.0, abs=0.1)


# A minute of noise: a window's samples say exactly where they were read from.
SEEK_SOURCE_S = 60
SEEK_WINDOWS = [(7.3, 3.1), (31.0, 3.1), (52.25, 3.1)]
CODECS = {"flac": [], "ogg": ["-c:a", "libvorbis", "-q:a", "5"],
          "mp3": ["-c:a", "libmp3lame", "-q:a", "2"], "m4a": ["-c:a", "aac", "-b:a", "256k"],
          "opus": ["-c:a", "libopus", "-b:a", "128k"]}


@pytest.fixture(scope="module")
def noise_source(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """44.1 kHz stereo noise, and its mono mix at the model's rate."""
    rate = 44100
    rng = np.random.default_rng(5)
    stereo = 0.2 * rng.standard_normal((SEEK_SOURCE_S * rate, 2))
    path = tmp_path_factory.mktemp("seek") / "noise.wav"
    sf.write(path, stereo.astype(np.float32), rate, subtype="FLOAT")
    mono = audio._resample(stereo.mean(axis=1).astype(np.float32), rate, audio.SAMPLE_RATE)
    return path, mono


@needs_ffmpeg
@pytest.mark.parametrize("ext", CODECS)
def test_windows_start_on_their_sample_in_every_format(noise_source, tmp_path, ext):
    """Each excerpt is the source's samples from its start, to within a few samples at
    the model's rate (lossy codecs change the waveform, not where it is)."""
    source, mono = noise_source
    path = encode(source, tmp_path / f"noise.{ext}", *CODECS[ext])
    parts = audio.load_windows(path, SEEK_WINDOWS)
    rate, margin = audio.SAMPLE_RATE, 2000
    for (start_s, length_s), part in zip(SEEK_WINDOWS, parts, strict=True):
        assert part.size == pytest.approx(length_s * rate, abs=2), (ext, start_s)
        first = round(start_s * rate)
        reference = mono[first - margin : first + part.size + margin]
        lag = int(np.argmax(np.correlate(reference, part[:rate], "valid"))) - margin
        assert abs(lag) <= 3, (ext, start_s, lag)


@needs_ffmpeg
@pytest.mark.parametrize("ext", ["m4a", "opus"])
def test_pyav_decodes_only_the_windows(noise_source, tmp_path, monkeypatch, ext):
    source, _ = noise_source
    path = encode(source, tmp_path / f"noise.{ext}", *CODECS[ext])
    decoded = []
    frame_pcm = audio._frame_pcm
    monkeypatch.setattr(audio, "_frame_pcm", lambda f: decoded.append(f.samples) or frame_pcm(f))
    audio.load_windows(path, SEEK_WINDOWS)
    wanted_s = sum(length for _, length in SEEK_WINDOWS)
    rate = 48000 if ext == "opus" else 44100
    # The windows, each one's pre-roll, and what the demuxer's seek backs off (an Ogg
    # page and opus's own pre-roll): a fraction of the minute.
    assert sum(decoded) / rate < wanted_s + len(SEEK_WINDOWS) * (audio.PREROLL_S + 0.6)


@needs_ffmpeg
@pytest.mark.parametrize("ext", ["mp3", "m4a", "opus"])
@pytest.mark.parametrize("damage", ["header only", "garbage"])
def test_damaged_compressed_files_are_an_audio_error_with_the_path(noise_source, tmp_path,
                                                                   ext, damage):
    source, _ = noise_source
    path = encode(source, tmp_path / f"noise.{ext}", *CODECS[ext])
    if damage == "header only":
        path.write_bytes(path.read_bytes()[:3000])
    else:
        path.write_bytes(np.random.default_rng(2).integers(0, 256, 50_000, np.uint8).tobytes())
    # The first 3000 bytes of an mp3 hold a frame or two of audio: too short, then.
    with pytest.raises(AudioError, match="not decodable audio|too short to classify") as err:
        audio.load_audio(path)
    assert err.value.path == str(path)


def damage(path: Path, at: float, n: int = 600) -> Path:
    """`n` random bytes written over `path` at the fraction `at` of its length."""
    data = bytearray(path.read_bytes())
    start = int(at * len(data))
    data[start:start + n] = np.random.default_rng(3).integers(0, 256, n, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


@needs_ffmpeg
@pytest.mark.parametrize("ext", ["mp3", "m4a"])
def test_a_damaged_stretch_is_skipped_and_the_rest_read_quietly(noise_source, tmp_path, ext,
                                                                capfd, caplog):
    """A few damaged frames early in a file cost those frames, not the rest of the track
    (libsndfile's mp3 decoder stops at them; FFmpeg's refused the whole file), and the
    decoder's complaints go to the log, not the terminal."""
    source, _ = noise_source
    path = damage(encode(source, tmp_path / f"noise.{ext}", *CODECS[ext]), at=0.2)
    capfd.readouterr()
    whole = audio.load_audio(path)
    parts = audio.load_windows(path, SEEK_WINDOWS)
    out, err = capfd.readouterr()
    assert whole.size / audio.SAMPLE_RATE > SEEK_SOURCE_S - 0.5
    assert [p.size for p in parts] == [round(n * audio.SAMPLE_RATE) for _, n in SEEK_WINDOWS]
    assert (out, err) == ("", "")
    assert any("damaged packet" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records)


@needs_ffmpeg
def test_an_image_with_an_audio_suffix_has_no_audio_stream(tmp_path):
    path = tmp_path / "cover.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                    "color=c=red:s=32x32", "-frames:v", "1", "-f", "image2", str(path)],
                   check=True)
    with pytest.raises(AudioError, match="no audio stream"):
        audio.load_audio(path)


class FakeFrame:
    """What genreq.audio reads of a PyAV audio frame, from a (channels, samples) array."""

    def __init__(self, pcm: np.ndarray, name: str, planar: bool):
        self.samples = pcm.shape[1]
        self.format = type("Format", (), {"name": name, "is_planar": planar})()
        self.layout = type("Layout", (), {"nb_channels": pcm.shape[0]})()
        self.planes = ([np.ascontiguousarray(c).tobytes() for c in pcm] if planar
                       else [np.ascontiguousarray(pcm.T).tobytes()])


def test_window_buffer_joins_frames_as_their_own_mono_would():
    """Frames copied into one buffer per window, a change of format or channels mid-window
    included, give the samples that mixing each frame down on its own gives."""
    rng = np.random.default_rng(0)
    frames = [FakeFrame(rng.standard_normal((2, 1024)).astype(np.float32), "fltp", True),
              FakeFrame(rng.standard_normal((2, 1024)).astype(np.float32), "fltp", True),
              FakeFrame((rng.standard_normal((1, 1152)) * 8000).astype(np.int16), "s16", False),
              FakeFrame((rng.standard_normal((2, 1152)) * 8000).astype(np.int16), "s16", False)]
    skip, wanted = 300, 3000
    window = audio._WindowBuffer(wanted)
    full = [window.add(frame, skip if i == 0 else 0) for i, frame in enumerate(frames)]
    pcms = [audio._frame_pcm(f) for f in frames]
    pcms[0] = pcms[0][:, skip:]
    expected = np.concatenate([audio._pcm_mono(p) for p in pcms])[:wanted]
    assert full == [False, False, False, True]  # 724 + 1024 + 1152 samples, then the rest
    np.testing.assert_array_equal(window.mono(), expected)
    assert window.mono().dtype == np.float32
