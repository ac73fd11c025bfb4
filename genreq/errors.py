"""The project's own exceptions. Errors from outside (soundfile, ffmpeg, torch.load)
are wrapped once, at the I/O edge, into one of these with the path and the reason."""
from __future__ import annotations

from pathlib import Path


class GenreqError(Exception):
    """Base class for every error genreq reports to a user."""


class AudioError(GenreqError):
    """A file that cannot be analysed: unreadable, not audio, too short...

    Permanent: retrying the same file gives the same answer.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class TooShort(AudioError):
    """A file shorter than the shortest genreq classifies: skipped, not failed. `reason`
    leaves the file's own duration out, so that files can be counted by it."""

    def __init__(self, path: str | Path, duration_s: float, min_duration_s: float):
        super().__init__(path, f"too short to classify (under {min_duration_s:g} s)")
        self.duration_s = duration_s
        self.min_duration_s = min_duration_s
        self.args = (f"{self.path}: too short to classify ({duration_s:.3f} s; "
                     f"at least {min_duration_s:g} s needed)",)


class ModelError(GenreqError):
    """A checkpoint that cannot be used: missing, corrupt, or built for other features."""
