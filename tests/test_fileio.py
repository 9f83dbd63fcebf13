"""fileio: the generated blocks of a README are replaced whole, everything else kept."""

from __future__ import annotations

import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import replace_between


def test_replace_between_keeps_the_rest(tmp_path):
  path = tmp_path / "README.md"
  path.write_text("intro\n<!-- b -->\nold table\n<!-- e -->\noutro\n")
  replace_between(path, "<!-- b -->", "<!-- e -->", "\nnew | table\n")
  assert path.read_text() == "intro\n<!-- b -->\nnew | table\n<!-- e -->\noutro\n"
  replace_between(path, "<!-- b -->", "<!-- e -->", "again")
  assert path.read_text() == "intro\n<!-- b -->\nagain\n<!-- e -->\noutro\n"


def test_replace_between_without_markers_is_one_line_and_writes_nothing(tmp_path):
  path = tmp_path / "README.md"
  path.write_text("<!-- e -->\n<!-- b -->\n")
  with pytest.raises(UserError, match="no <!-- b --> ... <!-- e --> block"):
    replace_between(path, "<!-- b -->", "<!-- e -->", "x")
  assert path.read_text() == "<!-- e -->\n<!-- b -->\n"
