"""A picture of the library: `index.html` with PNG plots (matplotlib) in one folder that
can be copied anywhere and opened without a server or network.

One streaming pass over the done tracks collects everything (counts per genre, a
fixed-bin confidence histogram per genre, the least confident tracks in a bounded heap),
so the report costs constant memory on a library of any size.
"""
from __future__ import annotations

import heapq
import html
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from genreq.app.library import TrackFilter, labelled_tracks, session, with_learned_head
from genreq.app.taxonomy import Labeller

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

HIST_BINS = 20  # confidence histogram bins over [0, 1]
LEAST_CONFIDENT = 20  # rows of the least-confident table
REASON_CHARS = 80  # failure reasons are grouped on their first characters


@dataclass
class LibrarySummary:
    states: dict[str, int] = field(default_factory=dict)
    genres: Counter = field(default_factory=Counter)
    histograms: dict[str, list[int]] = field(default_factory=dict)
    least_confident: list[dict] = field(default_factory=list)  # least confident first
    failures: Counter = field(default_factory=Counter)  # reason -> tracks
    last_run: dict | None = None
    learned: object | None = None  # genreq.app.learning.LearnedSummary of the active head


def failure_reason(error: str | None, path: str) -> str:
    """The reason of a failure without its path and details: `<path>: not decodable
    audio (ffmpeg: ...)` -> `not decodable audio`, so that like failures group."""
    reason = (error or "unknown error").removeprefix(f"{path}: ")
    reason = reason.split(" (", 1)[0].strip() or reason
    return reason[:REASON_CHARS]


def summarize(session: Session, labeller: Labeller, least: int = LEAST_CONFIDENT,
              on_track: Callable[[int], None] | None = None) -> LibrarySummary:
    """Everything the page shows; `on_track(n)` is called after each of the n done tracks."""
    from genreq.db import status as db_status

    summary = LibrarySummary()
    counts = db_status.status(session)
    summary.states = {s: getattr(counts, s) for s in ("queued", "running", "done", "failed")}
    heap: list[tuple[float, int, dict]] = []  # max-heap by confidence, via negation
    for n, (track, record) in enumerate(labelled_tracks(session, TrackFilter(), labeller), 1):
        if on_track:
            on_track(n)
        genre, confidence = record["genre"], record["confidence"]
        summary.genres[genre] += 1
        bins = summary.histograms.setdefault(genre, [0] * HIST_BINS)
        bins[min(int(confidence * HIST_BINS), HIST_BINS - 1)] += 1
        item = (-confidence, -track.id, record)
        if len(heap) < least:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    summary.least_confident = [r for _c, _i, r in sorted(heap, reverse=True)]
    for track in db_status.failures(session):
        summary.failures[failure_reason(track.error, track.path)] += 1
    summary.last_run = db_status.last_batch(session)
    if labeller.head is not None:
        from genreq.app.learning import summary as learned_summary

        summary.learned = learned_summary(session, labeller.head)
    return summary


# --- plots ---------------------------------------------------------------------------


def _figure(width_in: float, height_in: float):
    # Figure without pyplot: no global state, no GUI backend; savefig renders with Agg.
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def plot_genres(genres: Counter, path: Path) -> None:
    ordered = sorted(genres.items(), key=lambda kv: (kv[1], kv[0]))
    fig = _figure(7, max(2.0, 0.35 * len(ordered) + 1))
    ax = fig.add_subplot()
    ax.barh([g for g, _n in ordered], [n for _g, n in ordered], color="#4477aa")
    _integer_ticks(ax.xaxis)
    ax.set_xlabel("tracks")
    ax.set_title("Genre distribution")
    for i, (_g, n) in enumerate(ordered):
        ax.annotate(str(n), (n, i), xytext=(3, 0), textcoords="offset points", va="center")
    fig.savefig(path)


def plot_confidence(histograms: dict[str, list[int]], genres: Counter, path: Path) -> None:
    names = [g for g, _n in _by_count(genres)]
    cols = min(4, max(1, len(names)))
    rows = (len(names) + cols - 1) // cols
    fig = _figure(3 * cols, 2.2 * rows + 0.5)
    edges = [i / HIST_BINS for i in range(HIST_BINS)]
    for i, genre in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.bar(edges, histograms[genre], width=1 / HIST_BINS, align="edge", color="#66aa55",
               edgecolor="white")
        ax.set_xlim(0, 1)
        _integer_ticks(ax.yaxis)
        ax.set_title(f"{genre} ({genres[genre]})", fontsize=10)
        ax.set_xlabel("confidence", fontsize=8)
    fig.suptitle("Confidence per genre")
    fig.savefig(path)


