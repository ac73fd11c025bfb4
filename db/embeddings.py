"""The stored track embeddings, for search by sound and learning: which models made
them, all of one model's (paged), and the tracks that share an album."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from genreq.db import paging
from genreq.db.models import State, Track


def embedding_models(session: Session) -> dict[str, int]:
    """Done tracks with an embedding, per model that made it (name@version), most first."""
    rows = session.execute(
        select(Track.embedding_model, func.count())
        .where(Track.state == State.done, Track.embedding.is_not(None))
        .group_by(Track.embedding_model)
    ).all()
    return dict(sorted(((m, n) for m, n in rows if m), key=lambda kv: (-kv[1], kv[0])))


def embeddings(session: Session, embedding_model: str) -> Iterator[tuple[int, bytes]]:
    """(track id, embedding bytes) of every done track embedded by EMBEDDING_MODEL, in id
    order, paged."""
    query = select(Track.id, Track.embedding).where(
        Track.state == State.done, Track.embedding_model == embedding_model,
        Track.embedding.is_not(None))
    return paging.rows(session, query, Track.id)


def album_ids(session: Session, album: str, artist: str | None) -> list[int]:
    """Ids of the tracks whose album tag is ALBUM (ignoring case and surrounding blanks)
    and whose artist tag is ARTIST likewise (or absent, when ARTIST is None)."""
    same_artist = (Track.artist.is_(None) if artist is None
                   else func.lower(func.trim(Track.artist)) == artist.strip().lower())
    return list(session.scalars(select(Track.id).where(
        func.lower(func.trim(Track.album)) == album.strip().lower(), same_artist)))


def tracks_by_id(session: Session, ids: Sequence[int]) -> dict[int, Track]:
    return {t.id: t for t in session.scalars(select(Track).where(Track.id.in_(list(ids))))}
