"""export's JSON lines (app.json_lines) against the records they stand for: on a real
database of varied tracks, every filter, sort and top K writes json.dumps(record) byte
for byte, with msgspec's decoder and with json.loads; and the tag list shortcut against
tag_list."""
from __future__ import annotations

import json
import random

import pytest
from helpers import add_track

from genreq.app import library
from genreq.app.taxonomy import Labeller
from genreq.db import paging
from genreq.db.session import session_scope

TAGS = ("rock", "pop", "jazz", "female vocalists", "électro", "dance", "chill", "80s")


@pytest.fixture
def varied(db_url):
    rand = random.Random(3)
    with session_scope() as s:
        for i in range(40):
            genre = rand.choice(["jazz", "rock", "hiphop", "metal"])
            probs = {g: rand.random() for g in ("jazz", "rock", "hiphop", "metal")}
            if i % 7 == 0:
                probs["rock"] = probs["jazz"]  # a tie: broken by name
            tags = ({t: round(rand.betavariate(0.5, 3), rand.choice([2, 6, 17]))
                     for t in TAGS} if i % 5 else None)
            if i % 9 == 0 and tags:
                tags = {t: 0.01 for t in TAGS}  # fewer than the listed five reach the floor
            add_track(s, f"/m/{'ü' if i % 4 == 0 else 'a'}/\"{i}\".mp3", "done", genre,
                      max(probs.values()), probs=probs, tags=tags,
                      duration_s=None if i % 6 == 0 else rand.uniform(1, 400),
                      file_genres=["Rock", "Jazz — live"] if i % 3 == 0 else
                      (None if i % 3 == 1 else []),
                      model_name="vgg-msd" if i % 2 else "crnn",
                      model_version=None if i == 5 else "abc")
        add_track(s, "/m/empty.mp3", "done", "jazz", 0.5, probs={})
        add_track(s, "/m/queued.mp3")
    return db_url


FILTERS = [
    library.TrackFilter(),
    library.TrackFilter(sort="confidence"),
    library.TrackFilter(sort="path"),
    library.TrackFilter(genres=("jazz", "rock"), min_confidence=0.5),
    library.TrackFilter(path_glob="/m/ü/*"),
    library.TrackFilter(model="crnn"),
    library.TrackFilter(tags=("rock",), min_tag_score=0.2),
    library.TrackFilter(tags=("rock", "pop")),
]


@pytest.mark.parametrize("decoder", ["msgspec", "json"])
@pytest.mark.parametrize("flt", FILTERS)
@pytest.mark.parametrize("top_k", [3, 1])
def test_lines_are_the_records_dumped(varied, monkeypatch, flt, top_k, decoder):
    if decoder == "json":
        monkeypatch.setattr(library, "_json_decoder", lambda: json.loads)
    monkeypatch.setattr(paging, "PAGE_SIZE", 7)  # the records' paging crosses pages
    labeller = Labeller(top_k=top_k)
    read_old, read_new = [], []
    with session_scope() as s:
        expected = [json.dumps(r) for r in library.records(s, flt, labeller, read_old.append)]
        lines = list(library.json_lines(s, flt, labeller, read_new.append))
    assert lines == expected
    assert read_new == read_old
    assert expected or flt.tags  # the filters keep tracks (the tag ones may not)


def test_lines_under_a_taxonomy_are_the_records_dumped(varied, tmp_path):
    from genreq.app.taxonomy import load

    path = tmp_path / "genres.toml"
    path.write_text('[genres]\nmetal = "Rock"\nrock = "Rock"\n')
    labeller = Labeller(load(path), unknown_below=0.3)
    with session_scope() as s:
        expected = [json.dumps(r) for r in library.records(s, library.TrackFilter(), labeller)]
        assert list(library.json_lines(s, library.TrackFilter(), labeller)) == expected


def test_tag_list_shortcut_is_tag_list():
    rand = random.Random(5)
    for _ in range(2000):
        n = rand.randint(1, 12)
        tags = {f"t{rand.randint(0, 15)}": rand.choice([0.15, 0.2, 0.01, rand.random() / 3])
                for _ in range(n)}
        expected = [(t["tag"], t["score"]) for t in library.tag_list(tags)]
        assert [(t, round(-s, 4)) for s, t in library._tag_list_fast(tags)] == expected


def test_export_json_and_ndjson_commands_write_the_records(varied):
    from test_cli import invoke

    ndjson = invoke("export", "--format", "ndjson", "--top", "2")
    as_json = invoke("export", "--format", "json", "--top", "2")
    with session_scope() as s:
        records = list(library.records(s, library.TrackFilter(), Labeller(top_k=2)))
    assert ndjson.stdout == "".join(json.dumps(r) + "\n" for r in records)
    assert json.loads(as_json.stdout) == records
    assert as_json.stdout.startswith("[\n  {") and as_json.stdout.endswith("}\n]\n")
