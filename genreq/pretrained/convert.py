"""Convert the musicnn wheel's TF1 checkpoints into genreq's PyTorch tagger files.

The `musicnn` 0.1.0 wheel on PyPI (ISC licence) is the only input: it is fetched with
`pip download --no-deps`, opened as a zip, and each checkpoint is read with the numpy
reader in tf_checkpoint.py. Neither TensorFlow nor the package's code is run.
"""
from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import platformdirs
import torch

from genreq.pretrained import musicnn
from genreq.pretrained.tf_checkpoint import read_checkpoint

WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
# checkpoint folder in the wheel -> (output file, architecture, tags). The genreq registry
# models built on them (`musicnn-msd`, `vgg-msd`) are shipped as genreq checkpoints
# genreq/weights/<name>.pt that hold the tagger's weights (keys "tagger.*") and a genre head.
MODELS = {
    "MSD_musicnn": ("musicnn-msd-tagger.pt", "musicnn", musicnn.MSD_TAGS),
    "MSD_vgg": ("vgg-msd-tagger.pt", "vgg", musicnn.MSD_TAGS),
}
LICENSE_FILE = "musicnn_LICENSE.md"

log = logging.getLogger(__name__)


def default_wheel_path() -> Path:
    """Where the wheel is cached: the per-user cache directory of genreq."""
    return Path(platformdirs.user_cache_dir("genreq")) / WHEEL_NAME


def default_out_dir() -> Path:
    """Where converted taggers go unless told otherwise, and where models look for them."""
    return Path(platformdirs.user_cache_dir("genreq")) / "musicnn"


def tagger_state(model_name: str, weights_dir: Path) -> dict[str, torch.Tensor] | None:
    """Pretrained tagger weights for the registry model MODEL_NAME (e.g. "vgg-msd"): from
    the shipped genreq checkpoint WEIGHTS_DIR/MODEL_NAME.pt, else from the converter's
    output in default_out_dir(); None when neither exists."""
    shipped = weights_dir / f"{model_name}.pt"
    if shipped.is_file():
        state = torch.load(shipped, map_location="cpu", weights_only=True)["state_dict"]
        tagger = {k.removeprefix("tagger."): v for k, v in state.items() if k.startswith("tagger.")}
        if tagger:
            return tagger
    converted = default_out_dir() / f"{model_name}-tagger.pt"
    if converted.is_file():
        return torch.load(converted, map_location="cpu", weights_only=True)["state_dict"]
    return None


def fetch_wheel(path: Path | None = None) -> Path:
    """The musicnn wheel at PATH (default: the cache), downloaded with pip if absent."""
    path = path or default_wheel_path()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s with pip into %s", WHEEL_NAME, path.parent)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
         "musicnn==0.1.0", "-d", str(path.parent)],
        check=True, stdout=sys.stderr,
    )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pip did not produce the wheel")
    return path


def load_from_wheel(wheel: Path, checkpoint: str, arch: str | None = None) -> torch.nn.Module:
    """The tagger of one checkpoint folder of the wheel (e.g. "MSD_musicnn"), in eval mode;
    `arch` ("musicnn" or "vgg") for a folder genreq does not convert (the MagnaTagATune
    taggers "MTT_musicnn" and "MTT_vgg", which bench/other_ears.py measures)."""
    arch = arch or MODELS[checkpoint][1]
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        for suffix in (".index", ".data-00000-of-00001"):
            zf.extract(f"musicnn/{checkpoint}/{suffix}", tmp)
        tf_vars = read_checkpoint(f"{tmp}/musicnn/{checkpoint}/")
    model = musicnn.build(musicnn.MusicnnDims(arch=arch))
    model.load_state_dict(musicnn.state_dict_from_tf(tf_vars, arch))
    return model.eval()


def _licence(wheel: Path, sha256: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        notice = zf.read("musicnn-0.1.0.dist-info/LICENSE.md").decode().strip()
    return (
        "# musicnn weights: licence and provenance\n\n"
        "The musicnn tagger weights in the `*-msd*.pt` files here are converted from the TF1\n"
        f"checkpoints in `{wheel.name}` (PyPI, sha256\n`{sha256}`)\n"
        "by `genreq models convert-musicnn` (tools/convert_musicnn.py): same numbers, PyTorch\n"
        "layout. Models: J. Pons and X. Serra, \"musicnn: pre-trained convolutional neural\n"
        "networks for music audio tagging\", ISMIR 2019 LBD, trained on Million Song Dataset "
        "tags.\n"
        "The original licence (ISC) applies to them:\n\n"
        f"{notice}\n"
    )


def convert(
    wheel: Path, out_dir: Path | None = None, checkpoints: tuple[str, ...] = tuple(MODELS)
) -> list[Path]:
    """Write OUT_DIR/<name>-tagger.pt for each checkpoint and the licence notice beside them."""
    out_dir = out_dir or default_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    written = []
    for name in checkpoints:
        filename, _, tags = MODELS[name]
        model = load_from_wheel(wheel, name)
        path = out_dir / filename
        source = f"{wheel.name}:musicnn/{name} sha256={sha256}"
        torch.save(musicnn.checkpoint(model, tags, source), path)
        written.append(path)
    licence = out_dir / LICENSE_FILE
    licence.write_text(_licence(wheel, sha256))
    return [*written, licence]
