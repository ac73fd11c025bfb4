"""Training, evaluation and classification on synthesized audio: two "genres" (steady
tones vs noise bursts) that a tiny run must learn to separate."""

import json
import sys

import numpy as np
import pytest
from audio_synth import write_labelled
from click.testing import CliRunner
from helpers import REPO

from genreq import dataset, metrics
from genreq.cli.main import cli
from genreq.experiment import evaluate_directory, train_directory
from genreq.predict import Classifier

sys.path.insert(0, str(REPO / "bench"))
import crossval  # noqa: E402  (bench/ is not a package)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    train_dir = write_labelled(root / "train", per_genre=8, seed=1)
    test_dir = write_labelled(root / "test", per_genre=6, seed=2)
    ckpt = root / "tiny.pt"
    report = train_directory(train_dir, "crnn", ckpt, epochs=12, seed=0, val_fraction=0.25)
    return {"ckpt": ckpt, "test": test_dir, "report": report}


@pytest.mark.slow
def test_training_writes_a_checkpoint_and_a_curve(trained):
    assert trained["ckpt"].exists()
    assert trained["ckpt"].with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = trained["report"]
    assert report["n_train"] + report["n_val"] == 16 and report["n_val"] >= 2
    assert len(report["history"]) == 12


@pytest.mark.slow
def test_a_tiny_run_learns_tones_from_noise(trained):
    report = evaluate_directory(trained["test"], trained["ckpt"])
    assert report["n"] == 12
    assert report["accuracy"] >= 0.9, report["confusion"]


