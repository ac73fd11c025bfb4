"""db.paging, the one keyset pager, on SQLite and PostgreSQL: its pages hold every row
once, in order, whatever the page size against the row count, ties included."""
from __future__ import annotations

from itertools import islice

import pytest
from helpers import add_track
from sqlalchemy import select

from genreq.db import paging
from genreq.db.models import State, Track
from genreq.db.session import session_scope

ROWS = 7
# Confidences with ties, so a (confidence desc, id) keyset must break them by id.
CONFIDENCES = [0.5, 0.9, 0.5, 0.7, 0.9, 0.5, 0.7]


@pytest.fixture
def seven(db_url) -> list[Track]:
    """Seven done tracks, paths out of id order, confidences tied in threes and twos."""
    with session_scope(db_url) as s:
        return [add_track(s, f"/m/{(i * 3) % ROWS}.mp3", "done", "rock", confidence=c)
                for i, c in enumerate(CONFIDENCES)]


ORDERS = {
    "id": ((Track.id,), lambda t: t.id),
    "path": ((Track.path,), lambda t: t.path),
    "confidence desc, id": ((Track.confidence.desc(), Track.id), lambda t: (-t.confidence, t.id)),
    "confidence, id desc": ((Track.confidence.asc(), Track.id.desc()),
                            lambda t: (t.confidence, -t.id)),
}


@pytest.mark.parametrize("page_size", [1, 2, 3, ROWS - 1, ROWS, ROWS + 1])
@pytest.mark.parametrize("order", list(ORDERS))
def test_pages_hold_every_row_once_in_order(db_url, seven, order, page_size):
    keys, sort_key = ORDERS[order]
    expected = [t.id for t in sorted(seven, key=sort_key)]
    with session_scope(db_url) as s:
        # Bounded, so that a pager that repeats pages fails instead of hanging.
        pages = list(islice(paging.pages(s, select(Track), *keys, page_size=page_size),
                            ROWS + 2))
    assert [t.id for page in pages for t in page] == expected
    assert [len(page) for page in pages] == [page_size] * (ROWS // page_size) + (
        [ROWS % page_size] if ROWS % page_size else [])


def test_page_size_defaults_to_page_size_constant(db_url, seven, monkeypatch):
    monkeypatch.setattr(paging, "PAGE_SIZE", 3)
    with session_scope(db_url) as s:
        assert [len(p) for p in paging.pages(s, select(Track.id), Track.id)] == [3, 3, 1]


def test_an_empty_result_has_no_pages(db_url):
    with session_scope(db_url) as s:
        assert list(paging.pages(s, select(Track), Track.id, page_size=2)) == []
        add_track(s, "/m/queued.mp3")
        assert list(paging.rows(s, select(Track).where(Track.state == State.done), Track.id,
                                page_size=2)) == []


def test_what_a_page_yields_follows_the_query(db_url, seven):
    """One column: its values; one entity: objects; several columns: tuples. The key
    columns the pager selects alongside never show."""
    with session_scope(db_url) as s:
        ids = list(paging.rows(s, select(Track.id), Track.id, page_size=3))
        assert ids == sorted(t.id for t in seven)
        paths = list(paging.rows(s, select(Track.path), Track.id, page_size=3))
        assert paths == [t.path for t in sorted(seven, key=lambda t: t.id)]
        rows = list(paging.rows(s, select(Track.path, Track.confidence), Track.path, page_size=2))
        assert rows == sorted((t.path, t.confidence) for t in seven)


def test_filters_and_order_compose(db_url, seven):
    with session_scope(db_url) as s:
        query = select(Track).where(Track.confidence < 0.8)
        got = [(t.confidence, t.id) for t in paging.rows(s, query, Track.confidence.desc(),
                                                           Track.id, page_size=2)]
    assert got == sorted(((t.confidence, t.id) for t in seven if t.confidence < 0.8),
                         key=lambda ci: (-ci[0], ci[1]))


def test_objects_leave_the_session_after_their_page(db_url, seven):
    with session_scope(db_url) as s:
        pages = paging.pages(s, select(Track), Track.id, page_size=3)
        first = next(pages)
        assert all(t in s for t in first)
        second = next(pages)
        assert not any(t in s for t in first)
        assert all(t in s for t in second)


def test_rows_inserted_between_pages_after_the_key_are_read(db_url, seven):
    """Keyset, not OFFSET: a row added behind the cursor neither shifts nor repeats
    what follows, and one added ahead of it is read."""
    with session_scope(db_url) as s:
        pages = paging.pages(s, select(Track.path), Track.path, page_size=3)
        seen = list(next(pages))
        assert seen == ["/m/0.mp3", "/m/1.mp3", "/m/2.mp3"]
        add_track(s, "/m/00.mp3", "done", "rock")  # behind the cursor
        add_track(s, "/m/9.mp3", "done", "rock")  # ahead of it
        seen += [path for page in pages for path in page]
    assert seen == [f"/m/{i}.mp3" for i in range(ROWS)] + ["/m/9.mp3"]


def test_needs_an_order():
    with pytest.raises(ValueError, match="order-by"):
        next(paging.pages(None, select(Track)))
