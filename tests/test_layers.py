"""The shape of the house, checked: the CLI parses and prints over genreq.app and loads
neither SQLAlchemy nor torch to do so; the ML core (genreq/) knows nothing of Celery or
SQLAlchemy; configuration is read from the environment in one place."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def importers(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        bad = sorted(m for m in imported_modules(path)
                     if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


def test_importing_the_cli_loads_neither_sqlalchemy_nor_torch():
    code = ("import sys; import genreq.cli.main; "
            "print(sorted(m for m in ('sqlalchemy', 'torch', 'celery') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_the_cli_goes_through_the_app_layer():
    """No command opens a session or touches the broker or the model itself."""
    assert importers("cli", ("sqlalchemy", "torch", "celery", "genreq.db", "genreq.worker")) == {}


def test_the_core_knows_no_queue_and_no_database():
    assert importers("genreq", ("celery", "kombu", "sqlalchemy", "alembic", "genreq.db",
                                "genreq.worker", "genreq.app", "genreq.cli")) == {}


def test_the_app_layer_is_not_below_the_cli():
    assert importers("app", ("genreq.cli",)) == {}


@pytest.mark.parametrize("variable", ["GENREQ_MODEL", "GENREQ_HOME", "GENREQ_DATABASE_URL",
                                      "GENREQ_BROKER_URL", "GENREQ_TASK_BATCH",
                                      "GENREQ_TAXONOMY"])
def test_configuration_is_read_in_genreq_config_only(variable):
    readers = []
    for folder in ("genreq", "app", "cli", "worker", "db"):  # what is installed
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if re.search(rf"(environ|getenv)\W[^\n]*[\"']{variable}[\"']", text):
                readers.append(str(path.relative_to(REPO)))
    assert readers == ["genreq/config.py"]


@pytest.mark.parametrize("args", [["status"], ["export"], ["export", "--tag", "jazz"],
                                  ["export", "--format", "csv"]])
def test_querying_the_library_loads_no_model(args, tmp_path):
    """Reading what is stored, tag filters included, needs neither torch nor numpy."""
    code = ("import sys; from click.testing import CliRunner; from genreq.cli.main import cli; "
            f"result = CliRunner().invoke(cli, {args!r}); assert result.exit_code == 0, "
            "result.output; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "GENREQ_HOME": str(tmp_path)})
    assert result.stdout.strip() == "[]"
