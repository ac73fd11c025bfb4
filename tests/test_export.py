"""export's library features through the command line on a real SQLite file: top K,
unknown below a threshold, taxonomies (option and environment), the filters
--path-glob/--since/--model, sorting with keyset paging, and status under a taxonomy."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from helpers import add_track, genreq
from test_cli import invoke

from genreq.app import library as records
from genreq.app.taxonomy import Labeller, load
from genreq.db import paging
from genreq.db import tracks as db_tracks
from genreq.db.session import session_scope

TAXONOMY = '[genres]\nhiphop = "Hip-Hop"\nmetal = "Rock"\nrock = "Rock"\n'
TAXONOMY_YAML = "genres:\n  hiphop: Hip-Hop\n  metal: Rock\n  rock: Rock\n"


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _no_user_taxonomy(monkeypatch):
    monkeypatch.delenv("GENREQ_TAXONOMY", raising=False)


@pytest.fixture
def library(db_url):
    with session_scope() as s:
        # jazz is the model's top genre, but metal + rock outweigh it under the taxonomy.
        add_track(s, "/m/Jazz/a.flac", "done", "jazz", 0.4, duration_s=200.0,
                  probs={"jazz": 0.4, "metal": 0.3, "rock": 0.25, "hiphop": 0.05},
                  finished_at=at(1))
        add_track(s, "/m/Rock/b.mp3", "done", "rock", 0.9, duration_s=30.0,
                  probs={"rock": 0.9, "metal": 0.06, "jazz": 0.03, "hiphop": 0.01},
                  finished_at=at(10), model_name="vgg-msd")
        add_track(s, "/m/Rap/c.ogg", "done", "hiphop", 0.7, duration_s=31.0,
                  probs={"hiphop": 0.7, "jazz": 0.2, "rock": 0.06, "metal": 0.04},
                  finished_at=at(20))
        add_track(s, "/m/Rap/d.ogg", "failed", error="/m/Rap/d.ogg: not decodable audio")
    return db_url


@pytest.fixture
def taxonomy_file(tmp_path):
    path = tmp_path / "genres.toml"
    path.write_text(TAXONOMY)
    return path


def export_json(*args: str) -> list[dict]:
    return json.loads(invoke("export", "--format", "json", *args).stdout)


def test_top_k(library):
    rows = export_json("--top", "4", "--path-glob", "*/b.mp3")
    assert rows[0]["top"] == [
        {"genre": "rock", "probability": 0.9}, {"genre": "metal", "probability": 0.06},
        {"genre": "jazz", "probability": 0.03}, {"genre": "hiphop", "probability": 0.01}]
    assert [len(r["top"]) for r in export_json("--top", "1")] == [1, 1, 1]
    assert invoke("export", "--format", "csv", "--top", "2").stdout.splitlines()[:2] == [
        "path,genre,confidence,top2,duration_s,model,model_version,tags,genre_source,file_genre,"
        "artist,album,title",
        "/m/Jazz/a.flac,jazz,0.4000,jazz=0.400 metal=0.300,200.0,crnn,abc123,,model,,,,",
    ]
    assert "Invalid value for '--top'" in invoke("export", "--top", "0", code=2).stderr


def test_unknown_below_keeps_tracks_min_confidence_drops_them(library):
    rows = export_json("--unknown-below", "0.5")
    assert [(r["path"], r["genre"], r["confidence"]) for r in rows] == [
        ("/m/Jazz/a.flac", "unknown", 0.4), ("/m/Rock/b.mp3", "rock", 0.9),
        ("/m/Rap/c.ogg", "hiphop", 0.7)]
    assert [r["path"] for r in export_json("--unknown-below", "0.5", "-g", "unknown")] == [
        "/m/Jazz/a.flac"]
    assert [r["path"] for r in export_json("--min-confidence", "0.5")] == [
        "/m/Rock/b.mp3", "/m/Rap/c.ogg"]
    # without the threshold, unknown is not a genre any track can have
    assert "unknown genre unknown" in invoke("export", "-g", "unknown", code=2).stderr



def test_a_tag_no_tagger_outputs_is_a_usage_error(library):
    stderr = invoke("export", "--tag", "electronic", "--tag", "polka", code=2).stderr
    assert "unknown tag polka; the taggers' tags: rock, pop" in stderr
    assert "unknown tag" not in invoke("export", "--tag", "Hip-Hop", code=0).stderr

def test_taxonomy_option_sums_member_genres(library, taxonomy_file):
    rows = export_json("--taxonomy", str(taxonomy_file), "--top", "2")
    assert [(r["genre"], r["confidence"], r["top"]) for r in rows] == [
        ("Rock", 0.55, [{"genre": "Rock", "probability": 0.55},
                        {"genre": "jazz", "probability": 0.4}]),
        ("Rock", 0.96, [{"genre": "Rock", "probability": 0.96},
                        {"genre": "jazz", "probability": 0.03}]),
        ("Hip-Hop", 0.7, [{"genre": "Hip-Hop", "probability": 0.7},
                          {"genre": "jazz", "probability": 0.2}]),
    ]
    rock = export_json("--taxonomy", str(taxonomy_file), "-g", "Rock", "--min-confidence", "0.6")
    assert [r["path"] for r in rock] == ["/m/Rock/b.mp3"]
    result = invoke("export", "--taxonomy", str(taxonomy_file), "-g", "rock", code=2)
    assert "unknown genre rock; known genres: Hip-Hop, Rock, jazz" in result.stderr


def test_taxonomy_from_environment(library, taxonomy_file, monkeypatch):
    monkeypatch.setenv("GENREQ_TAXONOMY", str(taxonomy_file))
    assert [r["genre"] for r in export_json()] == ["Rock", "Rock", "Hip-Hop"]


def test_yaml_taxonomy_gives_what_the_toml_one_gives(library, taxonomy_file, tmp_path,
                                                     monkeypatch):
    yaml_file = tmp_path / "genres.yaml"
    yaml_file.write_text(TAXONOMY_YAML)
    for command in (["export", "--format", "json", "--top", "4", "--sort", "confidence"],
                    ["export", "-g", "Rock", "--format", "csv"],
                    ["status", "--json"], ["status"]):
        from_toml = invoke(*command, "--taxonomy", str(taxonomy_file)).stdout
        from_yaml = invoke(*command, "--taxonomy", str(yaml_file)).stdout
        assert from_yaml == from_toml, command
    assert "Hip-Hop" in from_yaml and "Rock" in from_yaml  # the mapping was applied
    monkeypatch.setenv("GENREQ_TAXONOMY", str(yaml_file))
    assert [r["genre"] for r in export_json()] == ["Rock", "Rock", "Hip-Hop"]


def test_bad_taxonomy_is_a_usage_error_naming_the_file(library, tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("[genres]\nrock = 1\n")
    result = invoke("export", "--taxonomy", str(bad), code=2)
    assert result.stderr.endswith(
        f"Error: Invalid value for '--taxonomy': {bad}: [genres] values must be non-empty "
        "strings: rock\n")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("genres:\n  hiphop: [Hip-Hop\n  rock: Rock\n")
    result = invoke("status", "--taxonomy", str(bad_yaml), code=2)
    assert result.stderr.endswith(
        f"Error: Invalid value for '--taxonomy': {bad_yaml}: not valid YAML (expected ',' or "
        "']', but got ':' at line 3, column 7)\n")
    assert result.stdout == ""
    monkeypatch.setenv("GENREQ_TAXONOMY", str(bad_yaml))
    result = invoke("export", code=2)
    assert f"Error: Invalid value for GENREQ_TAXONOMY: {bad_yaml}: not valid YAML" \
        in result.stderr
    odd = tmp_path / "genres.json"
    odd.write_text("{}")
    result = invoke("tag", "--taxonomy", str(odd), "--dry-run", code=2)
    assert result.stderr.endswith(f"Error: Invalid value for '--taxonomy': {odd}: unknown "
                                  "taxonomy format '.json'; name the file .toml, .yaml or "
                                  ".yml\n")


def test_status_under_taxonomy_and_threshold(library, taxonomy_file):
    status = json.loads(invoke("status", "--json", "--taxonomy", str(taxonomy_file)).stdout)
    assert status["genres"] == {"Rock": 2, "Hip-Hop": 1}
    status = json.loads(invoke("status", "--json", "--unknown-below", "0.5").stdout)
    assert status["genres"] == {"hiphop": 1, "rock": 1, "unknown": 1}
    text = invoke("status", "--taxonomy", str(taxonomy_file)).stdout
    genre_table = text.split("\nnot classified, by reason:")[0]  # then the failure's line
    assert genre_table.endswith(
        "genre          tracks\nRock                2\nHip-Hop             1\n")


def test_path_glob_since_model(library):
    assert [r["path"] for r in export_json("--path-glob", "/m/Rap/*")] == ["/m/Rap/c.ogg"]
    # * crosses folders; fnmatch decides case, although SQLite's LIKE ignores it
    assert [r["path"] for r in export_json("--path-glob", "*.OGG")] == []
    assert [r["path"] for r in export_json("--path-glob", "*/[JR]a*/*")] == [
        "/m/Jazz/a.flac", "/m/Rap/c.ogg"]
    assert [r["path"] for r in export_json("--since", "2026-11-10")] == [
        "/m/Rock/b.mp3", "/m/Rap/c.ogg"]
    # an offset is honoured: 13:00+02:00 is 11:00 UTC, before day 10's 12:00
    assert [r["path"] for r in export_json("--since", "2026-11-10T13:00+02:00")] == [
        "/m/Rock/b.mp3", "/m/Rap/c.ogg"]
    assert [r["path"] for r in export_json("--since", "2026-11-10T13:00")] == ["/m/Rap/c.ogg"]
    assert [r["path"] for r in export_json("--model", "vgg-msd")] == ["/m/Rock/b.mp3"]
    result = invoke("export", "--since", "last week", code=2)
    assert "'last week' is not an ISO date or date-time" in result.stderr


def test_sort(library):
    assert [r["path"] for r in export_json("--sort", "confidence")] == [
        "/m/Rock/b.mp3", "/m/Rap/c.ogg", "/m/Jazz/a.flac"]
    assert [r["path"] for r in export_json("--sort", "path")] == [
        "/m/Jazz/a.flac", "/m/Rap/c.ogg", "/m/Rock/b.mp3"]
    assert "Invalid value for '--sort'" in invoke("export", "--sort", "genre", code=2).stderr


@pytest.mark.parametrize("sort", ["id", "confidence", "path"])
def test_sorted_paging_crosses_pages_with_ties(db_url, monkeypatch, sort):
    monkeypatch.setattr(paging, "PAGE_SIZE", 3)
    with session_scope() as s:
        # equal confidences across page boundaries: the keyset must not skip or repeat
        for i in range(10):
            add_track(s, f"/m/{(i * 7) % 10:02d}.wav", "done", "rock", [0.5, 0.9][i % 2])
    paths = [r["path"] for r in export_json("--sort", sort)]
    assert sorted(paths) == [f"/m/{i:02d}.wav" for i in range(10)]
    if sort == "path":
        assert paths == sorted(paths)
    if sort == "confidence":
        with session_scope() as s:
            by_path = {t.path: (t.confidence, t.id) for t in db_tracks.done_tracks(s)}
        assert paths == sorted(paths, key=lambda p: (-by_path[p][0], by_path[p][1]))


def test_relative_without_output_is_a_usage_error(library):
    assert "--relative needs" in invoke("export", "--format", "m3u", "--relative", code=2).stderr


def test_glob_to_like():
    assert db_tracks.glob_to_like("*/a_b%?.[!x]*") == "%/a\\_b\\%_._%"
    assert db_tracks.glob_to_like("[]x]") == "_"
    assert db_tracks.glob_to_like("a[b") == "a[b"


def test_show_text_and_json(library, taxonomy_file):
    queued_at = json.loads(invoke("show", "/m/Rock/b.mp3", "--json").stdout)["queued_at"]
    assert invoke("show", "/m/Rock/b.mp3").stdout == (
        "path         /m/Rock/b.mp3\n"
        "state        done\n"
        "genre        rock (0.9000)\n"
        "model        vgg-msd abc123\n"
        "duration_s   30.00\n"
        "elapsed_s    -\n"
        "attempts     0\n"
        f"queued_at    {queued_at}\n"
        "started_at   -\n"
        "finished_at  2026-11-10T12:00:00+00:00\n"
        "probabilities\n"
        "  rock          0.9000\n"
        "  metal         0.0600\n"
        "  jazz          0.0300\n"
        "  hiphop        0.0100\n"
    )
    detail = json.loads(invoke("show", "/m/Jazz/a.flac", "--json",
                               "--taxonomy", str(taxonomy_file)).stdout)
    assert detail["probs"] == {"jazz": 0.4, "metal": 0.3, "rock": 0.25, "hiphop": 0.05}
    assert (detail["state"], detail["genre"], detail["model"]) == ("done", "jazz", "crnn")
    assert detail["label"]["genre"] == "Rock"
    assert detail["label"]["probs"] == pytest.approx({"Rock": 0.55, "jazz": 0.4, "Hip-Hop": 0.05})


def test_show_what_the_file_says_and_every_stored_tag(library):
    tags = {f"tag{i:02d}": round(0.5 - i / 40, 3) for i in range(12)}
    tags["a tie"] = tags["tag01"]  # equal scores: by name
    with session_scope() as s:
        add_track(s, "/m/Jazz/e.flac", "done", "jazz", 0.7, duration_s=61.0,
                  probs={"jazz": 0.7, "rock": 0.3}, tags=tags, artist="Bill Evans",
                  album="Sunday at the Village Vanguard", title="Gloria's Step",
                  file_genres=["Jazz", "Live"], embedding_model="vgg-msd@abc123")
    detail = json.loads(invoke("show", "/m/Jazz/e.flac", "--json").stdout)
    assert (detail["artist"], detail["album"], detail["title"], detail["file_genre"]) == (
        "Bill Evans", "Sunday at the Village Vanguard", "Gloria's Step", ["Jazz", "Live"])
    assert detail["embedding_model"] == "vgg-msd@abc123"
    assert list(detail["tags"].items()) == sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))
    text = invoke("show", "/m/Jazz/e.flac").stdout
    assert ("artist       Bill Evans\n"
            "album        Sunday at the Village Vanguard\n"
            "title        Gloria's Step\n"
            "file genre   Jazz; Live\n"
            "embedding    vgg-msd@abc123\n") in text
    assert text.endswith(
        "tags (10 best of 13; --json has every one)\n"
        "  tag00         0.5000\n"
        "  a tie         0.4750\n"
        "  tag01         0.4750\n"
        + "".join(f"  tag{i:02d}         {0.5 - i / 40:.4f}\n" for i in range(2, 9)))
    # A track without them prints none of those lines (test_show_text_and_json).
    assert "tags" not in invoke("show", "/m/Rock/b.mp3").stdout


def test_show_failed_and_unknown(library):
    detail = json.loads(invoke("show", "/m/Rap/d.ogg", "--json").stdout)
    assert (detail["state"], detail["error"], detail["probs"]) == (
        "failed", "/m/Rap/d.ogg: not decodable audio", {})
    text = invoke("show", "/m/Rap/d.ogg").stdout
    assert "error        /m/Rap/d.ogg: not decodable audio\n" in text
    result = invoke("show", "/m/nope.mp3", code=1)
    assert result.stderr == (
        "Error: /m/nope.mp3: not in the library (add it with `genreq enqueue`)\n")


@pytest.mark.parametrize("run", [1, 2, 1000])
def test_sort_by_user_genre_confidence_under_taxonomy(library, taxonomy_file, monkeypatch, run):
    from genreq.app import library as records

    monkeypatch.setattr(records, "SORT_RUN", run)  # 1, 2: spilled runs merged from disk
    with session_scope() as s:
        # the model is unsure (0.45), but metal + rock make Rock 0.9
        add_track(s, "/m/Rock/e.mp3", "done", "metal", 0.45,
                  probs={"metal": 0.45, "rock": 0.45, "jazz": 0.1}, finished_at=at(21))
    rows = export_json("--taxonomy", str(taxonomy_file), "--sort", "confidence")
    assert [(r["path"], r["confidence"]) for r in rows] == [
        ("/m/Rock/b.mp3", 0.96), ("/m/Rock/e.mp3", 0.9), ("/m/Rap/c.ogg", 0.7),
        ("/m/Jazz/a.flac", 0.55)]
    # the model's own confidence orders differently
    assert [r["path"] for r in export_json("--sort", "confidence")] == [
        "/m/Rock/b.mp3", "/m/Rap/c.ogg", "/m/Rock/e.mp3", "/m/Jazz/a.flac"]
    rock = export_json("--taxonomy", str(taxonomy_file), "--sort", "confidence", "-g", "Rock")
    assert [r["path"] for r in rock] == ["/m/Rock/b.mp3", "/m/Rock/e.mp3", "/m/Jazz/a.flac"]


def test_external_sort_is_stable_on_ties_and_closes_runs():
    from genreq.app.library import external_sort

    items = [((-(i % 3) / 10, i), {"i": i}) for i in range(10)]
    for run in (1, 3, 100):
        assert [d["i"] for d in external_sort(iter(items), run)] == [2, 5, 8, 1, 4, 7, 0, 3, 6, 9]


def test_export_progress_on_stderr_and_only_data_on_stdout(library, taxonomy_file, monkeypatch):
    expected = invoke("export", "--format", "csv").stdout  # quick: no progress at all
    monkeypatch.setenv("GENREQ_PROGRESS_EVERY_S", "0")  # a line per track, not per 5 s
    result = genreq("export", "--format", "csv")  # the installed command; stderr a pipe
    assert result.stdout == expected
    lines = result.stderr.splitlines()
    assert len(lines) == 4
    for n, line in enumerate(lines[:2], 1):
        assert re.fullmatch(rf"\[[#-]{{24}}\] {n}/3  \d+\.\d tracks/s  ETA \d:\d\d:\d\d",
                            line), line
    assert re.fullmatch(r"\[#{24}\] 3/3  \d+\.\d tracks/s  ETA --", lines[2])
    assert re.fullmatch(r"\[#{24}\] 3/3  \d+\.\d tracks/s  in \d:\d\d:\d\d", lines[3])
    # A taxonomy's genre filter runs after the query: all 3 tracks are read, 2 written.
    result = genreq("export", "--taxonomy", taxonomy_file, "-g", "Rock", "--format", "ndjson")
    assert [json.loads(r)["path"] for r in result.stdout.splitlines()] == [
        "/m/Jazz/a.flac", "/m/Rock/b.mp3"]
    assert result.stderr.splitlines()[-1].startswith("[########################] 3/3  ")


@pytest.mark.parametrize("flt, taxonomy", [
    (records.TrackFilter(), False),
    (records.TrackFilter(genres=("rock", "hiphop"), min_confidence=0.75), False),
    (records.TrackFilter(genres=("Rock",), min_confidence=0.75), True),
    (records.TrackFilter(path_glob="*/R*/*"), False),
    (records.TrackFilter(path_glob="*/r*/*"), False),  # LIKE ignores case on SQLite
    (records.TrackFilter(path_glob="*/[JR]a*/*", since=at(5)), True),
    (records.TrackFilter(model="vgg-msd"), False),
    (records.TrackFilter(since=at(10, 13), sort="confidence"), True),
])
def test_count_is_what_the_export_reads(library, taxonomy_file, flt, taxonomy):
    labeller = Labeller(load(taxonomy_file)) if taxonomy else Labeller()
    with session_scope() as session:
        read: list[int] = []
        rows = list(records.records(session, flt, labeller, on_track=read.append))
        assert read == list(range(1, len(read) + 1))
        assert records.count_tracks(session, flt, labeller) == len(read) >= len(rows)
