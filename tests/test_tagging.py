"""genreq tag on real files of every taggable format, round-tripped through mutagen:
decoded audio identical before and after, user genres kept unless --overwrite, genreq's
own tags updated, dry runs write nothing, and a tag write never re-queues the file."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import add_track, genreq
from test_cli import invoke

from genreq.app import tagging
from genreq.app.walk import LibraryWalk
from genreq.db import queue, tracks
from genreq.db.models import Track
from genreq.db.session import session_scope

RATE = 22050
SOUNDFILE_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF", "au": "AU"}
FFMPEG_CODECS = {"mp3": "libmp3lame", "m4a": "aac", "opus": "libopus", "wma": "wmav2",
                 "wv": "wavpack", "tta": "tta", "mp2": "mp2", "oga": "flac",
                 "aifc": "pcm_s16be", "mka": "flac", "caf": "alac", "aac": "aac"}
TAGGABLE = ["wav", "flac", "ogg", "aiff", "mp3", "m4a", "opus", "wma", "wv", "tta", "mp2",
            "oga", "aifc"]


@pytest.fixture(autouse=True)
def _no_user_taxonomy(monkeypatch):
    monkeypatch.delenv("GENREQ_TAXONOMY", raising=False)


def make_audio(path: Path) -> Path:
    """One second of a chord, written by soundfile or (mp3, m4a, opus) ffmpeg."""
    ext = path.suffix[1:]
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(RATE) / RATE
    audio = (0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 660 * t))
    if ext in SOUNDFILE_FORMATS:
        soundfile.write(path, audio.astype(np.float32), RATE, format=SOUNDFILE_FORMATS[ext])
        return path
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    wav = path.with_suffix(".src.wav")
    soundfile.write(wav, audio.astype(np.float32), RATE)
    result = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a",
                             FFMPEG_CODECS[ext], str(path)],
                            check=False, capture_output=True, text=True)
    wav.unlink()
    if result.returncode != 0:
        pytest.skip(f"ffmpeg cannot encode {ext}: {result.stderr.strip()}")
    return path


def decoded(path: Path) -> bytes:
    """The decoded samples, by libsndfile where it reads the format, else by ffmpeg."""
    if path.suffix[1:] in SOUNDFILE_FORMATS:
        samples, _rate = soundfile.read(path, dtype="float32")
        return samples.tobytes()
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"],
                          capture_output=True, check=True).stdout


def genre_in_file(path: Path, field: str = "GENRE") -> list[str]:
    """The genre as mutagen reads it back, through each format's own API."""
    import mutagen

    audio = mutagen.File(path)
    if audio.tags is None:
        return []
    ext = path.suffix[1:]
    if ext in ("mp3", "wav", "aiff", "aifc", "tta", "mp2"):
        key = "TCON" if field == "GENRE" else f"TXXX:{field}"
        frame = audio.tags.get(key)
        return list(frame.text) if frame else []
    if ext == "wma":
        return [str(v) for v in audio.tags.get("WM/Genre" if field == "GENRE" else field, [])]
    if ext == "wv":
        return list(audio.tags.get("Genre" if field == "GENRE" else field) or [])
    if ext == "m4a":
        if field == "GENRE":
            return list(audio.tags.get("\xa9gen", []))
        return [bytes(v).decode() for v in audio.tags.get(f"----:com.apple.iTunes:{field}", [])]
    return list(audio.tags.get(field, []))


def classified(path: Path, genre: str = "jazz", confidence: float = 0.8, **fields) -> Path:
    """A done track row for `path` with the file's current size and mtime."""
    info = path.stat()
    with session_scope() as s:
        add_track(s, str(path), "done", genre, confidence, size_bytes=info.st_size,
                  mtime_ns=info.st_mtime_ns, duration_s=1.0, **fields)
    return path


def row(path: Path) -> Track:
    with session_scope() as s:
        return tracks.track_by_path(s, str(path))


def set_user_genre(path: Path, genre: str) -> None:
    import mutagen

    audio = mutagen.File(path, easy=True)
    if audio.tags is None:
        audio.add_tags()
    audio["genre"] = genre
    audio.save()


