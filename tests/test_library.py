"""The library walk: sorted, streaming, extension filter, unreadable dirs, symlink loops;
and the fast count of what it will yield (enqueue's progress total)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from genreq.app.walk import LibraryWalk, count_audio_files, is_audio


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def walked(*paths) -> list[str]:
    return [stat.path for stat in LibraryWalk(paths)]


def test_is_audio_case_insensitive():
    for name in ("a.wav", "a.FLAC", "a.Mp3", "a.ogg", "a.opus", "a.m4a", "a.AIFF", "a.au",
                 "a.WMA", "a.aac", "a.wv", "a.tta", "a.mka", "a.oga", "a.aifc", "a.mp2",
                 "a.caf"):
        assert is_audio(name), name
    for name in ("a.txt", "a.jpg", "mp3", "a.mp3.part", "a", "a.mp4", "a.m4b", "a.ape",
                 "a.mpc"):
        assert not is_audio(name), name


def test_sorted_depth_first_with_counts(tmp_path):
    for rel in ("b/2.mp3", "b/1.FLAC", "a.wav", "c/d/e.ogg", "c/cover.jpg", "z.txt"):
        touch(tmp_path / rel)
    walk = LibraryWalk([tmp_path])
    paths = [stat.path for stat in walk]
    assert paths == [str(tmp_path / rel) for rel in ("a.wav", "b/1.FLAC", "b/2.mp3", "c/d/e.ogg")]
    assert walk.ignored == 2
    assert walk.warnings == 0


def test_ignored_files_are_counted_by_kind(tmp_path, monkeypatch):
    from genreq.app import walk as walk_module

    for rel in ("a/cover.JPG", "a/back.jpg", "a/notes.txt", "a/README", "b/01.ape",
                "b/02.ape", "b/03.ape", "b/song.mp3"):
        touch(tmp_path / rel)
    os.mkfifo(tmp_path / "a" / "pipe.mp3")  # an audio name on something not a file
    walk = LibraryWalk([tmp_path])
    assert [Path(s.path).name for s in walk] == ["song.mp3"]
    assert walk.ignored == 8
    assert walk.ignored_kinds.most_common() == [
        (".ape", 3), (".jpg", 2), ("no extension", 1), (".txt", 1),
        ("not a regular file", 1)]  # ties in the order met: README sorts before notes.txt
    monkeypatch.setattr(walk_module, "IGNORED_KINDS", 2)  # a library of odd names
    walk = LibraryWalk([tmp_path])
    list(walk)
    assert walk.ignored == 8
    assert sorted(walk.ignored_kinds.items()) == [(".jpg", 2), ("no extension", 1),
                                                  ("other", 5)]


def test_idempotency_key_is_size_and_mtime(tmp_path):
    song = touch(tmp_path / "song.mp3", b"12345")
    os.utime(song, ns=(1_000_000_000, 1_700_000_000_123_456_789))
    (stat,) = LibraryWalk([tmp_path])
    assert (stat.path, stat.size_bytes, stat.mtime_ns) == (
        str(song), 5, 1_700_000_000_123_456_789,
    )


def test_files_and_relative_paths_as_arguments(tmp_path, monkeypatch):
    touch(tmp_path / "one.mp3")
    touch(tmp_path / "readme.md")
    monkeypatch.chdir(tmp_path)
    walk = LibraryWalk(["one.mp3", "readme.md"])
    assert [s.path for s in walk] == [str(tmp_path / "one.mp3")]
    assert walk.ignored == 1


def test_hidden_entries_skipped(tmp_path):
    touch(tmp_path / ".hidden" / "a.mp3")
    touch(tmp_path / "._resource.mp3")
    touch(tmp_path / "ok.mp3")
    assert walked(tmp_path) == [str(tmp_path / "ok.mp3")]


def lock_directories_named(name: str, monkeypatch) -> None:
    """Make os.scandir refuse directories called `name`. The tests may run as root, for
    whom chmod 000 locks nothing: fake the refusal."""
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == name:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_unreadable_directory_warns_and_goes_on(tmp_path, monkeypatch, caplog):
    touch(tmp_path / "a" / "1.mp3")
    touch(tmp_path / "locked" / "2.mp3")
    touch(tmp_path / "z" / "3.mp3")
    lock_directories_named("locked", monkeypatch)
    walk = LibraryWalk([tmp_path])
    with caplog.at_level(logging.WARNING):
        paths = [s.path for s in walk]
    assert paths == [str(tmp_path / "a" / "1.mp3"), str(tmp_path / "z" / "3.mp3")]
    assert walk.warnings == 1
    assert f"skipping unreadable directory {tmp_path / 'locked'}: Permission denied" in caplog.text


def test_missing_path_and_broken_symlink_warn(tmp_path, caplog):
    touch(tmp_path / "lib" / "a.mp3")
    (tmp_path / "lib" / "dangling.mp3").symlink_to(tmp_path / "nowhere.mp3")
    walk = LibraryWalk([tmp_path / "missing", tmp_path / "lib"])
    with caplog.at_level(logging.WARNING):
        assert [s.path for s in walk] == [str(tmp_path / "lib" / "a.mp3")]
    assert walk.warnings == 2


def test_symlink_loops_end_and_aliases_count_once(tmp_path):
    touch(tmp_path / "music" / "album" / "t.mp3")
    (tmp_path / "music" / "album" / "loop").symlink_to(tmp_path / "music")
    (tmp_path / "music" / "alias").symlink_to(tmp_path / "music" / "album")
    # "album" sorts before "alias": the real path is the one kept.
    assert walked(tmp_path / "music", tmp_path / "music") == [
        str(tmp_path / "music" / "album" / "t.mp3")
    ]


def test_walk_streams(tmp_path):
    touch(tmp_path / "a" / "1.mp3")
    touch(tmp_path / "b" / "2.mp3")
    walk = iter(LibraryWalk([tmp_path]))
    assert next(walk).path == str(tmp_path / "a" / "1.mp3")
    # "b" is listed only now, when the walk gets there: a walk that read the whole tree
    # before its first file would still yield 2.mp3 and never see 3.mp3
    (tmp_path / "b" / "2.mp3").unlink()
    touch(tmp_path / "b" / "3.mp3")
    assert [stat.path for stat in walk] == [str(tmp_path / "b" / "3.mp3")]


def test_count_is_what_the_walk_yields(tmp_path, monkeypatch):
    for rel in ("b/2.mp3", "b/1.FLAC", "a.wav", "c/d/e.ogg", "c/cover.jpg", "z.txt",
                ".hidden/h.mp3", "c/._resource.mp3", "locked/l.mp3", "one.opus"):
        touch(tmp_path / "music" / rel)
    music = tmp_path / "music"
    (music / "c" / "d" / "loop").symlink_to(music)
    (music / "alias").symlink_to(music / "b")
    (music / "b" / "alias.mp3").symlink_to(music / "a.wav")  # a file link counts, as walked
    (music / "dangling.mp3").symlink_to(tmp_path / "nowhere.mp3")
    os.mkfifo(music / "pipe.mp3")  # not a regular file: neither walked nor counted
    (music / os.fsdecode(b"bad-\xff.mp3")).write_bytes(b"x")  # not UTF-8: skipped by both
    lock_directories_named("locked", monkeypatch)
    arguments = [music, music / "one.opus", tmp_path / "missing", music / "z.txt"]
    expected = walked(*arguments)
    assert len(expected) == 7  # a, b/1, b/2, b/alias, c/d/e, one, and one.opus again
    assert count_audio_files(arguments) == len(expected)
    assert count_audio_files([]) == 0
