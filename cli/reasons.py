"""The lines `run` and `status` print for tracks not classified: one per reason."""
from __future__ import annotations

from collections.abc import Iterable

import click


def reason_line(r) -> str:
    """`failed  2  not decodable audio  (e.g. /m/a.mp3, /m/b.mp3)`; a reason of one
    track shows its full message, path first."""
    if r.count == 1 and r.example_error:
        return f"  {r.state:<8}{r.count:>6}  {r.example_error}"
    return f"  {r.state:<8}{r.count:>6}  {r.reason}  (e.g. {', '.join(r.examples)})"


def print_reasons(reasons: Iterable) -> None:
    """Nothing when every track was classified."""
    lines = [reason_line(r) for r in reasons]
    if lines:
        click.echo("\nnot classified, by reason:")
        for line in lines:
            click.echo(line)