@pytest.mark.slow
def test_evaluate_confusion_sums_to_n(trained, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            str(trained["test"]),
            "--model",
            str(trained["ckpt"]),
            "--json",
            "--confusion-png",
            str(tmp_path / "cm.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert np.sum(report["confusion"]) == report["n"] == 12
    assert set(report["per_genre"]) == set(report["genres"]) == {"noise", "tone"}
    assert (tmp_path / "cm.png").stat().st_size > 1000


@pytest.mark.slow
def test_classify_prints_genre_and_top_k(trained):
    clip = min((trained["test"] / "tone").iterdir())
    result = CliRunner().invoke(
        cli, ["classify", str(clip), "--model", str(trained["ckpt"]), "--json", "--top", "2"]
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["genre"] == "tone"
    assert row["top"][0]["genre"] == "tone" and len(row["top"]) == 2


@pytest.mark.slow
def test_classify_names_a_corrupt_file_and_exits_non_zero(trained, tmp_path):
    bad = tmp_path / "cover.mp3"
    bad.write_bytes(b"\xff\xd8\xff\xe0 JFIF image, not audio" * 50)
    good = min((trained["test"] / "noise").iterdir())
    result = CliRunner().invoke(
        cli, ["classify", str(bad), str(good), "--model", str(trained["ckpt"])]
    )
    assert result.exit_code == 1
    assert f"{bad}: not decodable audio" in result.stderr
    assert "noise" in result.stdout  # the good file is still classified


@pytest.mark.slow
def test_classifier_reads_a_long_track_from_excerpts(trained, tmp_path):
    import soundfile as sf
    from audio_synth import RATE, tone

    sf.write(tmp_path / "long.wav", np.tile(tone(10, 5), 18), RATE)  # 3 minutes
    pred = Classifier.load(trained["ckpt"]).classify_file(tmp_path / "long.wav")
    assert pred.genre == "tone"
    assert pred.duration_s == pytest.approx(180, abs=0.1)


def _write_labels(path, rows, column="artist_split"):
    lines = [f"path,genre,{column}"] + [f"{rel},{rel.split('/')[0]},{group}" for rel, group in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_group_split_keeps_groups_together(tmp_path):
    tracks = [
        dataset.LabelledTrack(tmp_path / g / f"{g}.{i:05d}.wav", g, f"artist{i // 10}")
        for g in ("a", "b")
        for i in range(40)
    ]
    train_idx, val_idx = dataset.group_split(tracks, 0.25, seed=3)

    def groups(idx):
        return {(tracks[i].genre, tracks[i].group) for i in idx}

    assert not groups(train_idx) & groups(val_idx)
    assert sorted(train_idx + val_idx) == list(range(80))
    assert 10 <= len(val_idx) <= 30


def test_the_paper_split_is_75_10_15_of_every_clip_by_seed():
    splits = {seed: crossval.paper_split(257, seed) for seed in (0, 1)}
    for fit, val, test in splits.values():
        assert (len(fit), len(val), len(test)) == (192, 26, 39)
        assert sorted(fit + val + test) == list(range(257))  # each clip once, disjoint
    assert crossval.paper_split(257, 0) == splits[0]
    assert splits[0][2] != splits[1][2]
    fit, val, test = crossval.paper_split(20, 3)
    assert (len(fit), len(val), len(test)) == (15, 2, 3)


def test_without_groups_every_file_is_its_own_group(tmp_path):
    tracks = [dataset.LabelledTrack(tmp_path / "a" / f"a.{i:05d}.wav", "a") for i in range(12)]
    assert len({t.group for t in tracks}) == 12


def test_groups_come_from_a_labels_column_and_excluded_rows_go(tmp_path):
    data = write_labelled(tmp_path / "data", per_genre=3, seed=1)
    tracks, _ = dataset.scan(data)
    rel = [t.path.relative_to(data).as_posix() for t in tracks]
    labels = _write_labels(
        data / "labels.csv",
        zip(rel, ["train", "valid", "excluded", "test", "test", "valid"], strict=True),
    )
    grouped, dropped = dataset.apply_groups(tracks, dataset.read_groups(f"{labels}:artist_split"))
    assert [t.group for t in grouped] == ["train", "valid", "test", "test", "valid"]
    assert dropped == {"excluded": 1}
    folds = dataset.group_folds(grouped)
    assert [g for g, _ in folds] == ["test", "train", "valid"]
    assert sorted(i for _, f in folds for i in f) == list(range(5))
    kept, dropped = dataset.apply_groups(
        tracks, dataset.read_groups(f"{labels}:artist_split"), {"test"}
    )
    assert [t.group for t in kept] == ["test", "test"] and dropped == {
        "excluded": 1,
        "other groups": 3,
    }


def test_a_file_the_labels_do_not_list_is_named(tmp_path):
    data = write_labelled(tmp_path / "data", per_genre=2, seed=1)
    tracks, _ = dataset.scan(data)
    labels = _write_labels(
        tmp_path / "labels.csv", [(tracks[0].path.relative_to(data).as_posix(), "train")]
    )
    with pytest.raises(dataset.GroupsError, match="3 of 4 files have no row"):
        dataset.apply_groups(tracks, dataset.read_groups(f"{labels}:artist_split"))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("missing.csv:artist_split", "missing.csv: no such labels file"),
        ("{labels}:artist", "no column 'artist'"),
        ("{labels}", "expected LABELS_FILE:COLUMN"),
    ],
)
def test_train_and_evaluate_refuse_a_bad_groups_file_as_a_usage_error(
    tmp_path, monkeypatch, spec, message
):
    data = write_labelled(tmp_path / "data", per_genre=2, seed=1)
    labels = _write_labels(tmp_path / "labels.csv", [("tone/x.wav", "train")])
    monkeypatch.chdir(tmp_path)
    spec = spec.format(labels=labels.name)
    for command in (
        ["train", str(data), "--arch", "crnn", "--epochs", "1"],
        ["evaluate", str(data)],
    ):
        result = CliRunner().invoke(cli, [*command, "--groups", spec])
        assert result.exit_code == 2, result.output
        assert message in result.output and "--groups" in result.output


@pytest.mark.slow
def test_evaluate_reports_each_group_and_can_keep_one(trained, tmp_path):
    tracks, _ = dataset.scan(trained["test"])
    groups = ["valid", "test", "excluded"] * 4
    labels = _write_labels(
        tmp_path / "labels.csv",
        [
            (t.path.relative_to(trained["test"]).as_posix(), g)
            for t, g in zip(tracks, groups, strict=True)
        ],
    )
    spec = f"{labels}:artist_split"
    full = evaluate_directory(trained["test"], trained["ckpt"], groups=spec)
    assert full["n"] == 8 and full["dropped"] == {"excluded": 4}
    assert {g: s["n"] for g, s in full["per_group"].items()} == {"test": 4, "valid": 4}
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            str(trained["test"]),
            "--model",
            str(trained["ckpt"]),
            "--groups",
            spec,
            "--group",
            "test",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "n=4," in result.output
        and "group test:" in result.output
        and "group valid" not in result.output
    )
    assert "ECE" in result.output


def test_train_holds_out_whole_groups_and_drops_excluded(tmp_path):
    data = write_labelled(tmp_path / "data", per_genre=6, seed=3)
    tracks, _ = dataset.scan(data)
    groups = ["a", "a", "b", "b", "c", "excluded"] * 2
    labels = _write_labels(
        tmp_path / "labels.csv",
        [(t.path.relative_to(data).as_posix(), g) for t, g in zip(tracks, groups, strict=True)],
    )
    report = train_directory(
        data, "crnn", tmp_path / "g.pt", epochs=1, val_fraction=0.3, groups=f"{labels}:artist_split"
    )
    assert report["dropped"] == {"excluded": 2}
    assert report["n_train"] + report["n_val"] == 10
    assert report["n_val"] in (2, 4)  # whole groups of two clips per genre
    assert report["split"].startswith("hold-out of whole groups")


def test_tune_head_needs_groups_and_a_pretrained_head_arch(tmp_path):
    data = write_labelled(tmp_path / "data", per_genre=2, seed=1)
    for args, message in (
        (["--arch", "vgg-msd"], "--tune-head needs --groups"),
        (["--arch", "crnn", "--groups", "labels.csv:artist_split"], "pretrained head archs"),
        (["--arch", "vgg-msd-gru", "--groups", "labels.csv:artist_split"], "not vgg-msd-gru"),
    ):
        result = CliRunner().invoke(cli, ["train", str(data), "--tune-head", *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "vgg-msd.pt").exists()


def _imbalanced_clips(counts=(36, 9, 6), dim=3, seed=1):
    """Chunk embeddings of overlapping genres (the first coordinate 1.2 x the genre plus
    noise) with a skewed prior, each genre's clips dealt round-robin into groups a, b, c."""
    rng = np.random.default_rng(seed)
    chunk_x, y, groups = [], [], []
    for genre, count in enumerate(counts):
        for i in range(count):
            x = rng.normal(size=(int(rng.integers(3, 7)), dim)) * 0.7 + rng.normal(size=dim)
            x[:, 0] += 1.2 * genre
            chunk_x.append(x)
            y.append(genre)
            groups.append("abc"[i % 3])
    return chunk_x, np.array(y), np.array(groups)


def test_tune_head_picks_grid_settings_and_logit_adjustment_for_a_skewed_prior():
    """An unweighted head on a skewed prior leans to the big genre; the tuning (groups as
    inner folds) picks tau > 0, which raises the inner balanced accuracy it chose by, and
    C, tau and the temperature all come from train's grids."""
    from genreq import train

    chunk_x, y, groups = _imbalanced_clips()
    tuned = train.tune_head(chunk_x, y, groups, 3, balanced=False)
    assert tuned.param in train.C_GRID and tuned.setting in train.TAU_GRID
    assert tuned.temperature in train.T_GRID
    assert len(tuned.record) == len(train.C_GRID) * len(train.TAU_GRID)
    assert tuned.setting > 0
    plain = tuned.record[f"{tuned.param:g}/0"]
    chosen = tuned.record[f"{tuned.param:g}/{tuned.setting:g}"]
    assert chosen["balanced"] > plain["balanced"]
    assert chosen["balanced"] == max(r["balanced"] for r in tuned.record.values())
    # The head fitted at the chosen tau is the plain head with its bias shifted.
    heads = train.fit_track_head(chunk_x, y, 3, tuned.param, False, (0.0, tuned.setting))
    shift = np.log(np.bincount(y) / len(y))
    np.testing.assert_array_equal(heads[tuned.setting].weight, heads[0.0].weight)
    np.testing.assert_allclose(heads[tuned.setting].bias, heads[0.0].bias - tuned.setting * shift)


def test_tune_head_scores_inner_predictions_on_score_x():
    """With score_x the heads are still fitted on chunk_x but judged on score_x's chunks:
    the same inputs give the same choice and figures, and one chunk of pure noise per
    track leaves every inner figure near chance, well below the fitted inputs' own."""
    from genreq import train

    chunk_x, y, groups = _imbalanced_clips()
    tuned = train.tune_head(chunk_x, y, groups, 3)
    same = train.tune_head(chunk_x, y, groups, 3, score_x=chunk_x)
    assert (same.param, same.setting, same.temperature) == (
        tuned.param, tuned.setting, tuned.temperature)  # fmt: skip
    assert same.record == tuned.record
    noise = [np.random.default_rng(i).normal(size=(1, x.shape[1])) for i, x in enumerate(chunk_x)]
    judged = train.tune_head(chunk_x, y, groups, 3, score_x=noise, max_chunks=1)
    best = max(r["balanced"] for r in judged.record.values())
    assert max(r["balanced"] for r in tuned.record.values()) > 0.6  # chance: 1/3
    assert best < 0.55


@pytest.mark.slow
def test_train_tune_head_records_the_chosen_head_in_the_checkpoint(tmp_path):
    """genreq train --tune-head end to end on the real vgg tagger: three groups as inner
    folds; the recipe says C, tau and the temperature it chose and the command."""
    import torch

    from genreq import train

    data = write_labelled(tmp_path / "data", per_genre=6, seconds=3.5, seed=5)
    tracks, _ = dataset.scan(data)
    labels = _write_labels(
        tmp_path / "labels.csv",
        [(t.path.relative_to(data).as_posix(), "abc"[i % 3]) for i, t in enumerate(tracks)],
    )
    ckpt = tmp_path / "tuned.pt"
    groups = f"{labels}:artist_split"
    result = CliRunner().invoke(
        cli,
        ["train", str(data), "--arch", "vgg-msd", "--val-fraction", "0", "--groups", groups,
         "--tune-head", "--out", str(ckpt)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    recipe, run = saved["recipe"], saved["metrics"]
    assert recipe["c"] in train.C_GRID and recipe["logit_adjustment_tau"] in train.TAU_GRID
    assert recipe["temperature"] in train.T_GRID and recipe["balanced"]
    assert recipe["command"] == (
        f"genreq train {data} --arch vgg-msd --val-fraction 0 --groups {groups} --tune-head"
    )
    assert run["tuning"]["chosen"] == {
        "c": recipe["c"],
        "logit_adjustment_tau": recipe["logit_adjustment_tau"],
        "temperature": recipe["temperature"],
    }
    assert run["n_train"] == 12 and run["train_accuracy"] >= 0.9
    assert Classifier.load(ckpt).classify_file(tracks[0].path).genre == tracks[0].genre


def test_evaluate_group_needs_groups():
    result = CliRunner().invoke(cli, ["evaluate", ".", "--group", "test"])
    assert result.exit_code == 2 and "--group needs --groups" in result.output


def test_wilson_interval_matches_known_values():
    low, high = metrics.wilson_interval(43, 100)
    assert low == pytest.approx(0.3373, abs=1e-3) and high == pytest.approx(0.5279, abs=1e-3)
    assert metrics.wilson_interval(0, 0) == (0.0, 1.0)


def test_expected_calibration_error_of_known_bins():
    # 4 tracks at confidence 0.9, 3 right; 2 at 0.55, 1 right: |0.75-0.9|*4/6 + |0.5-0.55|*2/6
    probs = np.array([[0.9, 0.1]] * 4 + [[0.45, 0.55]] * 2)
    true = np.array([0, 0, 0, 1, 1, 0])
    assert metrics.expected_calibration_error(probs, true) == pytest.approx(
        0.15 * 4 / 6 + 0.05 * 2 / 6
    )
    bins = metrics.reliability(probs, true)
    assert [b["n"] for b in bins] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 4]
    assert bins[9]["accuracy"] == 0.75 and bins[5]["confidence"] == 0.55
    assert metrics.expected_calibration_error(np.eye(3), np.arange(3)) == 0.0  # certain and right


def test_summary_scores_each_genre():
    report = metrics.summarise(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["x", "y"])
    assert report["accuracy"] == 0.75 and report["n"] == 4
    assert report["per_genre"]["x"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert report["confusion"] == [[1, 1], [0, 2]]


@pytest.mark.slow
def test_the_crnn_can_learn_from_mfcc_instead_of_log_mel(tmp_path):
    data = write_labelled(tmp_path / "train", per_genre=6, seed=3)
    ckpt = tmp_path / "mfcc.pt"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(data),
            "--arch",
            "crnn",
            "--features",
            "mfcc",
            "--n-mfcc",
            "20",
            "--epochs",
            "8",
            "--val-fraction",
            "0",
            "--out",
            str(ckpt),
        ],
    )
    assert result.exit_code == 0, result.output
    clf = Classifier.load(ckpt)
    assert clf.features.kind == "mfcc" and clf.features.n_mfcc == 20
    report = evaluate_directory(write_labelled(tmp_path / "test", per_genre=4, seed=4), ckpt)
    assert report["accuracy"] >= 0.75, report["confusion"]


def test_mfcc_input_is_refused_for_waveform_models(tmp_path):
    data = write_labelled(tmp_path / "train", per_genre=2, seed=5)
    result = CliRunner().invoke(cli, ["train", str(data), "--arch", "raw", "--features", "mfcc"])
    assert result.exit_code != 0
    assert "only the mel models can take mfcc" in result.output


def test_scan_descends_into_a_single_collection_folder(tmp_path):
    write_labelled(tmp_path / "data" / "collection", per_genre=2)
    (tmp_path / "data" / "README.md").write_text("about the data")
    tracks, genres = dataset.scan(tmp_path / "data")
    assert genres == ["noise", "tone"] and len(tracks) == 4


def test_the_cli_lists_every_trainable_architecture():
    from genreq import train
    from genreq.cli.ml import ARCH_NAMES, HEAD_ARCH_NAMES

    assert set(ARCH_NAMES) == set(train.RECIPES) | set(train.HEAD_ARCHS) | set(train.GRU_ARCHS)
    assert HEAD_ARCH_NAMES == train.HEAD_ARCHS


def test_logistic_head_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    from genreq import train

    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 16))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    weight, bias = train.fit_logistic(x, y, 3, c=1.0)
    reference = sklearn.LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(x, y)
    np.testing.assert_allclose(weight, reference.coef_, atol=2e-3)
    np.testing.assert_allclose(bias, reference.intercept_, atol=2e-3)
    # class weights as sklearn's class_weight="balanced"
    weight, bias = train.fit_logistic(x, y, 3, c=0.5, sample_weight=train.balanced_weights(y, 3))
    reference = sklearn.LogisticRegression(
        C=0.5, max_iter=5000, tol=1e-10, class_weight="balanced"
    ).fit(x, y)
    np.testing.assert_allclose(weight, reference.coef_, atol=2e-3)
    np.testing.assert_allclose(bias, reference.intercept_, atol=2e-3)


