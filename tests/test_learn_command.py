"""`genreq learn` through the installed command on a library classified by real workers:
three timbres, four albums of three tracks each per timbre, half of the albums tagged
with their timbre's genre by the test (mutagen). The head is cross-validated by album
and learns the timbres; nothing is written to the files. Then export, status, tag
--dry-run and report show the learned genres for every track, the untagged half
included, until learn --reset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from helpers import genreq
from test_similar import RATE, TIMBRES, timbre

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres",
                                                             marks=pytest.mark.postgres)])
def test_learn_from_tags_and_from_folders(database, tmp_path, genreq_home, request):
    import mutagen

    if database == "postgres":
        request.getfixturevalue("postgres_url")

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
    assert set(cv["per_genre"]) == set(GENRES)  # as the files spell them
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

    check_learned_genres_everywhere(root, tmp_path)

    # A track classified after learning gets the learned genre, in run's summary too.
    later = root / TIMBRES[1] / "album 9" / "0.flac"
    later.parent.mkdir()
    sf.write(later, timbre(1, 40), RATE)
    table = genreq("run", root, "--workers", "1", timeout=300).stdout.splitlines()
    (row,) = [r for r in export() if r["path"] == str(later)]
    assert (row["genre"], row["genre_source"], row["file_genre"]) == ("Noise", "learned", [])
    assert table[:2] == [f"{'genre':<14}{'tracks':>7}", f"{'Noise':<14}{1:>7}"]

    assert genreq("learn", "--reset").stderr.strip() == "removed the learned head"
    assert not (genreq_home / "learned-genres.npz").exists()
    rows = export()
    assert {r["genre_source"] for r in rows} == {"model"}
    assert not {r["genre"] for r in rows} & set(GENRES)  # the model's own genres again
    assert "learned" not in json.loads(genreq("status", "--json").stdout)
    assert genreq("learn", check=False).returncode == 2  # no source given
    both = genreq("learn", "--from-tags", "--from-folders", check=False)
    assert both.returncode == 2 and "one of them" in both.stderr


def export(*args) -> list[dict]:
    return json.loads(genreq("export", "--format", "json", *args).stdout)


GENRES = tuple(name.title() for name in TIMBRES)  # the files' genre tags


def timbre_of(path: str) -> str:
    """The genre tag of the track's timbre: library/<timbre>/album N/track.flac."""
    return Path(path).parents[1].name.title()


def check_learned_genres_everywhere(root: Path, tmp_path: Path) -> None:
    """After learning: export, status, tag --dry-run and report show the learned genres
    for every track, the untagged half included, and nothing is decoded for it."""
    rows = export()
    assert len(rows) == 36 and {r["genre_source"] for r in rows} == {"learned"}
    untagged = [r for r in rows if not r["file_genre"]]
    assert len(untagged) == 18
    assert all(r["file_genre"] == [timbre_of(r["path"])] for r in rows
               if r["file_genre"])
    right = sum(r["genre"] == timbre_of(r["path"]) for r in untagged)
    assert right / len(untagged) >= 0.8, [(r["path"], r["genre"]) for r in untagged]
    genre_of = {r["path"]: r["genre"] for r in rows}
    assert {r["path"] for r in export("--genre", "Noise")} == {
        p for p, g in genre_of.items() if g == "Noise"}

    status = json.loads(genreq("status", "--json").stdout)
    assert set(status["genres"]) <= set(GENRES) and sum(status["genres"].values()) == 36
    assert (status["learned"]["tracks"], status["learned"]["model_genre_tracks"]) == (36, 0)
    assert status["learned"]["source"] == "tags"
    assert "genres learned from tags (genreq learn): 36 tracks" in genreq("status").stdout

    # tag writes the learned genre: the untagged files get it, the tagged keep theirs
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.flac")}
    lines = genreq("tag", "--dry-run").stdout.splitlines()
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.flac")} == before
    planned = {}
    for line in lines:
        action, path, what = line.split("\t")
        planned[path] = (action, what)
    for r in rows:
        if r["file_genre"] == [r["genre"]]:  # already what the file says: no line
            assert r["path"] not in planned
        elif r["file_genre"]:
            action, what = planned[r["path"]]
            assert action == "keep" and "set by you" in what
        else:
            assert planned[r["path"]] == ("would write", f"GENRE: (none) -> {r['genre']}")

    index = genreq("report", "-o", tmp_path / "report").stdout.strip()
    page = Path(index).read_text()
    assert all(f"<td>{g}</td>" in page for g in status["genres"])


def test_a_genre_held_in_one_album_is_named_as_untestable():
    from genreq.app.learning import _untestable_genres
    from genreq.learn import choose_labels

    genre_lists = [["jazz"], ["jazz"], ["rock"], ["rock"], ["pop"], ["pop"], []]
    groups = ["a1", "a2", "b1", "b1", "c1", "c2", "z"]
    labels = choose_labels(genre_lists, 2)
    assert sorted(_untestable_genres(labels, groups)) == ["rock"]
