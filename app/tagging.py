"""Write predicted genres into the files' own tags with mutagen, safely.

- Only tag blocks change (ID3 frames, Vorbis comments, MP4 atoms); mutagen never
  re-encodes, so the audio data stays byte for byte what it was.
- A genre the user set is kept unless `overwrite`. genreq recognises its own earlier
  writes by a marker beside the genre (ID3 TXXX:genreq_genre, Vorbis comment
  GENREQ_GENRE, MP4 ----:com.apple.iTunes:genreq_genre) holding the value it wrote.
- After a write the track row gets the file's new size and mtime, so `genreq enqueue`
  does not take genreq's own tag write for a changed file. A file that changed since it
  was classified is left alone: its prediction may be stale, and recording its new stat
  would hide that change from enqueue.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from genreq.app.library import TrackFilter, labelled_tracks, session, with_learned_head
from genreq.app.taxonomy import UNKNOWN, Labeller

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

DEFAULT_FIELD = "GENRE"
MARKER = "genreq_genre"
MP4_FREEFORM = "----:com.apple.iTunes:"

# Outcomes, as printed.
WRITE, SAME, KEEP, SKIP = "write", "same", "keep", "skip"


class TagError(Exception):
    """A file whose tags cannot be read or written (the reason is the message)."""


@dataclass(frozen=True)
class TagChange:
    path: str
    action: str  # WRITE, SAME, KEEP or SKIP
    old: tuple[str, ...] = ()  # the field's values before
    new: str | None = None  # the value genreq writes (or would)
    reason: str = ""

    def line(self, dry_run: bool, field: str) -> str:
        old = "; ".join(self.old) or "(none)"
        if self.action == WRITE:
            verb = "would write" if dry_run else "wrote"
            return f"{verb}\t{self.path}\t{field}: {old} -> {self.new}"
        return f"{self.action}\t{self.path}\t{self.reason}"


class _Tags:
    """One file's tags through a small interface per tag system."""

    def __init__(self, audio, field: str):
        self.audio = audio
        self.field = field
        if audio.tags is None:
            audio.add_tags()
        self.tags = audio.tags

    def genre(self) -> tuple[str, ...]: ...
    def marker(self) -> str | None: ...
    def set(self, value: str) -> None: ...

    def save(self) -> None:
        self.audio.save()


class _ID3Tags(_Tags):
    def _key(self) -> str:
        return "TCON" if self.field.upper() == DEFAULT_FIELD else f"TXXX:{self.field}"

    def genre(self) -> tuple[str, ...]:
        frame = self.tags.get(self._key())
        if frame is None:
            return ()
        # TCON may hold ID3v1 numbers, "(17)": .genres turns them into names
        values = frame.genres if self._key() == "TCON" else frame.text
        return tuple(str(v) for v in values if str(v).strip())

    def marker(self) -> str | None:
        frame = self.tags.get(f"TXXX:{MARKER}")
        return str(frame.text[0]) if frame is not None and frame.text else None

    def set(self, value: str) -> None:
        from mutagen.id3 import TCON, TXXX

        if self._key() == "TCON":
            self.tags.setall("TCON", [TCON(encoding=3, text=[value])])
        else:
            self.tags.setall(self._key(), [TXXX(encoding=3, desc=self.field, text=[value])])
        self.tags.setall(f"TXXX:{MARKER}", [TXXX(encoding=3, desc=MARKER, text=[value])])

    def save(self) -> None:
        # Keep an ID3v2.3 tag at 2.3: some players read nothing newer.
        version = getattr(self.tags, "version", (2, 4, 0))
        self.audio.save(v2_version=3 if version[:2] == (2, 3) else 4)


class _VorbisTags(_Tags):
    def genre(self) -> tuple[str, ...]:
        return tuple(v for v in self.tags.get(self.field, []) if v.strip())

    def marker(self) -> str | None:
        values = self.tags.get(MARKER.upper(), [])
        return values[0] if values else None

    def set(self, value: str) -> None:
        self.tags[self.field] = [value]
        self.tags[MARKER.upper()] = [value]


class _MP4Tags(_Tags):
    def _key(self) -> str:
        return "\xa9gen" if self.field.upper() == DEFAULT_FIELD else MP4_FREEFORM + self.field

    def _text(self, key: str) -> tuple[str, ...]:
        values = self.tags.get(key, [])
        return tuple(bytes(v).decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                     for v in values)

    def genre(self) -> tuple[str, ...]:
        values = self._text(self._key())
        if not values and self._key() == "\xa9gen" and self.tags.get("gnre"):
            # iTunes' numeric genre atom: a user genre too
            values = tuple(f"(gnre {v})" for v in self.tags["gnre"])
        return tuple(v for v in values if v.strip())

    def marker(self) -> str | None:
        values = self._text(MP4_FREEFORM + MARKER)
        return values[0] if values else None

    def set(self, value: str) -> None:
        from mutagen.mp4 import MP4FreeForm

        if self._key() == "\xa9gen":
            self.tags["\xa9gen"] = [value]
            self.tags.pop("gnre", None)
        else:
            self.tags[self._key()] = [MP4FreeForm(value.encode("utf-8"))]
        self.tags[MP4_FREEFORM + MARKER] = [MP4FreeForm(value.encode("utf-8"))]


