"""The stored track embeddings, for search by sound and learning: which models made
them, all of one model's (paged), and whether they changed."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from genreq.db import counts, paging
from genreq.db.models import State, Track


def embedding_models(session: Session) -> dict[str, int]:
    """Done tracks with an embedding, per model that made it (name@version), most first."""
    rows = session.execute(
        select(Track.embedding_model, func.count())
        .where(Track.state == State.done, Track.embedding.is_not(None))
        .group_by(Track.embedding_model)
    ).all()
    return dict(sorted(((m, n) for m, n in rows if m), key=lambda kv: (-kv[1], kv[0])))


def embeddings(session: Session, embedding_model: str
               ) -> Iterator[tuple[int, bytes, str | None, str | None]]:
    """(track id, embedding bytes, album, artist) of every done track embedded by
    EMBEDDING_MODEL, in id order, paged."""
    query = select(Track.id, Track.embedding, Track.album, Track.artist).where(
        Track.state == State.done, Track.embedding_model == embedding_model,
        Track.embedding.is_not(None))
    return paging.rows(session, query, Track.id)


def fingerprint(session: Session, embedding_model: str) -> tuple:
    """What changes whenever the embeddings of EMBEDDING_MODEL (and the album and artist
    of their tracks) do: a cache of them is good while it holds. Where the database
    keeps the embeddings' change stamp (db.counts), that stamp, one row; else how many
    done tracks the model embedded, their largest id and latest finish, read from the
    index (embedding_model, state, finished_at) alone: a condition on the embedding
    itself would read every row (an embedding is written, and reset, together with its
    model's name, so it would change nothing here)."""
    if counts.kept(session):
        return ("generation", counts.embeddings_generation(session))
    count, max_id, last = session.execute(
        select(func.count(), func.max(Track.id), func.max(Track.finished_at)).where(
            Track.state == State.done, Track.embedding_model == embedding_model)).one()
    return (int(count), int(max_id or 0), str(last))


def tracks_by_id(session: Session, ids: Sequence[int]) -> dict[int, Track]:
    return {t.id: t for t in session.scalars(select(Track).where(Track.id.in_(list(ids))))}
