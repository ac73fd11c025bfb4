import pytest
import torch

from genreq import checkpoint, models
from genreq.errors import ModelError
from genreq.features import FeatureSpec


@pytest.mark.parametrize("arch", list(models.ARCHITECTURES))
def test_each_architecture_maps_chunks_to_genre_logits(arch):
    torch.manual_seed(0)
    model = models.build(arch, n_classes=7).eval()
    x = torch.randn(3, 1, model.dims.n_bins, model.dims.width) * 20 - 40
    with torch.inference_mode():
        first, second = model(x), model(x)
    assert first.shape == ((1, 7) if model.per_track else (3, 7))  # per_track: one row per track
    assert torch.isfinite(first).all()
    torch.testing.assert_close(first, second)  # eval mode is deterministic


@pytest.mark.parametrize("arch", list(models.ARCHITECTURES))
def test_each_architecture_trains_one_step(arch):
    torch.manual_seed(0)
    model = models.build(arch, n_classes=3).train()
    x = torch.randn(4, 1, model.dims.n_bins, model.dims.width)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])[: len(logits)])
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_the_paper_crnn_has_the_papers_layers():
    model = models.build("crnn-paper", 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert model.gru.hidden_size == 128 and not model.gru.bidirectional


def test_the_shipped_crnn_is_lean():
    model = models.build("crnn", 10)
    assert models.count_macs(model) * 10 < 1e9  # under 1 GMAC per 30-s clip (10 chunks)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match="crnn-paper"):
        models.build("transformer", 10)


def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(1)
    model = models.build("crnn", 4).eval()
    model.input_mean.fill_(-30.0)
    spec = FeatureSpec()
    checkpoint.save(tmp_path / "m.pt", model, "crnn", ["a", "b", "c", "d"], spec, {"note": 1})
    loaded, ckpt = checkpoint.load(tmp_path / "m.pt")
    x = torch.randn(2, 1, spec.n_bins, spec.chunk_width)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))
    assert ckpt["genres"] == ["a", "b", "c", "d"] and ckpt["metrics"] == {"note": 1}
    # the file is loadable with weights_only, i.e. holds no pickled objects
    assert torch.load(tmp_path / "m.pt", weights_only=True)["arch"] == "crnn"


def test_a_feature_mismatch_is_refused(tmp_path):
    model = models.build("crnn", 2)
    checkpoint.save(tmp_path / "m.pt", model, "crnn", ["a", "b"], FeatureSpec())
    with pytest.raises(ModelError, match="trained on features"):
        checkpoint.load(tmp_path / "m.pt", expected_features=FeatureSpec(n_fft=1024))


def test_features_that_do_not_fit_the_network_are_refused(tmp_path):
    model = models.build("crnn", 2)
    checkpoint.save(tmp_path / "m.pt", model, "crnn", ["a", "b"], FeatureSpec(n_mels=64))
    with pytest.raises(ModelError, match="expects 128×128 inputs"):
        checkpoint.load(tmp_path / "m.pt")


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a genreq checkpoint"):
        checkpoint.load(tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")


def test_models_resolve_by_path_or_shipped_name(tmp_path, monkeypatch):
    from genreq import predict

    assert predict.resolve_model("crnn") == predict.WEIGHTS_DIR / "crnn.pt"
    assert predict.resolve_model(tmp_path / "x.pt") == tmp_path / "x.pt"
    monkeypatch.setenv("GENREQ_MODEL", "crnn")
    assert predict.resolve_model(None) == predict.WEIGHTS_DIR / "crnn.pt"
    with pytest.raises(ModelError, match="nor a shipped model"):
        predict.resolve_model("no-such-model")


def test_the_classifier_loads_a_shipped_model_by_name():
    from genreq.predict import Classifier

    clf = Classifier.load("crnn")
    assert clf.name == "crnn" and len(clf.genres) == 10
