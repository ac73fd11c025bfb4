"""The command line over a seeded database: exact output of status and export, usage
errors, the error boundary, and an example in every --help."""
from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from helpers import add_track

from genreq.cli.main import cli
from genreq.db.session import session_scope

PROBS_A = {"jazz": 0.8123, "blues": 0.1, "rock": 0.05, "pop": 0.0377}
PROBS_B = {"rock": 0.6, "jazz": 0.3, "blues": 0.07, "pop": 0.03}


@pytest.fixture
def seeded(sqlite_url):
    with session_scope() as s:
        add_track(s, "/m/a, live.flac", "done", "jazz", 0.8123, probs=PROBS_A, duration_s=241.37,
                  artist="Ella, Louis", album="Porgy", title="Summertime")
        add_track(s, "/m/b.mp3", "done", "rock", 0.6, probs=PROBS_B, duration_s=30.0)
        add_track(s, "/m/c.ogg", "failed", error="/m/c.ogg: not decodable audio")
        add_track(s, "/m/d.wav")
    return sqlite_url


def invoke(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result


def test_every_command_has_an_example():
    def commands(group: click.Group, prefix=()):
        for name, command in group.commands.items():
            yield (*prefix, name), command
            if isinstance(command, click.Group):
                yield from commands(command, (*prefix, name))

    for path, _command in commands(cli):
        assert "Example" in invoke(*path, "--help").output, path


def test_status_json(seeded):
    result = invoke("status", "--json")
    assert json.loads(result.stdout) == {
        "total": 4, "queued": 1, "running": 0, "done": 2, "failed": 1, "skipped": 0,
        "genres": {"jazz": 1, "rock": 1}, "throughput_per_s": None, "eta_s": None,
    }
    failures = json.loads(invoke("status", "--json", "--failed").stdout)["failures"]
    assert failures == [{"path": "/m/c.ogg", "error": "/m/c.ogg: not decodable audio"}]


def test_status_text(seeded):
    assert invoke("status", "--failed").stdout == (
        "queued              1\n"
        "running             0\n"
        "done                2\n"
        "failed              1\n"
        "skipped             0\n"
        "total               4\n"
        "\n"
        "genre          tracks\n"
        "jazz                1\n"
        "rock                1\n"
        "\n"
        "failed:\n"
        "  /m/c.ogg: not decodable audio\n"
    )


def test_export_json(seeded):
    rows = json.loads(invoke("export", "--genre", "jazz", "--format", "json").stdout)
    assert rows == [{
        "path": "/m/a, live.flac", "genre": "jazz", "confidence": 0.8123,
        "top": [{"genre": "jazz", "probability": 0.8123}, {"genre": "blues", "probability": 0.1},
                {"genre": "rock", "probability": 0.05}],
        "duration_s": 241.37, "model": "crnn", "model_version": "abc123", "tags": [],
        "genre_source": "model", "file_genre": [], "artist": "Ella, Louis", "album": "Porgy",
        "title": "Summertime",
    }]
    assert json.loads(invoke("export", "--genre", "pop", "--format", "json").stdout) == []
    both = json.loads(invoke("export", "-g", "jazz", "-g", "rock", "--format", "json").stdout)
    assert [r["path"] for r in both] == ["/m/a, live.flac", "/m/b.mp3"]


def test_export_csv_ndjson_m3u_table(seeded):
    assert invoke("export", "--format", "csv").stdout == (
        "path,genre,confidence,top3,duration_s,model,model_version,tags,genre_source,file_genre,"
        "artist,album,title\n"
        '"/m/a, live.flac",jazz,0.8123,jazz=0.812 blues=0.100 rock=0.050,241.37,crnn,abc123,,'
        'model,,"Ella, Louis",Porgy,Summertime\n'
        "/m/b.mp3,rock,0.6000,rock=0.600 jazz=0.300 blues=0.070,30.0,crnn,abc123,,model,,,,\n"
    )
    lines = invoke("export", "--format", "ndjson", "--min-confidence", "0.7").stdout.splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["/m/a, live.flac"]
    assert invoke("export", "--format", "m3u").stdout == (
        "#EXTM3U\n#EXTINF:241,Ella, Louis - Summertime\n/m/a, live.flac\n"
        "#EXTINF:30,b\n/m/b.mp3\n"
    )
    assert invoke("export").stdout == (
        "genre         conf  top 3                                         dur_s  path\n"
        "jazz          0.81  jazz=0.812 blues=0.100 rock=0.050             241.4  /m/a, live.flac\n"
        "rock          0.60  rock=0.600 jazz=0.300 blues=0.070              30.0  /m/b.mp3\n"
    )


def test_export_to_file(seeded, tmp_path):
    out = tmp_path / "jazz.m3u"
    assert invoke("export", "-g", "jazz", "--format", "m3u", "-o", str(out)).stdout == ""
    assert out.read_text().splitlines()[-1] == "/m/a, live.flac"


def test_export_unknown_genre_is_a_usage_error(seeded):
    result = invoke("export", "--genre", "polka", code=2)
    assert "unknown genre polka; known genres: blues, jazz, pop, rock" in result.stderr


def test_unmigrated_configured_database_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREQ_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    result = invoke("status", code=1)
    assert result.stderr == (
        "Error: the database schema is not at the current version; run `genreq db upgrade`\n"
    )


def test_embedded_database_migrates_itself(genreq_home):
    assert json.loads(invoke("status", "--json").stdout)["total"] == 0
    assert (genreq_home / "genreq.db").exists()


def test_unreachable_database_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("GENREQ_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = invoke("status", code=1)
    assert result.stderr.startswith("Error: database error: ")


def test_requeue_older_than_needs_stale():
    result = CliRunner().invoke(cli, ["requeue", "--older-than", "10"])
    assert result.exit_code == 2
    assert "--older-than needs --stale" in result.output


def test_the_enqueue_summary_names_what_was_ignored():
    from genreq.app.pipeline import EnqueueSummary
    from genreq.cli.main import _enqueue_summary_line

    summary = EnqueueSummary("b", queued=3, ignored=0)
    assert _enqueue_summary_line(summary) == "queued 3 · already known 0 · ignored 0"
    summary.ignored, summary.ignored_kinds = 131, {".jpg": 120, ".ape": 7, ".txt": 2}
    assert _enqueue_summary_line(summary).endswith(" · ignored 131 (.jpg 120, .ape 7, .txt 2)")
    summary.ignored_kinds.update({".cue": 1, "no extension": 1})
    assert _enqueue_summary_line(summary).endswith(
        " · ignored 131 (.jpg 120, .ape 7, .txt 2, 2 more kinds)")
