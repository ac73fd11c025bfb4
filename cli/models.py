"""`genreq models ...`: pretrained models. torch is imported inside the commands."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def models() -> None:
    """Pretrained models.

    \b
    Example:
      genreq models convert-musicnn
    """


@models.command("convert-musicnn")
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The musicnn 0.1.0 wheel [default: cached, downloaded with pip if absent].",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the converted taggers and their licence notice "
    "[default: genreq's cache, where `genreq train` finds them].",
)
@click.option(
    "--model",
    "checkpoints",
    type=click.Choice(["MSD_musicnn", "MSD_vgg"]),
    multiple=True,
    help="Checkpoint(s) to convert [default: both].",
)
def convert_musicnn(wheel: Path | None, out_dir: Path, checkpoints: tuple[str, ...]) -> None:
    """Convert the musicnn taggers (TF1 checkpoints on PyPI) to PyTorch files.

    \b
    Example:
      genreq models convert-musicnn --out converted --model MSD_vgg
    """
    from genreq.pretrained import convert

    paths = convert.convert(
        convert.fetch_wheel(wheel), out_dir, checkpoints or tuple(convert.MODELS)
    )
    for path in paths:
        click.echo(str(path))


def register(cli: click.Group) -> None:
    cli.add_command(models)
