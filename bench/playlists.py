"""What a playlist's titles cost `genreq export --format m3u`: stored tags against the files read.

    .venv/bin/python bench/playlists.py             # 4,000 tagged files in four formats
    .venv/bin/python bench/playlists.py --save      # also writes bench/results/playlists.json
    .venv/bin/python bench/playlists.py --files 400 --repeats 1   # a quick look

Each `#EXTINF` line of an extended M3U carries a title, `Artist - Title` where the file's
tags have them. genreq read them by opening every file with mutagen as it wrote the
playlist (`file_title` below, the code as it was); it now takes them from the database,
where the worker stored what the file's tags said when it classified it (the records'
`artist` and `title`: genreq.cli.output.m3u_title).

Builds in a temporary directory FILES audio files of 30 s (a tone encoded once per format
by ffmpeg: mp3, flac, ogg and m4a in equal shares, as ffmpeg writes them, m4a's index at
the end), each copy tagged with its own artist, album and title by mutagen, in
artist/album folders; and a GENREQ_HOME whose SQLite database (migrated by genreq's own
migrations) holds a done track per file with the tags genreq.filetags reads from it, as
a worker leaves them. Then, in this process, the playlist of every track written to
memory (genreq.app.export_records into genreq.cli.output.write_m3u, what `genreq export
--format m3u` runs) with each way of finding titles, alternated REPEATS times: warm (the
files and the database in the page cache) and, where this process may write
/proc/sys/vm/drop_caches, cold (the page cache dropped before each run, both ways: what a
library on a disk that has not been read lately costs). The titles of both ways are
compared file by file.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "playlists.json"
FORMATS = {"mp3": ["-c:a", "libmp3lame", "-b:a", "128k"], "flac": ["-c:a", "flac"],
           "ogg": ["-c:a", "libvorbis", "-q:a", "4"], "m4a": ["-c:a", "aac", "-b:a", "128k"]}
SECONDS = 30
ALBUM_TRACKS = 10


def file_title(path: str) -> str:
    """The #EXTINF title as genreq found it before: the file opened by mutagen on every
    export (genreq.cli.output.m3u_title until it read the records)."""
    import mutagen

    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        audio = mutagen.File(path, easy=True)
    except Exception:
        return stem
    tags = getattr(audio, "tags", None) or {}

    def first(*keys: str) -> str:
        for key in keys:
            value = tags.get(key)
            values = getattr(value, "text", value)
            if values:
                return str(values[0]).strip()
        return ""

    try:
        title, artist = first("title", "TIT2"), first("artist", "TPE1")
    except (AttributeError, IndexError, TypeError, ValueError):
        return stem
    if not title:
        return stem
    text = f"{artist} - {title}" if artist else title
    return " ".join(text.split())


def make_library(root: Path, n_files: int) -> list[Path]:
    """N_FILES tagged copies of a tone, one format in turn, ALBUM_TRACKS to an album."""
    import mutagen

    sources = {}
    for fmt, codec in FORMATS.items():
        sources[fmt] = root / f"tone.{fmt}"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                        f"sine=frequency=440:duration={SECONDS}", "-ac", "2", "-ar", "44100",
                        *codec, str(sources[fmt])], check=True)
    files = []
    for i in range(n_files):
        fmt = list(FORMATS)[i % len(FORMATS)]
        album = i // ALBUM_TRACKS
        path = root / "music" / f"artist {album // 5:03d}" / f"album {album:04d}" / \
            f"{i % ALBUM_TRACKS + 1:02d} track {i}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[fmt], path)
        audio = mutagen.File(path, easy=True)
        if audio.tags is None:
            audio.add_tags()
        audio["artist"] = f"Artist {album // 5}"
        audio["album"] = f"Album {album}"
        audio["title"] = f"Track {i} “live”"
        audio.save()
        files.append(path)
    return files


def add_rows(files: list[Path]) -> None:
    """A done track per file, its tags as genreq.filetags reads them (as a worker would)."""
    from genreq import filetags
    from genreq.db.models import State, Track
    from genreq.db.session import session_scope

    with session_scope() as session:
        for path in files:
            tags = filetags.read(path)
            stat = path.stat()
            session.add(Track(
                path=str(path), size_bytes=stat.st_size, mtime_ns=stat.st_mtime_ns,
                state=State.done, genre="jazz", confidence=0.7,
                probs={"jazz": 0.7, "blues": 0.2, "rock": 0.1}, duration_s=float(SECONDS),
                model_name="vgg-msd-fast", model_version="bench", artist=tags.artist,
                album=tags.album, title=tags.title, file_genres=tags.genres))


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def spread(values: list[float]) -> dict:
    return {"n": len(values), "median": round(statistics.median(values), 4),
            "min": round(min(values), 4), "max": round(max(values), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="genreq-playlists-"))
    os.environ["GENREQ_HOME"] = str(work / "home")
    os.environ.pop("GENREQ_DATABASE_URL", None)
    sys.path.insert(0, str(REPO))
    from genreq import app
    from genreq.cli import output
    from genreq.db import migrate

    try:
        started = time.perf_counter()
        files = make_library(work, args.files)
        migrate.ensure_schema()
        add_rows(files)
        build_s = time.perf_counter() - started
        stored_title = output.m3u_title

        def playlist(titles) -> tuple[float, float, str]:
            output.m3u_title = titles
            try:
                out = io.StringIO()
                wall, cpu = time.perf_counter(), time.process_time()
                output.write_m3u(app.export_records(), out)
                return time.perf_counter() - wall, time.process_time() - cpu, out.getvalue()
            finally:
                output.m3u_title = stored_title

        ways = {"stored": stored_title, "files": lambda record: file_title(record["path"])}
        playlist(stored_title)  # a warm-up: modules loaded, files and database cached
        playlist(ways["files"])
        texts = {}
        runs = {"warm": {way: {"wall_s": [], "cpu_s": []} for way in ways}}
        cold = drop_caches()
        if cold:
            runs["cold"] = {way: {"wall_s": [], "cpu_s": []} for way in ways}
        for _ in range(args.repeats):
            for cache in runs:
                for way, titles in ways.items():
                    if cache == "cold":
                        drop_caches()
                    wall, cpu, texts[way] = playlist(titles)
                    runs[cache][way]["wall_s"].append(wall)
                    runs[cache][way]["cpu_s"].append(cpu)
                print(f"{cache}: " + ", ".join(
                    f"{way} {runs[cache][way]['wall_s'][-1]:.3f} s" for way in ways),
                    file=sys.stderr)

        entries = {way: text.splitlines()[1::2] for way, text in texts.items()}
        same = sum(a == b for a, b in zip(entries["stored"], entries["files"], strict=True))
        figures = {}
        for cache, by_way in runs.items():
            ratios = [f / s for f, s in zip(by_way["files"]["wall_s"], by_way["stored"]["wall_s"],
                                            strict=True)]
            figures[cache] = {
                **{way: {"wall_s": spread(t["wall_s"]), "cpu_s": spread(t["cpu_s"]),
                         "tracks_per_s": round(args.files / statistics.median(t["wall_s"]))}
                   for way, t in by_way.items()},
                "ratio_files_over_stored": spread(ratios),
            }
        result = {
            "benchmark": "playlists",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0],
                        "load_average": [round(x, 2) for x in os.getloadavg()]},
            "library": {"files": args.files, "formats": list(FORMATS), "seconds": SECONDS,
                        "megabytes": round(sum(p.stat().st_size for p in files) / 1e6, 1),
                        "build_s": round(build_s, 1)},
            "repeats": args.repeats,
            "cold_cache_measured": cold,
            "same_titles": {"n": args.files, "same": same,
                            "example": entries["stored"][0]},
            "runs": figures,
        }
        print(json.dumps(result, indent=2, ensure_ascii=False))
        if args.save:
            RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
