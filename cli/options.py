"""Options shared by the commands that look at classified tracks (status, export, tag,
show, report), so that --taxonomy, --unknown-below and the track filters mean the same
everywhere. Light imports only: these decorate commands at `genreq --help` time."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import click

from genreq.config import TOP_K


class IsoDateTime(click.ParamType):
    """An ISO 8601 date or date-time (2026-11-26, 2026-11-26T18:00, ...+01:00);
    without an offset it is UTC, as genreq stores times."""

    name = "ISO-DATE"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO date or date-time (e.g. 2026-11-26 or "
                      "2026-11-26T18:30)", param, ctx)


def label_options(command: Callable) -> Callable:
    """--taxonomy and --unknown-below: how a probability vector becomes a genre."""
    command = click.option(
        "--unknown-below", type=click.FloatRange(0, 1), default=None, metavar="X",
        help="Label tracks whose genre probability is below X as `unknown` "
             "(they stay in the output; --min-confidence drops them instead).",
    )(command)
    return click.option(
        "--taxonomy", type=click.Path(dir_okay=False), envvar="GENREQ_TAXONOMY",
        default=None, metavar="FILE",
        help="TOML or YAML file (by suffix: .toml, .yaml, .yml) mapping model genres to "
             'your names, several to one ([genres] metal = "Rock", or genres: {metal: '
             "Rock}); a genre's probability is the sum of its members' "
             "[env: GENREQ_TAXONOMY].",
    )(command)


def filter_options(command: Callable) -> Callable:
    """The track filters of export and tag."""
    for decorator in reversed([
        click.option("-g", "--genre", "genres", multiple=True,
                     help="Only tracks labelled with this genre (repeatable) [default: all]."),
        click.option("--min-confidence", type=click.FloatRange(0, 1), default=None,
                     help="Only predictions at least this confident."),
        click.option("--path-glob", default=None, metavar="GLOB",
                     help="Only paths matching this glob (`*` also matches `/`), "
                          "e.g. '*/Jazz/*' or '*.flac'."),
        click.option("--since", type=IsoDateTime(), default=None,
                     help="Only tracks classified at or after this date or time (UTC "
                          "unless an offset is given)."),
        click.option("--model", "model_name", default=None, metavar="NAME",
                     help="Only tracks classified by this model, e.g. crnn."),
    ]):
        command = decorator(command)
    return command


def make_labeller(taxonomy: str | None, unknown_below: float | None, top_k: int = TOP_K):
    """The labeller of --taxonomy (or GENREQ_TAXONOMY) and --unknown-below. A taxonomy
    file that cannot be used is a usage error (exit status 2) naming the file and why."""
    from genreq.app import taxonomy as taxonomy_module

    try:
        mapping = taxonomy_module.resolve(taxonomy)
    except taxonomy_module.TaxonomyError as exc:
        ctx = click.get_current_context(silent=True)
        from_env = ctx is not None and ctx.get_parameter_source("taxonomy") \
            == click.core.ParameterSource.ENVIRONMENT
        raise click.BadParameter(
            str(exc), param_hint="GENREQ_TAXONOMY" if from_env else "'--taxonomy'") from exc
    return taxonomy_module.Labeller(mapping, unknown_below, top_k)
