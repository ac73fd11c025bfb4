"""app.similar keeps the library's embedding matrix under GENREQ_HOME and reads the
database again whenever the embedded tracks change; album exclusion ignores case."""
from __future__ import annotations

import numpy as np
from helpers import add_track

from genreq import app
from genreq.db.session import session_scope
from genreq.similarity import embedding_bytes

MODEL = "crnn@test"


def add(session, path: str, vector, album=None, artist=None):
    return add_track(session, path, "done", "rock", embedding=embedding_bytes(vector),
                     embedding_model=MODEL, album=album, artist=artist)


def test_the_cache_follows_the_library(sqlite_url, genreq_home):
    rng = np.random.default_rng(0)
    base = rng.standard_normal(16)
    with session_scope() as s:
        add(s, "/m/q.flac", base, album="Album", artist="A")
        add(s, "/m/mate.flac", base + 0.01, album="ALBUM ", artist="a")  # same album
        for i in range(5):
            add(s, f"/m/other{i}.flac", rng.standard_normal(16))
    first = [r["path"] for r in app.similar("/m/q.flac", limit=3).rows]
    assert "/m/q.flac" not in first and "/m/mate.flac" not in first
    assert list((genreq_home / "cache").glob("embeddings-*.matrix.npy"))
    assert app.similar("/m/q.flac", limit=1, same_album=True).rows[0]["path"] == "/m/mate.flac"

    with session_scope() as s:
        add(s, "/m/new twin.flac", base + 0.02)  # classified since: the cache is stale
    rows = app.similar("/m/q.flac", limit=3).rows
    assert rows[0]["path"] == "/m/new twin.flac"
    assert rows[0]["similarity"] > 0.99
    assert [r["path"] for r in rows[1:]] == first[:2]