@pytest.mark.parametrize("ext", TAGGABLE)
def test_tag_round_trip_leaves_audio_alone(sqlite_url, tmp_path, ext):
    path = make_audio(tmp_path / "music" / f"song.{ext}")
    samples = decoded(path)
    classified(path)
    result = invoke("tag")
    assert result.stdout == f"wrote\t{path}\tGENRE: (none) -> jazz\n"
    assert result.stderr == (
        "wrote 1 · already tagged 0 · kept (set by you) 0 · skipped 0\n")
    assert genre_in_file(path) == ["jazz"]
    assert tagging.open_tags(str(path)).marker() == ("jazz",)
    assert decoded(path) == samples
    info = path.stat()
    assert (row(path).size_bytes, row(path).mtime_ns) == (info.st_size, info.st_mtime_ns)
    # a second run finds nothing to do
    assert invoke("tag").stdout == ""


@pytest.mark.parametrize("ext", ["au", "aac", "mka", "caf"])
def test_a_format_without_tags_is_skipped_with_a_message(sqlite_url, tmp_path, ext):
    path = classified(make_audio(tmp_path / f"song.{ext}"))
    before = path.read_bytes()
    result = invoke("tag")
    assert result.stdout == f"skip\t{path}\tno genre tag support for .{ext} files\n"
    assert "skipped 1" in result.stderr
    assert path.read_bytes() == before


def test_dry_run_writes_nothing(sqlite_url, tmp_path):
    path = classified(make_audio(tmp_path / "song.flac"))
    before, stat_before = path.read_bytes(), (row(path).size_bytes, row(path).mtime_ns)
    result = invoke("tag", "--dry-run")
    assert result.stdout == f"would write\t{path}\tGENRE: (none) -> jazz\n"
    assert result.stderr.startswith("would write 1 ·")
    assert path.read_bytes() == before
    assert (row(path).size_bytes, row(path).mtime_ns) == stat_before


@pytest.mark.parametrize("ext", ["mp3", "flac", "m4a"])
def test_user_genre_kept_unless_overwrite(sqlite_url, tmp_path, ext):
    path = make_audio(tmp_path / f"song.{ext}")
    set_user_genre(path, "Ambient")
    classified(path)
    result = invoke("tag")
    assert result.stdout == (
        f"keep\t{path}\tGENRE is Ambient, set by you (--overwrite replaces it)\n")
    assert genre_in_file(path) == ["Ambient"]
    assert invoke("tag", "--dry-run", "--overwrite").stdout == (
        f"would write\t{path}\tGENRE: Ambient -> jazz\n")
    assert genre_in_file(path) == ["Ambient"]
    assert invoke("tag", "--overwrite").stdout == f"wrote\t{path}\tGENRE: Ambient -> jazz\n"
    assert genre_in_file(path) == ["jazz"]


def test_own_earlier_tag_is_updated_without_overwrite(db_url, tmp_path):
    path = classified(make_audio(tmp_path / "song.ogg"))
    invoke("tag")
    with session_scope() as s:  # reclassified since, e.g. by another model
        track = tracks.track_by_path(s, str(path))
        track.genre, track.probs = "rock", {"rock": 0.9, "jazz": 0.1}
    assert invoke("tag").stdout == f"wrote\t{path}\tGENRE: jazz -> rock\n"
    assert genre_in_file(path) == ["rock"]
    # the user then sets their own genre: genreq's marker no longer matches
    set_user_genre(path, "Post-Rock")
    with session_scope() as s:
        tracks.record_file_stat(s, row(path).id, path.stat().st_size, path.stat().st_mtime_ns)
    assert invoke("tag").stdout.startswith(f"keep\t{path}\tGENRE is Post-Rock")


def test_tag_write_does_not_requeue_but_a_real_change_does(db_url, tmp_path):
    lib = tmp_path / "music"
    paths = [classified(make_audio(lib / name)) for name in ("a.flac", "b.mp3", "c.wav")]
    sizes = [p.stat().st_size for p in paths]
    invoke("tag")
    assert [p.stat().st_size for p in paths] != sizes  # the tags did change the files
    with session_scope() as s:
        result = queue.upsert_tracks(s, list(LibraryWalk([lib])), "after-tag")
    assert (result.queued_ids, result.known) == ([], 3)
    # an edit after the tag write is still a change that enqueue picks up
    set_user_genre(paths[0], "Ambient")
    with session_scope() as s:
        result = queue.upsert_tracks(s, list(LibraryWalk([lib])), "after-edit")
    assert (len(result.queued_ids), result.known) == (1, 2)