@pytest.mark.slow
def test_train_fits_a_head_on_pretrained_ears(tmp_path):
    import torch

    train_dir = write_labelled(tmp_path / "train", per_genre=6, seed=3)
    test_dir = write_labelled(tmp_path / "test", per_genre=4, seed=4)
    ckpt = tmp_path / "head.pt"
    result = CliRunner().invoke(
        cli,
        ["train", str(train_dir), "--arch", "vgg-msd", "--val-fraction", "0.3", "--out", str(ckpt)],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.splitlines()[-1])  # after the progress lines (stderr)
    assert summary["checkpoint"] == str(ckpt) and summary["n_val"] >= 2
    clf = Classifier.load(ckpt)
    assert (clf.name, clf.genres) == ("vgg-msd", ["noise", "tone"])
    recipe = torch.load(ckpt, map_location="cpu", weights_only=True)["recipe"]
    assert recipe["command"] == f"genreq train {train_dir} --arch vgg-msd --val-fraction 0.3"
    report = evaluate_directory(test_dir, ckpt)
    assert report["n"] == 8
    assert report["accuracy"] >= 0.9, report["confusion"]


@pytest.mark.slow
def test_distillation_follows_the_teacher(tmp_path):
    """With distill=1 the labels are ignored: a teacher that swaps the two genres is
    what the student learns."""
    from dataclasses import replace

    import torch

    from genreq import models, train

    tracks, genres = dataset.scan(write_labelled(tmp_path / "d", per_genre=6, seed=5))
    spec = models.ARCHITECTURES["crnn"].default_features()
    feats = dataset.load_features(tracks, spec, progress=False)
    labels = np.array([genres.index(t.genre) for t in tracks])
    swapped = np.eye(2, dtype=np.float32)[1 - labels]
    recipe = replace(train.IMPROVED, epochs=40, distill=1.0, mixup=0.0, label_smoothing=0.0)
    with pytest.raises(ValueError, match="soft_targets"):
        train.fit("crnn", feats, labels, 2, spec, recipe, progress=False)
    result = train.fit("crnn", feats, labels, 2, spec, recipe, progress=False, soft_targets=swapped)
    pred = train.track_probs(result.model, feats, spec, torch.device("cpu")).argmax(1)
    assert (pred == 1 - labels).mean() >= 0.9


