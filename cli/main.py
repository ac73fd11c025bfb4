"""The `genreq` command group. Each command is a few lines over the Python API,
genreq.app, imported inside the command so that `genreq --help` loads neither
SQLAlchemy nor torch; data goes to stdout, progress and logs to stderr."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from genreq import redact
from genreq.cli import learn as learn_cli
from genreq.cli import ml
from genreq.cli import models as models_cli
from genreq.cli import similar as similar_cli
from genreq.cli.options import filter_options, label_options, make_labeller
from genreq.cli.output import (
    LINE_FORMATS,
    format_detail,
    output_options,
    write_lines,
    write_records,
    write_split_m3u,
)
from genreq.cli.progress import ProgressLine, duration
from genreq.cli.reasons import print_reasons
from genreq.config import SORTS, TOP_K
from genreq.errors import GenreqError

log = logging.getLogger("genreq")


def _user_error(exc: Exception) -> str | None:
    """A one-line message for errors a user can act on; None for bugs."""
    if isinstance(exc, GenreqError):
        return str(exc)
    # Only already-imported modules can have raised these; importing them here keeps
    # `genreq --help` light.
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc and isinstance(exc, sqlalchemy_exc.OperationalError):
        return f"database error: {exc.orig}"
    kombu_exc = sys.modules.get("kombu.exceptions")
    if kombu_exc and isinstance(exc, kombu_exc.OperationalError):
        return f"broker error: {exc}"
    return None


class GenreqGroup(click.Group):
    """The one error boundary: a GenreqError (or an unreachable database or broker)
    becomes `Error: <message>` on stderr and exit status 1, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = _user_error(exc)
            if message is None:
                raise
            # A driver's message may quote the URL it was given, password and all.
            raise click.ClickException(redact.text(message)) from exc


def _redacted_excepthook(kind, value, traceback) -> None:
    """A bug's traceback, with any password in it (a URL in a frame) masked."""
    import traceback as tb

    sys.stderr.write(redact.text("".join(tb.format_exception(kind, value, traceback))))


