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
    """Nothing when every track was classified, and without a note."""
    reasons = list(reasons)
    for heading, rows in (
        ("not classified, by reason:", [r for r in reasons if r.state != "done"]),
        ("classified, with a note:", [r for r in reasons if r.state == "done"]),
    ):
        if rows:
            click.echo(f"\n{heading}")
            for r in rows:
                click.echo(reason_line(r))
