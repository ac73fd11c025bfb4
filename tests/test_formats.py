"""Every audio format genreq accepts, classified through genreq.predict.Classifier with the
shipped model: files generated in the test from one source (a shared GTZAN clip when
present, a synthesized one otherwise), including hi-res multichannel audio that must be
mixed down and resampled. Each format must give the source's genre, close probabilities
and the right duration."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import SHARED_DATA

from genreq import audio

SOURCE_CLIP = SHARED_DATA / "gtzan" / "classical" / "classical.00000.ogg"
SOUNDFILE_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"),
                     "ogg": ("OGG", "VORBIS"), "aiff": ("AIFF", "PCM_16"), "au": ("AU", "PCM_16")}
FFMPEG_CODECS = {"mp3": "libmp3lame", "m4a": "aac", "opus": "libopus", "wma": "wmav2",
                 "aac": "aac", "wv": "wavpack", "tta": "tta", "mka": "flac", "oga": "flac",
                 "aifc": "pcm_s16be", "mp2": "mp2", "caf": "alac"}
FORMATS = [*SOUNDFILE_FORMATS, *FFMPEG_CODECS]
# Lossy codecs shift the spectrogram a little: how far a genre probability may move.
MAX_PROB_SHIFT = 0.1


@pytest.fixture(scope="module")
def classifier():
    from genreq.predict import Classifier

    return Classifier.load()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[np.ndarray, Path]:
    """Mono float32 at the model's rate, and a lossless reference file of it."""
    if SOURCE_CLIP.exists():
        samples = audio.load_audio(SOURCE_CLIP)
    else:  # a steady chord with a beat: something the model will call one genre
        t = np.arange(30 * audio.SAMPLE_RATE) / audio.SAMPLE_RATE
        beat = (np.sin(2 * np.pi * 2 * t) > 0.9).astype(np.float32)
        samples = (0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t)
                   + 0.2 * beat * np.random.default_rng(0).standard_normal(t.size))
        samples = samples.astype(np.float32)
    reference = tmp_path_factory.mktemp("formats") / "reference.wav"
    soundfile.write(reference, samples, audio.SAMPLE_RATE, subtype="FLOAT")
    return samples, reference


def encode(reference: Path, target: Path) -> Path:
    ext = target.suffix[1:]
    if ext in SOUNDFILE_FORMATS:
        fmt, subtype = SOUNDFILE_FORMATS[ext]
        samples, rate = soundfile.read(reference, dtype="float32")
        soundfile.write(target, samples, rate, format=fmt, subtype=subtype)
        return target
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(reference), "-c:a", FFMPEG_CODECS[ext],
         "-b:a", "128k", str(target)], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"this ffmpeg cannot encode {ext}: {result.stderr.strip()}")
    return target


@pytest.mark.slow
@pytest.mark.parametrize("ext", FORMATS)
def test_each_format_classifies_like_the_source(classifier, source, tmp_path, ext):
    samples, reference = source
    expected = classifier.classify_file(reference)
    path = encode(reference, tmp_path / f"clip.{ext}")
    prediction = classifier.classify_file(path)
    assert prediction.genre == expected.genre
    shift = max(abs(prediction.probs[g] - expected.probs[g]) for g in expected.probs)
    assert shift < MAX_PROB_SHIFT, (ext, shift)
    assert sum(prediction.probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert prediction.duration_s == pytest.approx(samples.size / audio.SAMPLE_RATE, abs=0.1)


@pytest.mark.parametrize("ext", FORMATS)
def test_each_format_tells_its_duration_without_being_decoded(source, tmp_path, ext):
    # From the header, or for a container whose header has none (raw ADTS .aac, Ogg FLAC
    # .oga) from its packets: a None here would make the classifier decode the whole file.
    samples, reference = source
    path = encode(reference, tmp_path / f"clip.{ext}")
    assert audio.duration_s(path) == pytest.approx(samples.size / audio.SAMPLE_RATE, abs=0.1)


@pytest.mark.slow
def test_hires_multichannel_is_mixed_down_and_resampled(classifier, source, tmp_path):
    samples, reference = source
    expected = classifier.classify_file(reference)
    rate = 96000
    hires = audio._resample(samples, audio.SAMPLE_RATE, rate)
    # 5.1: the music on the front pair and centre, quiet noise on the others
    noise = 0.001 * np.random.default_rng(1).standard_normal(hires.size).astype(np.float32)
    channels = np.stack([hires, hires, hires, noise, noise, noise], axis=1)
    path = tmp_path / "hires.flac"
    soundfile.write(path, channels, rate, subtype="PCM_24")
    assert soundfile.info(path).channels == 6
    prediction = classifier.classify_file(path)
    assert prediction.genre == expected.genre
    shift = max(abs(prediction.probs[g] - expected.probs[g]) for g in expected.probs)
    assert shift < MAX_PROB_SHIFT, shift
    assert prediction.duration_s == pytest.approx(samples.size / audio.SAMPLE_RATE, abs=0.01)


# Two 30-s clips of other genres, as long enough tracks (excerpts, seeks) in each format.
EQUIVALENCE_CLIPS = ["gtzan/metal/metal.00000.ogg", "gtzan/hiphop/hiphop.00000.ogg"]
# Both decoders read the same samples from the same encoded file; what differs is the
# resampler (FFmpeg's inside the program against soxr) and the downmix rounding. The
# default's vgg ears, on two chunks, move several times more with that than crnn's five
# chunks did (vgg-msd's five chunks too), so the bound is the shift of a probability
# that still leaves the top genre where it was.
MAX_DECODER_SHIFT = 0.1


def ffmpeg_program_excerpts(path: Path, windows) -> list[np.ndarray]:
    """What genreq decoded before PyAV: the ffmpeg program, one subprocess per window,
    seeking in the container (-ss before -i), mixing down and resampling itself."""
    excerpts = []
    for start_s, length_s in windows:
        out = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{start_s:.3f}", "-t",
             f"{length_s:.3f}", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar",
             str(audio.SAMPLE_RATE), "-"], check=True, capture_output=True)
        excerpts.append(np.frombuffer(out.stdout, dtype=np.float32).copy())
    return excerpts


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["m4a", "opus", "mp3"])
@pytest.mark.parametrize("clip", EQUIVALENCE_CLIPS)
def test_in_process_decoding_classifies_like_the_ffmpeg_program(classifier, tmp_path, ext,
                                                                clip):
    from genreq import features

    source = SHARED_DATA / clip
    if not source.exists():
        pytest.skip("the shared clips are not here")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    path = tmp_path / f"track.{ext}"
    rate = "48000" if ext == "opus" else "44100"  # opus knows no 44.1 kHz
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(source), "-ar", rate,
                    "-ac", "2", "-c:a", FFMPEG_CODECS[ext], "-b:a", "192k", str(path)],
                   check=True)
    windows = features.excerpt_windows(audio.duration_s(path), classifier.features)
    assert windows is not None  # a track long enough to be read by excerpts
    in_process = classifier.probs_of_excerpts(audio.load_windows(path, windows))
    program = classifier.probs_of_excerpts(ffmpeg_program_excerpts(path, windows))
    assert np.abs(in_process - program).max() < MAX_DECODER_SHIFT, (in_process, program)
    assert classifier.classify_file(path).genre == classifier.genres[int(np.argmax(program))]