@click.group(cls=GenreqGroup)
@click.version_option(package_name="genreq")
@click.option("-v", "--verbose", is_flag=True, help="Log more (to stderr).")
def cli(verbose: bool) -> None:
    """Sort a music library by genre.

    \b
    Example:
      genreq run ~/Music && genreq export --genre jazz --format m3u -o jazz.m3u
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="genreq: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    redact.install()  # every log line the command writes, whichever library wrote it
    sys.excepthook = _redacted_excepthook


WATCH_INTERVAL_S = 2.0  # status --watch


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _enqueue_summary_line(summary) -> str:
    reclassified = f" ({summary.reclassified} reclassified)" if summary.reclassified else ""
    parts = [f"queued {summary.queued}{reclassified}"]
    if summary.pending:
        parts.append(f"still pending {summary.pending} (sent again)")
    other = (f" ({summary.known_other} by another model: --reclassify redoes them)"
             if summary.known_other else "")
    parts.append(f"already known {summary.known}{other}")
    if summary.moved:
        parts.append(f"moved {summary.moved} (found at a new path, kept)")
    if summary.gone:
        parts.append(f"gone {summary.gone} (genreq prune forgets them)")
    parts.append(f"ignored {summary.ignored}{_ignored_kinds(summary.ignored_kinds)}")
    if summary.warnings:
        parts.append(f"skipped with a warning {summary.warnings}")
    return " · ".join(parts)


# The kinds of ignored file the summary names, most numerous first.
IGNORED_KINDS_SHOWN = 3


def _ignored_kinds(kinds: dict[str, int]) -> str:
    """` (.jpg 120, .txt 3, .cue 2, 4 more kinds)` after the ignored count: enough to
    tell cover art from a folder of audio in a format genreq does not read."""
    if not kinds:
        return ""
    shown = [f"{kind} {n}" for kind, n in list(kinds.items())[:IGNORED_KINDS_SHOWN]]
    rest = len(kinds) - IGNORED_KINDS_SHOWN
    if rest > 0:
        shown.append(f"{_plural(rest, 'more kind')}")
    return f" ({', '.join(shown)})"


def _enqueue_progress_detail(summary) -> str:
    pending = f" · still pending {summary.pending}" if summary.pending else ""
    return f"queued {summary.queued}{pending} · already known {summary.known}"


model_option = click.option(
    "--model", default=None,
    help="Checkpoint path or shipped model name, e.g. vgg-msd "
    "[default: $GENREQ_MODEL or vgg-msd-fast].",
)
min_duration_option = click.option(
    "--min-duration", "min_duration_s", type=click.FloatRange(min=0), default=None,
    metavar="S", help="Skip files shorter than S seconds instead of classifying them "
    "[default: $GENREQ_MIN_DURATION or 3]. Reaches the workers this command starts.",
)


reclassify_option = click.option(
    "--reclassify", is_flag=True,
    help="Also classify again the unchanged files that another model, or another version "
    "of this one, classified (after upgrading genreq, or to switch models).")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", default=None,
              help="The model the workers run, a checkpoint path or shipped name "
              "[default with --reclassify: $GENREQ_MODEL or vgg-msd-fast]. Named, done "
              "tracks another model classified are counted.")
@reclassify_option
def enqueue(paths: tuple[Path, ...], model: str | None, reclassify: bool) -> None:
    """Record the audio files under PATHS and queue them for classification.

    Walks directories recursively in sorted order. A file already known with the same
    size and modification time is not queued again; a changed file is. A file moved or
    renamed keeps its result; known files gone from PATHS are counted, and kept until
    `genreq prune`. Start workers with `genreq worker` to process the queue, or use
    `genreq run` to do both. Counts the files first (a fraction of the walk), so
    progress on stderr has an ETA.

    \b
    Examples:
      genreq enqueue ~/Music /mnt/nas/music
      queued 1520 · already known 0 · ignored 34
      genreq enqueue ~/Music --reclassify --model vgg-msd   # workers run vgg-msd
    """
    from genreq import app
    from genreq.app.pipeline import model_version
    from genreq.app.walk import count_audio_files

    # The workers may be elsewhere: their model is known here only when named.
    version = model_version(model) if model is not None or reclassify else None
    # A 100k-file library takes a minute or two: say how far it got and how long is left.
    # Counting first is a fraction of the walk (bench/results).
    progress = ProgressLine("files", count_audio_files(paths))
    summary = app.enqueue(paths, on_batch=lambda batch: progress.update(
        batch.sent + batch.known, _enqueue_progress_detail(batch)),
        model_version=version, reclassify=reclassify)
    progress.close()
    click.echo(_enqueue_summary_line(summary), err=True)


def _set_min_duration(seconds: float | None) -> None:
    # Workers read their settings from the environment (genreq.config), and inherit it.
    if seconds is not None:
        os.environ["GENREQ_MIN_DURATION"] = repr(seconds)


@cli.command()
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=None,
              help="Worker processes [default: number of CPUs].")
@model_option
@click.option("--loglevel", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
              default="INFO", show_default=True)
@min_duration_option
@click.option("--events", is_flag=True,
              help="Send Celery task events (celery worker -E), for Flower or `celery "
                   "events` on the same broker.")
def worker(concurrency: int | None, model: str | None, loglevel: str,
           min_duration_s: float | None, events: bool) -> None:
    """Classify queued tracks until stopped (Ctrl-C, SIGTERM or `genreq stop`).

    Prefork Celery worker: the model is loaded once, before the pool processes start
    (each uses one torch thread). Run several, on several machines, against the same
    broker and database.

    \b
    Examples:
      genreq worker --concurrency 4
      genreq worker --events     # then: celery --broker URL flower
    """
    from genreq import app

    _set_min_duration(min_duration_s)
    sys.exit(app.serve_worker(concurrency, loglevel, model, events=events))


class Progress:
    """run's progress, from app.run's callback: the first state and the end always
    shown, and no closing line (run prints its own summary)."""

    def __init__(self) -> None:
        self.line = ProgressLine("clips")
        self.started = False

    def update(self, finished: int, total: int, rate: float | None, walking: bool) -> None:
        self.line.update(finished, rate=rate, total=total, walking=walking,
                         force=not self.started or finished == total)
        self.started = True

    def message(self, text: str) -> None:
        self.line.message(text)

    def close(self) -> None:
        self.line.close(final=False)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-w", "--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes to start [default: number of CPUs].")
@model_option
@min_duration_option
@reclassify_option
def run(paths: tuple[Path, ...], workers: int | None, model: str | None,
        min_duration_s: float | None, reclassify: bool) -> None:
    """Classify every audio file under PATHS, start to finish, and print a summary.

    Enqueues the files, starts local workers, shows progress on stderr, waits until
    every file of this run is done or failed, stops the workers (and the embedded
    broker, if this run started it) and prints the counts per genre and the failures.
    Exits 0 when the run completed, even if some files failed. Files already known are
    not classified again: a moved or renamed one keeps its result, and files gone since
    are counted (`genreq prune` forgets them).

    \b
    Examples:
      genreq run ~/Music --workers 4
      genreq run ~/Music --model vgg-msd    # five chunks a track instead of two
      genreq run ~/Music --reclassify       # after an upgrade: redo what older models did
    """
    from genreq import app

    _set_min_duration(min_duration_s)
    progress = Progress()
    result = app.run(
        paths, workers, model, on_progress=progress.update,
        on_enqueued=lambda summary: progress.message(_enqueue_summary_line(summary)),
        reclassify=reclassify,
    )
    progress.close()
    batch = result.status
    if batch.genres:  # none when every file was known already
        _print_genre_table(batch.genres)
        click.echo()
    finished = batch.done + batch.failed + batch.skipped
    rate = f" ({finished / result.elapsed_s:.2f} clips/s)" if finished else ""
    skipped = f"skipped {batch.skipped} · " if batch.skipped else ""
    click.echo(f"done {batch.done} · failed {batch.failed} · {skipped}"
               f"{_plural(finished, 'file')} in {result.elapsed_s:.1f} s{rate}")
    print_reasons(app.reasons(result.batch_id))  # one line per reason, not per file


def _print_genre_table(genres: dict[str, int]) -> None:
    click.echo(f"{'genre':<14}{'tracks':>7}")
    for genre, count in genres.items():
        click.echo(f"{genre:<14}{count:>7}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--failed", "show_failed", is_flag=True, help="List failed files and why.")
@label_options
@click.option("--watch", is_flag=True,
              help="Print it again every --interval seconds until Ctrl-C: redrawn in "
                   "place on a terminal, one block (or JSON line) after another elsewhere.")
@click.option("--interval", "interval_s", type=click.FloatRange(min=0.1), default=None,
              metavar="S", help=f"With --watch: seconds between refreshes [default: "
                                f"{WATCH_INTERVAL_S:g}].")
def status(as_json: bool, show_failed: bool, taxonomy: str | None,
           unknown_below: float | None, watch: bool, interval_s: float | None) -> None:
    """Counts by state and by genre, with throughput and ETA while work is pending.

    \b
    Examples:
      genreq status --json
      {"total": 257, "queued": 0, "running": 0, "done": 256, "failed": 1,
       "genres": {"classical": 85, ...}, "throughput_per_s": null, "eta_s": null}
      genreq status --taxonomy genres.toml --unknown-below 0.5
      genreq status --watch --interval 5
    """
    if interval_s is not None and not watch:
        raise click.UsageError("--interval needs --watch")
    if not watch:
        _status(as_json, show_failed, taxonomy, unknown_below)
        return
    _watch(lambda: _status(as_json, show_failed, taxonomy, unknown_below),
           interval_s or WATCH_INTERVAL_S, redraw=sys.stdout.isatty() and not as_json,
           between="" if as_json else "\n")


# Clear the screen from the top left: the next block is drawn where the last one was.
REDRAW = "\x1b[H\x1b[J"


def _watch(show, interval_s: float, redraw: bool, between: str) -> None:
    """Call `show` every `interval_s` until Ctrl-C, which ends the command with status
    0. With `redraw` (a terminal) each block replaces the last; otherwise (a pipe, a
    log file) blocks follow one another with `between` in between."""
    import time

    try:
        while True:
            if redraw:
                click.echo(REDRAW, nl=False)
            show()
            if redraw:
                click.echo(f"\n{time.strftime('%H:%M:%S')} · every {interval_s:g} s · "
                           "Ctrl-C to stop")
            sys.stdout.flush()
            time.sleep(interval_s)
            if not redraw:
                click.echo(between, nl=False)
    except KeyboardInterrupt:
        return


def _status(as_json: bool, show_failed: bool, taxonomy: str | None,
            unknown_below: float | None) -> None:
    from genreq import app
    from genreq.app import learning

    counts = app.status(make_labeller(taxonomy, unknown_below))
    learned = learning.learned_summary()
    if as_json:
        result = counts.as_dict()
        if learned is not None:
            result["learned"] = learned.as_dict()
        if show_failed:
            result["failures"] = [{"path": f.path, "error": f.error} for f in app.failures()]
        click.echo(json.dumps(result))
        return
    for state in ("queued", "running", "done", "failed", "skipped", "total"):
        click.echo(f"{state:<14}{getattr(counts, state):>7}")
    if counts.pending and counts.throughput_per_s:
        click.echo(f"{'throughput':<14}{counts.throughput_per_s:>7.2f} tracks/s"
                   f"  ETA {duration(counts.eta_s)}")
    if counts.genres:
        click.echo()
        _print_genre_table(counts.genres)
    if learned is not None:
        click.echo(f"\n{_learned_line(learned)}")
    if show_failed:
        click.echo("\nfailed:")
        for failure in app.failures():
            click.echo(f"  {failure.error}")
    else:  # failed and skipped tracks by reason, and done ones that carry a note
        print_reasons(app.reasons())


def _learned_line(learned) -> str:
    line = (f"genres learned from {learned.source or 'the library'} (genreq learn): "
            f"{_plural(learned.tracks, 'track')}")
    if learned.model_genre_tracks:
        line += (f"; {learned.model_genre_tracks} keep the model's genres (no "
                 f"{learned.embedding_model} embedding)")
    return line


@cli.command()
@filter_options
@label_options
@click.option("--top", "top_k", type=click.IntRange(min=1), default=TOP_K, show_default=True,
              metavar="K", help="Genres listed with their probabilities in each record.")
@click.option("--sort", type=click.Choice(SORTS), default="id", show_default=True,
              help="Order: enqueue order (id), most confident first (under a taxonomy, "
                   "by the user genre's summed probability), or path.")
@click.option("--relative", is_flag=True,
              help="m3u: write paths relative to the playlist's folder (needs -o or "
                   "--split-by-genre).")
@click.option("--split-by-genre", type=click.Path(file_okay=False), default=None,
              metavar="DIR", help="Write one extended M3U per genre, DIR/<genre>.m3u.")
@click.option("--tag", "tags", multiple=True, metavar="T",
              help="Only tracks tagged T (repeatable: every one), e.g. electronic; needs a "
                   "model with tag outputs, such as vgg-msd.")
@click.option("--min-tag-score", type=click.FloatRange(0, 1), default=None, metavar="X",
              help="The score a --tag needs [default: 0.15].")
@output_options
def export(genres: tuple[str, ...], min_confidence: float | None, path_glob: str | None,
           since, model_name: str | None, taxonomy: str | None, unknown_below: float | None,
           top_k: int, sort: str, relative: bool, split_by_genre: str | None,
           tags: tuple[str, ...], min_tag_score: float | None, fmt: str, output: str) -> None:
    """Print the classified tracks: path, genre, confidence, top-K genres, duration, model.

    Progress (tracks read of those matching, rate, ETA) goes to stderr, unless the data
    goes to the same terminal.

    \b
    Examples:
      genreq export --genre jazz --genre blues --min-confidence 0.6 --format m3u -o late.m3u
      genreq export --format csv > library.csv
      genreq export --taxonomy genres.toml --unknown-below 0.5 --top 5 --format json
      genreq export --path-glob '*/Incoming/*' --since 2026-11-01 --sort confidence
      genreq export --split-by-genre playlists/ --relative
      genreq export --tag electronic --tag dance --format m3u -o dance.m3u
    """
    from genreq import app

    ctx = click.get_current_context()
    if split_by_genre is not None:
        if ctx.get_parameter_source("fmt") == click.core.ParameterSource.COMMANDLINE \
                and fmt != "m3u":
            raise click.UsageError("--split-by-genre writes m3u playlists; drop --format "
                                   f"{fmt} or use --format m3u")
        if output != "-":
            raise click.UsageError("--split-by-genre writes into DIR; -o/--output does not apply")
        fmt = "m3u"
    elif relative and (fmt != "m3u" or output == "-"):
        raise click.UsageError("--relative needs --format m3u with -o FILE, or --split-by-genre")
    labeller = make_labeller(taxonomy, unknown_below, top_k)
    flt = app.TrackFilter(genres, min_confidence, path_glob, since, model_name, sort,
                          tuple(t.lower() for t in tags), min_tag_score)
    unknown = app.unknown_genres(genres, labeller)
    if unknown:
        raise click.BadParameter(
            f"unknown genre {', '.join(unknown)}; known genres: "
            + (", ".join(app.genres(labeller)) or "none yet (no track classified)"),
            param_hint="--genre",
        )
    unknown = app.unknown_tags(tags)
    if unknown:
        raise click.BadParameter(
            f"unknown tag {', '.join(unknown)}; the taggers' tags: {', '.join(app.known_tags())}",
            param_hint="--tag")
    to_terminal = split_by_genre is None and output == "-" and sys.stdout.isatty()
    progress = ProgressLine("tracks", app.count_records(flt, labeller),
                            enabled=not (to_terminal and sys.stderr.isatty()))
    if split_by_genre is None and fmt in LINE_FORMATS:
        write_lines(app.export_lines(flt, labeller, on_track=progress.update), fmt, output)
        progress.close()
        return
    rows = app.export_records(flt, labeller, on_track=progress.update)
    if split_by_genre is None:
        write_records(rows, fmt, output, top_k=top_k, relative=relative)
        progress.close()
        return
    counts = write_split_m3u(rows, split_by_genre, relative)
    progress.close()
    click.echo(f"wrote {_plural(len(counts), 'playlist')} to {split_by_genre}: "
               + (", ".join(f"{name} ({n})" for name, n in counts.items()) or "no tracks"),
               err=True)


@cli.command()
@click.option("--stale", is_flag=True,
              help="Also queue again tracks `running` under a lease that ran out (their "
                   "worker died or froze; workers and `run` do this by themselves).")
@click.option("--older-than", "older_than_s", type=click.FloatRange(min=0), default=None,
              metavar="SECONDS",
              help="With --stale, a fallback: also those running for longer than this, "
                   "whatever their lease (when you know their worker is gone).")
@click.option("--failed", is_flag=True, help="Also try failed tracks again.")
def requeue(stale: bool, older_than_s: float | None, failed: bool) -> None:
    """Send every queued track to the workers again, from the database.

    The database says what is still owed: use this after the broker lost its queue.
    A worker killed whole needs nothing: its leases run out within a minute and any
    worker, or `genreq run`, sends its tracks again (--stale does it now). A track sent
    twice is classified once.

    \b
    Examples:
      genreq requeue --stale
      genreq requeue --failed      # e.g. after installing ffmpeg
    """
    from genreq import app

    if older_than_s is not None and not stale:
        raise click.UsageError("--older-than needs --stale")
    summary = app.requeue(stale, failed, older_than_s)
    click.echo(f"sent {summary.sent} · stale running requeued {summary.stale}"
               f" · failed requeued {summary.failed}", err=True)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print what would be forgotten; forget nothing.")
@click.option("--force", is_flag=True,
              help="Forget them even when every track under a path is gone.")
def prune(paths: tuple[Path, ...], dry_run: bool, force: bool) -> None:
    """Forget the tracks under PATHS whose files are gone.

    A file deleted, or moved out of the library, keeps its row (and shows in status and
    exports) until pruned; `run` and `enqueue` count such tracks as "gone". A file moved
    or renamed inside what they walk is followed to its new path, result kept. Prints
    the paths forgotten. Refuses when a path is missing, or when every track known
    under it is gone (an unmounted drive looks like that) unless --force.

    \b
    Examples:
      genreq prune ~/Music --dry-run
      genreq prune ~/Music
      forgot 3 tracks whose files are gone · 1517 still there
    """
    from genreq import app

    result = app.prune(paths, dry_run=dry_run, force=force)
    for path in result.paths:
        click.echo(path)
    verb = "would forget" if dry_run else "forgot"
    click.echo(f"{verb} {_plural(result.forgotten, 'track')} whose files are gone"
               f" · {result.kept} still there", err=True)


@cli.command()
def stop() -> None:
    """Stop the workers and the embedded broker that genreq started for GENREQ_HOME.

    \b
    Example:
      genreq stop
    """
    from genreq import app

    workers, broker_stopped = app.stop()
    click.echo(f"stopped {_plural(workers, 'worker')}; embedded broker "
               + ("stopped" if broker_stopped else "was not running"), err=True)


@cli.group()
def db() -> None:
    """Database schema management.

    \b
    Example:
      genreq db upgrade
    """


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database (GENREQ_DATABASE_URL) to REVISION (default: the latest).

    \b
    Example:
      GENREQ_DATABASE_URL=postgresql://genreq@db/genreq genreq db upgrade
    """
    from genreq import app

    click.echo(f"database at {app.upgrade_database(revision)}", err=True)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@label_options
