"""`genreq similar` through the installed command on a library classified by real
workers (`genreq run`): synthetic tones of three distinct timbres, two albums of two
tracks per timbre, tagged by the test with mutagen. The ground truth is the timbre: the
nearest tracks of a query are of its timbre, never the query itself nor, unless
--same-album, its album."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import genreq

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RATE = 22050
TIMBRES = ("ambient", "noise", "chiptune")  # also the files' genre tags
VARIANTS = 4  # per timbre: variants 0-1 on album a, 2-3 on album b


def timbre(kind: int, variant: int, seconds: float = 6.0) -> np.ndarray:
    rng = np.random.default_rng(100 * kind + variant)
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == 0:  # soft sine chords, no beat
        f = 220 * 2 ** (variant / 12)
        x = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 1.5, 2))
    elif kind == 1:  # a noise-drum loop
        gate = (np.arange(t.size) % (RATE // (3 + variant % 2))) < RATE // 20
        x = rng.standard_normal(t.size) * gate
    else:  # a buzzy square-wave arpeggio
        f = 110 * 2 ** ((np.floor(t * 4) % 4 + variant) / 6)
        x = np.sign(np.sin(2 * np.pi * np.cumsum(f) / RATE))
    return (0.25 * x / np.abs(x).max()).astype(np.float32)


def write_track(path: Path, kind: int, variant: int, album: str | None) -> Path:
    import mutagen

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, timbre(kind, variant), RATE)
    if album is not None:
        audio = mutagen.File(str(path))
        audio["ARTIST"] = f"Artist {kind}"
        audio["ALBUM"] = album
        audio["TITLE"] = f"{TIMBRES[kind]} {variant}"
        audio["GENRE"] = [TIMBRES[kind]]
        audio.save()
    return path


@pytest.fixture
def library(tmp_path) -> dict:
    root = tmp_path / "library"
    kind_of: dict[str, int] = {}
    album_of: dict[str, str] = {}
    for kind in range(len(TIMBRES)):
        for variant in range(VARIANTS):
            album = f"{TIMBRES[kind]} {'ab'[variant // 2]}"
            path = write_track(root / album / f"{variant}.flac", kind, variant, album)
            kind_of[str(path)], album_of[str(path)] = kind, album
    return {"root": root, "kind": kind_of, "album": album_of}


def similar(*args) -> list[dict]:
    return json.loads(genreq("similar", *args, "--format", "json").stdout)


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres",
                                                             marks=pytest.mark.postgres)])
def test_similar_finds_the_same_timbre_outside_the_album(database, library, tmp_path, request):
    if database == "postgres":
        request.getfixturevalue("postgres_url")
    genreq("run", library["root"], "--workers", "1", timeout=240)
    kind, album = library["kind"], library["album"]

    from genreq import app

    hits = 0
    for query in kind:  # in this process: the command's output is checked below
        rows = app.similar(query, limit=2).rows
        assert [set(r) >= {"path", "similarity", "genre"} for r in rows] == [True, True]
        paths = [r["path"] for r in rows]
        assert query not in paths
        assert all(album[p] != album[query] for p in paths)  # not its own album
        assert rows[0]["similarity"] >= rows[1]["similarity"]
        assert all(-1.0 <= r["similarity"] <= 1.0 for r in rows)
        hits += sum(kind[p] == kind[query] for p in paths)
    # The only two tracks of the query's timbre outside its album are the right answer.
    assert hits / (2 * len(kind)) >= 0.9

    query = next(iter(kind))
    assert similar(query, "--limit", "2") == app.similar(query, limit=2).rows
    mates = {p for p in kind if album[p] == album[query] and p != query}
    with_album = similar(query, "--limit", "3", "--same-album")
    assert mates <= {r["path"] for r in with_album} and query not in {
        r["path"] for r in with_album}

    # A file outside the library: classified on the fly, by the library's model.
    outside = write_track(tmp_path / "elsewhere" / "new.wav", 2, 7, None)
    rows = similar(outside, "--limit", "3")
    assert all(kind[r["path"]] == 2 for r in rows), rows

    # m3u: a playlist that starts with the query; csv and ndjson carry the same rows.
    playlist = genreq("similar", query, "--limit", "2", "--format", "m3u").stdout.splitlines()
    assert playlist[0] == "#EXTM3U" and playlist[2] == query and len(playlist) == 7
    ndjson = genreq("similar", query, "--limit", "2", "--format", "ndjson").stdout
    assert [json.loads(line)["path"] for line in ndjson.splitlines()] == [
        r["path"] for r in similar(query, "--limit", "2")]
    out = tmp_path / "like.csv"
    genreq("similar", query, "--limit", "2", "--format", "csv", "-o", out)
    assert out.read_text().splitlines()[0].startswith("path,similarity,genre")

    # Neither known nor readable: a clear error, exit 1.
    missing = genreq("similar", tmp_path / "nowhere.flac", check=False)
    assert missing.returncode == 1
    assert "nowhere.flac: not in the library and no such file" in missing.stderr
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all" * 100)
    unreadable = genreq("similar", junk, check=False)
    assert unreadable.returncode == 1
    assert "junk.mp3: not in the library, and not readable audio" in unreadable.stderr
