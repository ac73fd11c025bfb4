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
        ("noise.mp3", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not decodable"),
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


def test_m4a_goes_through_ffmpeg(tmp_path):
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    sf.write(tmp_path / "src.wav", np.sin(np.arange(44100 * 2) / 10).astype(np.float32) * 0.3, 44100)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "src.wav"), str(tmp_path / "a.m4a")], check=True)
    samples = audio.load_audio(tmp_path / "a.m4a")
    assert abs(samples.size / audio.SAMPLE_RATE - 2.0) < 0.1


def test_long_m4a_windows_are_decoded_by_seeking(tmp_path):
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    rate = audio.SAMPLE_RATE
    # 90 s whose level rises each second: a window's level says where it was read from.
    level = np.repeat(np.linspace(0.01, 0.9, 90), rate).astype(np.float32)
    carrier = np.sin(2 * np.pi * 440 * np.arange(level.size) / rate).astype(np.float32)
    sf.write(tmp_path / "src.wav", carrier * level, rate)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "src.wav"), str(tmp_path / "long.m4a")],
                   check=True)
    early, late = audio.load_windows(tmp_path / "long.m4a", [(10.0, 2.0), (80.0, 2.0)])
    assert abs(early.size - 2 * rate) < rate // 10 and abs(late.size - 2 * rate) < rate // 10
    assert np.abs(late).max() > 5 * np.abs(early).max()