def open_tags(path: str, field: str = DEFAULT_FIELD) -> _Tags:
    """The tags of the audio file at `path`. Raises TagError with the reason when the
    file cannot be read or its format has no tags genreq can write (e.g. .au)."""
    import mutagen
    from mutagen.aiff import AIFF
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggspeex import OggSpeex
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    try:
        audio = mutagen.File(path, options=[MP3, FLAC, OggVorbis, OggOpus, OggFLAC,
                                            OggSpeex, MP4, WAVE, AIFF])
    except (OSError, mutagen.MutagenError) as exc:
        raise TagError(f"cannot read tags ({getattr(exc, 'strerror', None) or exc})") from exc
    if audio is None:
        ext = os.path.splitext(path)[1].lower() or "this file"
        raise TagError(f"no genre tag support for {ext} files")
    adapters: dict[type, Callable] = {
        MP3: _ID3Tags, WAVE: _ID3Tags, AIFF: _ID3Tags, MP4: _MP4Tags,
        FLAC: _VorbisTags, OggVorbis: _VorbisTags, OggOpus: _VorbisTags,
        OggFLAC: _VorbisTags, OggSpeex: _VorbisTags,
    }
    try:
        return adapters[type(audio)](audio, field)
    except mutagen.MutagenError as exc:
        raise TagError(f"cannot add tags ({exc})") from exc


def plan(path: str, new: str, field: str = DEFAULT_FIELD, overwrite: bool = False
         ) -> tuple[TagChange, _Tags | None]:
    """What tagging `path` with genre `new` would do, and the open tags to write."""
    try:
        tags = open_tags(path, field)
    except TagError as exc:
        return TagChange(path, SKIP, reason=str(exc)), None
    old = tags.genre()
    if old == (new,):
        return TagChange(path, SAME, old, new, "already tagged"), None
    if old and not overwrite and tags.marker() != "; ".join(old):
        return TagChange(path, KEEP, old, new,
                         f"{field} is {'; '.join(old)}, set by you (--overwrite replaces it)"), None
    return TagChange(path, WRITE, old, new), tags


def tag_file(path: str, new: str, field: str = DEFAULT_FIELD, overwrite: bool = False,
             dry_run: bool = False) -> TagChange:
    """Tag one file (unless dry_run); the TagChange says what happened."""
    import mutagen

    change, tags = plan(path, new, field, overwrite)
    if change.action != WRITE or dry_run:
        return change
    try:
        tags.set(new)
        tags.save()
    except (OSError, mutagen.MutagenError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return TagChange(path, SKIP, change.old, new, f"cannot write tags ({reason})")
    return change


@dataclass
class TagSummary:
    written: int = 0
    same: int = 0
    kept: int = 0
    skipped: int = 0

    def line(self, dry_run: bool) -> str:
        return (f"{'would write' if dry_run else 'wrote'} {self.written} · already tagged "
                f"{self.same} · kept (set by you) {self.kept} · skipped {self.skipped}")


def tag_library(session: Session, flt: TrackFilter, labeller: Labeller, *,
                field: str = DEFAULT_FIELD, overwrite: bool = False, dry_run: bool = False,
                summary: TagSummary | None = None,
                on_track: Callable[[int], None] | None = None) -> Iterator[TagChange]:
    """Tag every done track the filter keeps with its labelled genre; yields what
    happened to each file. The row of a written file gets the file's new size and mtime
    through `session`, committed at once: a short write transaction per file, so that
    workers writing results meanwhile are not held up. `on_track` as in
    library.labelled_tracks."""
    from genreq.db import tracks

    summary = summary if summary is not None else TagSummary()
    for track, record in labelled_tracks(session, flt, labeller, on_track):
        if record["genre"] == UNKNOWN:
            summary.skipped += 1
            yield TagChange(track.path, SKIP, reason="below --unknown-below: genre unknown")
            continue
        try:
            before = os.stat(track.path)
        except OSError as exc:
            summary.skipped += 1
            yield TagChange(track.path, SKIP, reason=f"cannot read ({exc.strerror})")
            continue
        if (before.st_size, before.st_mtime_ns) != (track.size_bytes, track.mtime_ns):
            summary.skipped += 1
            yield TagChange(track.path, SKIP, reason="changed since it was classified "
                                                     "(run `genreq enqueue` first)")
            continue
        change = tag_file(track.path, record["genre"], field, overwrite, dry_run)
        if change.action == WRITE and not dry_run:
            after = os.stat(track.path)
            # End the page's read first, so that on SQLite the write waits for the lock
            # (busy_timeout) instead of failing on a snapshot a worker has moved past.
            session.commit()
            tracks.record_file_stat(session, track.id, after.st_size, after.st_mtime_ns)
            session.commit()
        summary.written += change.action == WRITE
        summary.same += change.action == SAME
        summary.kept += change.action == KEEP
        summary.skipped += change.action == SKIP
        yield change


def tag(flt: TrackFilter | None = None, labeller: Labeller | None = None, *,
        field: str = DEFAULT_FIELD, overwrite: bool = False, dry_run: bool = False,
        summary: TagSummary | None = None,
        on_track: Callable[[int], None] | None = None) -> Iterator[TagChange]:
    """Write the labelled genre of every done track `flt` keeps (default: all) into the
    file's `field` tag (GENRE: the genre tag of its format), unless `dry_run`. Genres
    the user set are kept unless `overwrite`. Yields a TagChange per file; `summary`
    (if given) counts them as they go. Audio data is never touched."""
    with session() as db:
        yield from tag_library(db, flt or TrackFilter(), with_learned_head(labeller), field=field,
                               overwrite=overwrite, dry_run=dry_run, summary=summary,
                               on_track=on_track)
