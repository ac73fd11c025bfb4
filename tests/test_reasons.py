"""Tracks not classified are summarised by reason: a line per reason with its count and
an example or two, in `status` and `run`, never a line per file (`status --failed`
still lists each failed file)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from helpers import add_track, genreq

from genreq.app.reasons import count_reasons
from genreq.cli.main import cli
from genreq.db.session import session_scope

SHORT = "too short to classify (under 3 s)"


def seed(session) -> None:
    add_track(session, "/m/ok.wav", "done", "jazz")
    for i in range(3):  # one reason, details that differ per file
        add_track(session, f"/m/bad{i}.mp3", "failed",
                  error=f"/m/bad{i}.mp3: not decodable audio (ffmpeg: error {i})",
                  reason=f"not decodable audio (ffmpeg: error {i})")
    add_track(session, "/m/gone.wav", "failed", error="/m/gone.wav: no such file",
              reason="no such file")
    add_track(session, "/m/old.wav", "failed",  # failed before reasons were stored
              error="/m/old.wav: no such file")
    for i in range(4):
        add_track(session, f"/m/blip{i}.wav", "skipped", reason=SHORT, duration_s=0.5)


def test_reasons_are_counted_with_examples(db_url):
    with session_scope(db_url) as s:
        seed(s)
    with session_scope(db_url) as s:
        got = [(r.state, r.reason, r.count, r.examples) for r in count_reasons(s)]
    assert got == [
        ("failed", "not decodable audio", 3, ["/m/bad0.mp3", "/m/bad1.mp3"]),
        ("failed", "no such file", 2, ["/m/gone.wav", "/m/old.wav"]),
        ("skipped", SHORT, 4, ["/m/blip0.wav", "/m/blip1.wav"]),
    ]


def test_status_prints_a_line_per_reason(sqlite_url):
    with session_scope(sqlite_url) as s:
        seed(s)
        add_track(s, "/m/odd.flac", "failed", error="/m/odd.flac: ValueError: odd header",
                  reason="ValueError: odd header")
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        "\nnot classified, by reason:\n"
        "  failed       3  not decodable audio  (e.g. /m/bad0.mp3, /m/bad1.mp3)\n"
        "  failed       2  no such file  (e.g. /m/gone.wav, /m/old.wav)\n"
        "  failed       1  /m/odd.flac: ValueError: odd header\n"
        f"  skipped      4  {SHORT}  (e.g. /m/blip0.wav, /m/blip1.wav)\n")
    assert "skipped             4\n" in result.stdout
    listed = CliRunner().invoke(cli, ["status", "--failed"]).stdout
    assert listed.count("/m/bad") == 3 and "by reason" not in listed  # every file


@pytest.mark.e2e
@pytest.mark.slow
def test_run_summarises_skips_and_failures(tmp_path):
    lib = tmp_path / "library"
    lib.mkdir()
    rate = 22050
    t = np.arange(5 * rate) / rate
    for i in range(2):
        sf.write(lib / f"song{i}.wav", (0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t)), rate)
    for i in range(5):
        sf.write(lib / f"blip{i}.wav", (0.3 * np.sin(2 * np.pi * 880 * t[: 2 * rate])), rate)
    for i in range(3):
        (lib / f"junk{i}.mp3").write_bytes(b"not audio" * 200)
    result = genreq("run", lib, "--workers", "1", timeout=240)
    assert "done 2 · failed 3 · skipped 5 · 10 files in " in result.stdout
    lines = result.stdout.split("not classified, by reason:\n")[1].splitlines()
    assert len(lines) == 2, result.stdout  # a line per reason, not per file
    assert lines[0].startswith("  failed       3  ")
    assert lines[1] == (f"  skipped      5  {SHORT}  (e.g. {lib / 'blip0.wav'}, "
                        f"{lib / 'blip1.wav'})")
    status = json.loads(genreq("status", "--json").stdout)
    assert (status["done"], status["failed"], status["skipped"], status["total"]) == (2, 3, 5, 10)
    # A lower minimum: the blips, renamed so that they are new files, get classified.
    for i in range(5):
        (lib / f"blip{i}.wav").rename(lib / f"blip{i} again.wav")
    result = genreq("run", lib, "--workers", "1", "--min-duration", "1.5", timeout=240)
    assert "done 5 · failed 0 · 5 files in " in result.stdout, result.stdout
