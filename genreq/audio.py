"""Decoding audio files to mono float32 at a fixed sample rate, reading only what is
analysed.

Every format is decoded in-process: PyAV (FFmpeg's libraries, bundled in its wheels, so
no ffmpeg program is needed) opens anything FFmpeg reads, and soundfile (libsndfile)
reads the formats in SOUNDFILE_SUFFIXES, where it is as fast or faster. For a long track
only the excerpt windows are decoded: a seek in the container to just before each
window, then decoding up to the window's first sample. Only the decoded samples are
mixed down and resampled. Every failure leaves this module as an AudioError naming the
file and the cause.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from genreq.errors import AudioError, TooShort

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050  # Hz, the rate every model in genreq is trained at
MIN_DURATION_S = 1.0  # shorter clips carry too little music to classify
# Decoded ahead of each window and dropped: after a seek, the first frames of mp3 (bit
# reservoir), aac (overlapped transform) and opus (pre-skip) are not yet the music.
PREROLL_S = 0.2
# How far (s) a libsndfile read may fall short of the file's stated length before FFmpeg
# reads the file instead: mp3 frame counts are estimates, a damaged mp3 loses seconds.
SHORT_READ_SLACK = 0.1
# Read by libsndfile: uncompressed, FLAC, Ogg Vorbis and mp3, where it decodes the
# excerpts faster than FFmpeg does frame by frame through PyAV and its seek lands on the
# sample (FFmpeg's lands a codec delay early in mp3, and a few hundred samples off in
# some Ogg Vorbis files); bench/results/formats.json. m4a/aac, opus and anything else go
# through PyAV, as does a file libsndfile refuses.
SOUNDFILE_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".aif", ".aiff", ".aifc", ".au",
                                ".ogg", ".oga", ".mp3"})

Windows = list[tuple[float, float]] | None  # (start_s, length_s) excerpts, None: all


def _to_mono(data: np.ndarray) -> np.ndarray:
    """libsndfile's (frames, channels) → mono, the channels' mean: column by column,
    as data.mean(axis=1) adds them and with the same result, but without its per-frame
    loop over two values, which cost as much as decoding an excerpt
    (bench/results/real_formats.json)."""
    if data.ndim == 1:
        return data
    mono = data[:, 0] + np.float32(0.0)  # a copy; and -0.0 becomes 0.0, as the mean's sum
    for channel in range(1, data.shape[1]):
        mono += data[:, channel]
    mono /= data.shape[1]
    return mono


def _resample(audio: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    if source_rate == rate:
        return audio
    return soxr.resample(audio, source_rate, rate, quality="HQ").astype(np.float32)


def _check(path: Path, audio: np.ndarray, rate: int) -> np.ndarray:
    if audio.size < MIN_DURATION_S * rate:  # skipped, not failed (see TooShort)
        raise TooShort(path, audio.size / rate, MIN_DURATION_S)
    if not np.all(np.isfinite(audio)):
        # Rare, but a NaN would poison every feature downstream.
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    return audio


def _uses_soundfile(path: Path) -> bool:
    return path.suffix.lower() in SOUNDFILE_SUFFIXES


# --- libsndfile ----------------------------------------------------------------------------


def _soundfile_duration_s(path: Path) -> float | None:
    with _c_stderr_logged(path):
        info = sf.info(str(path))
    return info.frames / info.samplerate if info.samplerate else None


class _ShortRead(Exception):
    """libsndfile decoded less than the file's own length says is there."""


def _read_soundfile(path: Path, windows_s: Windows) -> tuple[list[np.ndarray], int]:
    """The windows (or the whole file) as libsndfile decodes them. A damaged mp3 makes
    its decoder lose sync and stop early, silently: a read that comes back shorter than
    the file's frame count allows raises _ShortRead, and FFmpeg, which skips the damaged
    frames and goes on, reads the file instead."""
    with _c_stderr_logged(path), sf.SoundFile(str(path)) as f:
        rate, frames = f.samplerate, f.frames
        if windows_s is None:
            data = f.read(dtype="float32", always_2d=False)
            if len(data) < frames - SHORT_READ_SLACK * rate:
                raise _ShortRead
            return [_to_mono(data)], rate
        parts = []
        for start_s, length_s in windows_s:
            first, wanted = int(start_s * rate), int(length_s * rate)
            f.seek(first)
            data = f.read(wanted, dtype="float32", always_2d=False)
            if len(data) < min(wanted, frames - first) - SHORT_READ_SLACK * rate:
                raise _ShortRead
            parts.append(_to_mono(data))
        return parts, rate


