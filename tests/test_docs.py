"""Documentation that shows commands is tested: every ```console block in README.md and
docs/*.md runs, and its output must be what the page says; bench/README.md's tables must
be what bench/tables.py makes of bench/results; the README keeps its shape.

A console block is `$ genreq ARGS` lines, each followed by the output it prints (stdout
and stderr as a terminal shows them). `| head -n N` keeps the first N lines;
`$ echo $?` prints the exit status of the command before. In the expected output a line
that is only `…` stands for any number of lines, and `…` inside a line for any text
(timings, paths).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import REPO

from genreq.cli.main import cli

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONSOLE = re.compile(r"^```console\n(.*?)^```$", re.M | re.S)
ELLIPSIS = "…"
HELP_WIDTH = 80  # what a pipe or a CI log gets; a narrow terminal would wrap help differently


def console_blocks() -> list:
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in CONSOLE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            rel = page.relative_to(REPO).as_posix()
            blocks.append(pytest.param(match.group(1), id=f"{rel}:{line}"))
    return blocks


def parse(block: str) -> list[tuple[str, list[str]]]:
    """[(command line, expected output lines)] of one console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before any command: {line!r}"
            steps[-1][1].append(line)
    return steps


def line_pattern(expected: str) -> str:
    return ".*".join(re.escape(part) for part in expected.split(ELLIPSIS))


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whole-output match, `…` lines standing for any lines."""
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line == ELLIPSIS else line_pattern(line) + r"\n" for line in expected
    )
    return re.fullmatch(pattern, "".join(f"{line}\n" for line in actual)) is not None


def run(command: str, last_status: int) -> tuple[list[str], int]:
    """Output lines and exit status of one documented command line."""
    if command == "echo $?":
        return [str(last_status)], 0
    command, _, pipe = command.partition(" | ")
    args = shlex.split(command)
    assert args[0] == "genreq", f"only genreq commands run here: {command!r}"
    result = CliRunner().invoke(cli, args[1:], prog_name="genreq", terminal_width=HELP_WIDTH)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    lines = result.output.splitlines()
    if pipe:
        head = re.fullmatch(r"head -n (\d+)", pipe)
        assert head, f"unsupported pipe {pipe!r} (only `head -n N`)"
        lines = lines[: int(head.group(1))]
    return lines, result.exit_code


@pytest.mark.parametrize("block", console_blocks())
def test_console_examples_print_what_the_docs_say(block: str):
    status = 0
    for command, expected in parse(block):
        actual, status = run(command, status)
        assert matches(expected, actual), (
            f"$ {command}\n--- the docs say:\n" + "\n".join(expected)
            + "\n--- it prints:\n" + "\n".join(actual)
        )


def test_the_docs_have_console_examples():
    commands = [step for block in console_blocks() for step in parse(block.values[0])]
    assert len(commands) >= 4


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        (["a", "b"], ["a", "b"], True),
        (["a"], ["a", "b"], False),
        (["a", ELLIPSIS, "d"], ["a", "b", "c", "d"], True),
        (["a", ELLIPSIS, "d"], ["a", "d"], True),
        (["took … s"], ["took 0.25 s"], True),
        (["took … s"], ["took 0.25 ms", "x"], False),
        (["1+1 (x)"], ["1+1 (x)"], True),
        (["1+1 (x)"], ["11 x"], False),
    ],
)
def test_ellipsis_matching(expected, actual, ok):
    assert matches(expected, actual) is ok


def test_a_console_block_that_is_wrong_fails():
    block = "$ genreq status --json\n{\"total\": 1}\n"
    with pytest.raises(AssertionError):
        test_console_examples_print_what_the_docs_say(block)


# --- bench/README.md: tables generated from the results --------------------------------


def bench_tables():
    spec = importlib.util.spec_from_file_location("bench_tables", REPO / "bench" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_readme_tables_are_what_the_results_say():
    tables = bench_tables()
    committed = tables.generated_part((REPO / "bench" / "README.md").read_text(encoding="utf-8"))
    assert committed == tables.render(), (
        "bench/README.md's tables differ from bench/results: run `python bench/tables.py --write`"
    )


def test_bench_tables_follow_the_results(tmp_path: Path):
    tables = bench_tables()
    (tmp_path / "heads").mkdir()
    record = {
        "schema": tables.SCHEMA, "name": "vgg-msd_head", "model": "head on frozen vgg-msd",
        "protocol": {"description": "artist-disjoint 3-fold."}, "n": 238, "accuracy": 0.8403,
        "ci95": [0.789, 0.881], "balanced_accuracy": 0.78, "ece": 0.041,
        "folds": [{"test_group": g, "accuracy": a} for g, a in (("train", 0.8), ("test", 0.9))],
    }
    (tmp_path / "heads" / "vgg.json").write_text(json.dumps(record))
    (tmp_path / "odd.json").write_text("{}")
    text = tables.render(tmp_path)
    row = "| `heads/vgg.json` | `vgg-msd_head`: head on frozen vgg-msd | 238 | 84.0 (79–88) |"
    assert row in text
    assert "train 80.0, test 90.0" in text and "Protocol: artist-disjoint 3-fold." in text
    assert "Other result files (no table yet): `odd.json`." in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{tables.BEGIN}\nstale\n{tables.END}\nafter\n")
    tables.write(readme, tmp_path)
    assert tables.generated_part(readme.read_text()) == text
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("after\n")


# --- the README's shape ----------------------------------------------------------------


def test_readme_fits_on_a_few_screens_and_starts_with_the_two_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1).splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == [
        "make run MUSIC=~/Music", "make test",
    ]
    assert re.search(r"^## Python API$", text, re.M)


def test_doc_links_point_at_files_that_exist():
    for page in [*PAGES, REPO / "bench" / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)}: {target}"
