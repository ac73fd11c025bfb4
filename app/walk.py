"""Walking a music library: sorted, streaming, tolerant of unreadable directories and
symlink loops (after beets' sorted_walk)."""
from __future__ import annotations

import logging
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from genreq.config import AUDIO_EXTENSIONS

log = logging.getLogger(__name__)

# The kinds of ignored file a walk tells apart (an extension, in lower case, or one of
# the names below); beyond that many, the rest count as OTHER_KINDS.
IGNORED_KINDS = 100
NO_EXTENSION = "no extension"
NOT_A_FILE = "not a regular file"
OTHER_KINDS = "other"


@dataclass(frozen=True)
class FileStat:
    """What the walk learns about a file: enqueue's idempotency key (the same path, size
    and mtime means the same file, not classified again)."""

    path: str
    size_bytes: int
    mtime_ns: int


def is_audio(path: str | Path) -> bool:
    return os.path.splitext(path)[1].lower() in AUDIO_EXTENSIONS


class LibraryWalk:
    """Iterates the audio files under some paths, depth first in sorted name order.

    Holds one directory listing and the stack of directories still to visit, never the
    whole library. Directories are visited once by (device, inode), so symlink loops
    and aliases end. Hidden entries (".name") are skipped. After iterating, `ignored`
    counts the files that are not audio and `warnings` the paths skipped with a warning.
    """

    def __init__(self, paths: Iterable[str | Path]):
        self.paths = [Path(os.path.abspath(os.fspath(p))) for p in paths]
        self.ignored = 0
        # What the ignored files were, by extension (IGNORED_KINDS at most): a folder of
        # audio in a format genreq does not take shows up here instead of vanishing.
        self.ignored_kinds: Counter[str] = Counter()
        self.warnings = 0
        self._seen_dirs: set[tuple[int, int]] = set()

    def _ignore(self, kind: str) -> None:
        self.ignored += 1
        if kind not in self.ignored_kinds and len(self.ignored_kinds) >= IGNORED_KINDS:
            kind = OTHER_KINDS
        self.ignored_kinds[kind] += 1

    def _warn(self, message: str, *args) -> None:
        self.warnings += 1
        log.warning(message, *args)

    def __iter__(self) -> Iterator[FileStat]:
        for path in self.paths:
            try:
                info = path.stat()
            except OSError as exc:
                self._warn("skipping %s: %s", path, exc.strerror)
                continue
            if stat.S_ISDIR(info.st_mode):
                yield from self._walk_dir(path, info)
            else:
                yield from self._file(path, info)

    def _file(self, path: Path, info: os.stat_result) -> Iterator[FileStat]:
        if not stat.S_ISREG(info.st_mode):
            self._ignore(NOT_A_FILE)
            return
        if not is_audio(path):
            self._ignore(os.path.splitext(path)[1].lower() or NO_EXTENSION)
            return
        name = os.fspath(path)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in the name: not storable as text
            self._warn("skipping %r: file name is not valid UTF-8", name)
            return
        yield FileStat(path=name, size_bytes=info.st_size, mtime_ns=info.st_mtime_ns)

    def _walk_dir(self, top: Path, info: os.stat_result) -> Iterator[FileStat]:
        stack = [(top, info)]
        while stack:
            directory, dir_info = stack.pop()
            key = (dir_info.st_dev, dir_info.st_ino)
            if key in self._seen_dirs:
                continue
            self._seen_dirs.add(key)
            try:
                with os.scandir(directory) as scan:
                    entries = sorted(scan, key=lambda entry: entry.name)
            except OSError as exc:
                self._warn("skipping unreadable directory %s: %s", directory, exc.strerror)
                continue
            subdirs = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    entry_info = entry.stat()  # follows symlinks
                except OSError as exc:
                    self._warn("skipping %s: %s", entry.path, exc.strerror)
                    continue
                if stat.S_ISDIR(entry_info.st_mode):
                    subdirs.append((Path(entry.path), entry_info))
                else:
                    yield from self._file(Path(entry.path), entry_info)
            stack.extend(reversed(subdirs))


def count_audio_files(paths: Iterable[str | Path]) -> int:
    """How many files LibraryWalk(paths) will yield, found faster: no sorting, no stat of
    regular files (a directory entry's type says file or directory), no warnings (the
    walk gives those). The total that enqueue's progress and ETA count to."""
    count = 0
    seen_dirs: set[tuple[int, int]] = set()
    stack: list[str] = []
    for path in paths:
        path = os.path.abspath(os.fspath(path))
        if os.path.isdir(path):
            stack.append(path)
        elif os.path.isfile(path) and _countable(path):
            count += 1
    while stack:
        directory = stack.pop()
        try:
            info = os.stat(directory)
            key = (info.st_dev, info.st_ino)
            if key in seen_dirs:
                continue
            seen_dirs.add(key)
            with os.scandir(directory) as scan:
                for entry in scan:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir():  # follows symlinks, as the walk does
                            stack.append(entry.path)
                        elif entry.is_file() and _countable(entry.path):
                            count += 1
                    except OSError:
                        continue
        except OSError:
            continue
    return count


def _countable(path: str) -> bool:
    if not is_audio(path):
        return False
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # the walk skips these
        return False
    return True
