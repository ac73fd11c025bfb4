"""Output formats shared by the commands that print tracks, and the text view of `show`.
Every writer streams: rows
arrive from a paged query and leave one at a time."""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable
from typing import IO

import click

from genreq.config import TOP_K

FORMATS = ("csv", "json", "ndjson", "table", "m3u")
# "top" is headed top<K>: top3 by default. file_genre: the file's own genre values,
# joined by "; " (JSON keeps them a list).
CSV_COLUMNS = ("path", "genre", "confidence", "top", "duration_s", "model", "model_version",
               "tags", "genre_source", "file_genre", "artist", "album", "title")
FILE_GENRE_SEPARATOR = "; "
# The tag scores `genreq show` prints; --json has all of a model's (50 MSD tags).
SHOWN_TAGS = 10


def output_options(command: Callable) -> Callable:
    """--format and -o, meaning the same on every command that prints tracks."""
    command = click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True),
                           default="-", help="Write to this file instead of stdout.")(command)
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                        show_default=True, help="Output format.")(command)


def _top_text(record: dict) -> str:
    return " ".join(f"{t['genre']}={t['probability']:.3f}" for t in record["top"])


def write_csv(records: Iterable[dict], out: IO[str], top_k: int = TOP_K) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"top{top_k}" if c == "top" else c for c in CSV_COLUMNS])
    for r in records:
        writer.writerow([r["path"], r["genre"], f"{r['confidence']:.4f}", _top_text(r),
                         r["duration_s"], r["model"], r["model_version"],
                         " ".join(f"{t['tag']}={t['score']:.3f}" for t in r.get("tags", [])),
                         r.get("genre_source", "model"),
                         FILE_GENRE_SEPARATOR.join(r.get("file_genre", [])),
                         r.get("artist") or "", r.get("album") or "", r.get("title") or ""])


def write_json(records: Iterable[dict], out: IO[str], top_k: int = TOP_K) -> None:
    # One array, written element by element so the library never sits in memory.
    out.write("[")
    for i, r in enumerate(records):
        out.write(("," if i else "") + "\n  " + json.dumps(r))
    out.write("\n]\n")


def write_ndjson(records: Iterable[dict], out: IO[str], top_k: int = TOP_K) -> None:
    for r in records:
        out.write(json.dumps(r) + "\n")


def write_table(records: Iterable[dict], out: IO[str], top_k: int = TOP_K) -> None:
    # Fixed widths instead of measuring every row: measuring would need all rows at once.
    top_width = max(44, 15 * top_k - 1)
    out.write(f"{'genre':<12} {'conf':>5}  {f'top {top_k}':<{top_width}} {'dur_s':>6}  path\n")
    for r in records:
        duration = f"{r['duration_s']:.1f}" if r["duration_s"] is not None else "-"
        out.write(f"{r['genre']:<12} {r['confidence']:>5.2f}  {_top_text(r):<{top_width}} "
                  f"{duration:>6}  {r['path']}\n")


def m3u_title(record: dict) -> str:
    """`Artist - Title` from what the file's tags said when it was classified (the
    record's `artist` and `title`), else its title, else the file name without its
    extension: the usual #EXTINF title. Read from the record, not the file, so that a
    playlist of a library on a drive that is not mounted costs no file opened."""
    title, artist = record.get("title"), record.get("artist")
    if not title:
        return os.path.splitext(os.path.basename(record["path"]))[0]
    # Newlines would end the #EXTINF line early.
    text = f"{artist} - {title}" if artist else title
    return " ".join(text.split())


def m3u_entries(records: Iterable[dict], out: IO[str], relative_to: str | None = None) -> int:
    """Write one #EXTINF entry per record; paths relative to `relative_to` when given."""
    n = 0
    for r in records:
        seconds = round(r["duration_s"]) if r["duration_s"] is not None else -1
        path = os.path.relpath(r["path"], relative_to) if relative_to else r["path"]
        out.write(f"#EXTINF:{seconds},{m3u_title(r)}\n{path}\n")
        n += 1
    return n


def write_m3u(records: Iterable[dict], out: IO[str], top_k: int = TOP_K,
              relative_to: str | None = None) -> None:
    """Extended M3U: `#EXTM3U`, then `#EXTINF:<seconds>,<title>` and the path per track."""
    out.write("#EXTM3U\n")
    m3u_entries(records, out, relative_to)


# The formats whose records arrive already encoded, a JSON text per record
# (genreq.app.export_lines), so that no record is built as a dict to be encoded here.
LINE_FORMATS = ("json", "ndjson")


def write_lines(lines: Iterable[str], fmt: str, output: str) -> None:
    """Write JSON-encoded records as `fmt` (json or ndjson) to `output` (a file, written
    atomically, or - for stdout), exactly as write_records writes their dicts."""
    from itertools import islice

    lines = iter(lines)
    with click.open_file(output, "w", encoding="utf-8", atomic=output != "-") as out:
        # Bound once and written a chunk of lines at a time: click's wrapper of stdout
        # looks `write` up on every call, a good part of a stored line's time.
        write = out.write
        if fmt == "ndjson":
            while chunk := list(islice(lines, WRITE_CHUNK)):
                write("\n".join(chunk) + "\n")
            return
        write("[")
        separator = "\n  "
        while chunk := list(islice(lines, WRITE_CHUNK)):
            write(separator + ",\n  ".join(chunk))
            separator = ",\n  "
        write("\n]\n")


