"""export's JSON lines (app.json_lines) against the records they stand for: on a real
database of varied tracks, every filter, sort and top K writes json.dumps(record) byte
for byte, with msgspec's decoder and with json.loads; and the tag list shortcut against
tag_list. The lines export keeps (tracks.export_line): written back by an export, served
by the next one for every filter and sort, the same as made afresh; cleared by any edit
of what they are made of (the triggers of migrations 195753152286 and b3e81f5a7c20), not
by others; not kept from a row rewritten meanwhile, nor on a database that cannot be
written."""
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
                      model_version=None if i == 5 else "abc",
                      # What the file says: missing, plain, quoted, non-ASCII, a newline.
                      artist=None if i % 4 == 0 else f'Ärtist "{i % 3}"',
                      album=None if i % 5 == 1 else "Live\tat ☕",
                      title=None if i % 6 == 2 else f"Song\n{i}")
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


# --- the stored lines (tracks.export_line) -----------------------------------------------


def stored_lines(url: str | None = None) -> dict[int, str | None]:
    from sqlalchemy import select

    from genreq.db.models import State, Track

    with session_scope(url) as s:
        return dict(s.execute(select(Track.id, Track.export_line)
                              .where(Track.state == State.done)).all())


ALL = library.TrackFilter()


def fill(flt: library.TrackFilter = ALL, top_k: int = 3) -> list[str]:
    with session_scope() as s:
        return list(library.json_lines(s, flt, Labeller(top_k=top_k), fill=True))


def expected_lines(flt: library.TrackFilter = ALL, top_k: int = 3) -> list[str]:
    with session_scope() as s:
        return [json.dumps(r) for r in library.records(s, flt, Labeller(top_k=top_k))]


def test_an_export_keeps_its_lines_and_writes_them_again(varied, monkeypatch):
    monkeypatch.setattr(paging, "PAGE_SIZE", 7)
    assert set(stored_lines().values()) == {None}
    first = fill()
    assert first == expected_lines()
    stored = stored_lines()
    assert None not in stored.values() and len(stored) == len(first)
    assert sorted(stored.values()) == sorted(first)
    with session_scope() as s:
        cached = list(library.json_lines(s, library.TrackFilter(), Labeller()))
        computed = list(library.json_lines(s, library.TrackFilter(), Labeller(),
                                           cached=False))
    assert cached == computed == first


@pytest.mark.parametrize("flt", FILTERS)
@pytest.mark.parametrize("top_k", [3, 1])
def test_stored_lines_serve_every_filter_and_sort(varied, monkeypatch, flt, top_k):
    from genreq.db import tracks as db_tracks

    monkeypatch.setattr(db_tracks, "EXPORT_PAGE_SIZE", 6)  # some pages mixed, some full
    fill(library.TrackFilter(path_glob="/m/a/*"))  # some tracks with a line, some without
    assert None in stored_lines().values()
    read_old, read_new = [], []
    with session_scope() as s:
        expected = [json.dumps(r) for r in library.records(s, flt, Labeller(top_k=top_k),
                                                           read_old.append)]
        lines = list(library.json_lines(s, flt, Labeller(top_k=top_k), read_new.append,
                                        fill=True))
        again = list(library.json_lines(s, flt, Labeller(top_k=top_k)))
    assert lines == again == expected
    # Once a track, or once a page whose lines are all stored: what progress needs.
    assert read_new[-1:] == read_old[-1:] and set(read_new) <= set(read_old)
    assert read_new == sorted(read_new)
    assert expected or flt.tags


def test_a_line_is_kept_only_at_the_default_top_k(varied):
    fill(top_k=2)
    assert set(stored_lines().values()) == {None}


EDITS = {
    "path": "'/m/moved.mp3'",
    "probs": """'{"jazz": 0.1, "rock": 0.9}'""",
    "tags": """'{"rock": 0.5}'""",
    "duration_s": "12.5",
    "model_name": "'other'",
    "model_version": "NULL",
    "file_genres": """'["Blues"]'""",
    "artist": "'Someone'",
    "album": "'Live'",
    "title": "NULL",
}


@pytest.mark.parametrize("column", sorted(EDITS))
def test_an_edit_of_what_a_line_is_made_of_clears_it(varied, column):
    from sqlalchemy import text

    fill()
    before = stored_lines()
    some = sorted(before)[1:4]
    with session_scope() as s:
        s.execute(text(f"UPDATE tracks SET {column} = {EDITS[column]} WHERE id = :id"),
                  [{"id": some[0]}])
        # Written again as it was: the line still holds.
        s.execute(text(f"UPDATE tracks SET {column} = {column} WHERE id = :id"),
                  [{"id": some[1]}])
    after = stored_lines()
    assert after[some[0]] is None
    assert {k: v for k, v in after.items() if k != some[0]} == \
        {k: v for k, v in before.items() if k != some[0]}
    assert fill() == expected_lines()
    assert None not in stored_lines().values()


