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


class ModelError(GenreqError):
    """A checkpoint that cannot be used: missing, corrupt, or built for other features."""
