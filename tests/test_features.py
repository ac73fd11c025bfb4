import numpy as np
import pytest

from genreq import features as F


def sine(seconds: float, rate: int = F.SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_log_mel_shape_follows_the_named_constants():
    audio = sine(30)
    mel = F.log_mel(audio)
    assert mel.shape == (F.N_MELS, 1 + audio.size // F.HOP_LENGTH)
    assert mel.dtype == np.float32


def test_log_mel_puts_a_440_hz_tone_in_the_right_band():
    mel = F.log_mel(sine(3))
    peak_bins = F._mel_basis(F.SAMPLE_RATE, F.N_FFT, F.N_MELS).argmax(axis=1)
    centres = peak_bins * F.SAMPLE_RATE / F.N_FFT
    loudest_band = int(mel.mean(axis=1).argmax())
    assert abs(centres[loudest_band] - 440) < 60


def test_silence_gives_the_floor_not_minus_infinity():
    mel = F.log_mel(np.zeros(F.SAMPLE_RATE * 3, dtype=np.float32))
    assert np.isfinite(mel).all()
    assert mel.max() == pytest.approx(-100, abs=1e-3)


def test_mfcc_matches_librosa():
    import librosa

    audio = sine(3)
    spec = F.FeatureSpec(kind="mfcc", n_mfcc=13)
    ours = F.extract(audio, spec)
    theirs = librosa.feature.mfcc(
        S=librosa.power_to_db(
            librosa.feature.melspectrogram(
                y=audio, sr=F.SAMPLE_RATE, n_fft=F.N_FFT, hop_length=F.HOP_LENGTH),
            amin=F.AMIN, top_db=None,
        ),
        n_mfcc=13,
    )
    assert ours.shape == (13, theirs.shape[1])
    # torch.stft and librosa.stft differ in float32 rounding: ~0.05 dB in near-silent bands
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=0.2)


def test_a_30_s_clip_gives_max_chunks_of_128_frames():
    spec = F.FeatureSpec()
    assert F.chunks(F.log_mel(sine(30)), spec).shape == (F.MAX_CHUNKS, 1, F.N_MELS, F.CHUNK_FRAMES)
    assert F.chunks(F.log_mel(sine(30)), spec, max_chunks=None).shape[0] == 10


def test_chunks_of_a_long_track_are_capped_and_spread():
    starts = F.chunk_starts(width=128 * 100, chunk=128, max_chunks=10)
    assert len(starts) == 10
    assert starts[0] == 0 and starts[-1] == 128 * 99


@pytest.mark.parametrize("k", [1, 2, 5])
def test_a_short_track_decoded_whole_is_read_where_a_long_one_is(k):
    spec = F.FeatureSpec()
    width = 20 * spec.sample_rate // spec.hop_length  # 20 s: decoded whole, not in windows
    starts = F.centred_starts(width, spec.chunk_width, k)
    centres_s = (starts + spec.chunk_width / 2) * spec.hop_length / spec.sample_rate
    # the centres excerpt_windows would give the same track were it long enough
    expected_s = 0.05 * 20 + 0.9 * 20 / k * (np.arange(k) + 0.5)
    assert np.abs(centres_s - expected_s).max() < spec.hop_length / spec.sample_rate
    if k > 1:  # not its first and last chunks, as the training grid's even spread reads
        assert starts[0] > 0 and starts[-1] + spec.chunk_width < width
    x = F.chunks(np.zeros((spec.n_mels, width)), spec, k, centred=True)
    assert x.shape == (k, 1, spec.n_mels, spec.chunk_width)


def test_centred_chunks_of_a_track_of_few_chunks_are_all_of_them():
    spec = F.FeatureSpec()
    width = 3 * spec.chunk_width + 10
    assert list(F.centred_starts(width, spec.chunk_width, 5)) == list(
        F.chunk_starts(width, spec.chunk_width, None))
    starts = F.centred_starts(width, spec.chunk_width, 2)
    assert len(starts) == 2 and starts[0] >= 0 and starts[1] + spec.chunk_width <= width


def test_a_clip_shorter_than_one_chunk_is_tiled_to_a_full_chunk():
    spec = F.FeatureSpec()
    x = F.chunks(F.log_mel(sine(1.5)), spec)
    assert x.shape == (1, 1, F.N_MELS, F.CHUNK_FRAMES)


def test_raw_chunks_are_samples():
    spec = F.FeatureSpec(kind="raw")
    x = F.chunks(F.extract(sine(7), spec), spec)
    assert x.shape == (2, 1, 1, F.CHUNK_FRAMES * F.HOP_LENGTH)


def test_long_tracks_are_read_from_a_bounded_set_of_excerpts():
    spec = F.FeatureSpec()
    assert F.excerpt_windows(15.0, spec) is None
    assert len(F.excerpt_windows(30.0, spec)) == F.MAX_CHUNKS
    windows = F.excerpt_windows(3600.0, spec)
    assert len(windows) == F.MAX_CHUNKS
    assert all(start >= 0 and start + length <= 3600 for start, length in windows)
    # each excerpt is long enough for one full chunk of frames
    chunk_samples = (F.CHUNK_FRAMES - 1) * F.HOP_LENGTH
    assert all(length * F.SAMPLE_RATE >= chunk_samples for _, length in windows)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_each_excerpt_is_centred_on_an_equal_part_of_the_middle_90_percent(k):
    """Neither the intro nor the fade-out decides: the excerpts' centres are those of k
    equal parts of 5-95 % of the track (one: its middle; two: 27.5 and 72.5 %)."""
    spec = F.FeatureSpec()
    windows = F.excerpt_windows(240.0, spec, k)
    centres = [start + length / 2 for start, length in windows]
    expected = [240.0 * (0.05 + 0.9 * (i + 0.5) / k) for i in range(k)]
    assert centres == pytest.approx(expected)
    if k == 2:
        assert centres == pytest.approx([66.0, 174.0])


def test_unknown_feature_kind_is_refused():
    with pytest.raises(ValueError, match="unknown feature kind"):
        F.FeatureSpec(kind="cqt")


@pytest.mark.parametrize(("rate", "n_fft", "n_mels"), [(22050, 2048, 128), (16000, 512, 96)])
def test_mel_filterbank_matches_librosa(rate, n_fft, n_mels):
    import librosa

    ours = F._mel_basis(rate, n_fft, n_mels)
    theirs = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_computing_features_does_not_import_librosa():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from genreq import features as F; "
            "F.log_mel(np.zeros(22050, np.float32)); print('librosa' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_levelled_scales_a_track_as_one_to_its_level_and_leaves_silence_alone():
    spec = F.FeatureSpec(kind="musicnn", sample_rate=16000, level_dbfs=-19.0)
    rng = np.random.default_rng(0)
    quiet, loud = 0.001 * rng.standard_normal(8000), 0.01 * rng.standard_normal(8000)
    parts = F.levelled([quiet.astype(np.float32), loud.astype(np.float32)], spec)
    joined = np.concatenate(parts).astype(np.float64)
    assert 10 * np.log10(np.mean(joined ** 2)) == pytest.approx(-19.0, abs=1e-3)
    assert np.std(parts[1]) / np.std(parts[0]) == pytest.approx(np.std(loud) / np.std(quiet))
    silence = [np.zeros(100, np.float32)]
    assert F.levelled(silence, spec) is silence
    whisper = [np.full(100, 1e-9, np.float32)]  # raised by MAX_LEVEL_GAIN_DB, not to -19
    assert np.abs(F.levelled(whisper, spec)[0]).max() == pytest.approx(1e-7, rel=1e-3)
    plain = F.FeatureSpec()
    assert F.levelled(parts, plain) is parts and "level_dbfs" not in plain.to_dict()
