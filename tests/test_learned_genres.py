"""The learned head applied at read time, on rows the test writes: a head saved under
GENREQ_HOME labels every done track whose embedding its model made (the file's genre
tag or none), other tracks keep the model's genres, filters and counts follow the
labels, and without the head (or with use_learned=False) everything is the model's.
The same through real workers: tests/test_learn_command.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import add_track

from genreq.app import learning, library
from genreq.app.taxonomy import Labeller
from genreq.cli.main import cli
from genreq.db.session import session_scope
from genreq.learn import GenreHead
from genreq.similarity import embedding_bytes

MODEL = "tagger@v1"
DIM = 4


def head() -> GenreHead:
    """dimension 0 says ambient, dimension 1 says noise."""
    weight = np.zeros((2, DIM), dtype=np.float32)
    weight[0, 0] = weight[1, 1] = 5.0
    return GenreHead(["ambient", "noise"], MODEL, np.zeros(DIM, np.float32),
                     np.ones(DIM, np.float32), weight, np.zeros(2, np.float32),
                     {"source": "tags"})


MODEL_VOCABULARY = ("classical", "jazz", "metal", "rock")


def probs(genre: str, confidence: float) -> dict[str, float]:
    """A full vector of the model's genres, as a real model stores it."""
    rest = (1 - confidence) / (len(MODEL_VOCABULARY) - 1)
    return {g: confidence if g == genre else rest for g in MODEL_VOCABULARY}


def vector(*values: float) -> bytes:
    return embedding_bytes(np.asarray(values, dtype=np.float32))


@pytest.fixture
def seeded(sqlite_url):
    with session_scope(sqlite_url) as s:
        add_track(s, "/m/pad.flac", "done", "classical", 0.7, probs=probs("classical", 0.7),
                  embedding=vector(1, 0, 0, 0), embedding_model=MODEL,
                  file_genres=["Ambient", "Drone"], batch_id="later")
        # untagged: learned genres all the same
        add_track(s, "/m/hiss.flac", "done", "metal", 0.6, probs=probs("metal", 0.6),
                  embedding=vector(0, 0.8, 0, 0), embedding_model=MODEL)
        # another model's embedding
        add_track(s, "/m/old.flac", "done", "jazz", 0.9, probs=probs("jazz", 0.9),
                  embedding=vector(1, 0, 0), embedding_model="other@v0", batch_id="later")
        # no embedding at all
        add_track(s, "/m/none.flac", "done", "rock", 0.8, probs=probs("rock", 0.8))
        add_track(s, "/m/later.flac", "queued")
    return sqlite_url


