"""The default lifter: a lifter run published with its story, and used when no --checkpoint is given."""

from __future__ import annotations

import json
import shutil

import ml_collections
import numpy as np
import pytest

from perfectrep_jax import cli, weights
from perfectrep_jax.errors import UserError
from perfectrep_jax.models import model_dir
from perfectrep_jax.train import publish
from perfectrep_jax.wild import agreement
from tests.train.conftest import CONFIGS, run_cli


@pytest.fixture(scope="module")
def published(tmp_path_factory):
  """A seconds-long ``configs/lifter.py:smoke`` run, published into a model directory."""
  root = tmp_path_factory.mktemp("publish")
  args = ["--config", f"{CONFIGS / 'lifter.py'}:smoke", "--workdir", str(root / "run")]
  env = {"PERFECTREP_JAX_NO_REEXEC": "1"}
  run_cli(["train", *args], env=env)
  proc = run_cli(["publish", *args, "--out", str(root / "lifter")], env=env)
  return root / "lifter", proc.stdout


def test_publish_records_config_data_commit_and_held_out_figures(published):
  out, stdout = published
  meta = json.loads((out / "model.json").read_text())
  assert meta["kind"] == "lifter" and meta["config"]["maxlen"] == 9
  trained = meta["trained"]
  assert trained["config"]["data"]["source"] == "mocap" and trained["step"] == 4
  assert len(trained["commit"].split("-")[0]) == 40
  assert meta["data"]["held_out_subjects"] == ["uiprmd_s09", "uiprmd_s10", "hdm05_tr", "cmu_118"]
  clean, noisy = meta["held_out"]["clean_2d"], meta["held_out"]["detector_2d"]
  for figures in (clean, noisy):
    assert figures["p_mpjpe"] > 0 and figures["mpjpe"] >= figures["p_mpjpe"]
    assert figures["per_action_mpjpe"]
  assert clean["mpjpe"] != noisy["mpjpe"]  # two evaluations, two kinds of 2D
  assert "CC BY-SA 3.0" in (out / "README.md").read_text()
  assert "held out, clean_2d: MPJPE" in stdout and "held out, detector_2d" in stdout
  assert figures["depth_mm"] > 0
  feedback = meta["feedback"]
  assert feedback["views_per_take"] == publish.FEEDBACK_VIEWS
  for name in ("clean_2d", "detector_2d"):
    takes = {r["take"] for r in feedback["detector_2d_takes"]}
    assert feedback[name]["views"] == publish.FEEDBACK_VIEWS * len(takes)
  assert {"false", "missed", "score_diff", "true_reps", "lifted_reps"} <= set(
    feedback["detector_2d_takes"][0]
  )
  assert "feedback, detector_2d: same findings in" in stdout
  calibration = meta["uncertainty"]  # the threshold infer judges this lifter's joints with
  assert calibration["joints"] == 17 * sum(r["frames"] for r in feedback["detector_2d_takes"])
  assert [r["threshold"] for r in calibration["table"]] == list(agreement.UNCERTAINTY_GRID)
  assert calibration["threshold"] is None or calibration["threshold"] in agreement.UNCERTAINTY_GRID
  said = "uncertainty: no threshold" if calibration["threshold"] is None else "uncertainty: joints beyond"
  assert said in stdout  # a random smoke lifter may or may not earn a threshold
  assert 0 < meta["weight_bytes"] <= 20 * 2**20


def test_without_checkpoint_infer_uses_the_default_lifter(published, tmp_path, monkeypatch, capsys):
  out, _ = published
  monkeypatch.setattr(weights, "DEFAULT_LIFTER", out)
  kp = np.zeros((30, 17, 3), np.float32)
  kp[..., 0] = np.linspace(100, 200, 17)
  kp[..., 1] = np.linspace(50, 400, 17) + np.sin(np.arange(30))[:, None] * 20
  kp[..., 2] = 0.9
  np.save(tmp_path / "kp.npy", kp)
  code = cli.main(
    [
      "infer",
      "--keypoints",
      str(tmp_path / "kp.npy"),
      "--out",
      str(tmp_path / "o"),
      "--fps",
      "25",
      "--no-render",
    ]
  )
  assert code == 0, capsys.readouterr()
  assert "the default one" in capsys.readouterr().out
  assert np.load(tmp_path / "o" / "X3D.npy").shape == (30, 17, 3)
  # 25 fps footage is lifted on the 50 fps clock the lifter was trained at (publish records it)
  x3d = json.loads((tmp_path / "o" / "X3D.json").read_text())
  assert (x3d["fps"], x3d["lifted_at_fps"]) == (25.0, 50.0)