@pytest.mark.slow
def test_train_fits_a_transfer_crnn_that_classify_uses(tmp_path):
    """genreq train --arch vgg-msd-gru end to end on 10-s clips (3 chunks each): the
    checkpoint names its base and holds no tagger, and classify/evaluate use it."""
    import torch

    train_dir = write_labelled(tmp_path / "train", per_genre=6, seconds=10.0, seed=3)
    test_dir = write_labelled(tmp_path / "test", per_genre=3, seconds=10.0, seed=4)
    ckpt = tmp_path / "gru.pt"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(train_dir),
            "--arch",
            "vgg-msd-gru",
            "--epochs",
            "30",
            "--val-fraction",
            "0.3",
            "--out",
            str(ckpt),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.splitlines()[-1])
    assert summary["n_val"] >= 2 and 1 <= summary["best_epoch"] <= 30
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["arch"] == "vgg-msd-gru" and saved["recipe"]["base"] == "vgg-msd"
    assert saved["recipe"]["run_chunks"] == [3, 5] and saved["recipe"]["epochs"] == 30
    assert not any(k.startswith("tagger.") for k in saved["state_dict"])
    assert len(saved["metrics"]["history"]) == 30

    result = CliRunner().invoke(
        cli,
        ["classify", *map(str, sorted(test_dir.rglob("*.wav"))), "--model", str(ckpt), "--json"],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 6 and {r["model"] for r in rows} == {"vgg-msd-gru"}
    report = evaluate_directory(test_dir, ckpt)
    assert report["n"] == 6 and report["accuracy"] >= 0.8, report["confusion"]


@pytest.mark.slow
def test_gru_head_scoring_on_cached_embeddings_matches_the_classifier(tmp_path):
    """sequence_probs (validation and cross-validation, from embeddings computed once)
    gives what the model gives on the chunks classification picks."""
    import torch

    from genreq import features, models, train

    tracks, genres = dataset.scan(write_labelled(tmp_path / "d", per_genre=2, seconds=22.0, seed=6))
    spec = models.ARCHITECTURES["vgg-msd-gru"].default_features()
    feats = dataset.load_features(tracks, spec, progress=False)
    model = models.build("vgg-msd-gru", len(genres), spec)
    seqs = train.chunk_embeddings(model, feats, spec)
    assert [len(s) for s in seqs] == [7] * 4  # 22 s of 16 kHz audio: 7 chunks of 3 s
    recipe = train.with_epochs(train.GRU_RECIPE, 3)
    labels = np.array([genres.index(t.genre) for t in tracks])
    fitted = train.fit_gru_head(
        "vgg-msd-gru", seqs, labels, len(genres), recipe, progress=False
    ).model
    cached = train.sequence_probs(fitted, seqs)  # 5 of the 7 chunks, as classification reads them
    with torch.inference_mode():
        direct = np.stack(
            [
                torch.softmax(fitted(torch.from_numpy(features.chunks(f, spec))), -1)[0].numpy()
                for f in feats
            ]
        )
    np.testing.assert_allclose(cached, direct, atol=1e-5)
    assert not np.allclose(train.sequence_probs(fitted, seqs, max_chunks=None), cached, atol=1e-5)


def test_best_epoch_keeps_the_most_accurate_state_lowest_loss_on_ties():
    import torch

    from genreq.train import BestEpoch

    labels = np.array([0, 1, 1])
    model = torch.nn.Linear(1, 2)
    best = BestEpoch(labels, n_classes=2)

    def epoch(n: int, probs_of_truth: list[float]) -> dict:
        with torch.no_grad():
            model.bias.fill_(n)  # a state that tells the epochs apart
        p = np.array(probs_of_truth)
        probs = np.where(np.eye(2)[labels] == 1, p[:, None], (1 - p)[:, None])
        return best.offer(n, model, probs)

    assert epoch(1, [0.9, 0.4, 0.4]) == {"val_accuracy": 0.3333, "val_loss": 0.646}
    epoch(2, [0.6, 0.6, 0.4])  # 2/3 right
    epoch(3, [0.9, 0.9, 0.45])  # 2/3 right, lower loss: the best
    epoch(4, [0.4, 0.9, 0.9])  # 2/3 right, higher loss
    assert (best.epoch, best.score[0]) == (3, pytest.approx(2 / 3))
    assert best.restore(model, epochs_run=4) == 3
    assert model.bias.tolist() == [3.0, 3.0]
    assert BestEpoch(None, 2).restore(model, epochs_run=7) == 7  # no validation: the last


def test_genre_weights_make_every_genre_weigh_the_same():
    from genreq import train

    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])  # genre 3 absent
    w = train.genre_weights(y, 4)
    assert w[3] == 0
    per_genre = np.bincount(y, weights=train.balanced_weights(y, 4), minlength=4)
    np.testing.assert_allclose(per_genre[:3], [3.0, 3.0, 3.0])  # n / genres present each


def test_balanced_gru_recipe_does_not_learn_the_prior_from_uninformative_input():
    """On embeddings that say nothing of the genre, a GRU trained on 9 tracks of one genre
    to 1 of another learns the 9:1 prior; weighted per genre, it learns an even one."""
    from dataclasses import replace

    from genreq import models, train

    rng = np.random.default_rng(0)
    n_embed = models.build("vgg-msd-gru", 2).embedding_mean.numel()
    seqs = [rng.normal(size=(5, n_embed)) for _ in range(60)]
    labels = np.array([0] * 54 + [1] * 6)
    shares = {}
    for balanced in (False, True):
        recipe = replace(train.with_epochs(train.GRU_RECIPE, 40), balanced=balanced)
        model = train.fit_gru_head("vgg-msd-gru", seqs, labels, 2, recipe, progress=False).model
        held_out = [rng.normal(size=(5, n_embed)) for _ in range(40)]
        shares[balanced] = float(train.sequence_probs(model, held_out)[:, 0].mean())
    assert shares[False] > 0.75
    assert 0.3 < shares[True] < 0.65