def invoke(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result


def export(*args: str) -> dict[str, dict]:
    return {r["path"]: r for r in json.loads(invoke("export", "--format", "json",
                                                    *args).stdout)}


def genres(rows: dict[str, dict]) -> dict[str, tuple[str, str]]:
    return {path: (r["genre"], r["genre_source"]) for path, r in rows.items()}


MODEL_GENRES = {"/m/pad.flac": ("classical", "model"), "/m/hiss.flac": ("metal", "model"),
                "/m/old.flac": ("jazz", "model"), "/m/none.flac": ("rock", "model")}
LEARNED_GENRES = {**MODEL_GENRES, "/m/pad.flac": ("ambient", "learned"),
                  "/m/hiss.flac": ("noise", "learned")}


def test_without_a_head_the_model_genres_and_the_file_genre(seeded):
    rows = export()
    assert genres(rows) == MODEL_GENRES
    assert rows["/m/pad.flac"]["file_genre"] == ["Ambient", "Drone"]
    assert rows["/m/hiss.flac"]["file_genre"] == []
    assert "learned" not in json.loads(invoke("status", "--json").stdout)


def test_export_status_show_use_the_learned_head(seeded, genreq_home):
    head().save(learning.head_path())
    rows = export()
    assert genres(rows) == LEARNED_GENRES
    pad = rows["/m/pad.flac"]
    assert pad["confidence"] == pytest.approx(1 / (1 + np.exp(-5)), abs=1e-4)
    assert [t["genre"] for t in pad["top"]] == ["ambient", "noise"]
    assert pad["file_genre"] == ["Ambient", "Drone"]  # what the file says, beside it

    assert list(export("--genre", "noise")) == ["/m/hiss.flac"]
    assert list(export("--genre", "jazz")) == ["/m/old.flac"]  # a model genre, still held
    assert "unknown genre metal" not in invoke("export", "-g", "metal").output
    assert list(export("--genre", "metal")) == []  # the metal track is learned noise now
    assert "known genres: ambient, classical, jazz, metal, noise, rock" in invoke(
        "export", "-g", "polka", code=2).output
    ordered = json.loads(invoke("export", "--format", "json", "--sort", "confidence").stdout)
    assert [r["path"] for r in ordered] == ["/m/pad.flac", "/m/hiss.flac", "/m/old.flac",
                                            "/m/none.flac"]
    csv = invoke("export", "--format", "csv", "-g", "ambient").stdout.splitlines()
    assert csv[1].endswith(",learned,Ambient; Drone,,,")

    status = json.loads(invoke("status", "--json").stdout)
    assert status["genres"] == {"ambient": 1, "jazz": 1, "noise": 1, "rock": 1}
    assert status["learned"] == {
        "head": str(genreq_home / "learned-genres.npz"), "source": "tags",
        "embedding_model": MODEL, "genres": ["ambient", "noise"], "tracks": 2,
        "model_genre_tracks": 2}
    text = invoke("status").stdout
    assert ("genres learned from tags (genreq learn): 2 tracks; 2 keep the model's genres "
            f"(no {MODEL} embedding)") in text
    detail = json.loads(invoke("show", "/m/hiss.flac", "--json").stdout)
    assert detail["genre"] == "metal"  # what the model said, as stored
    assert (detail["label"]["genre"], detail["label"]["source"]) == ("noise", "learned")
    assert "label        noise (" in invoke("show", "/m/hiss.flac").stdout


def test_a_taxonomy_and_a_threshold_apply_to_learned_genres(seeded, tmp_path):
    head().save(learning.head_path())
    taxonomy = tmp_path / "genres.toml"
    taxonomy.write_text('[genres]\nnoise = "Harsh Noise"\njazz = "Jazz"\n')
    rows = export("--taxonomy", str(taxonomy), "--unknown-below", "0.95")
    assert {p: r["genre"] for p, r in rows.items()} == {
        "/m/pad.flac": "ambient", "/m/hiss.flac": "Harsh Noise", "/m/old.flac": "unknown",
        "/m/none.flac": "unknown"}
    status = json.loads(invoke("status", "--json", "--taxonomy", str(taxonomy)).stdout)
    assert status["genres"] == {"Harsh Noise": 1, "Jazz": 1, "ambient": 1, "rock": 1}
    status = json.loads(invoke("status", "--json", "--unknown-below", "0.95").stdout)
    assert status["genres"] == {"unknown": 2, "ambient": 1, "noise": 1}


def test_the_python_api_and_use_learned_false(seeded):
    head().save(learning.head_path())
    from genreq import app

    assert {t.path: t.genre for t in app.tracks()}["/m/hiss.flac"] == "noise"
    model_only = Labeller(use_learned=False)
    assert {t.path: t.genre for t in app.tracks(labeller=model_only)}["/m/hiss.flac"] == "metal"
    assert app.status(model_only).genres == {"classical": 1, "jazz": 1, "metal": 1, "rock": 1}
    assert library.with_learned_head(None).head is not None


def test_reset_returns_to_the_model_genres(seeded):
    head().save(learning.head_path())
    assert genres(export()) == LEARNED_GENRES
    assert invoke("learn", "--reset").output.strip() == "removed the learned head"
    assert genres(export()) == MODEL_GENRES
    assert json.loads(invoke("status", "--json").stdout)["genres"] == {
        "classical": 1, "jazz": 1, "metal": 1, "rock": 1}


def test_a_head_replaced_on_disk_is_read_again(seeded):
    head().save(learning.head_path())
    assert genres(export())["/m/hiss.flac"] == ("noise", "learned")
    swapped = head()
    swapped.genres = ["hum", "static"]
    swapped.save(learning.head_path())
    assert genres(export())["/m/hiss.flac"] == ("static", "learned")


def test_a_damaged_head_is_a_clear_error(seeded):
    learning.head_path().parent.mkdir(parents=True, exist_ok=True)
    learning.head_path().write_bytes(b"not a head")
    result = invoke("export", code=1)
    assert "learned-genres.npz: not a learned genre head" in result.output
    assert "genreq learn --reset" in result.output


def test_label_rows_agrees_with_label_one_at_a_time():
    labeller = Labeller(head=head())
    rows = [({"jazz": 1.0}, vector(1, 0, 0, 0), MODEL), ({"rock": 1.0}, None, None),
            ({"pop": 1.0}, vector(0, 1, 0, 0), "other@v0"), ({}, vector(0, 2, 0, 0), MODEL)]
    assert labeller.label_rows(rows) == [labeller.label(*row) for row in rows]
    assert [label.genre for label in labeller.label_rows(rows)] == [
        "ambient", "rock", "pop", "noise"]


def test_the_report_counts_learned_genres_and_says_so(seeded, tmp_path):
    head().save(learning.head_path())
    index = invoke("report", "-o", str(tmp_path / "report")).stdout.strip()
    page = Path(index).read_text(encoding="utf-8")
    assert "<td>noise</td><td class=n>1</td>" in page and "<td>metal</td>" not in page
    assert ("Genres learned from the library's tags (genreq learn) for 2 tracks; 2 keep "
            "the model&#x27;s genres.") in page


def test_known_genres_are_the_heads_alone_when_it_labels_every_track(sqlite_url):
    with session_scope(sqlite_url) as s:
        add_track(s, "/m/pad.flac", "done", "classical", 0.7, probs=probs("classical", 0.7),
                  embedding=vector(1, 0, 0, 0), embedding_model=MODEL)
    head().save(learning.head_path())
    from genreq import app

    assert app.genres() == ["ambient", "noise"]
    assert app.unknown_genres(["classical", "noise"]) == ["classical"]


def test_learned_genres_are_named_as_most_files_spell_them():
    from genreq.learn import display_names, spelled_genres, split_genres

    assert spelled_genres(["Cool  Jazz; cool jazz", "(Bebop)"]) == [
        ("cool jazz", "Cool Jazz"), ("bebop", "Bebop")]
    assert spelled_genres("hiphop", {"HipHop": "Hip-Hop"}) == [("Hip-Hop", "Hip-Hop")]
    files = [["Cool Jazz"], ["cool jazz"], ["Cool Jazz", "Bebop"], ["bebop"]]
    names = display_names(pair for f in files for pair in spelled_genres(f))
    assert names == {"cool jazz": "Cool Jazz", "bebop": "Bebop"}  # a tie: the first seen
    assert split_genres(files[2]) == ["cool jazz", "bebop"]


def test_a_batch_is_counted_by_learned_genres(seeded):
    from genreq import app

    assert library.learned_batch_genres("later") is None  # no head: run keeps its counts
    head().save(learning.head_path())
    assert library.learned_batch_genres("later") == {"ambient": 1, "jazz": 1}
    assert app.status(batch_id="later").genres == {"ambient": 1, "jazz": 1}
    taxonomy_only = Labeller(use_learned=False, unknown_below=0.8)
    assert app.status(taxonomy_only, batch_id="later").genres == {"jazz": 1, "unknown": 1}


def test_genres_of_rows_agrees_with_the_labels():
    rows = [({"jazz": 1.0}, vector(1, 0, 0, 0), MODEL), ({"rock": 1.0}, None, None),
            ({"pop": 0.6, "rock": 0.4}, vector(0, 1, 0, 0), "other@v0"),
            ({}, vector(0, 0.1, 0, 0), MODEL)]
    for labeller in (Labeller(head=head()), Labeller(head=head(), unknown_below=0.9),
                     Labeller(unknown_below=0.5)):
        assert labeller.genres_of_rows(rows) == [
            label.genre for label in labeller.label_rows(rows)]
    assert Labeller(head=head(), unknown_below=0.9).genres_of_rows(rows) == [
        "ambient", "rock", "unknown", "unknown"]


def test_status_keeps_the_heads_counts_until_the_head_or_the_embeddings_change(
        seeded, genreq_home):
    from genreq import app

    head().save(learning.head_path())
    assert app.status().genres == {"ambient": 1, "jazz": 1, "noise": 1, "rock": 1}
    kept = genreq_home / "cache" / learning.COUNTS_FILE
    assert json.loads(kept.read_text())["counts"] == {"ambient": 1, "noise": 1}
    with session_scope() as s:  # a track classified since
        add_track(s, "/m/new.flac", "done", "rock", 0.6, probs=probs("rock", 0.6),
                  embedding=vector(0, 3, 0, 0), embedding_model=MODEL)
    assert app.status().genres == {"noise": 2, "ambient": 1, "jazz": 1, "rock": 1}
    swapped = head()
    swapped.genres = ["hum", "static"]
    swapped.save(learning.head_path())
    assert app.status().genres == {"static": 2, "hum": 1, "jazz": 1, "rock": 1}
    kept.write_text("not json")  # a damaged cache is counted again
    assert app.status().genres == {"static": 2, "hum": 1, "jazz": 1, "rock": 1}
    taxonomy = genreq_home / "genres.toml"
    taxonomy.write_text('[genres]\nstatic = "Noise"\nhum = "Noise"\n')
    assert app.status(app.labeller(str(taxonomy))).genres == {"Noise": 3, "jazz": 1, "rock": 1}
