"""Converter and exporter: layouts, inferred configs, clear errors, and PyTorch round trips."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.interop import convert
from perfectrep_jax.interop.torch_pickle import load_torch_checkpoint
from perfectrep_jax.models import ActionConfig, DSTformerConfig
from perfectrep_jax.models import model_dir

SMALL = DSTformerConfig(dim_feat=32, dim_rep=48, depth=2, num_heads=4, mlp_ratio=2, maxlen=10)


def _state(parity_dir, name="pose_best_epoch.bin"):
  return convert.find_state_dict(load_torch_checkpoint(parity_dir / name), name)


def test_every_weight_has_a_torch_name_and_back():
  for kind, cfg in (("lifter", SMALL), ("action", ActionConfig(backbone=SMALL, num_classes=3, hidden_dim=8))):
    model = model_dir.build_model(kind, cfg)
    sd = convert.to_state_dict(model)
    fresh = model_dir.build_model(kind, cfg, seed=7)
    convert.load_state_dict(fresh, sd, "roundtrip")
    for a, b in zip(
      jax.tree.leaves(model_dir.weights_of(model)), jax.tree.leaves(model_dir.weights_of(fresh))
    ):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout", ["model", "model_pos", "bare"])
@pytest.mark.parametrize("prefix", ["module.", ""])
def test_layouts_and_prefixes(parity_dir, layout, prefix):
  sd = {prefix + k: v for k, v in _state(parity_dir).items()}
  ckpt = sd if layout == "bare" else {layout: sd, "epoch": 3}
  found = convert.find_state_dict(ckpt, "x")
  assert "joints_embed.weight" in found and not any(k.startswith("module.") for k in found)


def test_backbone_only_of_action_model(parity_dir, tmp_path):
  state = _state(parity_dir, "action_best_epoch.bin")
  kind, cfg, sub = convert.infer_model(state, 4, part="backbone")
  assert kind == "lifter" and cfg.dim_feat == 32 and cfg.maxlen == 16
  # a state dict holding only backbone.* keys is a lifter too
  only = {k: v for k, v in state.items() if k.startswith("backbone.")}
  kind2, cfg2, _ = convert.infer_model(only, 4)
  assert kind2 == "lifter" and cfg2 == cfg


def test_inference_of_att_fuse_and_dim_rep(parity_dir):
  state = _state(parity_dir)
  no_fuse = {k: v for k, v in state.items() if not k.startswith("ts_attn")}
  assert not convert.infer_backbone_config(no_fuse, 4).att_fuse
  no_rep = {k: v for k, v in state.items() if not k.startswith("pre_logits")}
  assert convert.infer_backbone_config(no_rep, 4).dim_rep == 0


def test_mismatched_weights_listed_in_one_error(parity_dir):
  state = _state(parity_dir)
  model = model_dir.build_model("lifter", convert.infer_backbone_config(state, 4))
  bad = dict(state)
  del bad["norm.weight"]
  bad["extra.weight"] = np.zeros(3, np.float32)
  bad["head.bias"] = np.zeros(5, np.float32)
  with pytest.raises(UserError) as e:
    convert.load_state_dict(model, bad, "ckpt.bin")
  msg = str(e.value)
  assert "ckpt.bin" in msg and "1 missing: norm.weight" in msg
  assert "1 unexpected: extra.weight" in msg and "head.bias (5,)" in msg


def test_heads_flag_must_divide_width(parity_dir, tmp_path):
  with pytest.raises(UserError, match="divisible"):
    convert.convert_checkpoint(parity_dir / "pose_best_epoch.bin", tmp_path / "o", num_heads=5)
  assert not (tmp_path / "o").exists()


def test_other_checkpoint_is_refused(tmp_path):
  torch = pytest.importorskip("torch")
  torch.save({"model": {"conv.weight": torch.ones(3, 3)}}, tmp_path / "resnet.bin")
  with pytest.raises(UserError, match="not a DSTformer"):
    convert.convert_checkpoint(tmp_path / "resnet.bin", tmp_path / "out")
  assert not (tmp_path / "out").exists()
  assert not list(tmp_path.glob(".out*"))


def test_output_dir_is_never_overwritten(parity_dir, tmp_path):
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep.txt").write_text("mine")
  with pytest.raises(UserError, match="not empty"):
    convert.convert_checkpoint(parity_dir / "pose_best_epoch.bin", tmp_path / "out", num_heads=4)
  assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
  "name,io,key",
  [("pose_best_epoch.bin", "pose_io.npz", "out"), ("action_best_epoch.bin", "action_io.npz", "logits")],
)
def test_export_loads_strictly_into_upstream_layout(parity_dir, tmp_path, name, io, key):
  torch = pytest.importorskip("torch")
  from perfectrep_jax.interop.torch_reference import build_torch_model

  convert.convert_checkpoint(parity_dir / name, tmp_path / "m", num_heads=4)
  convert.export_checkpoint(tmp_path / "m", tmp_path / "best_epoch.bin")
  ckpt = torch.load(tmp_path / "best_epoch.bin", weights_only=True)
  assert set(ckpt) == {"epoch", "lr", "optimizer", "model", "min_loss", "args"}
  assert ckpt["args"]["num_heads"] == 4
  original = torch.load(parity_dir / name, weights_only=True)["model"]
  assert list(ckpt["model"]) != [] and set(ckpt["model"]) == set(original)
  for k, v in original.items():
    torch.testing.assert_close(ckpt["model"][k], v, rtol=0, atol=0, msg=k)
  _, meta = model_dir.load_model(tmp_path / "m")
  cfg = (
    DSTformerConfig.from_dict(meta["config"])
    if meta["kind"] == "lifter"
    else ActionConfig.from_dict(meta["config"])
  )
  net = torch.nn.DataParallel(build_torch_model(meta["kind"], cfg)).eval()
  net.load_state_dict(ckpt["model"], strict=True)
  data = np.load(parity_dir / io)
  with torch.no_grad():
    out = net(torch.from_numpy(data["x"])).numpy()
  np.testing.assert_allclose(out, data[key], rtol=0, atol=1e-5)


def test_trained_here_model_round_trips_through_torch(tmp_path):
  """A model made here (att_fuse off, dim_rep 0) exports, and PyTorch computes the same."""
  torch = pytest.importorskip("torch")
  from perfectrep_jax.interop.torch_reference import TorchDSTformer

  cfg = dataclasses.replace(SMALL, att_fuse=False, dim_rep=0, qkv_bias=False)
  model = model_dir.build_model("lifter", cfg, seed=3)
  model.eval()
  model_dir.save_model_dir(tmp_path / "m", model)
  convert.export_checkpoint(tmp_path / "m", tmp_path / "x.bin")
  net = torch.nn.DataParallel(TorchDSTformer(cfg)).eval()
  net.load_state_dict(torch.load(tmp_path / "x.bin", weights_only=True)["model"], strict=True)
  x = np.random.default_rng(0).normal(size=(2, 7, 17, 3)).astype(np.float32)
  with torch.no_grad():
    ref = net(torch.from_numpy(x)).numpy()
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(np.asarray(model(x)), ref, rtol=0, atol=1e-5)
  # and the exported file converts back to the same weights
  back, _ = convert.convert_checkpoint(tmp_path / "x.bin", tmp_path / "back", num_heads=4)
  for a, b in zip(jax.tree.leaves(model_dir.weights_of(model)), jax.tree.leaves(model_dir.weights_of(back))):
    np.testing.assert_array_equal(a, b)


def test_export_without_torch_says_so(tmp_path, monkeypatch, parity_dir):
  import builtins

  convert.convert_checkpoint(parity_dir / "pose_best_epoch.bin", tmp_path / "m", num_heads=4)
  real_import = builtins.__import__

  def no_torch(name, *a, **kw):
    if name == "torch":
      raise ImportError("no torch")
    return real_import(name, *a, **kw)

  monkeypatch.setattr(builtins, "__import__", no_torch)
  with pytest.raises(UserError, match="needs PyTorch"):
    convert.export_checkpoint(tmp_path / "m", tmp_path / "o.bin")
  assert not (tmp_path / "o.bin").exists()


def test_assumed_head_count_is_said_on_the_output_line(parity_dir, tmp_path, capsys):
  from perfectrep_jax.cli import main

  assert main(["convert", str(parity_dir / "pose_best_epoch.bin"), str(tmp_path / "m")]) == 0
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert "heads 8 ASSUMED" in line and "--num-heads N" in line
  assert model_dir.read_meta(tmp_path / "m")["num_heads_from"] == "assumed"
  assert (
    main(["convert", str(parity_dir / "pose_best_epoch.bin"), str(tmp_path / "n"), "--num-heads", "4"]) == 0
  )
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert line.endswith("heads 4 (from --num-heads)") and "ASSUMED" not in line


def test_head_count_is_read_from_the_training_arguments_a_checkpoint_carries(parity_dir, tmp_path, capsys):
  torch = pytest.importorskip("torch")
  from perfectrep_jax.cli import main

  state = {k: torch.from_numpy(v) for k, v in _state(parity_dir).items()}
  torch.save({"model": state, "args": {"num_heads": 4, "dim_feat": 64}}, tmp_path / "flat.bin")
  torch.save({"model_pos": state, "config": {"model": {"num_heads": 4}}}, tmp_path / "nested.bin")
  for name, where in (("flat", "'args'"), ("nested", "'config' / 'model'")):
    assert main(["convert", str(tmp_path / f"{name}.bin"), str(tmp_path / name)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.endswith(f"heads 4 (from the checkpoint's training arguments {where})"), line
    assert model_dir.read_meta(tmp_path / name)["config"]["num_heads"] == 4
  # a --num-heads that contradicts the checkpoint is one line, and nothing is written
  assert main(["convert", str(tmp_path / "flat.bin"), str(tmp_path / "c"), "--num-heads", "8"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "num_heads=4" in err and not (tmp_path / "c").exists()


def test_exported_checkpoints_carry_their_head_count(tmp_path):
  pytest.importorskip("torch")
  model = model_dir.build_model("lifter", SMALL, seed=1)
  model_dir.save_model_dir(tmp_path / "m", model)
  convert.export_checkpoint(tmp_path / "m", tmp_path / "x.bin")
  _, meta = convert.convert_checkpoint(tmp_path / "x.bin", tmp_path / "back")
  assert meta["config"]["num_heads"] == SMALL.num_heads == 4
  assert meta["num_heads_from"] == "the checkpoint's training arguments 'args'"
