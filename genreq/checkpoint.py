"""One checkpoint format: a dict of plain values and tensors, loadable with
`torch.load(..., weights_only=True)`:

    {"format": 1, "arch": str, "dims": {...}, "genres": [...], "features": {...},
     "state_dict": {...}, "metrics": {...}, "recipe": {...}}
"""
from __future__ import annotations

from pathlib import Path

import torch

from genreq.errors import ModelError
from genreq.features import FeatureSpec
from genreq.model_files import file_digest  # noqa: F401  (checkpoint.file_digest)
from genreq.models import ARCHITECTURES, GenreModel, ModelDims

FORMAT_VERSION = 1


def save(path: str | Path, model: GenreModel, arch: str, genres: list[str], features: FeatureSpec,
         metrics: dict | None = None, recipe: dict | None = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT_VERSION,
            "arch": arch,
            "dims": model.dims.to_dict(),
            "genres": list(genres),
            "features": features.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "metrics": metrics or {},
            "recipe": recipe or {},
        },
        path,
    )


def load(path: str | Path, expected_features: FeatureSpec | None = None) -> tuple[GenreModel, dict]:
    """Rebuild a model from its checkpoint, in eval mode; returns (model, checkpoint dict).

    With `expected_features`, a checkpoint trained on other features is refused: the
    model would silently see inputs it was never trained on.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # torch raises many kinds of exception for a bad file
        reason = f"{exc.__class__.__name__}: {exc}"
        raise ModelError(f"{path}: not a genreq checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION:
        raise ModelError(f"{path}: not a genreq checkpoint (format {FORMAT_VERSION} expected)")
    arch = ckpt["arch"]
    if arch not in ARCHITECTURES:
        raise ModelError(f"{path}: unknown architecture {arch!r}")
    features = FeatureSpec(**ckpt["features"])
    if expected_features is not None and features != expected_features:
        raise ModelError(
            f"{path}: trained on features {features.to_dict()}, "
            f"but {expected_features.to_dict()} were given"
        )
    dims = ModelDims.from_dict(ckpt["dims"])
    if (dims.n_bins, dims.width) != (features.n_bins, features.chunk_width):
        raise ModelError(
            f"{path}: the model expects {dims.n_bins}×{dims.width} inputs but its features give "
            f"{features.n_bins}×{features.chunk_width}"
        )
    model = ARCHITECTURES[arch](dims)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit the {arch} architecture ({exc})") from None
    model.eval()
    return model, ckpt
