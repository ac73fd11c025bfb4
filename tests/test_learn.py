"""genreq.learn: genre strings normalised, labels chosen with --min-tracks, folds that
keep every album on one side, and a head that learns what the embeddings say."""
from __future__ import annotations

import numpy as np
import pytest

from genreq.learn import (
    GenreHead,
    LearnError,
    choose_labels,
    group_folds,
    group_key,
    learn,
    normalise_genre,
    split_genres,
)


def test_genre_strings_are_normalised_and_split():
    assert normalise_genre("  Hip-Hop ") == normalise_genre("hip hop") == "hip hop"
    assert split_genres("Rock; Pop/Jazz,  Drum & Bass") == ["rock", "pop", "jazz", "drum & bass"]
    assert split_genres(["Rock", "rock", "ROCK\x00Metal"]) == ["rock", "metal"]
    assert split_genres(["(17)", "", " ; "]) == []  # numeric ID3v1 codes, empties
    assert split_genres(None) == []
    assert split_genres("HipHop;Electronica", {"hiphop": "Hip-Hop", "Electronica": "electronic"}) \
        == ["Hip-Hop", "electronic"]


def test_groups_are_album_then_artist_then_folder():
    assert group_key("Greatest Hits", "A", "/m") != group_key("Greatest Hits", "B", "/m")
    assert group_key(None, "A", "/m/x") == group_key("", "a", "/m/y") == "artist:a"
    assert group_key(None, None, "/m/x") == "folder:/m/x"


def test_folds_never_split_a_group():
    rng = np.random.default_rng(0)
    groups = [f"g{g}" for g in rng.integers(0, 40, 500)]
    folds = group_folds(groups, 5)
    for g in set(groups):
        assert len({folds[i] for i, x in enumerate(groups) if x == g}) == 1
    sizes = np.bincount(folds)
    largest_group = max(np.unique(groups, return_counts=True)[1])
    assert len(sizes) == 5 and sizes.max() - sizes.min() <= largest_group
    assert set(group_folds(["a", "a", "b"], 5)) == {0, 1}  # fewer groups than folds


def test_min_tracks_leaves_rare_genres_out_and_says_so():
    lists = [["rock"]] * 6 + [["jazz"]] * 5 + [["polka"]] * 2 + [["polka", "rock"]] + [[]] * 3
    labels = choose_labels(lists, min_tracks=5)
    assert labels.genres == ["jazz", "rock"]
    assert labels.left_out == {"polka": 3}
    # the polka-first track with rock as its second genre is a rock example
    assert list(labels.rows) == [*range(11), 13]
    assert list(labels.y) == [1] * 6 + [0] * 5 + [1]


def test_fewer_than_two_usable_genres_is_a_clear_error():
    with pytest.raises(LearnError, match=r"at least two genres with 5 or more.*rock \(6\)"):
        choose_labels([["rock"]] * 6 + [["jazz"]] * 4, min_tracks=5)
    with pytest.raises(LearnError, match="found 0"):
        choose_labels([[]] * 10, min_tracks=5)


def _library(rng, n_albums=60, per_album=8, dim=16, tagged_share=0.5):
    """Three genres, each album near its genre's centre; half the albums tagged."""
    centres = 3 * rng.standard_normal((3, dim))
    genre_of_album = np.arange(n_albums) % 3
    album = np.repeat(np.arange(n_albums), per_album)
    album_offset = rng.standard_normal((n_albums, dim))
    noise = rng.standard_normal((album.size, dim))
    x = centres[genre_of_album[album]] + album_offset[album] + noise
    names = np.array(["ambient", "chiptune", "metal"])
    tagged = rng.random(n_albums) < tagged_share
    lists = [[str(names[genre_of_album[a]])] if tagged[a] else [] for a in album]
    groups = [group_key(f"album {a}", "someone", "/m") for a in album]
    return x.astype(np.float32), lists, groups, names[genre_of_album[album]]


def test_learn_generalises_to_untagged_albums_and_reports_per_genre_accuracy(tmp_path):
    x, lists, groups, truth = _library(np.random.default_rng(0))
    learned = learn(x, lists, groups, "crnn@abc", min_tracks=5)
    assert learned.head.genres == ["ambient", "chiptune", "metal"]
    cv = learned.cv
    assert cv.n == sum(bool(g) for g in lists)
    assert set(cv.per_genre) == {"ambient", "chiptune", "metal"}
    assert sum(g["n"] for g in cv.per_genre.values()) == cv.n
    assert cv.accuracy > 0.9
    untagged = np.array([not g for g in lists])
    pred = np.array(learned.head.genres)[learned.head.probs(x).argmax(1)]
    assert (pred[untagged] == truth[untagged]).mean() > 0.9

    path = tmp_path / "head.npz"
    learned.head.save(path)
    loaded = GenreHead.load(path)
    assert (loaded.genres, loaded.embedding_model) == (learned.head.genres, "crnn@abc")
    assert loaded.info["cv"]["accuracy"] == pytest.approx(cv.accuracy)
    np.testing.assert_allclose(loaded.probs(x), learned.head.probs(x), atol=1e-6)


def test_grouped_cv_is_not_fooled_by_albums():
    """Labels that only albums explain (genre drawn per album at random, embeddings
    that say nothing but the album): a split with albums on both sides scores near
    1.0; the grouped one must stay near chance (0.5)."""
    rng = np.random.default_rng(1)
    n_albums, per_album, dim = 60, 10, 64
    album = np.repeat(np.arange(n_albums), per_album)
    x = (3 * rng.standard_normal((n_albums, dim)))[album] + 0.3 * rng.standard_normal(
        (album.size, dim))
    genre = rng.integers(0, 2, n_albums)
    lists = [[("a", "b")[genre[a]]] for a in album]
    x = x.astype(np.float32)
    leaky = learn(x, lists, [f"track:{i}" for i in range(album.size)], "m").cv
    grouped = learn(x, lists, [f"album:{a}" for a in album], "m").cv
    assert leaky.accuracy > 0.9
    assert grouped.accuracy < 0.7
    assert grouped.n_groups == n_albums


def test_a_damaged_head_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "head.npz"
    bad.write_bytes(b"not a head")
    with pytest.raises(LearnError, match="head.npz: not a learned genre head"):
        GenreHead.load(bad)
