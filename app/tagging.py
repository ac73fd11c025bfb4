"""Write predicted genres into the files' own tags with mutagen, safely.

- Only tag blocks change (ID3 frames, Vorbis comments, MP4 atoms); mutagen never
  re-encodes, so the audio data stays byte for byte what it was.
- Several genres are the format's own multi-value: one ID3v2.4 TCON frame holding a
  list (null-separated on disk, saved as v2.4: v2.3 has no multi-value and drops TMOO),
  repeated Vorbis GENRE comments, an MP4 \xa9gen list; always names, never numeric
  ID3v1 codes.
- `mode`: REPLACE writes genreq's values instead of the field's; ADD keeps the user's
  values and adds genreq's after them, case-insensitively once each.
- A genre the user set is kept unless `overwrite` (REPLACE only: ADD keeps it anyway).
  genreq recognises its own earlier writes by a marker beside the field (ID3
  TXXX:genreq_genre, Vorbis comment GENREQ_GENRE, MP4 ----:com.apple.iTunes:genreq_genre;
  genreq_mood for the mood field) holding the values it wrote, so that they are
  updated freely and, under ADD, replaced rather than piled up.
- After a write the track row gets the file's new size and mtime, so `genreq enqueue`
  does not take genreq's own tag write for a changed file. A file that changed since it
  was classified is left alone: its prediction may be stale, and recording its new stat
  would hide that change from enqueue.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from genreq.app.library import (
    DEFAULT_MIN_TAG_SCORE,
    TrackFilter,
    labelled_tracks,
    session,
    with_learned_head,
)
from genreq.app.taxonomy import UNKNOWN, Labeller

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

DEFAULT_FIELD = "GENRE"
MARKER = "genreq_genre"
MOOD_MARKER = "genreq_mood"
MP4_FREEFORM = "----:com.apple.iTunes:"
ID3_MOOD = "TMOO"  # ID3v2.4's own mood frame, for a mood field named MOOD

REPLACE, ADD = "replace", "add"
MODES = (REPLACE, ADD)

# Which of the 50 MSD tags (genreq.pretrained.tags.MSD_TAG_NAMES) are moods: written
# to --mood-field, never as genres. The rest are genres but for decades, voices and
# instruments, which describe a track without being its genre.
MOOD_TAGS = ("beautiful", "chill", "chillout", "mellow", "easy listening", "happy", "sad",
             "sexy", "party", "catchy")
NOT_GENRE_TAGS = frozenset({"00s", "60s", "70s", "80s", "90s", "female vocalists",
                            "female vocalist", "male vocalists", "instrumental", "guitar"})

# Outcomes, as printed.
WRITE, SAME, KEEP, SKIP = "write", "same", "keep", "skip"


class TagError(Exception):
    """A file whose tags cannot be read or written (the reason is the message)."""


def unique(values: Iterable[str]) -> tuple[str, ...]:
    """VALUES stripped, empty ones dropped, each once ignoring case (the first spelling)."""
    seen: set[str] = set()
    out = []
    for value in values:
        value = value.strip()
        if value and value.casefold() not in seen:
            seen.add(value.casefold())
            out.append(value)
    return tuple(out)


def genre_tags(tags: Mapping[str, float] | None, n: int,
               min_score: float = DEFAULT_MIN_TAG_SCORE) -> list[str]:
    """The N best genre tags (not moods, decades, voices or instruments) scoring
    MIN_SCORE or more, best first (ties by name)."""
    ranked = sorted((tags or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return [t for t, s in ranked if s >= min_score and t not in NOT_GENRE_TAGS
            and t not in MOOD_TAGS][:n]


def mood_tags(tags: Mapping[str, float] | None,
              min_score: float = DEFAULT_MIN_TAG_SCORE) -> list[str]:
    """Every mood tag scoring MIN_SCORE or more, best first (ties by name)."""
    ranked = sorted((tags or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return [t for t, s in ranked if s >= min_score and t in MOOD_TAGS]


@dataclass(frozen=True)
class FieldChange:
    """One field of one file: its values before and after, and what genreq marks as its
    own (the marker's new values)."""

    field: str
    action: str  # WRITE, SAME or KEEP
    old: tuple[str, ...] = ()
    new: tuple[str, ...] = ()
    mine: tuple[str, ...] = ()
    reason: str = ""

    def diff(self) -> str:
        old, new = "; ".join(self.old) or "(none)", "; ".join(self.new) or "(none)"
        return f"{self.field}: {old} -> {new}"


def plan_field(field: str, old: Sequence[str], marker: Sequence[str], wanted: Sequence[str],
               mode: str = REPLACE, overwrite: bool = False) -> FieldChange:
    """What writing WANTED into a field holding OLD (genreq wrote MARKER there) does."""
    old, marker, wanted = tuple(old), tuple(marker), unique(wanted)
    if mode == ADD:
        own = {m.casefold() for m in marker}
        user = tuple(v for v in old if v.casefold() not in own)
        taken = {v.casefold() for v in user}
        mine = tuple(w for w in wanted if w.casefold() not in taken)
        new = user + mine
    else:
        new = mine = wanted
        if old and old != new and not overwrite and old != marker:
            return FieldChange(field, KEEP, old, new, reason=(
                f"{field} is {'; '.join(old)}, set by you (--overwrite replaces it)"))
    if new == old:
        return FieldChange(field, SAME, old, new, mine, "already tagged")
    return FieldChange(field, WRITE, old, new, mine)


@dataclass(frozen=True)
class TagChange:
    path: str
    action: str  # WRITE, SAME, KEEP or SKIP
    old: tuple[str, ...] = ()  # the genre field's values before
    new: tuple[str, ...] = ()  # the values genreq writes there (or would)
    reason: str = ""
    fields: tuple[FieldChange, ...] = ()  # the genre field's, then the mood field's

    def line(self, dry_run: bool, field: str = DEFAULT_FIELD) -> str:
        if self.action == WRITE:
            verb = "would write" if dry_run else "wrote"
            diffs = [f.diff() for f in self.fields if f.action == WRITE]
            return "\t".join([verb, self.path, *diffs])
        return f"{self.action}\t{self.path}\t{self.reason}"


class _Tags:
    """One file's tags through a small interface per tag system: a field's values by
    name (GENRE: the format's genre tag; any other name: a custom field)."""

    def __init__(self, audio, field: str = DEFAULT_FIELD):
        self.audio = audio
        self.field = field
        if audio.tags is None:
            audio.add_tags()
        self.tags = audio.tags

    def get(self, field: str) -> tuple[str, ...]: ...
    def put(self, field: str, values: Sequence[str]) -> None: ...

    def genre(self) -> tuple[str, ...]:
        return self.get(self.field)

    def marker(self, name: str = MARKER) -> tuple[str, ...]:
        """The values genreq last wrote into the field this marker is beside."""
        return self.get(name)

    def write(self, change: FieldChange, marker: str) -> None:
        self.put(change.field, change.new)
        self.put(marker, change.mine)

    def save(self) -> None:
        self.audio.save()


class _ID3Tags(_Tags):
    @staticmethod
    def _key(field: str) -> str:
        if field.upper() == DEFAULT_FIELD:
            return "TCON"
        if field.upper() == "MOOD":
            return ID3_MOOD
        return f"TXXX:{field}"

    def get(self, field: str) -> tuple[str, ...]:
        key = self._key(field)
        frame = self.tags.get(key)
        if frame is None:
            return ()
        # TCON may hold ID3v1 numbers, "(17)": .genres turns them into names
        values = frame.genres if key == "TCON" else frame.text
        return tuple(str(v) for v in values if str(v).strip())

    def put(self, field: str, values: Sequence[str]) -> None:
        from mutagen.id3 import TCON, TMOO, TXXX

        key = self._key(field)
        if not values:
            self.tags.delall(key)
        elif key == "TCON":
            self.tags.setall(key, [TCON(encoding=3, text=list(values))])
        elif key == ID3_MOOD:
            self.tags.setall(key, [TMOO(encoding=3, text=list(values))])
        else:
            self.tags.setall(key, [TXXX(encoding=3, desc=field, text=list(values))])

    def save(self) -> None:
        # v2.4: its text frames hold several values (v2.3's do not; mutagen would join
        # them with "/"), and TMOO exists only there.
        self.audio.save(v2_version=4)


class _VorbisTags(_Tags):
    def get(self, field: str) -> tuple[str, ...]:
        return tuple(v for v in self.tags.get(field, []) if v.strip())

    def put(self, field: str, values: Sequence[str]) -> None:
        if values:
            self.tags[field.upper()] = list(values)  # one comment per value
        elif field in self.tags:
            del self.tags[field]


class _MP4Tags(_Tags):
    @staticmethod
    def _key(field: str) -> str:
        return "\xa9gen" if field.upper() == DEFAULT_FIELD else MP4_FREEFORM + field

    def get(self, field: str) -> tuple[str, ...]:
        key = self._key(field)
        values = tuple(bytes(v).decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                       for v in self.tags.get(key, []))
        if not values and key == "\xa9gen" and self.tags.get("gnre"):
            # iTunes' numeric genre atom: a user genre too
            values = tuple(f"(gnre {v})" for v in self.tags["gnre"])
        return tuple(v for v in values if v.strip())

    def put(self, field: str, values: Sequence[str]) -> None:
        from mutagen.mp4 import MP4FreeForm

        key = self._key(field)
        if key == "\xa9gen":
            self.tags.pop("gnre", None)
        if not values:
            self.tags.pop(key, None)
        elif key == "\xa9gen":
            self.tags[key] = list(values)
        else:
            self.tags[key] = [MP4FreeForm(v.encode("utf-8")) for v in values]


class _ListTags(_Tags):
    """Tag systems that take a field's values as a list under one key (APEv2, ASF);
    `_key` names the format's own genre and mood fields."""

    @staticmethod
    def _key(field: str) -> str:
        return field

    def get(self, field: str) -> tuple[str, ...]:
        return tuple(str(v) for v in self.tags.get(self._key(field)) or () if str(v).strip())

    def put(self, field: str, values: Sequence[str]) -> None:
        key = self._key(field)
        if values:
            self.tags[key] = list(values)
        elif key in self.tags:
            del self.tags[key]


class _APEv2Tags(_ListTags):
    """APEv2 (WavPack): case-blind keys; several values are one item's NUL-separated
    text, which mutagen splits and joins."""

    @staticmethod
    def _key(field: str) -> str:
        return "Genre" if field.upper() == DEFAULT_FIELD else field


class _ASFTags(_ListTags):
    """ASF (WMA): WM/Genre and WM/Mood hold one attribute per value."""

    @staticmethod
    def _key(field: str) -> str:
        if field.upper() == DEFAULT_FIELD:
            return "WM/Genre"
        return "WM/Mood" if field.upper() == "MOOD" else field


def open_tags(path: str, field: str = DEFAULT_FIELD) -> _Tags:
    """The tags of the audio file at `path`. Raises TagError with the reason when the
    file cannot be read or its format has no tags genreq can write (e.g. .au)."""
    import mutagen
    from mutagen.aiff import AIFF
    from mutagen.asf import ASF
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggspeex import OggSpeex
    from mutagen.oggvorbis import OggVorbis
    from mutagen.trueaudio import TrueAudio
    from mutagen.wave import WAVE
    from mutagen.wavpack import WavPack

    try:
        audio = mutagen.File(path, options=[MP3, FLAC, OggVorbis, OggOpus, OggFLAC,
                                            OggSpeex, MP4, WAVE, AIFF, ASF, WavPack,
                                            TrueAudio])
    except (OSError, mutagen.MutagenError) as exc:
        raise TagError(f"cannot read tags ({getattr(exc, 'strerror', None) or exc})") from exc
    if audio is None:
        ext = os.path.splitext(path)[1].lower() or "this file"
        raise TagError(f"no genre tag support for {ext} files")
    adapters: dict[type, Callable] = {
        MP3: _ID3Tags, WAVE: _ID3Tags, AIFF: _ID3Tags, MP4: _MP4Tags,
        FLAC: _VorbisTags, OggVorbis: _VorbisTags, OggOpus: _VorbisTags,
        OggFLAC: _VorbisTags, OggSpeex: _VorbisTags, ASF: _ASFTags, WavPack: _APEv2Tags,
        TrueAudio: _ID3Tags,
    }
    try:
        return adapters[type(audio)](audio, field)
    except mutagen.MutagenError as exc:
        raise TagError(f"cannot add tags ({exc})") from exc


def _as_values(new: str | Sequence[str]) -> tuple[str, ...]:
    return (new,) if isinstance(new, str) else tuple(new)


def plan(path: str, new: str | Sequence[str], field: str = DEFAULT_FIELD,
         overwrite: bool = False, *, mode: str = REPLACE, mood_field: str | None = None,
         moods: Sequence[str] | None = None) -> tuple[TagChange, _Tags | None]:
    """What tagging `path` with genre values `new` (and MOODS into MOOD_FIELD, when
    both are given) would do, and the open tags to write."""
    try:
        tags = open_tags(path, field)
    except TagError as exc:
        return TagChange(path, SKIP, reason=str(exc)), None
    fields = [plan_field(field, tags.get(field), tags.marker(MARKER), _as_values(new), mode,
                         overwrite)]
    if mood_field is not None and moods is not None:
        fields.append(plan_field(mood_field, tags.get(mood_field), tags.marker(MOOD_MARKER),
                                 moods, mode, overwrite))
    genre = fields[0]
    actions = {f.action for f in fields}
    action = WRITE if WRITE in actions else KEEP if KEEP in actions else SAME
    reason = next((f.reason for f in fields if f.action == action), "")
    change = TagChange(path, action, genre.old, genre.new, reason, tuple(fields))
    return change, tags if action == WRITE else None


def tag_file(path: str, new: str | Sequence[str], field: str = DEFAULT_FIELD,
             overwrite: bool = False, dry_run: bool = False, *, mode: str = REPLACE,
             mood_field: str | None = None, moods: Sequence[str] | None = None) -> TagChange:
    """Tag one file (unless dry_run); the TagChange says what happened."""
    import mutagen

    change, tags = plan(path, new, field, overwrite, mode=mode, mood_field=mood_field,
                        moods=moods)
    if change.action != WRITE or dry_run:
        return change
    try:
        for f, marker in zip(change.fields, (MARKER, MOOD_MARKER), strict=False):
            if f.action == WRITE:
                tags.write(f, marker)
        tags.save()
    except (OSError, mutagen.MutagenError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return TagChange(path, SKIP, change.old, change.new, f"cannot write tags ({reason})")
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


def track_values(genre: str, tags: Mapping[str, float] | None, with_tags: int = 0,
                 min_tag_score: float | None = None) -> tuple[str, ...]:
    """The genre values genreq writes for a track: its labelled GENRE, then its
    WITH_TAGS best genre tags scoring MIN_TAG_SCORE (default DEFAULT_MIN_TAG_SCORE) or
    more, each once ignoring case."""
    threshold = DEFAULT_MIN_TAG_SCORE if min_tag_score is None else min_tag_score
    return unique([genre, *genre_tags(tags, with_tags, threshold)] if with_tags else [genre])


def tag_library(session: Session, flt: TrackFilter, labeller: Labeller, *,
                field: str = DEFAULT_FIELD, overwrite: bool = False, dry_run: bool = False,
                mode: str = REPLACE, with_tags: int = 0, min_tag_score: float | None = None,
                mood_field: str | None = None, summary: TagSummary | None = None,
                on_track: Callable[[int], None] | None = None) -> Iterator[TagChange]:
    """Tag every done track the filter keeps with its labelled genre (and WITH_TAGS
    genre tags; its mood tags into MOOD_FIELD); yields what happened to each file. A
    track without tag outputs leaves the mood field alone. The row of a written file
    gets the file's new size and mtime through `session`, committed at once: a short
    write transaction per file, so that workers writing results meanwhile are not held
    up. `on_track` as in library.labelled_tracks."""
    from genreq.db import tracks

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    threshold = DEFAULT_MIN_TAG_SCORE if min_tag_score is None else min_tag_score
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
        values = track_values(record["genre"], track.tags, with_tags, threshold)
        moods = mood_tags(track.tags, threshold) if mood_field and track.tags else None
        change = tag_file(track.path, values, field, overwrite, dry_run, mode=mode,
                          mood_field=mood_field, moods=moods)
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
        mode: str = REPLACE, with_tags: int = 0, min_tag_score: float | None = None,
        mood_field: str | None = None, summary: TagSummary | None = None,
        on_track: Callable[[int], None] | None = None) -> Iterator[TagChange]:
    """Write the labelled genre of every done track `flt` keeps (default: all) into the
    file's `field` tag (GENRE: the genre tag of its format), unless `dry_run`: under
    the learned head, its genre. `mode` REPLACE writes genreq's values instead of the
    file's, ADD after them; `with_tags` N adds the N best genre tags over
    `min_tag_score` as further values; `mood_field` (e.g. MOOD) gets the mood tags over
    it. Genres the user set are kept unless `overwrite`. Yields a TagChange per file;
    `summary` (if given) counts them as they go. Audio data is never touched."""
    with session() as db:
        yield from tag_library(db, flt or TrackFilter(), with_learned_head(labeller),
                               field=field, overwrite=overwrite, dry_run=dry_run, mode=mode,
                               with_tags=with_tags, min_tag_score=min_tag_score,
                               mood_field=mood_field, summary=summary, on_track=on_track)
