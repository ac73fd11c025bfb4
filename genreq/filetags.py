"""What a file's own tags say: artist, album, title and its genre values, read with
mutagen. Read-only (genreq.app.tagging writes), and never an error: a file whose tags
cannot be read is still audio to classify, so reading gives empty tags instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# ID3 frames and MP4 atoms of each field; Vorbis comments use the field's name.
_ID3 = {"artist": "TPE1", "album": "TALB", "title": "TIT2"}
_ID3_ALBUM_ARTIST = "TPE2"
_MP4 = {"artist": "\xa9ART", "album": "\xa9alb", "title": "\xa9nam", "genre": "\xa9gen"}


@dataclass(frozen=True)
class FileTags:
    artist: str | None = None
    album: str | None = None
    title: str | None = None
    genres: list[str] = field(default_factory=list)  # every value, in the file's order


def _first(values) -> str | None:
    for value in values or ():
        text = str(value).strip()
        if text:
            return text
    return None


def _texts(values) -> list[str]:
    out = []
    for value in values or ():
        text = (bytes(value).decode("utf-8", "replace") if isinstance(value, bytes)
                else str(value)).strip()
        if text:
            out.append(text)
    return out


def _from_id3(tags) -> FileTags:
    def frame_text(key: str) -> list[str]:
        frame = tags.get(key)
        return [] if frame is None else _texts(frame.text)

    tcon = tags.get("TCON")
    # .genres splits ID3v2.4 multi-values and turns ID3v1 numbers, "(17)", into names
    genres = _texts(tcon.genres) if tcon is not None else []
    artist = _first(frame_text(_ID3["artist"])) or _first(frame_text(_ID3_ALBUM_ARTIST))
    return FileTags(artist, _first(frame_text(_ID3["album"])),
                    _first(frame_text(_ID3["title"])), genres)


def _from_vorbis(tags) -> FileTags:
    def values(key: str) -> list[str]:
        return _texts(tags.get(key, []))

    return FileTags(_first(values("artist")) or _first(values("albumartist")),
                    _first(values("album")), _first(values("title")), values("genre"))


def _from_mp4(tags) -> FileTags:
    def values(key: str) -> list[str]:
        return _texts(tags.get(key, []))

    return FileTags(_first(values(_MP4["artist"])) or _first(values("aART")),
                    _first(values(_MP4["album"])), _first(values(_MP4["title"])),
                    values(_MP4["genre"]))


def _from_asf(tags) -> FileTags:
    def values(key: str) -> list[str]:
        return _texts(tags.get(key, []))

    return FileTags(_first(values("Author")) or _first(values("WM/AlbumArtist")),
                    _first(values("WM/AlbumTitle")), _first(values("Title")),
                    values("WM/Genre"))


def read(path: str | Path) -> FileTags:
    """The tags of the file at PATH; FileTags() when it has none or they cannot be read."""
    import mutagen
    from mutagen.asf import ASFTags
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    try:
        audio = mutagen.File(str(path))
    except Exception as exc:  # mutagen raises many kinds for a damaged file; tags are optional
        log.debug("%s: tags not read (%s: %s)", path, type(exc).__name__, exc)
        return FileTags()
    tags = getattr(audio, "tags", None)
    if not tags:
        return FileTags()
    try:
        if isinstance(tags, ID3):
            return _from_id3(tags)
        if isinstance(tags, MP4Tags):
            return _from_mp4(tags)
        if isinstance(tags, ASFTags):
            return _from_asf(tags)
        # FLAC, Ogg, Opus, Speex: Vorbis comments; WavPack: APEv2. Both are case-blind.
        return _from_vorbis(tags)
    except Exception as exc:  # a tag block of an unexpected shape: same answer as no tags
        log.debug("%s: tags not read (%s: %s)", path, type(exc).__name__, exc)
        return FileTags()