WRITE_CHUNK = 1000  # lines joined per write


WRITERS: dict[str, Callable[..., None]] = {
    "csv": write_csv,
    "json": write_json,
    "ndjson": write_ndjson,
    "table": write_table,
    "m3u": write_m3u,
}


def write_records(records: Iterable[dict], fmt: str, output: str, *, top_k: int = TOP_K,
                  relative: bool = False) -> None:
    """Write records in `fmt` to `output` (a file, written atomically, or - for stdout).
    `relative` (m3u only) writes paths relative to the output file's folder."""
    kwargs: dict = {"top_k": top_k}
    if fmt == "m3u" and relative:
        kwargs["relative_to"] = os.path.dirname(os.path.abspath(output))
    with click.open_file(output, "w", encoding="utf-8", atomic=output != "-") as out:
        WRITERS[fmt](records, out, **kwargs)


def playlist_name(genre: str) -> str:
    """A file name for a genre's playlist: path separators and a leading dot replaced."""
    name = "".join("_" if c in "/\\\0" else c for c in genre).strip() or "_"
    return ("_" + name[1:] if name.startswith(".") else name) + ".m3u"


def write_split_m3u(records: Iterable[dict], directory: str,
                    relative: bool = False) -> dict[str, int]:
    """One extended M3U per genre, `<genre>.m3u` in `directory`; returns tracks per
    file name. Streams: one open file per genre, each moved into place when complete."""
    import tempfile

    os.makedirs(directory, exist_ok=True)
    relative_to = os.path.abspath(directory) if relative else None
    files: dict[str, tuple[IO[str], str]] = {}
    counts: dict[str, int] = {}
    try:
        for r in records:
            name = playlist_name(r["genre"])
            if name not in files:
                tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 -- closed below
                    "w", encoding="utf-8", dir=directory, suffix=".m3u.tmp", delete=False)
                tmp.write("#EXTM3U\n")
                files[name] = (tmp, tmp.name)
                counts[name] = 0
            counts[name] += m3u_entries([r], files[name][0], relative_to)
        umask = os.umask(0)
        os.umask(umask)
        for name, (tmp, tmp_path) in files.items():
            tmp.close()
            # temporary files are private (0600); a playlist is an ordinary file
            os.chmod(tmp_path, 0o666 & ~umask)
            os.replace(tmp_path, os.path.join(directory, name))
    finally:
        for tmp, tmp_path in files.values():
            tmp.close()
            if os.path.exists(tmp_path):
                os.unlink(tmp_path)
    return dict(sorted(counts.items()))


def format_detail(detail: dict) -> str:
    """The text view of `genreq show` (genreq.app.show's dict): one `field  value` line
    each, then the probability vectors."""

    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"{'path':<13}{detail['path']}", f"{'state':<13}{detail['state']}"]
    if detail["genre"] is not None:
        lines.append(f"{'genre':<13}{detail['genre']} ({detail['confidence']:.4f})")
    if "label" in detail:
        learned = " learned" if detail["label"].get("source") == "learned" else ""
        lines.append(f"{'label':<13}{detail['label']['genre']} "
                     f"({detail['label']['confidence']:.4f}){learned}")
    if detail["model"]:
        lines.append(f"{'model':<13}{detail['model']} {detail['model_version'] or ''}".rstrip())
    lines += [
        f"{'duration_s':<13}{number(detail['duration_s'], 2)}",
        f"{'elapsed_s':<13}{number(detail['elapsed_s'], 3)}",
        f"{'attempts':<13}{detail['attempts']}",
        f"{'queued_at':<13}{detail['queued_at'] or '-'}",
        f"{'started_at':<13}{detail['started_at'] or '-'}",
        f"{'finished_at':<13}{detail['finished_at'] or '-'}",
    ]
    if detail["error"]:
        lines.append(f"{'error':<13}{detail['error']}")
    if detail.get("note"):
        lines.append(f"{'note':<13}{detail['note']}")
    for key in ("artist", "album", "title"):
        if detail.get(key):
            lines.append(f"{key:<13}{detail[key]}")
    if detail.get("file_genre"):
        lines.append(f"{'file genre':<13}{FILE_GENRE_SEPARATOR.join(detail['file_genre'])}")
    if detail.get("embedding_model"):
        lines.append(f"{'embedding':<13}{detail['embedding_model']}")
    for title, probs in (("probabilities", detail["probs"]),
                         ("label probabilities", detail.get("label", {}).get("probs"))):
        if probs:
            lines.append(title)
            lines += [f"  {genre:<14}{p:.4f}" for genre, p in probs.items()]
    tags = detail.get("tags") or {}
    if tags:
        shown = list(tags.items())[:SHOWN_TAGS]
        lines.append(f"tags ({len(shown)} best of {len(tags)}; --json has every one)"
                     if len(tags) > len(shown) else "tags")
        width = max(14, *(len(tag) + 2 for tag, _ in shown))
        lines += [f"  {tag:<{width}}{score:.4f}" for tag, score in shown]
    return "\n".join(lines)