def test_explicit_checkpoint_wins_and_a_missing_default_is_one_line(published, tmp_path, monkeypatch):
  out, _ = published
  other = tmp_path / "other"
  shutil.copytree(out, other)
  monkeypatch.setattr(weights, "DEFAULT_LIFTER", tmp_path / "none")
  assert weights.checkpoint_or_default(other) == other
  with pytest.raises(UserError, match="no default lifter in this install"):
    weights.checkpoint_or_default(None)
  _, meta = model_dir.load_model(other)
  assert meta["kind"] == "lifter"


def test_weights_trained_in_stages_carry_every_stage(published, tmp_path):
  # A run initialised from a published model records that model's own story beside its own.
  out, _ = published
  config = ml_collections.ConfigDict({"init": {"checkpoint": str(out)}})
  parent = publish.initialised_from(config)["initialised_from"]
  first = json.loads((out / "model.json").read_text())
  assert parent["checkpoint"] == str(out)
  assert parent["trained"] == first["trained"] and parent["held_out"] == first["held_out"]
  config.init.checkpoint = str(tmp_path / "upstream.bin")
  assert publish.initialised_from(config) == {
    "initialised_from": {"checkpoint": str(tmp_path / "upstream.bin")}
  }
  config.init.checkpoint = ""
  assert publish.initialised_from(config) == {}


def test_model_json_records_the_config_the_run_trained_with(tmp_path):
  # Publishing with another variant or without the run's overrides must not rewrite its story.
  run = tmp_path / "run"
  run.mkdir()
  given = ml_collections.ConfigDict({"seed": 0, "total_steps": 81_000, "init": {"checkpoint": ""}})
  assert publish.run_config(given, run) is given  # a run directory without config.json
  trained = {"seed": 15, "total_steps": 6_000, "init": {"checkpoint": str(tmp_path / "parent")}}
  (run / "config.json").write_text(json.dumps(trained))
  recorded = publish.run_config(given, run)
  assert recorded.to_dict() == trained
  assert publish.initialised_from(recorded) == {
    "initialised_from": {"checkpoint": trained["init"]["checkpoint"]}
  }
  (run / "config.json").write_text("{not json")
  with pytest.raises(UserError, match="config.json"):
    publish.run_config(given, run)


def test_a_published_lifter_has_its_feedback_measured_again_in_place(published, tmp_path):
  # The form rules change under shipped weights: `publish --workdir <model directory>` measures the
  # feedback again and keeps the weights, their story and the pose figures.
  out, _ = published
  copy = tmp_path / "lifter"
  shutil.copytree(out, copy)
  first = json.loads((out / "model.json").read_text())
  stale = dict(first, feedback={**first["feedback"], "clean_2d": {"views": -1}})  # older rules
  (copy / "model.json").write_text(json.dumps(stale))
  args = ["--config", f"{CONFIGS / 'lifter.py'}:smoke", "--workdir", str(copy)]
  proc = run_cli(["publish", *args], env={"PERFECTREP_JAX_NO_REEXEC": "1"})
  assert "feedback measured again for step 4" in proc.stdout
  again = json.loads((copy / "model.json").read_text())
  assert again["feedback"] == first["feedback"]  # the same seeded views, the same rules
  for key in ("trained", "data", "held_out", "config", "weight_bytes", "uncertainty"):
    assert again[key] == first[key], key
  assert len(again["feedback_measured"]["commit"].split("-")[0]) == 40
  weights = sorted(p.relative_to(out) for p in (out / "params").rglob("*") if p.is_file())
  assert sorted(p.relative_to(copy) for p in (copy / "params").rglob("*") if p.is_file()) == weights
  assert all((copy / f).read_bytes() == (out / f).read_bytes() for f in weights)  # only model.json moved
  # A model directory that is not a published lifter is refused in one line.
  bare = tmp_path / "bare"
  shutil.copytree(out, bare)
  (bare / "model.json").write_text(json.dumps({k: v for k, v in first.items() if k != "trained"}))
  with pytest.raises(UserError, match="not a published lifter"):
    publish.remeasure_feedback(bare)