@contextmanager
def _c_stderr_logged(path: Path):
    """What the C decoders below libsndfile write straight to file descriptor 2 while
    `path` is read (mpg123's "Note: Illegal Audio-MPEG-Header ... Trying to resync" on a
    damaged mp3), caught and logged at debug level with the file's name instead of
    landing on the user's terminal between genreq's own lines."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep clean
        yield
        return
    sink = _stderr_sink()
    sink.seek(0)
    sink.truncate()
    if sys.stderr is not None:
        sys.stderr.flush()
    os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        sink.seek(0)
        said = sink.read().decode("utf-8", "replace").split()
        if said:
            log.debug("%s: the decoder said: %s", path, " ".join(said)[:500])


_SINKS: dict[int, object] = {}


def _stderr_sink():
    """One scratch file a process, reused (a file per read would cost more than the
    read), and never one a forked worker shares with its parent."""
    pid = os.getpid()
    if pid not in _SINKS:
        _SINKS[pid] = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the process)
    return _SINKS[pid]


# --- FFmpeg's libraries through PyAV --------------------------------------------------------


def _open_av(path: Path):
    import av  # ~40 ms of imports, paid only by processes that decode through it

    # Tags in a wrong encoding (common in old mp3s) must not stop the audio being read.
    container = av.open(str(path), metadata_errors="replace")
    if not container.streams.audio:
        container.close()
        raise AudioError(path, "not decodable audio (no audio stream)")
    return container, container.streams.audio[0]


# Containers whose headers hold no duration, where FFmpeg's is an estimate from the
# bitrate (raw ADTS .aac: 4 % short on a 30-s clip): their packets are counted instead.
_COUNTED_DURATION_FORMATS = frozenset({"aac"})


def _av_duration_s(container, stream) -> float | None:
    if container.format.name not in _COUNTED_DURATION_FORMATS:
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1_000_000  # AV_TIME_BASE: microseconds
    # No duration in the header (Ogg FLAC has none either), or only an estimate: the
    # packets' durations, read but not decoded, tens of ms for a long track where
    # decoding it whole to learn its length costs ten times that (formats-more.json).
    if stream.time_base is None:
        return None
    ticks = sum(packet.duration or 0 for packet in container.demux(stream))
    return float(ticks * stream.time_base) if ticks else None


# FFmpeg sample formats (planar ones end in "p") → numpy dtypes.
_AV_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64,
              "flt": np.float32, "dbl": np.float64}


def _frame_pcm(frame) -> np.ndarray:
    """A decoded frame's samples in their own dtype, shape (channels, samples): views of
    the frame's planes, no copy (cheaper than frame.to_ndarray(), frame by frame)."""
    name = frame.format.name
    dtype = np.dtype(_AV_DTYPES[name.removesuffix("p")])
    channels, n = frame.layout.nb_channels, frame.samples
    if frame.format.is_planar:
        return np.stack([np.frombuffer(plane, dtype, n) for plane in frame.planes[:channels]])
    return np.frombuffer(frame.planes[0], dtype, n * channels).reshape(n, channels).T


