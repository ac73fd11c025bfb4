"""The progress line alone, on a fake clock: what a line says (bar, rate, ETA, the last
line), how often it is shown on a terminal and elsewhere, and that data lines on stdout
never share a line with it. The commands' own progress is tested through the installed
command in test_export, test_tagging, test_report and test_e2e."""
from __future__ import annotations

import pytest

from genreq.cli import progress as progress_module
from genreq.cli.progress import ProgressLine, duration, render


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _default_interval(monkeypatch):
    monkeypatch.delenv(progress_module.PLAIN_EVERY_ENV, raising=False)


def test_duration():
    assert [duration(s) for s in (0, 1.4, 59.6, 61, 3600 + 62, 100 * 3600)] == [
        "0:00:00", "0:00:01", "0:01:00", "0:01:01", "1:01:02", "100:00:00"]


def test_render_with_a_total_has_bar_rate_and_eta():
    # 53 of 100 in 2 s: 26.5 files/s, 47 left take 1.77 s
    assert render(53, 100, 2.0, "files") == (
        "[############------------] 53/100  26.5 files/s  ETA 0:00:02")
    assert render(53, 100, 2.0, "files", "queued 50 · already known 3") == (
        "[############------------] 53/100  26.5 files/s  ETA 0:00:02  "
        "queued 50 · already known 3")
    # a rate given (a worker pool's) wins over done / elapsed
    assert render(10, 100, 1.0, "clips", rate=2.0) == (
        "[##----------------------] 10/100  2.0 clips/s  ETA 0:00:45")
    assert render(1, 3600 * 4, 2.0, "files").endswith("0.5 files/s  ETA 7:59:58")


def test_render_before_a_rate_while_walking_done_and_finished():
    assert render(0, 100, 0.0, "files") == (
        "[------------------------] 0/100  -- files/s  ETA --")
    assert render(0, 0, 3.0, "clips", walking=True) == (
        "[------------------------] 0/0  -- clips/s  walking…")
    assert render(100, 100, 4.0, "files") == (
        "[########################] 100/100  25.0 files/s  ETA --")
    assert render(100, 100, 65.0, "files", "wrote 3", finished=True) == (
        "[########################] 100/100  1.5 files/s  in 0:01:05  wrote 3")
    assert render(0, 0, 0.1, "tracks", finished=True) == (
        "[########################] 0/0  -- tracks/s  in 0:00:00")
    # more done than counted (files added since the count): the bar stops full
    assert render(12, 10, 1.0, "files").startswith("[########################] 12/10  ")


def test_render_without_a_total():
    assert render(53, None, 2.0, "files", "queued 50") == (
        "checked 53 · queued 50 · 26.5 files/s")
    assert render(0, None, 0.0, "files") == "checked 0 · -- files/s"


def test_terminal_bar_rewrites_itself_at_most_every_fifth_of_a_second(capsys):
    clock = FakeClock()
    line = ProgressLine("files", 10, tty=True, clock=clock)
    line.update(1)  # at once: too soon
    clock.now += 0.25
    line.update(2, "queued 2")
    clock.now += 0.1
    line.update(3, "queued 3")  # 0.1 s after the last: not drawn
    clock.now += 0.1
    line.data("a data line")
    clock.now += 0.3
    line.update(5, "queued 5")
    clock.now += 0.35
    line.close()
    out, err = capsys.readouterr()
    assert out == "a data line\n"
    assert err == (
        "\r[####--------------------] 2/10  8.0 files/s  ETA 0:00:01  queued 2\x1b[K"
        "\r\x1b[K"  # cleared before the data line on stdout
        "\r[############------------] 5/10  6.7 files/s  ETA 0:00:01  queued 5\x1b[K"
        "\r[############------------] 5/10  4.5 files/s  in 0:00:01  queued 5\x1b[K\n")


def test_plain_lines_every_five_seconds_and_a_last_one(capsys):
    clock = FakeClock()
    line = ProgressLine("tracks", 1000, tty=False, clock=clock)
    for n in range(1, 1001):
        clock.now += 0.011  # 11 s in all: lines at 5 s and 10 s
        line.update(n)
    line.close()
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "[##########--------------] 455/1000  90.9 tracks/s  ETA 0:00:06",
        "[#####################---] 910/1000  90.9 tracks/s  ETA 0:00:01",
        "[########################] 1000/1000  90.9 tracks/s  in 0:00:11",
    ]


def test_quick_commands_print_no_progress(capsys):
    clock = FakeClock()
    line = ProgressLine("tracks", 3, tty=False, clock=clock)
    for n in (1, 2, 3):
        clock.now += 0.5
        line.update(n)
    line.close()
    assert capsys.readouterr() == ("", "")


def test_interval_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv(progress_module.PLAIN_EVERY_ENV, "0")
    clock = FakeClock()
    line = ProgressLine("files", 2, tty=False, clock=clock)
    clock.now += 1
    line.update(1)
    clock.now += 1
    line.update(2, "queued 2")
    line.close(detail="queued 2 · done")
    assert capsys.readouterr().err.splitlines() == [
        "[############------------] 1/2  1.0 files/s  ETA 0:00:01",
        "[########################] 2/2  1.0 files/s  ETA --  queued 2",
        "[########################] 2/2  1.0 files/s  in 0:00:02  queued 2 · done",
    ]
    monkeypatch.setenv(progress_module.PLAIN_EVERY_ENV, "soon")  # unusable: the default
    assert ProgressLine("files", tty=False).every_s == progress_module.PLAIN_EVERY_S


def test_disabled_shows_nothing_but_data(capsys):
    clock = FakeClock()
    line = ProgressLine("tracks", 2, tty=True, clock=clock, enabled=False)
    clock.now += 1
    line.update(1, force=True)
    line.data("row")
    line.close()
    assert capsys.readouterr() == ("row\n", "")
