"""Model configs are checked (types, ranges, divisibility, parameter count) before anything is built."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import nnx

from perfectrep_jax.models import model_dir
from perfectrep_jax.models.baseline import MLPLifterConfig
from perfectrep_jax.models.dstformer import DSTformerConfig
from perfectrep_jax.models.heads import ActionConfig

SMALL = dict(
  dim_in=3, dim_out=3, dim_feat=16, dim_rep=24, depth=2, num_heads=4, mlp_ratio=2.0, num_joints=5, maxlen=7
)


def _count(model) -> int:
  return sum(
    int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, model_dir.WEIGHTS)) if x.shape != ()
  )  # BatchNorm's step counter is not a parameter


@pytest.mark.parametrize(
  "changes", [{}, {"att_fuse": False}, {"qkv_bias": False}, {"dim_rep": 0}, {"dim_out": 0, "mlp_ratio": 1.5}]
)
def test_parameter_count_matches_the_built_model(changes):
  cfg = DSTformerConfig(**{**SMALL, **changes})
  assert cfg.num_parameters() == _count(model_dir.build_model("lifter", cfg))


@pytest.mark.parametrize("version", ["class", "embed"])
def test_action_and_mlp_counts_are_checked_against_the_models(version, monkeypatch):
  from perfectrep_jax.models import bounds

  cfg = ActionConfig(backbone=DSTformerConfig(**SMALL), num_classes=6, hidden_dim=32, version=version)
  n = _count(model_dir.build_model("action", cfg))
  monkeypatch.setattr(bounds, "MAX_PARAMETERS", n)
  ActionConfig.from_dict(cfg.to_dict())  # exactly at the bound: accepted
  monkeypatch.setattr(bounds, "MAX_PARAMETERS", n - 1)
  with pytest.raises(ValueError, match=f"action model would have {n:,} parameters"):
    ActionConfig.from_dict(cfg.to_dict())
  mlp = MLPLifterConfig(num_joints=5, hidden=16, num_blocks=2)
  monkeypatch.setattr(bounds, "MAX_PARAMETERS", 10**9)
  m = _count(model_dir.build_model("mlp_lifter", mlp))
  monkeypatch.setattr(bounds, "MAX_PARAMETERS", m - 1)
  with pytest.raises(ValueError, match=f"MLP lifter would have {m:,} parameters"):
    MLPLifterConfig.from_dict(mlp.to_dict())


BAD = [
  ({"dim_feat": 10**9}, "dim_feat must be in 1..65536"),
  ({"depth": 10**6}, "depth must be in 1..1024"),
  ({"num_heads": 0}, "num_heads must be in 1..65536"),
  ({"num_heads": 3}, "dim_feat 16 is not divisible by num_heads 3"),
  ({"mlp_ratio": math.inf}, "mlp_ratio must be a finite number"),
  ({"mlp_ratio": 0.01}, "mlp_ratio 0.01 gives an MLP of width 0"),
  ({"qk_scale": "0.1"}, "qk_scale must be a finite number, got '0.1'"),
  ({"dim_in": 3.0}, "dim_in must be an integer, got 3.0"),
  ({"qkv_bias": "yes"}, "qkv_bias must be true or false"),
  ({"drop_rate": 1.0}, r"drop_rate must be in \[0.0, 1.0\)"),
  ({"dim_feat": 8192, "num_heads": 8, "depth": 40}, "DSTformer would have 85,915,418,803 parameters"),
  ({"bogus": 1}, "unknown DSTformer config fields"),
]


@pytest.mark.parametrize("changes,message", BAD)
def test_bad_values_are_refused_before_building(changes, message):
  with pytest.raises(ValueError, match=message):
    DSTformerConfig.from_dict({**SMALL, **changes})


def test_bad_model_json_gives_one_line_under_a_memory_cap(tiny_model_dir, tmp_path):
  """Each bad model.json, loaded in a child capped at 3 GiB of address space and a minute: a
  regression that builds a 12 GB model, or one of a million blocks, fails instead of hanging."""
  meta = json.loads((tiny_model_dir / "model.json").read_text())
  cases = [dict(c) for c, _ in BAD[:5]] + ["not a dict"]
  paths = []
  for i, case in enumerate(cases):
    d = tmp_path / f"m{i}"
    d.mkdir()
    (d / "params").symlink_to(tiny_model_dir / "params")
    config = {**meta["config"], **case} if isinstance(case, dict) else case
    (d / "model.json").write_text(json.dumps({**meta, "config": config}))  # inf -> Infinity
    paths.append(str(d))
  paths.append(str(tmp_path / "action"))  # an action model without its backbone
  (tmp_path / "action").mkdir()
  (tmp_path / "action" / "model.json").write_text(
    json.dumps({"format": 1, "kind": "action", "config": {"num_classes": 3}})
  )
  code = textwrap.dedent(f"""
      import resource
      resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
      from perfectrep_jax.errors import UserError
      from perfectrep_jax.models.model_dir import load_model
      for path in {paths!r}:
        try:
          load_model(path)
          print("LOADED", path, flush=True)
        except UserError as e:
          print("USERERROR", str(e).replace("\\\\n", "|"), flush=True)
  """)
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  lines = proc.stdout.splitlines()
  assert proc.returncode == 0 and len(lines) == len(paths), (proc.stdout, proc.stderr[-3000:])
  expected = [m for _, m in BAD[:5]] + [
    "a DSTformer config is a mapping of fields, not str",
    "an action config is a mapping with a 'backbone'",
  ]
  for path, line, message in zip(paths, lines, expected):
    assert line.startswith(f"USERERROR {path}/model.json: invalid model config"), line
    assert message in line and "|" not in line, (line, message)
