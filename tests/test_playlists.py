"""Extended M3U export: #EXTINF with duration and the tags' title (as the worker read
them from the file and stored them), paths relative to the playlist's folder, and one
playlist per genre; every playlist is parsed back."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import add_track
from test_cli import invoke

from genreq import filetags
from genreq.db.session import session_scope

RATE = 8000


def parse_m3u(path: Path) -> list[tuple[int, str, Path]]:
    """(seconds, title, absolute path) per entry; relative paths resolve against the
    playlist's folder, as players do."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    entries = []
    for info, location in zip(lines[1::2], lines[2::2], strict=True):
        assert info.startswith("#EXTINF:"), info
        seconds, title = info[len("#EXTINF:"):].split(",", 1)
        assert not location.startswith("#")
        entries.append((int(seconds), title, (path.parent / location).resolve()))
    assert len(lines) == 1 + 2 * len(entries)
    return entries


def write_audio(path: Path, seconds: float = 1.0, title: str | None = None,
                artist: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(int(RATE * seconds), np.float32), RATE)
    if path.suffix == ".wav" and title:  # ID3 in a RIFF chunk: no easy interface
        from mutagen.id3 import TIT2
        from mutagen.wave import WAVE

        audio = WAVE(path)
        audio.add_tags()
        audio.tags.add(TIT2(encoding=3, text=[title]))
        audio.save()
    elif title or artist:
        import mutagen

        audio = mutagen.File(path, easy=True)
        if title:
            audio["title"] = title
        if artist:
            audio["artist"] = artist
        audio.save()
    return path


@pytest.fixture
def music(sqlite_url, tmp_path):
    lib = tmp_path / "music"
    files = {
        "tagged": write_audio(lib / "Jazz" / "so what.flac", title="So What", artist="Miles Davis"),
        "title_only": write_audio(lib / "Jazz" / "untitled.ogg", title="Blue\nin Green"),
        "untagged": write_audio(lib / "Rock" / "riff.flac"),
        "wav": write_audio(lib / "Rock" / "id3.wav", title="Tagged WAV"),
    }
    with session_scope() as s:
        add_track(s, str(files["tagged"]), "done", "jazz", 0.8, duration_s=545.6,
                  **read_as_the_worker_does(files["tagged"]))
        add_track(s, str(files["title_only"]), "done", "jazz", 0.7, duration_s=337.0,
                  **read_as_the_worker_does(files["title_only"]))
        add_track(s, str(files["untagged"]), "done", "rock", 0.9, duration_s=None,
                  **read_as_the_worker_does(files["untagged"]))
        add_track(s, str(files["wav"]), "done", "rock", 0.8, duration_s=1.0,
                  **read_as_the_worker_does(files["wav"]))
        add_track(s, str(lib / "gone.mp3"), "done", "hip/hop", 0.6, duration_s=12.4)
    return files


def read_as_the_worker_does(path: Path) -> dict:
    """The columns the worker stores of a file's own tags (worker.tasks via filetags)."""
    tags = filetags.read(path)
    return {"artist": tags.artist, "album": tags.album, "title": tags.title,
            "file_genres": tags.genres}


def test_extended_m3u_titles_and_durations(music, tmp_path):
    out = tmp_path / "all.m3u"
    invoke("export", "--format", "m3u", "-o", str(out))
    assert parse_m3u(out) == [
        (546, "Miles Davis - So What", music["tagged"]),
        (337, "Blue in Green", music["title_only"]),  # a newline in a tag cannot end the line
        (-1, "riff", music["untagged"]),  # no tags: the file name; unknown length: -1
        (1, "Tagged WAV", music["wav"]),  # ID3 chunk in a WAV
        (12, "gone", tmp_path / "music" / "gone.mp3"),  # missing file: still listed
    ]
    assert str(music["tagged"]) in out.read_text()  # absolute paths by default


def test_titles_come_from_the_database_not_the_files(music, tmp_path):
    # A library whose drive is not mounted, or whose files were retagged since: the
    # playlist says what the files said when they were classified, opening none.
    for path in music.values():
        path.unlink()
    out = tmp_path / "all.m3u"
    invoke("export", "--format", "m3u", "-o", str(out))
    assert [title for _s, title, _p in parse_m3u(out)] == [
        "Miles Davis - So What", "Blue in Green", "riff", "Tagged WAV", "gone"]


def test_relative_paths(music, tmp_path):
    out = tmp_path / "lists" / "jazz.m3u"
    out.parent.mkdir()
    invoke("export", "-g", "jazz", "--format", "m3u", "--relative", "-o", str(out))
    text = out.read_text()
    assert "\n../music/Jazz/so what.flac\n" in text
    assert [entry[2] for entry in parse_m3u(out)] == [music["tagged"], music["title_only"]]


def test_split_by_genre(music, tmp_path):
    folder = tmp_path / "playlists"
    result = invoke("export", "--split-by-genre", str(folder), "--relative")
    assert result.stdout == ""
    assert result.stderr == (
        f"wrote 3 playlists to {folder}: hip_hop.m3u (1), jazz.m3u (2), rock.m3u (2)\n")
    assert sorted(os.listdir(folder)) == ["hip_hop.m3u", "jazz.m3u", "rock.m3u"]
    assert [e[2] for e in parse_m3u(folder / "jazz.m3u")] == [
        music["tagged"], music["title_only"]]
    assert parse_m3u(folder / "rock.m3u") == [
        (-1, "riff", music["untagged"]), (1, "Tagged WAV", music["wav"])]
    assert "\n../music/Rock/riff.flac\n" in (folder / "rock.m3u").read_text()


def test_split_by_genre_with_taxonomy_and_unknown(music, tmp_path):
    taxonomy = tmp_path / "genres.toml"
    taxonomy.write_text('[genres]\njazz = "Jazz & Blues"\n')
    folder = tmp_path / "playlists"
    invoke("export", "--split-by-genre", str(folder), "--taxonomy", str(taxonomy),
           "--unknown-below", "0.75")
    assert sorted(os.listdir(folder)) == ["Jazz & Blues.m3u", "rock.m3u", "unknown.m3u"]
    assert [e[1] for e in parse_m3u(folder / "rock.m3u")] == ["riff", "Tagged WAV"]
    assert [e[1] for e in parse_m3u(folder / "unknown.m3u")] == ["Blue in Green", "gone"]


def test_split_by_genre_usage_errors(music, tmp_path):
    folder = str(tmp_path / "p")
    assert "--split-by-genre writes m3u playlists" in invoke(
        "export", "--split-by-genre", folder, "--format", "csv", code=2).stderr
    assert "-o/--output does not apply" in invoke(
        "export", "--split-by-genre", folder, "-o", "x.m3u", code=2).stderr
    assert not os.path.exists(folder)


def test_split_playlists_have_ordinary_permissions(music, tmp_path):
    folder = tmp_path / "playlists"
    old = os.umask(0o022)
    try:
        invoke("export", "--split-by-genre", str(folder))
    finally:
        os.umask(old)
    assert oct((folder / "rock.m3u").stat().st_mode & 0o777) == oct(0o644)
