"""Which checkpoint file a model name means, and its version (the digest results are
stored with): no torch, so that `genreq run`, which only needs to know, stays light."""
from __future__ import annotations

import hashlib
from pathlib import Path

from genreq import config
from genreq.errors import ModelError

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "vgg-msd-fast.pt"


def shipped_models() -> list[str]:
    """Names of the checkpoints shipped in the package (`--model NAME`)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def resolve_model(model: str | Path | None = None) -> Path:
    """A checkpoint path from a path, a shipped model's name, or None for $GENREQ_MODEL
    (itself a path or a name, read by genreq.config) and else the shipped default."""
    model = model or config.model() or DEFAULT_MODEL
    path = Path(model).expanduser()
    if path.is_file() or path.suffix or len(path.parts) > 1:
        return path
    named = WEIGHTS_DIR / f"{model}.pt"
    if named.exists():
        return named
    shipped = ", ".join(shipped_models())
    raise ModelError(f"{model}: no such checkpoint, nor a shipped model ({shipped})")


def file_digest(path: str | Path) -> str:
    """Short sha256 of the checkpoint file: the model version recorded with results."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
