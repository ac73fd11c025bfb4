"""genreq installed from its wheel (not editable), run from the source checkout's root:
the folder holds a `genreq/` directory that must not shadow the installed package in
the workers that `genreq run` starts (they once died of `No module named genreq.cli`)."""
from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import COMMAND_TIMEOUT_S, REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# What the wheel is built from; the rest of the checkout (the venv, caches) stays out.
SOURCE = ["pyproject.toml", "README.md", "alembic.ini", "genreq", "app", "cli", "worker",
          "db", "migrations"]


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=kwargs.pop("timeout", 300),
                            check=False, **kwargs)
    assert result.returncode == 0, f"{args}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with genreq's wheel installed (non-editable) and its dependencies borrowed
    from the test's own environment through a .pth file. Returns its bin/ folder."""
    root = tmp_path_factory.mktemp("installed")
    (root / "src").mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / "src" / name, ignore=ignore)
        else:
            shutil.copy2(source, root / "src" / name)
    # No build isolation: setuptools comes from this environment, so no network is needed.
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--quiet", "-w", root / "dist", root / "src")
    (wheel,) = (root / "dist").glob("genreq-*.whl")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
        "--no-deps", "--no-index", "--quiet", wheel)
    # The dependencies (torch, celery, ...) from here. Paths a .pth adds come after the
    # venv's own site-packages, and .pth files inside them are not run, so this
    # environment's editable genreq stays out.
    purelib = Path(run(venv / "bin" / "python", "-c",
                       "import sysconfig; print(sysconfig.get_path('purelib'))",
                       cwd=root).stdout.strip())
    ours = [sysconfig.get_path("purelib"), *site.getsitepackages()]
    (purelib / "dependencies.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    return venv / "bin"


def test_the_checkout_would_shadow_the_installed_package(installed):
    """The trap is armed: run from the repository root, `python -m genreq.cli` finds the
    checkout's genreq/ (the ML core, without cli/) before the installed package."""
    result = subprocess.run([installed / "python", "-m", "genreq.cli", "--help"],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "No module named genreq.cli" in result.stderr


def test_installed_genreq_run_from_the_repository_root(installed, audio_library, genreq_home):
    located = run(installed / "python", "-c", "import genreq.app; print(genreq.app.__file__)",
                  cwd=genreq_home.parent).stdout.strip()
    assert Path(located).is_relative_to(installed.parent)  # the wheel's, not the checkout's

    result = run(installed / "genreq", "run", audio_library["root"], "--workers", "1",
                 cwd=REPO, timeout=COMMAND_TIMEOUT_S)
    n_audio = len(audio_library["audio"])
    assert f"done {n_audio} · failed 1 · {n_audio + 1} files in" in result.stdout, result.stderr
