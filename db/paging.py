"""Keyset pagination: every query that reads many rows goes through `pages`, so a
library of any size streams in constant memory instead of loading into it.

A page ends at the last row it holds; the next page is the rows after that row in the
query's order (a WHERE on the key columns, not an OFFSET), so it costs one index range
scan and stays correct while workers insert or update rows between pages.
"""
from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

PAGE_SIZE = 1000  # rows per SELECT; read at call time, so a test may lower it


def _column(key: ColumnElement) -> tuple[ColumnElement, bool]:
    """(column, descending) of an order-by key: a column, or `column.desc()`."""
    if isinstance(key, UnaryExpression) and key.modifier is operators.desc_op:
        return key.element, True
    if isinstance(key, UnaryExpression) and key.modifier is operators.asc_op:
        return key.element, False
    return key, False


def _clause(expr: Any) -> Any:
    """The SQL expression of a selected or order-by column (an ORM attribute's column)."""
    return expr.__clause_element__() if hasattr(expr, "__clause_element__") else expr


def _after(columns: list[tuple[ColumnElement, bool]], last: tuple) -> ColumnElement:
    """Rows after `last` in the order of `columns`: (a, b) > (x, y) spelt out as
    a > x OR (a = x AND b > y), since a row-value comparison cannot mix directions."""
    terms = []
    for i, (column, descending) in enumerate(columns):
        equal = [c == v for (c, _), v in zip(columns[:i], last[:i], strict=True)]
        beyond = column < last[i] if descending else column > last[i]
        terms.append(and_(*equal, beyond))
    return or_(*terms)


def pages(
    session: Session, query: Select, *order_by: ColumnElement, page_size: int | None = None
) -> Iterator[list[Any]]:
    """The rows of `query` in `order_by` order, a list of at most `page_size` rows at a
    time (default PAGE_SIZE).

    `order_by` is one or more columns, each ascending or `.desc()`; together they must
    be unique (end with the primary key or a unique column) or rows that tie at a page
    boundary are skipped. The columns must not be NULL in any row the query selects.

    A query of one column or entity yields its values (`select(Track)`: Track
    objects; `select(Track.id)`: ints), any other query yields its rows: SQLAlchemy
    Rows (named tuples) when the query selects columns only, the key columns among
    them (`select(Track.id, Track.path)` by Track.id), else plain tuples. ORM objects
    are expunged once the caller has had their page, so the session does not keep
    every row it ever loaded.
    """
    if not order_by:
        raise ValueError("keyset pagination needs at least one order-by column")
    size = page_size or PAGE_SIZE
    columns = [_column(key) for key in order_by]
    width = len(query.column_descriptions)
    selected = [_clause(d["expr"]) for d in query.column_descriptions]
    entities = [i for i, d in enumerate(query.column_descriptions) if d["expr"] is d["entity"]]
    positions = [] if entities else [
        next((i for i, e in enumerate(selected) if e.compare(_clause(column))), None)
        for column, _ in columns]
    in_place = width > 1 and not entities and None not in positions
    if in_place:
        # Columns only, the keys among them: the rows themselves are yielded (named
        # tuples, read by attribute) and their key values read where they are.
        keyed = query.order_by(*order_by).limit(size)
    else:
        # The key values are selected alongside, under labels of their own, so the
        # pager reads them the same way whatever the query selects.
        keyed = query.add_columns(
            *(column.label(f"keyset_{i}") for i, (column, _) in enumerate(columns))
        ).order_by(*order_by).limit(size)
    last: tuple | None = None
    while True:
        page_query = keyed if last is None else keyed.where(_after(columns, last))
        rows = session.execute(page_query).all()
        if not rows:
            return
        if in_place:
            last = tuple(rows[-1][i] for i in positions)
            yield rows
            continue
        last = tuple(rows[-1][width:])
        yield [row[0] for row in rows] if width == 1 else [tuple(row[:width]) for row in rows]
        for row in rows:
            for i in entities:
                if row[i] in session:
                    session.expunge(row[i])


def rows(
    session: Session, query: Select, *order_by: ColumnElement, page_size: int | None = None
) -> Iterator[Any]:
    """What `pages` yields, one row (or value) at a time."""
    return chain.from_iterable(pages(session, query, *order_by, page_size=page_size))
