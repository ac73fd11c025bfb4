"""The README's Python API example, run as a user would: the first ```python block under
`## Python API`, as a script, in a folder holding audio files under ./music."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, SHARED_CLIPS, SHARED_DATA, synthesize

README = REPO / "README.md"
CLIPS = SHARED_CLIPS[::2]  # one each of three genres


def api_block(markdown: str) -> str | None:
    """The first ```python block of the `## Python API` section, or None."""
    section = re.search(r"^## Python API[ \t]*\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    if section is None:
        return None
    block = re.search(r"^```python[ \t]*\n(.*?)^```", section.group(1), re.M | re.S)
    return block.group(1) if block else None


def test_api_block_is_found_under_its_heading_only():
    text = ("## Other\n```python\nwrong()\n```\n## Python API\n\nSome words.\n\n"
            "```python\nright()\n```\n```python\nsecond()\n```\n## Next\n")
    assert api_block(text) == "right()\n"
    assert api_block("## Python API\n\nno code\n## Next\n```python\nx\n```\n") is None


def music_folder(root: Path) -> list[Path]:
    music = root / "music"
    music.mkdir(parents=True)
    if all((SHARED_DATA / clip).exists() for clip in CLIPS):
        files = [music / Path(clip).name for clip in CLIPS]
        for clip, target in zip(CLIPS, files, strict=True):
            shutil.copyfile(SHARED_DATA / clip, target)
    else:
        files = [music / f"{i}-synth.wav" for i in range(2)]
        for i, target in enumerate(files):
            synthesize(target, i)
    return files


@pytest.mark.e2e
@pytest.mark.slow
def test_readme_python_api_example_runs(tmp_path, genreq_home):
    code = api_block(README.read_text(encoding="utf-8"))
    if code is None:
        pytest.skip("README.md has no ```python block under ## Python API yet")
    folder = tmp_path / "project"
    files = music_folder(folder)
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    for path in files:
        # Each track's path and genre, as the section promises; paths as the walk made
        # them absolute (from the real current folder).
        absolute = str(folder.resolve() / "music" / path.name)
        assert re.search(rf"^{re.escape(absolute)}\s+[\w-]+", result.stdout, re.M), (
            f"{absolute} and its genre not printed:\n{result.stdout}")
    assert "done" in result.stdout or "'done'" in result.stdout  # a status or export call
