"""Odd values in user files end in one line naming the file: huge numbers, deep nesting, a model.json
that does not fit its weights (without orbax's tracebacks after the line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from perfectrep_jax.errors import UserError

HUGE = "9" * 5000  # more digits than Python converts from text (4300)


def _huge_number_files(tmp_path):
  keypoints = tmp_path / "keypoints.json"
  keypoints.write_text('[{"frame_id": 0, "instances": [{"keypoints": [[' + HUGE + ", 1]]}]}]")
  rules = tmp_path / "rules.json"
  rules.write_text('{"exercises": {"squat": {"rules": [{"threshold": ' + HUGE + "}]}}}")
  motion = tmp_path / "X3D.json"
  motion.write_text('{"fps": ' + HUGE + ', "joints_3d": []}')
  deep = tmp_path / "deep.json"
  deep.write_text("[" * 100_000 + "]" * 100_000)
  return keypoints, rules, motion, deep


def test_huge_numbers_and_deep_nesting_in_json_files(tmp_path):
  from perfectrep_jax.form.analyze import load_joints
  from perfectrep_jax.form.rules import load_rules
  from perfectrep_jax.wild.keypoints import read_keypoints

  keypoints, rules, motion, deep = _huge_number_files(tmp_path)
  for read, path in (
    (read_keypoints, keypoints),
    (load_rules, rules),
    (load_joints, motion),
    (read_keypoints, deep),
    (load_rules, deep),
    (load_joints, deep),
  ):
    with pytest.raises(UserError) as e:
      read(path)
    message = str(e.value)
    assert str(path) in message and "\n" not in message and len(message) < 400, message


def test_model_json_with_a_huge_number(tiny_model_dir, tmp_path):
  from perfectrep_jax.models.model_dir import load_model

  target = tmp_path / "m"
  target.mkdir()
  (target / "params").symlink_to(tiny_model_dir / "params")
  text = (tiny_model_dir / "model.json").read_text()
  (target / "model.json").write_text(text.replace('"depth": ', '"depth": ' + HUGE + ', "x": ', 1))
  with pytest.raises(UserError, match=r"model.json: not valid JSON \(Exceeds the limit"):
    load_model(target)


def test_weights_that_do_not_fit_model_json_give_one_line(tiny_model_dir, tmp_path):
  target = tmp_path / "m"
  target.mkdir()
  (target / "params").symlink_to(tiny_model_dir / "params")
  meta = json.loads((tiny_model_dir / "model.json").read_text())
  meta["config"]["dim_feat"] *= 2  # every width doubles; the stored arrays keep theirs
  (target / "model.json").write_text(json.dumps(meta))
  import numpy as np

  np.save(tmp_path / "x.npy", np.zeros((4, 17, 3), np.float32))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "perfectrep_jax.cli",
      "predict",
      "--checkpoint",
      str(target),
      "--input",
      str(tmp_path / "x.npy"),
      "--output",
      str(tmp_path / "y.npy"),
    ],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert proc.returncode == 2, proc.stderr
  assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr, proc.stderr
  [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("perfectrep-jax")]
  assert "the weights do not fit" in line and "stored (" in line and "more)" in line, line
  assert not (tmp_path / "y.npy").exists()


# ---------------------------------------------------------------------------- output folders
def _predict(tiny_model_dir, tmp_path, output) -> tuple[int, str]:
  import numpy as np

  from perfectrep_jax import cli

  np.save(tmp_path / "x.npy", np.zeros((4, 17, 3), np.float32))
  return cli.main(
    [
      "predict",
      "--checkpoint",
      str(tiny_model_dir),
      "--input",
      str(tmp_path / "x.npy"),
      "--output",
      str(output),
    ]
  )


def test_outputs_under_a_dangling_symlink_or_a_file_are_one_line(tiny_model_dir, tmp_path, capsys):
  (tmp_path / "link").symlink_to(tmp_path / "nowhere" / "deeper")  # a dangling link
  (tmp_path / "file").write_text("x")
  for output in (tmp_path / "link" / "y.npy", tmp_path / "file" / "y.npy"):
    status = _predict(tiny_model_dir, tmp_path, output)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"perfectrep-jax predict: error: {output}: cannot write"), err


def test_a_read_only_or_full_file_system_is_one_line_and_leaves_outputs_intact(
  tiny_model_dir, tmp_path, capsys, monkeypatch
):
  import errno

  import numpy as np

  from perfectrep_jax import fileio

  out = tmp_path / "out"
  out.mkdir()
  np.save(out / "y.npy", np.arange(3))  # an earlier output

  def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out))

  with monkeypatch.context() as m:  # as root a chmod 555 folder stays writable: simulate it
    m.setattr(fileio.tempfile, "mkstemp", read_only)
    status = _predict(tiny_model_dir, tmp_path, out / "y.npy")
  err = capsys.readouterr().err
  assert status == 2 and "Read-only file system" in err and len(err.strip().splitlines()) == 1

  real_fdopen = os.fdopen

  def full_disk(fd, *args, **kwargs):  # the temporary file's writes go to /dev/full: ENOSPC
    os.close(fd)
    return real_fdopen(os.open("/dev/full", os.O_WRONLY), *args, **kwargs)

  if not os.path.exists("/dev/full"):
    pytest.skip("no /dev/full here")
  with monkeypatch.context() as m:
    m.setattr(fileio.os, "fdopen", full_disk)
    status = _predict(tiny_model_dir, tmp_path, out / "y.npy")
  err = capsys.readouterr().err
  assert status == 2 and "No space left on device" in err and len(err.strip().splitlines()) == 1, err
  np.testing.assert_array_equal(np.load(out / "y.npy"), np.arange(3))  # the earlier one, intact
  assert sorted(p.name for p in out.iterdir()) == ["y.npy"]  # no temporary file left


def test_any_other_os_error_is_one_line(capsys):
  from perfectrep_jax import cli

  def job():
    raise PermissionError(13, "Permission denied", "/somewhere/out")

  assert cli._run("analyze", job) == 2
  assert capsys.readouterr().err == "perfectrep-jax analyze: error: /somewhere/out: Permission denied\n"


def test_a_model_directory_can_be_written_through_a_symlink(tmp_path):
  from perfectrep_jax.models import model_dir

  model = model_dir.build_model("lifter", dict(dim_feat=8, depth=1, num_heads=2, maxlen=3, dim_rep=8))
  (tmp_path / "empty").mkdir()
  (tmp_path / "to_empty").symlink_to(tmp_path / "empty")
  (tmp_path / "to_missing").symlink_to(tmp_path / "missing")
  for link, target in (("to_empty", "empty"), ("to_missing", "missing")):
    model_dir.save_model_dir(tmp_path / link, model)
    assert (tmp_path / target / "model.json").is_file() and (tmp_path / link).is_symlink()
    model_dir.load_model(tmp_path / link)
  with pytest.raises(UserError, match="already exists and is not empty"):
    model_dir.save_model_dir(tmp_path / "to_empty", model)
