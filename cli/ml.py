"""Model commands: train, evaluate, classify. torch is imported inside the commands,
so `genreq --help` and the pipeline commands stay fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from genreq.config import TOP_K

# genreq.train.RECIPES (trained from scratch), HEAD_ARCHS (pretrained ears, a genre
# head fitted on them) and GRU_ARCHS (pretrained ears, a GRU head trained on their chunk
# embeddings); kept here so that the CLI imports no torch.
ARCH_NAMES = (
    "raw",
    "stft-cnn",
    "crnn-paper",
    "crnn",
    "musicnn-msd",
    "vgg-msd",
    "musicnn-msd-gru",
    "vgg-msd-gru",
)
HEAD_ARCH_NAMES = ("musicnn-msd", "vgg-msd")  # genreq.train.HEAD_ARCHS


GROUPS_HELP = (
    "Groups from a labels file, FILE:COLUMN (the file relative to the working directory, "
    "with a `path` column), e.g. labels.csv:artist_split; files in group `excluded` are dropped."
)


def _check_groups(spec: str | None) -> None:
    """A labels file or column that cannot give groups is a usage error (exit 2)."""
    if spec is None:
        return
    from genreq.dataset import GroupsError, read_groups

    try:
        read_groups(spec)
    except GroupsError as exc:
        raise click.BadParameter(str(exc), param_hint="--groups") from None


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--arch", type=click.Choice(ARCH_NAMES), default="crnn", show_default=True)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Override the recipe's epoch count."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint path [default: ARCH.pt].",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 0.9),
    default=0.2,
    show_default=True,
    help="Share of each genre held out (whole groups, see --groups) for early stopping; "
    "0 trains on all.",
)
@click.option(
    "--groups",
    default=None,
    metavar="FILE:COLUMN",
    help=GROUPS_HELP + " The validation split takes whole groups, so no artist straddles it; "
    "without --groups every file is its own group.",
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
@click.option(
    "--features",
    "input_kind",
    type=click.Choice(["mel", "mfcc"]),
    default=None,
    help="Input of the CRNNs: log-mel (default) or MFCC.",
)
@click.option(
    "--n-mfcc",
    type=click.IntRange(min=8, max=128),
    default=20,
    show_default=True,
    help="MFCCs per frame with --features mfcc.",
)
@click.option(
    "--tune-head",
    is_flag=True,
    help="musicnn-msd, vgg-msd: tune C, the logit adjustment tau and a temperature with the "
    "--groups as inner folds (needs --groups).",
)
def train(
    data_dir: Path,
    arch: str,
    epochs: int | None,
    seed: int,
    out: Path | None,
    val_fraction: float,
    groups: str | None,
    device: str,
    input_kind: str | None,
    n_mfcc: int,
    tune_head: bool,
) -> None:
    """Train a genre model on DATA_DIR, one folder per genre.

    \b
    musicnn-msd and vgg-msd keep their pretrained ears frozen and fit only a genre head
    (seconds per clip to embed, no epochs): the quickest way to your own genre names.
    vgg-msd-gru and musicnn-msd-gru train a GRU over those ears' chunk embeddings
    (embedded once, then seconds of epochs per few hundred clips).

    \b
    Examples:
      genreq train ../shared/data/gtzan --arch crnn --seed 0 --out crnn.pt \\
          --groups ../shared/data/gtzan/labels.csv:artist_split
      genreq train ~/labelled-music --arch vgg-msd --out my-genres.pt
      genreq train ../shared/data/gtzan --arch vgg-msd --val-fraction 0 --tune-head \\
          --groups ../shared/data/gtzan/labels.csv:artist_split
    """
    from genreq.experiment import train_directory

    if tune_head and arch not in HEAD_ARCH_NAMES:
        raise click.UsageError(
            f"--tune-head is for the pretrained head archs ({', '.join(HEAD_ARCH_NAMES)}), "
            f"not {arch}"
        )
    if tune_head and not groups:
        raise click.UsageError("--tune-head needs --groups FILE:COLUMN: its inner folds")
    _check_groups(groups)
    out = out or Path(f"{arch}.pt")
    report = train_directory(
        data_dir,
        arch,
        out,
        epochs=epochs,
        seed=seed,
        val_fraction=val_fraction,
        device=device,
        input_kind=input_kind,
        n_mfcc=n_mfcc,
        groups=groups,
        tune_head=tune_head,
    )
    summary = {
        k: report[k] for k in ("split", "groups", "n_train", "n_val", "best_epoch", "parameters")
    }
    if "validation" in report:
        summary.update(
            val_accuracy=report["validation"]["accuracy"], val_ci95=report["validation"]["ci95"]
        )
    click.echo(json.dumps({"checkpoint": str(out), **summary}))


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--model",
    "model_path",
    default=None,
    help="Checkpoint path or shipped model name (crnn, vgg-msd, ...) "
    "[default: $GENREQ_MODEL or the shipped vgg-msd-fast].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--confusion-png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw the confusion matrix to this PNG.",
)
@click.option(
    "--groups",
    default=None,
    metavar="FILE:COLUMN",
    help=GROUPS_HELP + " Adds each group's accuracy to the report.",
)
@click.option(
    "--group",
    "only_groups",
    multiple=True,
    metavar="NAME",
    help="Evaluate only the files in this group of --groups (repeatable), e.g. test.",
)
def evaluate(
    data_dir: Path,
    model_path: str | None,
    as_json: bool,
    confusion_png: Path | None,
    groups: str | None,
    only_groups: tuple[str, ...],
) -> None:
    """Track-level accuracy of a model on DATA_DIR (one folder per genre).

    Use data the model never saw in training.

    \b
    Examples:
      genreq evaluate ~/held-out-clips --json
      genreq evaluate ../shared/data/gtzan --model my.pt \\
          --groups ../shared/data/gtzan/labels.csv:artist_split --group test
    """
    from genreq.experiment import evaluate_directory

    if only_groups and not groups:
        raise click.UsageError("--group needs --groups FILE:COLUMN")
    _check_groups(groups)
    report = evaluate_directory(data_dir, model_path, confusion_png, groups, only_groups)
    if as_json:
        click.echo(json.dumps(report))
        return
    low, high = report["ci95"]
    click.echo(f"model {report['model']} ({report['model_version']})")
    click.echo(
        f"accuracy {report['accuracy']:.1%} (95% CI {low:.1%}–{high:.1%}), n={report['n']}, "
        f"balanced accuracy {report['balanced_accuracy']:.1%}, "
        f"ECE {report['ece']:.3f} ({report['ece_bins']} bins)"
    )
    for g, s in report.get("per_group", {}).items():
        g_low, g_high = s["ci95"]
        click.echo(
            f"group {g}: accuracy {s['accuracy']:.1%} (95% CI {g_low:.1%}–{g_high:.1%}), n={s['n']}"
        )
    click.echo(f"{'genre':<12}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>5}")
    for g, s in report["per_genre"].items():
        click.echo(
            f"{g:<12}{s['precision']:>10.2f}{s['recall']:>8.2f}{s['f1']:>8.2f}{s['support']:>5}"
        )
    width = max(len(g) for g in report["genres"])
    click.echo("confusion (rows true, columns predicted):")
    click.echo(" " * (width + 1) + " ".join(f"{g[:4]:>4}" for g in report["genres"]))
    for g, row in zip(report["genres"], report["confusion"], strict=True):
        click.echo(f"{g:>{width}} " + " ".join(f"{v:>4}" for v in row))
    for f in report["failed"]:
        click.echo(f"failed: {f['path']}: {f['reason']}", err=True)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "model_path",
    default=None,
    help="Checkpoint path or shipped model name (crnn, vgg-msd, ...) "
    "[default: $GENREQ_MODEL or the shipped vgg-msd-fast].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file (ndjson).")
@click.option("--top", "top_k", type=click.IntRange(min=1), default=TOP_K, show_default=True)
@click.option("--with-tags", type=click.IntRange(min=0), default=0, metavar="N",
              help="Also the N highest-scoring of the model's 50 MSD tags (models with tag "
              "outputs, such as the default).")
def classify(files: tuple[Path, ...], model_path: str | None, as_json: bool, top_k: int,
             with_tags: int) -> None:
    """Classify audio files directly, without the queue.

    Exit status 1 when any file could not be classified (each is reported on stderr).

    \b
    Example:
      genreq classify song.mp3 --top 3
      genreq classify song.mp3 --with-tags 5 --json
    """
    from genreq.app import classify as classify_files

    failed, warned = 0, False
    for item in classify_files(files, model_path):
        p = item.prediction
        if p is None:
            failed += 1
            click.echo(f"error: {item.error}", err=True)
            continue
        tags = sorted(p.tags.items(), key=lambda kv: -kv[1])[:with_tags] if with_tags else []
        if with_tags and not p.tags and not warned:
            click.echo(f"warning: model {item.model} has no tag outputs; --with-tags shows none",
                       err=True)
            warned = True
        if as_json:
            record = {
                "path": item.path,
                "genre": p.genre,
                "confidence": round(p.confidence, 4),
                "top": [{"genre": g, "probability": round(q, 4)} for g, q in p.top(top_k)],
                "duration_s": round(p.duration_s, 2),
                "model": item.model,
            }
            if with_tags:
                record["tags"] = [{"tag": t, "score": round(q, 4)} for t, q in tags]
            click.echo(json.dumps(record))
        else:
            top = ", ".join(f"{g} {q:.2f}" for g, q in p.top(top_k))
            line = f"{item.path}\t{p.genre}\t{p.confidence:.2f}\t[{top}]"
            if with_tags:
                line += "\t[" + ", ".join(f"{t} {q:.2f}" for t, q in tags) + "]"
            click.echo(line)
    if failed:
        sys.exit(1)


def register(cli: click.Group) -> None:
    for command in (train, evaluate, classify):
        cli.add_command(command)
