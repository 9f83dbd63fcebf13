"""fileio: the generated blocks of a README are replaced whole, everything else kept."""

from __future__ import annotations

import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import import_python_file, replace_between


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


def test_a_python_file_is_imported_by_its_path_and_anything_else_is_refused(tmp_path):
  (tmp_path / "cfg.py").write_text("def get_config(v='a'):\n  return v * 2\n")
  assert import_python_file(tmp_path / "cfg.py", "_t_cfg").get_config("b") == "bb"
  (tmp_path / "notes.txt").write_text("x = 1\n")
  with pytest.raises(ValueError, match="notes.txt: not a Python file"):
    import_python_file(tmp_path / "notes.txt", "_t_notes")
