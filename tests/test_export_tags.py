"""export's tags: every row lists at least the five best tags (and any others over the
threshold), best first; --tag T (repeatable) keeps tracks with every T at
--min-tag-score or more; csv has a tags column."""
from __future__ import annotations

import json

from click.testing import CliRunner
from helpers import add_track

from genreq.app.library import DEFAULT_MIN_TAG_SCORE, TAGS_LISTED
from genreq.cli.main import cli
from genreq.db.session import session_scope

ELECTRONIC = {"electronic": 0.81, "dance": 0.62, "house": 0.35, "pop": 0.2, "rock": 0.05,
              "jazz": 0.01, "ambient": 0.12}
AMBIENT = {"electronic": 0.4, "dance": 0.02, "house": 0.01, "pop": 0.03, "rock": 0.01,
           "jazz": 0.02, "ambient": 0.7}


def export(*args: str) -> list[dict]:
    result = CliRunner().invoke(cli, ["export", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def seed(url: str) -> None:
    with session_scope(url) as s:
        add_track(s, "/m/club.flac", "done", "disco", tags=ELECTRONIC)
        add_track(s, "/m/drone.flac", "done", "classical", tags=AMBIENT)
        add_track(s, "/m/untagged.flac", "done", "jazz")  # a model without tag outputs


def test_rows_carry_their_best_tags(sqlite_url):
    seed(sqlite_url)
    rows = {r["path"]: r["tags"] for r in export()}
    club = rows["/m/club.flac"]
    assert [t["tag"] for t in club] == ["electronic", "dance", "house", "pop", "ambient"]
    assert club[0] == {"tag": "electronic", "score": 0.81}
    assert len(rows["/m/drone.flac"]) == TAGS_LISTED  # five, however low
    assert rows["/m/untagged.flac"] == []
    many = {f"t{i}": 0.9 - i / 100 for i in range(8)}  # all over the threshold: all listed
    with session_scope(sqlite_url) as s:
        add_track(s, "/m/many.flac", "done", "rock", tags=many)
    assert len({r["path"]: r for r in export()}["/m/many.flac"]["tags"]) == 8


def paths(*args: str) -> list[str]:
    return [r["path"] for r in export(*args)]


def test_tag_filters(sqlite_url):
    seed(sqlite_url)
    assert DEFAULT_MIN_TAG_SCORE == 0.15
    assert paths("--tag", "electronic") == ["/m/club.flac", "/m/drone.flac"]
    assert paths("--tag", "electronic", "--tag", "dance") == ["/m/club.flac"]
    assert paths("--tag", "Electronic", "--min-tag-score", "0.5") == ["/m/club.flac"]
    assert paths("--tag", "ambient") == ["/m/drone.flac"]
    assert paths("--tag", "ambient", "--min-tag-score", "0.1") == ["/m/club.flac",
                                                                    "/m/drone.flac"]
    assert paths("--tag", "blues") == []  # in the vocabulary, on no track


def test_csv_has_a_tags_column(sqlite_url):
    seed(sqlite_url)
    result = CliRunner().invoke(cli, ["export", "--format", "csv", "--tag", "dance"])
    header, row = result.stdout.splitlines()
    assert header.endswith(",tags,genre_source,file_genre,artist,album,title")
    assert row.endswith(",electronic=0.810 dance=0.620 house=0.350 pop=0.200 ambient=0.120,"
                        "model,,,,")
