"""genreq.audio's mono mix and excerpt-window decoding as they were before the
real-formats work on issue 17 (copied), for bench/formats.py --real to measure the
decoder before and after in one run: in its own process (patch()) and inside `genreq
run`'s workers (sitecustomize, BENCH_INRUN_BASELINE=decoder)."""
from __future__ import annotations

from unittest import mock

import numpy as np


def to_mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.ndim == 2 else data


def decode_window(frames, rate: int, start_s: float, length_s: float) -> np.ndarray:
    """The window's decoding as it was; FRAMES (genreq.audio._Frames, which genreq now
    hands its decoder) only for its container and stream: frames are decoded as before,
    without the skipping of damaged packets that came later."""
    from genreq import audio

    container, stream = frames.container, frames.stream
    first, wanted = round(start_s * rate), round(length_s * rate)
    seek_s = max(0.0, start_s - audio.PREROLL_S)
    container.seek(int(seek_s / stream.time_base), stream=stream, backward=True)
    stream.codec_context.flush_buffers()
    pcms, have, position = [], 0, round(seek_s * rate)
    for frame in container.decode(stream):
        pcm = audio._frame_pcm(frame)
        if frame.time is not None:
            position = round(frame.time * rate)
        skip, position = first - position, position + pcm.shape[1]
        if skip >= pcm.shape[1]:
            continue
        if skip > 0:
            pcm = pcm[:, skip:]
        pcms.append(pcm[:, : wanted - have])
        have += pcms[-1].shape[1]
        if have >= wanted:
            break
    return audio._join(pcms)


def patch():
    """A context (or, started, a patch) in which genreq.audio decodes as it did before."""
    from genreq import audio

    return mock.patch.multiple(audio, _to_mono=to_mono, _decode_window=decode_window)
