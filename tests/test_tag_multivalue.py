"""genreq tag's multi-values, round-tripped through mutagen on real files: several genres
are the format's own multi-value (one ID3v2.4 TCON frame of null-separated names, never
numeric ID3v1 codes; repeated Vorbis GENRE comments; an MP4 list), --with-tags N adds
the best genre tags, --mood-field gets the mood tags, --mode add keeps the file's own
values (once each, ignoring case) and replaces only genreq's earlier ones."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import add_track
from test_cli import invoke
from test_tagging import make_audio

from genreq import filetags
from genreq.app import tagging
from genreq.db import tracks
from genreq.db.session import session_scope
from genreq.pretrained.musicnn import MSD_TAG_NAMES

FORMATS = ["mp3", "flac", "ogg", "m4a"]
TAGS = {"electronic": 0.81, "female vocalists": 0.7, "happy": 0.6, "dance": 0.5,
        "80s": 0.45, "chill": 0.3, "house": 0.2, "sad": 0.1, "rock": 0.05}


@pytest.fixture(autouse=True)
def _no_user_taxonomy(monkeypatch):
    monkeypatch.delenv("GENREQ_TAXONOMY", raising=False)


def classified(path: Path, genre: str = "disco", tags: dict | None = TAGS) -> Path:
    info = path.stat()
    with session_scope() as s:
        add_track(s, str(path), "done", genre, 0.8, size_bytes=info.st_size,
                  mtime_ns=info.st_mtime_ns, duration_s=1.0, tags=tags)
    return path


def reclassified(path: Path, genre: str) -> None:
    """As after a new run (or a new head): the row's genre and the file's stat."""
    with session_scope() as s:
        track = tracks.track_by_path(s, str(path))
        track.genre, track.probs = genre, {genre: 0.9, "other": 0.1}
        track.size_bytes, track.mtime_ns = path.stat().st_size, path.stat().st_mtime_ns


def values(path: Path, field: str = "GENRE") -> list[str]:
    """A field's values as each format's own mutagen API reads them back."""
    import mutagen

    audio = mutagen.File(path)
    ext = path.suffix[1:]
    if ext == "mp3":
        key = {"GENRE": "TCON", "MOOD": "TMOO"}.get(field, f"TXXX:{field}")
        frames = audio.tags.getall(key)
        assert len(frames) <= 1  # one frame holding every value
        return list(frames[0].text) if frames else []
    if ext == "m4a":
        if field == "GENRE":
            return list(audio.tags.get("\xa9gen", []))
        return [bytes(v).decode() for v in audio.tags.get(f"----:com.apple.iTunes:{field}", [])]
    # Vorbis comments: one (key, value) pair per value
    return [v for k, v in audio.tags if k.upper() == field]


def set_genre(path: Path, genres: list[str]) -> None:
    import mutagen

    audio = mutagen.File(path, easy=True)
    if audio.tags is None:
        audio.add_tags()
    audio["genre"] = genres
    audio.save()


@pytest.mark.parametrize("ext", FORMATS)
def test_with_tags_and_moods_are_the_formats_own_multi_values(sqlite_url, tmp_path, ext):
    path = classified(make_audio(tmp_path / f"song.{ext}"))
    result = invoke("tag", "--with-tags", "2", "--mood-field", "MOOD")
    assert result.stdout == (f"wrote\t{path}\tGENRE: (none) -> disco; electronic; dance"
                             "\tMOOD: (none) -> happy; chill\n")
    assert values(path) == ["disco", "electronic", "dance"]  # no vocalists, decades, moods
    assert values(path, "MOOD") == ["happy", "chill"]  # sad is under the threshold
    assert filetags.read(path).genres == ["disco", "electronic", "dance"]  # what learn reads
    if ext == "mp3":
        from mutagen.id3 import ID3

        assert ID3(path).version[:2] == (2, 4)
        raw = path.read_bytes()
        assert b"disco\x00electronic\x00dance" in raw  # null-separated, not "/" or "(nn)"
    assert invoke("tag", "--with-tags", "2", "--mood-field", "MOOD").stdout == ""  # same


def test_no_numeric_id3v1_codes(sqlite_url, tmp_path):
    path = classified(make_audio(tmp_path / "song.mp3"), "rock", tags=None)
    invoke("tag")
    raw = path.read_bytes()
    assert values(path) == ["rock"] and b"(17)" not in raw and b"TCON" in raw


@pytest.mark.parametrize("ext", FORMATS)
def test_mode_add_keeps_the_files_values_and_replaces_genreqs_own(sqlite_url, tmp_path, ext):
    path = make_audio(tmp_path / f"song.{ext}")
    set_genre(path, ["Synthpop", "Electronic"])
    classified(path)
    assert invoke("tag", "--with-tags", "2").stdout.startswith(f"keep\t{path}\tGENRE is ")
    assert invoke("tag", "--mode", "add", "--with-tags", "2", "--dry-run").stdout == (
        f"would write\t{path}\tGENRE: Synthpop; Electronic -> Synthpop; Electronic; disco; "
        "dance\n")  # "electronic" is there already, in the user's spelling
    assert values(path) == ["Synthpop", "Electronic"]
    invoke("tag", "--mode", "add", "--with-tags", "2")
    assert values(path) == ["Synthpop", "Electronic", "disco", "dance"]
    assert tagging.open_tags(str(path)).marker() == ("disco", "dance")
    assert invoke("tag", "--mode", "add", "--with-tags", "2").stdout == ""  # already tagged

    reclassified(path, "house")  # genreq's values change, the user's stay
    assert invoke("tag", "--mode", "add").stdout == (
        f"wrote\t{path}\tGENRE: Synthpop; Electronic; disco; dance -> Synthpop; Electronic; "
        "house\n")
    assert values(path) == ["Synthpop", "Electronic", "house"]
    # replace: the user's values are still theirs, kept without --overwrite
    assert invoke("tag").stdout.startswith(f"keep\t{path}\tGENRE is Synthpop; Electronic")
    invoke("tag", "--overwrite")
    assert values(path) == ["house"]


def test_replace_updates_genreqs_own_multi_values(sqlite_url, tmp_path):
    path = classified(make_audio(tmp_path / "song.flac"))
    invoke("tag", "--with-tags", "3")
    assert values(path) == ["disco", "electronic", "dance", "house"]
    reclassified(path, "funk")
    assert invoke("tag").stdout == (
        f"wrote\t{path}\tGENRE: disco; electronic; dance; house -> funk\n")
    assert values(path) == ["funk"]


def test_moods_leave_a_users_mood_alone_and_a_track_without_tags_untouched(sqlite_url,
                                                                          tmp_path):
    import mutagen

    mine = make_audio(tmp_path / "mine.ogg")
    audio = mutagen.File(mine)
    audio["MOOD"] = ["Brooding"]
    audio.save()
    classified(mine)
    untagged = classified(make_audio(tmp_path / "untagged.ogg"), "jazz", tags=None)
    result = invoke("tag", "--mood-field", "MOOD", "--dry-run")
    assert result.stdout == (f"would write\t{mine}\tGENRE: (none) -> disco\n"
                             f"would write\t{untagged}\tGENRE: (none) -> jazz\n")
    invoke("tag", "--mood-field", "MOOD", "--mode", "add")
    assert values(mine, "MOOD") == ["Brooding", "happy", "chill"]
    assert values(untagged, "MOOD") == []
    assert invoke("tag", "--mood-field", "genre", code=2).stderr.endswith(
        "the mood field must differ from the genre field\n")


def test_min_tag_score_and_the_mood_and_genre_tag_subsets(sqlite_url, tmp_path):
    path = classified(make_audio(tmp_path / "song.m4a"))
    assert invoke("tag", "--with-tags", "5", "--min-tag-score", "0.5", "--mood-field",
                  "MOOD", "--dry-run").stdout == (
        f"would write\t{path}\tGENRE: (none) -> disco; electronic; dance"
        "\tMOOD: (none) -> happy\n")
    assert set(tagging.MOOD_TAGS) <= set(MSD_TAG_NAMES)
    assert set(tagging.NOT_GENRE_TAGS) <= set(MSD_TAG_NAMES)
    assert {"happy", "sad", "chill", "mellow", "party"} <= set(tagging.MOOD_TAGS)
    assert tagging.genre_tags({"rock": 0.5, "Rock": 0.4, "80s": 0.9}, 2) == ["rock", "Rock"]
    assert tagging.unique(["rock", "Rock", " ", "pop"]) == ("rock", "pop")
