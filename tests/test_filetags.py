"""genreq.filetags reads artist, album, title and every genre value from the tags of
each format, written here with mutagen; files without tags or unreadable ones give
empty tags, never an error."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreq import filetags

RATE = 22050
GENRES = ["Electronic", "Ambient"]


def _audio(path: Path) -> Path:
    sf.write(path, (0.1 * np.sin(np.arange(RATE) / 5)).astype(np.float32), RATE)
    return path


def _ffmpeg(path: Path, *codec: str) -> Path:
    if not shutil.which("ffmpeg"):
        pytest.skip("needs ffmpeg")
    wav = _audio(path.with_suffix(".src.wav"))
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), *codec, str(path)],
                   check=True)
    return path


def _vorbis(path: Path) -> Path:
    import mutagen

    _audio(path)
    audio = mutagen.File(str(path))
    audio["ARTIST"], audio["ALBUM"], audio["TITLE"] = "Someone", "First Album", "Song"
    audio["GENRE"] = GENRES  # repeated GENRE comments
    audio.save()
    return path


def _id3(path: Path, make) -> Path:
    from mutagen.id3 import ID3, TALB, TCON, TIT2, TPE1

    make(path)
    if path.suffix == ".wav":
        from mutagen.wave import WAVE

        audio = WAVE(str(path))
        audio.add_tags()
        tags = audio.tags
    else:
        tags = ID3()
    tags.add(TPE1(encoding=3, text=["Someone"]))
    tags.add(TALB(encoding=3, text=["First Album"]))
    tags.add(TIT2(encoding=3, text=["Song"]))
    tags.add(TCON(encoding=3, text=GENRES))  # ID3v2.4 multi-value: null separated
    if path.suffix == ".wav":
        audio.save()
    else:
        tags.save(str(path), v2_version=4)
    return path


def _mp4(path: Path) -> Path:
    from mutagen.mp4 import MP4

    _ffmpeg(path, "-c:a", "aac")
    audio = MP4(str(path))
    audio["\xa9ART"], audio["\xa9alb"], audio["\xa9nam"] = ["Someone"], ["First Album"], ["Song"]
    audio["\xa9gen"] = GENRES
    audio.save()
    return path


def _asf(path: Path) -> Path:
    from mutagen.asf import ASF

    _ffmpeg(path, "-c:a", "wmav2")
    audio = ASF(str(path))
    audio["Author"], audio["WM/AlbumTitle"], audio["Title"] = ["Someone"], ["First Album"], ["Song"]
    audio["WM/Genre"] = GENRES  # one attribute per value
    audio.save()
    return path


def _apev2(path: Path) -> Path:
    from mutagen.wavpack import WavPack

    _ffmpeg(path, "-c:a", "wavpack")
    audio = WavPack(str(path))
    if audio.tags is None:
        audio.add_tags()
    audio["Artist"], audio["Album"], audio["Title"] = "Someone", "First Album", "Song"
    audio["Genre"] = GENRES  # one item, its values NUL-separated
    audio.save()
    return path


def _ogg_flac(path: Path) -> Path:
    import mutagen

    _ffmpeg(path, "-c:a", "flac")
    audio = mutagen.File(str(path))
    audio["ARTIST"], audio["ALBUM"], audio["TITLE"] = "Someone", "First Album", "Song"
    audio["GENRE"] = GENRES
    audio.save()
    return path


CASES = {
    "flac": lambda d: _vorbis(d / "a.flac"),
    "ogg": lambda d: _vorbis(d / "a.ogg"),
    "mp3": lambda d: _id3(d / "a.mp3", lambda p: _ffmpeg(p, "-c:a", "libmp3lame")),
    "wav": lambda d: _id3(d / "a.wav", _audio),
    "m4a": lambda d: _mp4(d / "a.m4a"),
    "wma": lambda d: _asf(d / "a.wma"),
    "wv": lambda d: _apev2(d / "a.wv"),
    "tta": lambda d: _id3(d / "a.tta", lambda p: _ffmpeg(p, "-c:a", "tta")),
    "mp2": lambda d: _id3(d / "a.mp2", lambda p: _ffmpeg(p, "-c:a", "mp2")),
    "oga": lambda d: _ogg_flac(d / "a.oga"),
}


@pytest.mark.parametrize("fmt", list(CASES))
def test_every_format_gives_its_fields_and_all_its_genres(fmt, tmp_path):
    tags = filetags.read(CASES[fmt](tmp_path))
    assert tags == filetags.FileTags("Someone", "First Album", "Song", GENRES)


def test_numeric_id3v1_genres_become_names(tmp_path):
    from mutagen.id3 import TCON
    from mutagen.wave import WAVE

    path = _id3(tmp_path / "a.wav", _audio)
    audio = WAVE(str(path))
    audio.tags.setall("TCON", [TCON(encoding=3, text=["(17)"])])
    audio.save()
    assert filetags.read(path).genres == ["Rock"]


def test_no_tags_and_unreadable_files_give_empty_tags(tmp_path):
    assert filetags.read(_audio(tmp_path / "plain.wav")) == filetags.FileTags()
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\xff\xfb" + bytes(range(256)) * 8)
    assert filetags.read(junk) == filetags.FileTags()
    assert filetags.read(tmp_path / "missing.flac") == filetags.FileTags()
