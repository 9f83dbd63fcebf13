"""The pose3d and action tasks train end to end; finetuning starts from a run or a .bin."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfectrep_jax import skeleton
from perfectrep_jax.errors import UserError
from perfectrep_jax.models import heads, model_dir
from perfectrep_jax.train import tasks
from perfectrep_jax.train.trainer import train_and_evaluate
from tests.train.conftest import load_config, read_metrics


def test_action_task_trains_and_names_its_classes(tmp_path):
  config = load_config("action", "smoke")
  metrics = train_and_evaluate(config, tmp_path / "act")
  assert 0.0 <= metrics["top1"] <= 100.0 and "eval_loss" in metrics
  meta = json.loads((tmp_path / "act" / "model.json").read_text())
  assert meta["kind"] == "action" and meta["classes"] == list(config.action.classes)
  assert meta["action_input"] == "3d"
  model, _ = model_dir.load_model(tmp_path / "act")
  x = np.zeros((2, 1, 9, 17, 3), np.float32)
  assert np.asarray(model(x)).shape == (2, len(config.action.classes))
  train = [m for m in read_metrics(tmp_path / "act") if "split" not in m]
  assert all("train_top1" in m for m in train)


def test_pose3d_finetunes_from_a_run_directory(tmp_path):
  source = load_config("pretrain", "smoke")
  source.total_steps = 2
  source.eval_every = 0
  source.checkpoint_every = 2
  train_and_evaluate(source, tmp_path / "pre")
  pre, _ = model_dir.load_model(tmp_path / "pre")
  config = load_config("pose3d", "smoke")
  config.init.checkpoint = str(tmp_path / "pre")
  config.total_steps = 1
  config.optim.lr = 1e-12  # one step that cannot move the weights: they must equal the source
  config.optim.weight_decay = 0.0
  train_and_evaluate(config, tmp_path / "ft")
  ft, _ = model_dir.load_model(tmp_path / "ft")
  a = model_dir.weights_of(pre)["params"]
  b = model_dir.weights_of(ft)["params"]
  np.testing.assert_allclose(
    np.asarray(b["joints_embed"]["kernel"]), np.asarray(a["joints_embed"]["kernel"]), atol=1e-6
  )


def test_initialising_from_an_incompatible_checkpoint_is_a_clear_error(tmp_path, parity_dir):
  config = load_config("pose3d", "smoke")
  config.init.checkpoint = str(parity_dir / "pose_best_epoch.bin")
  config.init.num_heads = 4
  with pytest.raises(UserError, match="pose_best_epoch.bin: weight .* has shape"):
    train_and_evaluate(config, tmp_path / "bad")


def test_action_labels_and_clip_normalisation():
  config = load_config("action", "smoke")
  task = tasks.ActionTask(config)
  assert list(task.labels(np.array(["sit to stand", "deep squat"]))) == [3, 0]
  with pytest.raises(ValueError, match="not one of the configured classes"):
    task.labels(np.array(["backflip"]))
  rng = np.random.default_rng(0)
  clip = rng.normal(size=(9, 17, 3)).astype(np.float32)
  moved = clip * 3.0 + np.array([5.0, -2.0, 7.0], np.float32)
  np.testing.assert_allclose(heads.normalize_clip_3d(moved), heads.normalize_clip_3d(clip), atol=1e-5)


def test_flip_test_time_augmentation_is_an_involution():
  x = np.random.default_rng(0).normal(size=(2, 5, 17, 3)).astype(np.float32)
  np.testing.assert_allclose(skeleton.flip_pose(skeleton.flip_pose(x)), x, atol=0)


def test_constraint_weights_from_the_config_enter_the_training_loss():
  import jax
  import jax.numpy as jnp

  config = load_config("pose3d", "smoke")
  plain = tasks.PoseTask(config, corrupt=False)
  config.loss.lambda_hinge, config.loss.lambda_symmetry, config.loss.lambda_length = 1.0, 2.0, 3.0
  constrained = tasks.PoseTask(config, corrupt=False)
  model = model_dir.build_model("lifter", constrained.model_config(), seed=0)
  model.eval()
  rng = np.random.default_rng(0)
  batch = {
    "input_2d": jnp.asarray(rng.normal(size=(2, 9, 17, 3)), jnp.float32),
    "target_3d": jnp.asarray(rng.normal(size=(2, 9, 17, 3)), jnp.float32),
  }
  key = jax.random.key(0)
  base, base_logs = plain.loss(model, batch, key)
  total, logs = constrained.loss(model, batch, key)
  assert "loss_hinge" not in base_logs
  extra = logs["loss_hinge"] + 2.0 * logs["loss_symmetry"] + 3.0 * logs["loss_length_constancy"]
  np.testing.assert_allclose(float(total), float(base + extra), rtol=1e-5)
  assert float(extra) > 0.0  # a random model's output breaks the constraints
  config.loss.lambda_hinj = 1.0
  with pytest.raises(ValueError, match="lambda_hinj"):
    tasks.PoseTask(config, corrupt=False)