def show(path: Path, as_json: bool, taxonomy: str | None, unknown_below: float | None) -> None:
    """Print everything stored about one track: state, genre, the full probability
    vector, model, timings, and the error if it failed.

    \b
    Examples:
      genreq show ~/Music/song.flac
      genreq show ~/Music/song.flac --json --taxonomy genres.toml
    """
    from genreq import app

    detail = app.show(str(path), make_labeller(taxonomy, unknown_below))
    click.echo(json.dumps(detail) if as_json else format_detail(detail))


@cli.command()
@filter_options
@label_options
@click.option("--genre-field", "field", default="GENRE", show_default=True, metavar="FIELD",
              help="Tag field to write: GENRE is the genre tag (ID3 TCON, Vorbis GENRE, "
                   "MP4 \u00a9gen); another name writes a custom field (ID3 TXXX, Vorbis "
                   "comment, MP4 freeform).")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--overwrite", is_flag=True,
              help="Replace genres you set yourself (genreq's own earlier tags are always "
                   "updated).")
@click.option("--mode", type=click.Choice(["replace", "add"]), default="replace",
              show_default=True,
              help="replace: genreq's genres instead of the file's; add: after the file's "
                   "own (each once, ignoring case), which are kept without --overwrite.")
@click.option("--with-tags", type=click.IntRange(min=0), default=0, metavar="N",
              help="Also write the N best genre tags scoring --min-tag-score or more as "
                   "further genre values (a model with tag outputs, such as vgg-msd).")