def test_file_changed_since_classification_is_skipped(sqlite_url, tmp_path):
    path = classified(make_audio(tmp_path / "song.flac"))
    set_user_genre(path, "")  # any edit after the classification
    stat_before = (row(path).size_bytes, row(path).mtime_ns)
    result = invoke("tag", "--overwrite")
    assert result.stdout == (
        f"skip\t{path}\tchanged since it was classified (run `genreq enqueue` first)\n")
    assert (row(path).size_bytes, row(path).mtime_ns) == stat_before


def test_missing_file_is_skipped(sqlite_url, tmp_path):
    path = classified(make_audio(tmp_path / "song.flac"))
    path.unlink()
    assert invoke("tag").stdout == f"skip\t{path}\tcannot read (No such file or directory)\n"


@pytest.mark.parametrize("ext", ["mp3", "flac", "m4a"])
def test_custom_genre_field(sqlite_url, tmp_path, ext):
    path = make_audio(tmp_path / f"song.{ext}")
    set_user_genre(path, "Ambient")
    classified(path)
    result = invoke("tag", "--genre-field", "STYLE")
    assert result.stdout == f"wrote\t{path}\tSTYLE: (none) -> jazz\n"
    assert genre_in_file(path, "STYLE") == ["jazz"]
    assert genre_in_file(path) == ["Ambient"]  # the genre tag itself untouched


def test_taxonomy_threshold_and_filters(sqlite_url, tmp_path):
    taxonomy = tmp_path / "genres.toml"
    taxonomy.write_text('[genres]\nmetal = "Rock"\nrock = "Rock"\n')
    sure = classified(make_audio(tmp_path / "sure.flac"), "metal", 0.5,
                      probs={"metal": 0.5, "rock": 0.4, "jazz": 0.1})
    unsure = classified(make_audio(tmp_path / "unsure.flac"), "jazz", 0.4,
                        probs={"jazz": 0.4, "rock": 0.3, "pop": 0.3})
    result = invoke("tag", "--taxonomy", str(taxonomy), "--unknown-below", "0.5")
    assert result.stdout == (
        f"wrote\t{sure}\tGENRE: (none) -> Rock\n"
        f"skip\t{unsure}\tbelow --unknown-below: genre unknown\n")
    assert genre_in_file(sure) == ["Rock"] and genre_in_file(unsure) == []
    assert invoke("tag", "--path-glob", "*/sure.flac", "--dry-run").stdout == (
        f"would write\t{sure}\tGENRE: Rock -> metal\n")  # genreq's own tag: updatable
    assert "unknown genre polka" in invoke("tag", "-g", "polka", code=2).stderr
    assert "not a usable tag field" in invoke("tag", "--genre-field", "A=B", code=2).stderr


def test_progress_lines_on_stderr_when_not_a_terminal(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREQ_PROGRESS_EVERY_S", "0")  # a line per track, not per 5 s
    paths = [classified(make_audio(tmp_path / f"{name}.flac")) for name in ("a", "b", "c")]
    other = tmp_path / "other.flac"  # filtered out: not counted in the total
    classified(make_audio(other))
    result = genreq("tag", "--path-glob", f"{tmp_path}/[abc].flac")  # the installed command
    assert result.stdout == "".join(f"wrote\t{p}\tGENRE: (none) -> jazz\n" for p in paths)
    progress = result.stderr.splitlines()
    assert len(progress) == 5
    # the n-th line is shown as the n-th track is read, before it is tagged
    for n, line in enumerate(progress[:2], 1):
        assert re.fullmatch(rf"\[[#-]{{24}}\] {n}/3  \d+\.\d tracks/s  ETA \d:\d\d:\d\d  "
                            rf"wrote {n - 1} · already tagged 0 · kept \(set by you\) 0 · "
                            r"skipped 0", line), line
    assert progress[2].startswith("[########################] 3/3  ")
    assert re.fullmatch(r"\[#{24}\] 3/3  \d+\.\d tracks/s  in \d:\d\d:\d\d  wrote 3 · "
                        r"already tagged 0 · kept \(set by you\) 0 · skipped 0", progress[3])
    assert progress[4] == "wrote 3 · already tagged 0 · kept (set by you) 0 · skipped 0"
