"""Why tracks were not classified, counted: one line per reason with its count and an
example or two, for `run` and `status`, instead of one line per file (`status --failed`
still lists every failed file). Classified tracks with a note (decoded around damaged
packets) are counted the same way."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

EXAMPLES = 2  # paths kept per reason


@dataclass
class ReasonCount:
    state: str  # "failed" or "skipped"; "done" for classified tracks with a note
    reason: str  # without the path or per-file details
    count: int = 0
    examples: list[str] = field(default_factory=list)  # paths
    example_error: str | None = None  # the first example's full message, for a count of one


def reason_key(error: str | None, reason: str | None, path: str) -> str:
    """What tracks are counted by: the stored reason (the message without its path),
    else the message with the path removed (tracks failed before reasons were stored);
    details in parentheses go, as the report groups them (genreq.app.reporting)."""
    from genreq.app.reporting import failure_reason

    return failure_reason(f"{path}: {reason}" if reason else error, path)


def count_reasons(session, batch_id: str | None = None) -> list[ReasonCount]:
    """Failed, then skipped, then noted done tracks by reason, most first (ties by
    reason).

    Counted in SQL by stored reason (a library of a million tracks has few distinct
    ones); only tracks without a stored reason are read one by one."""
    from genreq.db import status as db_status

    counts: dict[tuple[str, str], ReasonCount] = {}
    firsts: dict[tuple[str, str], list[tuple[int, str, str | None]]] = {}

    def add(state: str, reason: str | None, count: int,
            examples: list[tuple[int, str, str | None]]) -> None:
        path = examples[0][1]
        # A skip's or a note's reason carries no per-file details: kept whole.
        key = (state, reason if state in ("skipped", "done") and reason
               else reason_key(examples[0][2], reason, path))
        counts.setdefault(key, ReasonCount(state, key[1])).count += count
        kept = firsts.setdefault(key, [])
        kept.extend((i, p, error or f"{p}: {reason}") for i, p, error in examples)
        kept.sort()
        del kept[EXAMPLES:]

    for state, reason, count, examples in db_status.unclassified_by_reason(
            session, batch_id, EXAMPLES):
        add(getattr(state, "value", state), reason, count, examples)
    for track_id, state, path, error in db_status.unclassified_without_reason(session, batch_id):
        add(getattr(state, "value", state), None, 1, [(track_id, path, error)])
    for key, entry in counts.items():
        entry.examples = [path for _id, path, _error in firsts[key]]
        entry.example_error = firsts[key][0][2]
    order = {"failed": 0, "skipped": 1}
    return sorted(counts.values(), key=lambda r: (order.get(r.state, 2), -r.count, r.reason))


def reasons(batch_id: str | None = None) -> Iterator[ReasonCount]:
    """The Python API: count_reasons on the configured database (every track, or one
    enqueue batch as in run's result)."""
    from genreq.app.library import session

    with session() as db:
        yield from count_reasons(db, batch_id)