@click.option("--min-tag-score", type=click.FloatRange(0, 1), default=None, metavar="X",
              help="The score a tag needs for --with-tags and --mood-field [default: 0.15].")
@click.option("--mood-field", default=None, metavar="FIELD",
              help="Write the mood tags (happy, sad, chill, mellow, party, ...) scoring "
                   "--min-tag-score or more into this field, e.g. MOOD (ID3 TMOO).")
def tag(genres: tuple[str, ...], min_confidence: float | None, path_glob: str | None,
        since, model_name: str | None, taxonomy: str | None, unknown_below: float | None,
        field: str, dry_run: bool, overwrite: bool, mode: str, with_tags: int,
        min_tag_score: float | None, mood_field: str | None) -> None:
    """Write the predicted genre into the files' tags (mutagen; audio data untouched).

    Several values are the format's own multi-value (ID3v2.4 TCON, repeated Vorbis
    GENRE, an MP4 list). Files whose genre you set are left alone unless --overwrite
    (or --mode add). One line per file written, kept or skipped on stdout; a summary on
    stderr. Tracks labelled `unknown` (--unknown-below) are not tagged. After `genreq
    learn`, the learned genres are written.

    \b
    Examples:
      genreq tag --dry-run --taxonomy genres.toml --min-confidence 0.6
      genreq tag --genre-field STYLE --path-glob '*/Incoming/*'
      genreq tag --mode add --with-tags 2 --mood-field MOOD --dry-run
    """
    from genreq import app
    from genreq.app.tagging import SAME

    for name, hint in ((field, "--genre-field"), (mood_field, "--mood-field")):
        if name is not None and (not name.strip() or "=" in name or "~" in name):
            raise click.BadParameter(f"{name!r} is not a usable tag field name",
                                     param_hint=hint)
    if mood_field is not None and mood_field.strip().upper() == field.strip().upper():
        raise click.BadParameter("the mood field must differ from the genre field",
                                 param_hint="--mood-field")
    labeller = make_labeller(taxonomy, unknown_below)
    flt = app.TrackFilter(genres, min_confidence, path_glob, since, model_name, "path")
    unknown = app.unknown_genres(genres, labeller)
    if unknown:
        raise click.BadParameter(f"unknown genre {', '.join(unknown)}", param_hint="--genre")
    summary = app.TagSummary()
    progress = ProgressLine("tracks", app.count_records(flt, labeller))
    for change in app.tag(flt, labeller, field=field, overwrite=overwrite, dry_run=dry_run,
                          mode=mode, with_tags=with_tags, min_tag_score=min_tag_score,
                          mood_field=mood_field, summary=summary,
                          on_track=lambda n: progress.update(n, summary.line(dry_run))):
        if change.action != SAME:
            progress.data(change.line(dry_run, field))
    progress.close(detail=summary.line(dry_run))
    click.echo(summary.line(dry_run), err=True)


@cli.command()
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False),
              default="genreq-report", show_default=True, metavar="DIR",
              help="Folder for index.html and its PNG plots (created).")
@click.option("--least", type=click.IntRange(min=1), default=20, show_default=True,
              help="Rows in the table of least confident tracks.")
@label_options
def report(out_dir: str, least: int, taxonomy: str | None, unknown_below: float | None) -> None:
    """Write an HTML page with plots: genre distribution, confidence per genre, the
    least confident tracks, the last run's throughput, and failures by reason.

    Prints the path of index.html; the folder is self-contained (open it offline).

    \b
    Example:
      genreq report -o ~/genreq-report --taxonomy genres.toml && xdg-open ~/genreq-report/index.html
    """
    from genreq import app

    labeller = make_labeller(taxonomy, unknown_below)
    progress = ProgressLine("tracks", app.status().done)
    index = app.report(out_dir, labeller, least, on_track=progress.update)
    progress.close()
    click.echo(str(index))


ml.register(cli)  # train, evaluate, classify
models_cli.register(cli)  # `genreq models ...`: pretrained taggers
similar_cli.register(cli)  # search by sound
learn_cli.register(cli)  # genres learned from the library
