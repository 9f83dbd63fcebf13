"""Parity of the Flax models with checkpoints and outputs written by the upstream PyTorch code.

Tolerance: max absolute error 1e-5 on outputs of magnitude ~0.3-1.1 (measured: 1.6e-7 lifter
output, 5.5e-7 representation, 6.9e-7 action logits). Both sides compute in float32; the
differences are float32 round-off from another summation order in matmuls, LayerNorm and softmax,
so 1e-5 leaves a 15x margin while still catching any real mismatch (a wrong transpose, eps,
GELU form or head split moves outputs by 1e-2 or more).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from perfectrep_jax.interop.convert import convert_checkpoint

ATOL = 1e-5


@pytest.fixture(scope="module")
def converted(parity_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("converted")
  pose, _ = convert_checkpoint(parity_dir / "pose_best_epoch.bin", out / "pose", num_heads=4)
  action, _ = convert_checkpoint(parity_dir / "action_best_epoch.bin", out / "action", num_heads=4)
  return {"pose": pose, "action": action, "dir": out}


def _close(actual, expected):
  actual = np.asarray(actual)
  assert actual.shape == expected.shape
  err = np.abs(actual - expected).max()
  assert err <= ATOL, f"max abs error {err:.3g} > {ATOL}"


def test_lifter_output_and_representation(converted, parity_dir):
  io = np.load(parity_dir / "pose_io.npz")
  model = converted["pose"]
  with jax.default_matmul_precision("highest"):
    _close(model(io["x"]), io["out"])
    _close(model(io["x"], return_rep=True), io["rep"])
    _close(model.representation(io["x"]), io["rep"])


def test_lifter_short_clip_uses_first_rows_of_temp_embed(converted, parity_dir):
  io = np.load(parity_dir / "pose_io.npz")
  assert io["x_short"].shape[1] < converted["pose"].config.maxlen
  with jax.default_matmul_precision("highest"):
    _close(converted["pose"](io["x_short"]), io["out_short"])


def test_action_logits(converted, parity_dir):
  io = np.load(parity_dir / "action_io.npz")
  with jax.default_matmul_precision("highest"):
    _close(converted["action"](io["x"]), io["logits"])


def test_inferred_configs_match_fixture_description(converted, parity_dir):
  import json

  desc = json.loads((parity_dir / "fixtures.json").read_text())
  pose = converted["pose"].config
  for key in (
    "dim_feat",
    "dim_rep",
    "depth",
    "maxlen",
    "att_fuse",
    "dim_in",
    "dim_out",
    "num_joints",
    "qkv_bias",
  ):
    assert getattr(pose, key) == desc["pose_config"][key], key
  assert pose.mlp_ratio == desc["pose_config"]["mlp_ratio"]
  action = converted["action"].config
  assert action.hidden_dim == 2048  # upstream's class head ignores hidden_dim
  assert action.num_classes == desc["action_config"]["num_classes"]
  assert action.backbone.dim_rep == desc["action_config"]["dim_rep"]
  n_params = sum(
    x.size
    for x in jax.tree.leaves(__import__("flax").nnx.state(converted["pose"], __import__("flax").nnx.Param))
  )
  assert n_params == desc["pose_checkpoint"]["n_params"]


def test_converted_directory_reloads_to_the_same_outputs(converted, parity_dir):
  from perfectrep_jax.models.model_dir import load_model

  io = np.load(parity_dir / "pose_io.npz")
  model, meta = load_model(converted["dir"] / "pose")
  assert meta["kind"] == "lifter" and meta["source"] == "pose_best_epoch.bin"
  with jax.default_matmul_precision("highest"):
    _close(model(io["x"]), io["out"])
