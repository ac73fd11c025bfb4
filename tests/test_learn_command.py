"""`genreq learn` through the installed command on a library classified by real workers:
three timbres, four albums of three tracks each per timbre, half of the albums tagged
with their timbre's genre by the test (mutagen). The head is cross-validated by album
and learns the timbres; nothing is written to the files."""
from __future__ import annotations

import json

import pytest
import soundfile as sf
from helpers import genreq
from test_similar import RATE, TIMBRES, timbre

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_learn_from_tags_and_from_folders(tmp_path, genreq_home):
    import mutagen

    root = tmp_path / "library"
    for kind, name in enumerate(TIMBRES):
        for album in range(4):
            folder = root / name / f"album {album}"
            folder.mkdir(parents=True)
            for track in range(3):
                path = folder / f"{track}.flac"
                sf.write(path, timbre(kind, 3 * album + track), RATE)
                audio = mutagen.File(str(path))
                audio["ALBUM"], audio["ARTIST"] = f"{name} {album}", f"artist {kind}"
                if album % 2 == 0:  # half the albums carry a genre
                    audio["GENRE"] = [name.title()]
                audio.save()
    genreq("run", root, "--workers", "1", timeout=300)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.flac")}

    result = genreq("learn", "--from-tags", "--min-tracks", "2", "--json")
    cv = json.loads(result.stdout)
    assert set(cv["per_genre"]) == set(TIMBRES)  # normalised: "Ambient" -> "ambient"
    assert cv["n"] == 18 and cv["groups"] == 6 and cv["folds"] == 5
    assert all(g["n"] == 6 for g in cv["per_genre"].values())
    assert cv["accuracy"] >= 0.8
    assert (genreq_home / "learned-genres.npz").exists()
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.flac")} == before  # no writes

    text = genreq("learn", "--from-tags", "--min-tracks", "2").stdout
    assert text.splitlines()[0].split() == ["genre", "tracks", "accuracy"]
    assert "none on both sides" in text

    # Folders named "album N" are four genres of 9 tracks; --min-tracks 10 leaves all out.
    too_few = genreq("learn", "--from-folders", "--min-tracks", "10", check=False)
    assert too_few.returncode == 1
    assert "need at least two genres with 10 or more tracks" in too_few.stderr
    assert "Error:" in too_few.stderr

    assert genreq("learn", "--reset").stderr.strip() == "removed the learned head"
    assert not (genreq_home / "learned-genres.npz").exists()
    assert genreq("learn", check=False).returncode == 2  # no source given
    both = genreq("learn", "--from-tags", "--from-folders", check=False)
    assert both.returncode == 2 and "one of them" in both.stderr


def test_a_genre_held_in_one_album_is_named_as_untestable():
    from genreq.app.learning import _untestable_genres
    from genreq.learn import choose_labels

    genre_lists = [["jazz"], ["jazz"], ["rock"], ["rock"], ["pop"], ["pop"], []]
    groups = ["a1", "a2", "b1", "b1", "c1", "c2", "z"]
    labels = choose_labels(genre_lists, 2)
    assert sorted(_untestable_genres(labels, groups)) == ["rock"]
