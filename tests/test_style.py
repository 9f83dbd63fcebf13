"""One style for the whole tree: what `ruff format` writes and `ruff check` accepts (pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["format", "--check", "."], ["check", "."]], ids=["format", "check"])
def test_the_tree_is_formatted_and_lint_clean(command):
  ruff = shutil.which("ruff")
  assert ruff, "ruff comes with the dev extra (pip install -e .[dev])"
  proc = subprocess.run([ruff, *command], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
