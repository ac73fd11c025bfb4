"""`genreq learn`: genres learned from the library's own tags or folders. Parsing and
printing only; genreq.app.learning fits and keeps the head."""
from __future__ import annotations

import json

import click


@click.command()
@click.option("--from-tags", is_flag=True, help="Label tracks by their files' own genre tags.")
@click.option("--from-folders", is_flag=True,
              help="Label tracks by the name of their parent folder.")
@click.option("--field", default="genre", show_default=True,
              help="The tag field the labels come from (only genre for now).")
@click.option("--min-tracks", type=click.IntRange(min=1), default=5, show_default=True,
              help="Leave out genres with fewer tracks than this (with a message).")
@click.option("--taxonomy", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Rename genres by this mapping file before learning (see status).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the head here [default: GENREQ_HOME/learned-genres.npz].")
@click.option("--json", "as_json", is_flag=True, help="Print the cross-validation as JSON.")
@click.option("--reset", is_flag=True, help="Remove the learned head.")
def learn(from_tags: bool, from_folders: bool, field: str, min_tracks: int, taxonomy: str | None,
          output: str | None, as_json: bool, reset: bool) -> None:
    """Fit a genre head on the stored embeddings of done tracks, labelled by the files'
    genre tags or folder names, and print its accuracy per genre, cross-validated so
    that no album (else artist, else folder) is on both sides. Nothing is decoded and
    no file is written but the head.

    From then on status, export, tag, report and show label every done track whose
    embedding the head reads (the library's most common embedding model) with the
    learned genres, untagged tracks and tracks classified later included; tracks of
    another embedding model keep the model's genres. --reset returns to the model's
    genres everywhere. A head written elsewhere (-o FILE) is not applied.

    \b
    Examples:
      genreq learn --from-tags --min-tracks 5
      genreq learn --from-folders --json
      genreq learn --reset
    """
    from genreq.app import learning

    if reset:
        removed = learning.reset()
        click.echo("removed the learned head" if removed else "no learned head to remove",
                   err=True)
        return
    if not (from_tags or from_folders):
        raise click.UsageError("say what to learn from: --from-tags or --from-folders")
    if from_tags and from_folders:
        raise click.UsageError("--from-tags and --from-folders: choose one of them")
    source = learning.FROM_TAGS if from_tags else learning.FROM_FOLDERS
    if field.lower() != "genre":
        raise click.UsageError("--field: only genre is read from the files for now")
    learned = learning.learn_api(source, min_tracks, taxonomy, output,
                                 on_message=lambda m: click.echo(m, err=True))
    cv = learned.cv
    if as_json:
        click.echo(json.dumps({"embedding_model": learned.head.embedding_model, **cv.to_dict()}))
        return
    click.echo(f"{'genre':<20}{'tracks':>7}{'accuracy':>10}")
    for genre, g in cv.per_genre.items():
        click.echo(f"{genre:<20}{g['n']:>7}{g['accuracy']:>10.2f}")
    click.echo(f"\naccuracy {cv.accuracy:.3f} (balanced {cv.balanced_accuracy:.3f}), n={cv.n}, "
               f"{cv.n_folds} folds of {cv.n_groups} albums/artists/folders, none on both sides")
    click.echo(f"head: {output or learning.head_path()}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(learn)