def test_other_columns_leave_the_line(varied):
    from sqlalchemy import update

    from genreq.db.models import Track

    fill()
    before = stored_lines()
    with session_scope() as s:
        s.execute(update(Track).values(size_bytes=Track.size_bytes + 1, reason="X",
                                       genre="jazz", confidence=0.1, elapsed_s=9.0))
    assert stored_lines() == before
    assert fill() == expected_lines()


def test_a_result_written_again_clears_the_line_and_export_writes_the_new_one(varied):
    from sqlalchemy import select, update

    from genreq.db import work
    from genreq.db.models import State, Track, utcnow
    from genreq.db.session import transaction

    fill()
    with session_scope() as s:
        track_id = s.scalar(select(Track.id).where(Track.path == "/m/a/\"1\".mp3"))
        # Queued again (a changed file), its old result kept until the new one.
        s.execute(update(Track).where(Track.id == track_id).values(state=State.queued))
    claim = work.new_claim("host:1", 30.0)
    with transaction() as db:
        assert list(work.claim_batch(db, [track_id], 3, claim)) == [track_id]
        assert work.record_results(db, [work.Result(
            track_id=track_id, genre="metal", confidence=0.7,
            probs={"metal": 0.7, "jazz": 0.3}, duration_s=61.0, elapsed_s=0.1,
            finished_at=utcnow(), tags={"rock": 0.25, "pop": 0.5},
            file_genres=["Metal"])], "vgg-msd", "v2", claim.token) == 1
    assert stored_lines()[track_id] is None
    lines = fill()
    assert lines == expected_lines()
    assert json.loads(stored_lines()[track_id])["top"] == [
        {"genre": "metal", "probability": 0.7}, {"genre": "jazz", "probability": 0.3}]


def test_a_line_made_from_a_row_rewritten_since_is_not_kept(varied):
    from sqlalchemy import update

    from genreq.db import tracks as db_tracks
    from genreq.db.models import Track

    with session_scope() as s:
        page = next(db_tracks.export_pages(s, lines=True))
        full = db_tracks.export_rows_by_id(s, [row.id for row in page[1:3]])
        stale, fresh = full[page[1].id], full[page[2].id]
        # A worker writes a new result between export's read and its write-back.
        s.execute(update(Track).where(Track.id == stale.id).values(duration_s=1.0))
        assert db_tracks.store_export_lines(s, [(stale, "old"), (fresh, "new")]) == 1
    lines = stored_lines()
    assert lines[stale.id] is None and lines[fresh.id] == "new"


def test_a_database_that_cannot_be_written_is_exported_without_keeping(varied, monkeypatch,
                                                                       caplog):
    from sqlalchemy.exc import OperationalError

    from genreq.db import tracks as db_tracks

    def read_only(session, made):
        raise OperationalError("UPDATE tracks", {}, Exception("attempt to write a readonly "
                                                              "database"))

    monkeypatch.setattr(db_tracks, "store_export_lines", read_only)
    assert fill() == expected_lines()
    assert set(stored_lines().values()) == {None}
    assert "not keeping the lines it made (attempt to write a readonly database)" \
        in caplog.text


def test_the_stored_line_format_is_pinned(db_url):
    # A change to this text (a key, a rounding, the tag list) makes the lines that
    # libraries have stored stale: raise library.EXPORT_LINE_FORMAT, add a migration that
    # sets tracks.export_line to NULL, and update this test.
    with session_scope() as s:
        add_track(s, "/m/ö.mp3", "done", "jazz", 0.61234, probs={"jazz": 0.61234,
                                                                 "rock": 0.38766},
                  tags={"jazz": 0.51, "piano": 0.049, "rock": 0.2, "pop": 0.1, "80s": 0.1,
                        "sad": 0.12},
                  duration_s=200.456, file_genres=["Jazz"], artist="Miles Davis",
                  album=None, title="So “What”")
    assert library.EXPORT_LINE_FORMAT == 2
    assert fill() == [
        '{"path": "/m/\\u00f6.mp3", "genre": "jazz", "confidence": 0.6123, "top": '
        '[{"genre": "jazz", "probability": 0.6123}, {"genre": "rock", "probability": '
        '0.3877}], "duration_s": 200.46, "model": "crnn", "model_version": "abc123", '
        '"tags": [{"tag": "jazz", "score": 0.51}, {"tag": "rock", "score": 0.2}, {"tag": '
        '"sad", "score": 0.12}, {"tag": "80s", "score": 0.1}, {"tag": "pop", "score": 0.1}], '
        '"genre_source": "model", "file_genre": ["Jazz"], "artist": "Miles Davis", '
        '"album": null, "title": "So \\u201cWhat\\u201d"}']
    assert list(stored_lines().values()) == fill()


def test_export_command_keeps_the_lines_and_writes_the_same_again(varied):
    from test_cli import invoke

    first = invoke("export", "--format", "ndjson")
    assert None not in stored_lines().values()
    second = invoke("export", "--format", "ndjson")
    as_json = invoke("export", "--format", "json")
    assert first.stdout == second.stdout == "".join(line + "\n" for line in expected_lines())
    assert json.loads(as_json.stdout) == [json.loads(line) for line in expected_lines()]