def plot_failures(failures: Counter, path: Path) -> None:
    ordered = sorted(failures.items(), key=lambda kv: (kv[1], kv[0]))
    fig = _figure(8, max(2.0, 0.4 * len(ordered) + 1))
    ax = fig.add_subplot()
    ax.barh([r[:50] for r, _n in ordered], [n for _r, n in ordered], color="#cc6677")
    _integer_ticks(ax.xaxis)
    ax.set_xlabel("tracks")
    ax.set_title("Failures by reason")
    fig.savefig(path)


# --- page ----------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
"""


def _table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{e(str(v))}</td>'
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(name: str, alt: str) -> str:
    return f'<img src="{html.escape(name)}" alt="{html.escape(alt)}">'


def _by_count(counts: Counter) -> list[tuple[str, int]]:
    """Most first, ties by name: the page does not depend on the order rows came in."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def render(summary: LibrarySummary, images: dict[str, str]) -> str:
    e = html.escape
    total = sum(summary.states.values())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>genreq report: {total} tracks</title><style>{STYLE}</style></head><body>",
        f"<h1>genreq report: {total} tracks</h1>",
        _table(["state", "tracks"], [[s, n] for s, n in summary.states.items()], {1}),
    ]
    run = summary.last_run
    if run:
        rate = f"{run['per_s']:.2f} tracks/s" if run["per_s"] else "-"
        span = f"{run['span_s']:.1f} s" if run["span_s"] is not None else "-"
        parts += ["<h2>Last run</h2>", _table(
            ["tracks", "finished", "first start to last result", "throughput"],
            [[run["tracks"], run["finished"], span, rate]], {0, 1, 2, 3})]
    parts.append("<h2>Genres</h2>")
    learned = summary.learned
    if learned is not None:
        others = (f"; {learned.model_genre_tracks} keep the model's genres"
                  if learned.model_genre_tracks else "")
        parts.append(f"<p>Genres learned from the library's {e(learned.source or 'files')} "
                     f"(genreq learn) for {learned.tracks} tracks{e(others)}.</p>")
    if "genres" in images:
        parts.append(_img(images["genres"], "bar chart: tracks per genre"))
        parts.append(_table(["genre", "tracks"], [[g, n] for g, n in _by_count(summary.genres)],
                            {1}))
    else:
        parts.append("<p>No track classified yet.</p>")
    if "confidence" in images:
        parts += ["<h2>Confidence</h2>", _img(images["confidence"],
                                               "histograms: confidence per genre")]
    if summary.least_confident:
        parts += [f"<h2>Least confident {len(summary.least_confident)}</h2>", _table(
            ["confidence", "genre", "runner-up", "path"],
            [[f"{r['confidence']:.3f}", r["genre"],
              " ".join(f"{t['genre']}={t['probability']:.2f}" for t in r["top"][1:3]),
              r["path"]] for r in summary.least_confident], {0})]
    parts.append("<h2>Failures</h2>")
    if summary.failures:
        parts.append(_img(images["failures"], "bar chart: failures by reason"))
        parts.append(_table(["reason", "tracks"],
                            [[r, n] for r, n in _by_count(summary.failures)], {1}))
    else:
        parts.append("<p>No failures.</p>")
    parts.append(f"<p><small>{e('genreq report')}</small></p></body></html>")
    return "\n".join(parts) + "\n"


def write_report(session: Session, out_dir: str | Path, labeller: Labeller,
                 least: int = LEAST_CONFIDENT, on_track: Callable[[int], None] | None = None
                 ) -> Path:
    """Write index.html and its PNGs into out_dir (created); returns index.html's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(session, labeller, least, on_track)
    images: dict[str, str] = {}
    if summary.genres:
        plot_genres(summary.genres, out_dir / "genres.png")
        plot_confidence(summary.histograms, summary.genres, out_dir / "confidence.png")
        images.update(genres="genres.png", confidence="confidence.png")
    if summary.failures:
        plot_failures(summary.failures, out_dir / "failures.png")
        images["failures"] = "failures.png"
    index = out_dir / "index.html"
    tmp = out_dir / "index.html.tmp"
    tmp.write_text(render(summary, images), encoding="utf-8")
    os.replace(tmp, index)
    return index


def report(out_dir: str | Path, labeller: Labeller | None = None,
           least: int = LEAST_CONFIDENT, on_track: Callable[[int], None] | None = None) -> Path:
    """Write the library's report (index.html and its PNG plots) into `out_dir`, created;
    returns the path of index.html. `on_track(n)` as each of the done tracks is read."""
    with session() as db:
        return write_report(db, out_dir, with_learned_head(labeller), least, on_track)