def _pcm_mono(pcm: np.ndarray) -> np.ndarray:
    """(channels, samples) of any dtype → mono float32, the channels averaged as for
    libsndfile's output, integers scaled to ±1 as libsndfile scales them."""
    if pcm.dtype.kind == "i":
        scale = np.float32(1 / 2 ** (8 * pcm.dtype.itemsize - 1))
        data = pcm.astype(np.float32) * scale
    elif pcm.dtype.kind == "u":
        data = (pcm.astype(np.float32) - 128) * np.float32(1 / 128)
    else:
        data = pcm.astype(np.float32, copy=False)
    mono = data[0] if data.shape[0] == 1 else data.mean(axis=0, dtype=np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _join(pcms: list[np.ndarray]) -> np.ndarray:
    if not pcms:
        return np.zeros(0, np.float32)
    if all(p.shape[0] == pcms[0].shape[0] and p.dtype == pcms[0].dtype for p in pcms):
        return _pcm_mono(np.concatenate(pcms, axis=1))  # one conversion per window
    return np.concatenate([_pcm_mono(p) for p in pcms])  # the layout changed mid-stream


# The reason stored with a track decoded around damage: one value, so that status counts
# such tracks in one group (the counts per file go in the message).
DAMAGED = "decoded around damaged packets"


@dataclass
class Damage:
    """What FFmpeg's decoder rejected while a file was read: load_windows adds to it."""

    damaged: int = 0  # packets skipped
    packets: int = 0  # packets read, damaged or not

    def note(self) -> str:
        return f"{DAMAGED} ({self.damaged} of {self.packets} read)"


class _Frames:
    """A stream's decoded frames, read as FFmpeg's own tools play a damaged file: a packet
    the decoder rejects (with whatever error: damaged aac says EPERM as often as
    "invalid data") is skipped and counted, not the end of the file. `check` fails
    the file when more packets were rejected than decoded (garbage that happens to hold
    a few sync words), and logs the skipped ones otherwise."""

    def __init__(self, path: Path, container, stream, damage: Damage | None = None):
        self.path, self.container, self.stream, self.damage = path, container, stream, damage
        self.good = self.damaged = 0
        self.error: Exception | None = None

    def __iter__(self):
        import av

        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                self.damaged += 1
                self.error = err
                continue
            self.good += 1
            yield from frames

    def check(self) -> None:
        if self.damaged > self.good:
            raise AudioError(self.path, f"not decodable audio ({_reason(self.error)}; "
                                        f"{self.damaged} of {self.damaged + self.good} "
                                        "packets damaged)")
        if self.damaged:
            log.warning("%s: skipped %d damaged packet(s) of %d", self.path, self.damaged,
                        self.damaged + self.good)
        if self.damage is not None:
            self.damage.damaged += self.damaged
            self.damage.packets += self.damaged + self.good


def _decode_all(frames: _Frames) -> np.ndarray:
    pcm = _join([_frame_pcm(frame) for frame in frames])
    frames.check()
    return pcm


class _WindowBuffer:
    """A window's samples, copied frame by frame into one (channels, samples) buffer of
    the frames' own dtype: no array per frame, and each frame goes back to FFmpeg as soon
    as it is copied (holding or stacking them cost a third of an aac excerpt's decoding,
    bench/results/real_formats.json). A frame of another format or channel count than
    the ones before starts a part of its own; mono conversion is sample by sample, so the
    parts join as the frames would have."""

    def __init__(self, wanted: int):
        self.wanted, self.have = wanted, 0
        self.parts: list[np.ndarray] = []
        self.buffer: np.ndarray | None = None
        self.start = 0  # where self.buffer's part begins, in the window
        self.kind: tuple | None = None

    def add(self, frame, skip: int) -> bool:
        """Copy `frame`'s samples from `skip` on, as many as the window still wants; True
        when it is full."""
        fmt, channels, n = frame.format, frame.layout.nb_channels, frame.samples
        kind = (fmt.name, channels)
        if kind != self.kind:
            self._close_part()
            self.kind = kind
            dtype = np.dtype(_AV_DTYPES[fmt.name.removesuffix("p")])
            self.buffer = np.empty((channels, self.wanted - self.have), dtype)
            self.start = self.have
        take = min(n - skip, self.wanted - self.have)
        at = self.have - self.start
        planes, dtype = frame.planes, self.buffer.dtype
        if fmt.is_planar:
            for channel in range(channels):
                self.buffer[channel, at:at + take] = np.frombuffer(
                    planes[channel], dtype, n)[skip:skip + take]
        else:
            self.buffer[:, at:at + take] = np.frombuffer(
                planes[0], dtype, n * channels).reshape(n, channels)[skip:skip + take].T
        self.have += take
        return self.have >= self.wanted

    def _close_part(self) -> None:
        if self.buffer is not None and self.have > self.start:
            self.parts.append(self.buffer[:, : self.have - self.start])
        self.buffer = None

    def mono(self) -> np.ndarray:
        self._close_part()
        if not self.parts:
            return np.zeros(0, np.float32)
        return np.concatenate([_pcm_mono(p) for p in self.parts])


def _decode_window(frames: _Frames, rate: int, start_s: float, length_s: float) -> np.ndarray:
    container, stream = frames.container, frames.stream
    first, wanted = round(start_s * rate), round(length_s * rate)
    seek_s = max(0.0, start_s - PREROLL_S)
    container.seek(int(seek_s / stream.time_base), stream=stream, backward=True)
    stream.codec_context.flush_buffers()  # nothing from before the seek
    window, position = _WindowBuffer(wanted), round(seek_s * rate)
    for frame in frames:
        n = frame.samples
        if frame.time is not None:  # else: count on from the previous frame
            position = round(frame.time * rate)
        skip, position = first - position, position + n
        if skip >= n:
            continue
        if window.add(frame, max(skip, 0)):
            break
    frames.check()
    return window.mono()


def _read_av(path: Path, windows_s: Windows, damage: Damage | None = None
             ) -> tuple[list[np.ndarray], int]:
    container, stream = _open_av(path)
    with container:
        rate = stream.codec_context.sample_rate
        if not rate:
            raise AudioError(path, "not decodable audio (no sample rate)")
        if windows_s is None:
            return [_decode_all(_Frames(path, container, stream, damage))], rate
        return [_decode_window(_Frames(path, container, stream, damage), rate, *w)
                for w in windows_s], rate


# --- the module's API ----------------------------------------------------------------------


def _av_errors() -> tuple[type[Exception], ...]:
    import av

    return (av.FFmpegError, UnicodeDecodeError)


def duration_s(path: str | Path) -> float | None:
    """Duration from the file's header, or None when no header can be read."""
    path = Path(path)
    try:
        if _uses_soundfile(path):
            try:
                with_soundfile = _soundfile_duration_s(path)
            except sf.LibsndfileError:  # one libsndfile refuses (Ogg FLAC): FFmpeg's turn
                with_soundfile = None
            if with_soundfile is not None:
                return with_soundfile
        container, stream = _open_av(path)
        with container:
            return _av_duration_s(container, stream)
    except Exception:  # a header probe only: decoding the file reports the real error
        return None


def load_audio(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole file as mono float32 at `rate` Hz."""
    return load_windows(path, None, rate)[0]


def load_windows(
    path: str | Path,
    windows_s: Windows,
    rate: int = SAMPLE_RATE,
    on_stage: Callable[[str, float], None] | None = None,
    damage: Damage | None = None,
) -> list[np.ndarray]:
    """Mono float32 excerpts (start_s, length_s) of a file at `rate` Hz.

    With `windows_s=None`, one excerpt: the whole file. Only the excerpts are decoded,
    in every format, so a one-hour mix costs about as much as a 30-s clip. `on_stage`,
    if given, is told the seconds spent on "decode" and on "resample", as
    Classifier.classify_file reports its stages. `damage`, if given, counts the packets
    skipped as damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    # Three clock reads per file whether or not anyone listens: nothing beside a decode.
    started = time.perf_counter()
    parts = None
    if _uses_soundfile(path):
        try:
            parts, source_rate = _read_soundfile(path, windows_s)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, _ShortRead):
            parts = None  # a damaged file or a misleading suffix: FFmpeg decides which
    if parts is None:
        try:
            parts, source_rate = _read_av(path, windows_s, damage)
        except _av_errors() as err:
            raise AudioError(path, f"not decodable audio ({_reason(err)})") from None
    decoded = time.perf_counter()
    parts = [_resample(p, source_rate, rate) for p in parts]
    if on_stage is not None:
        on_stage("decode", decoded - started)
        on_stage("resample", time.perf_counter() - decoded)
    if windows_s is None:
        return [_check(path, p, rate) for p in parts]
    return [p for p in parts if p.size]


def _reason(err: Exception) -> str:
    """FFmpeg's words for what is wrong, without the path it repeats."""
    strerror = getattr(err, "strerror", None)
    return f"ffmpeg: {strerror}" if strerror else f"{type(err).__name__}: {err}"
