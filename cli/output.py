"""Output formats shared by the commands that print tracks. Every writer streams: rows
arrive from a paged query and leave one at a time."""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING

import click

if TYPE_CHECKING:  # SQLAlchemy stays out of `genreq --help`
    from genreq.db.models import Track

FORMATS = ("csv", "json", "ndjson", "table", "m3u")
CSV_COLUMNS = ("path", "genre", "confidence", "top3", "duration_s", "model", "model_version")


def output_options(command: Callable) -> Callable:
    """--format and -o, meaning the same on every command that prints tracks."""
    command = click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True),
                           default="-", help="Write to this file instead of stdout.")(command)
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                        show_default=True, help="Output format.")(command)


def track_record(track: Track) -> dict:
    """The exported view of a done track."""
    from genreq.db.models import TOP_K

    return {
        "path": track.path,
        "genre": track.genre,
        "confidence": round(track.confidence, 4),
        "top": [{"genre": g, "probability": round(p, 4)} for g, p in track.top(TOP_K)],
        "duration_s": round(track.duration_s, 2) if track.duration_s is not None else None,
        "model": track.model_name,
        "model_version": track.model_version,
    }


def _top_text(record: dict) -> str:
    return " ".join(f"{t['genre']}={t['probability']:.3f}" for t in record["top"])


def write_csv(records: Iterable[dict], out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        writer.writerow([r["path"], r["genre"], f"{r['confidence']:.4f}", _top_text(r),
                         r["duration_s"], r["model"], r["model_version"]])


def write_json(records: Iterable[dict], out: IO[str]) -> None:
    # One array, written element by element so the library never sits in memory.
    out.write("[")
    for i, r in enumerate(records):
        out.write(("," if i else "") + "\n  " + json.dumps(r))
    out.write("\n]\n")


def write_ndjson(records: Iterable[dict], out: IO[str]) -> None:
    for r in records:
        out.write(json.dumps(r) + "\n")


def write_table(records: Iterable[dict], out: IO[str]) -> None:
    # Fixed widths instead of measuring every row: measuring would need all rows at once.
    out.write(f"{'genre':<12} {'conf':>5}  {'top 3':<44} {'dur_s':>6}  path\n")
    for r in records:
        duration = f"{r['duration_s']:.1f}" if r["duration_s"] is not None else "-"
        out.write(f"{r['genre']:<12} {r['confidence']:>5.2f}  {_top_text(r):<44} "
                  f"{duration:>6}  {r['path']}\n")


def write_m3u(records: Iterable[dict], out: IO[str]) -> None:
    out.write("#EXTM3U\n")
    for r in records:
        seconds = round(r["duration_s"]) if r["duration_s"] is not None else -1
        title = os.path.splitext(os.path.basename(r["path"]))[0]
        out.write(f"#EXTINF:{seconds},{title} [{r['genre']} {r['confidence']:.2f}]\n{r['path']}\n")


WRITERS: dict[str, Callable[[Iterable[dict], IO[str]], None]] = {
    "csv": write_csv,
    "json": write_json,
    "ndjson": write_ndjson,
    "table": write_table,
    "m3u": write_m3u,
}


def write_tracks(tracks: Iterator[Track], fmt: str, output: str) -> None:
    with click.open_file(output, "w", encoding="utf-8", atomic=output != "-") as out:
        WRITERS[fmt]((track_record(t) for t in tracks), out)
