"""`genreq similar`: the tracks that sound most like a file. Parsing and printing only;
genreq.app.similar finds them."""
from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO

import click

from genreq.cli.options import label_options, make_labeller
from genreq.cli.output import m3u_entries, write_json, write_ndjson

FORMATS = ("table", "json", "ndjson", "csv", "m3u")
CSV_COLUMNS = ("path", "similarity", "genre", "confidence", "duration_s", "artist", "album",
               "title")


def _table(rows: Iterable[dict], out: IO[str]) -> None:
    out.write(f"{'similarity':>10}  {'genre':<12} path\n")
    for r in rows:
        out.write(f"{r['similarity']:>10.3f}  {r['genre'] or '-':<12} {r['path']}\n")


def _csv(rows: Iterable[dict], out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(["" if r[c] is None else r[c] for c in CSV_COLUMNS])


def write(result, fmt: str, out: IO[str]) -> None:
    rows = result.rows
    if fmt == "json":  # one row a line, as export writes it
        write_json(rows, out)
    elif fmt == "ndjson":
        write_ndjson(rows, out)
    elif fmt == "csv":
        _csv(rows, out)
    elif fmt == "m3u":  # a playlist that starts with the query
        out.write("#EXTM3U\n")
        m3u_entries([result.query, *rows], out)
    else:
        _table(rows, out)


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("-n", "--limit", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many tracks to list.")
@click.option("--same-album", is_flag=True,
              help="Also list tracks of PATH's own album (left out by default).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Write to this file instead of stdout.")
@label_options
def similar(path: str, limit: int, same_album: bool, fmt: str, output: str,
            taxonomy: str | None, unknown_below: float | None) -> None:
    """The tracks of the library that sound most like PATH, most similar first.

    PATH is a classified track of the library, or any audio file (classified on the
    fly, by the model that embedded the library). PATH itself and, unless
    --same-album, the tracks of its album are never listed. Similarity is the cosine
    of the stored embeddings: 1 is the same sound.

    \b
    Examples:
      genreq similar ~/Music/track.flac --limit 5
      genreq similar ~/Downloads/new.mp3 --format m3u -o like-new.m3u
    """
    from genreq import app

    result = app.similar(path, limit, same_album, make_labeller(taxonomy, unknown_below))
    with click.open_file(output, "w", encoding="utf-8", atomic=output != "-") as out:
        write(result, fmt, out)


def register(cli: click.Group) -> None:
    cli.add_command(similar)
