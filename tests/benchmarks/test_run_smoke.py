"""Smoke run of benchmarks/run.py at a tiny size: it runs and reports its figures (never timings)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def _load_run():
  spec = importlib.util.spec_from_file_location("perfectrep_benchmarks_run", RUN_PY)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_tiny_run_prints_and_returns_the_figures(tmp_path, capsys):
  run = _load_run()
  out = tmp_path / "bench.json"
  argv = ["--size", "tiny", "--iters", "1", "--warmup", "0", "--no-pipeline", "--json", str(out)]
  try:
    import torch  # noqa: F401
    has_torch = True
  except ImportError:
    argv.append("--no-torch")
    has_torch = False
  results = run.main(argv)
  printed = capsys.readouterr().out
  assert "| tiny" in printed and "clips/s" in printed
  data = json.loads(out.read_text())
  (res,) = data["results"]
  assert res == results[0] or res.keys() == results[0].keys()
  keys = ["train_clips_per_s", "eval_clips_per_s", "compile_train_s", "compile_eval_s",
          "flops_per_clip_forward", "flops_per_clip_train", "train_peak_bytes"]
  if has_torch:
    keys += ["torch_train_clips_per_s", "torch_eval_clips_per_s", "train_ratio", "eval_ratio"]
    # same weights on both sides: the eval outputs agree to float32 round-off
    assert res["eval_max_abs_diff_vs_torch"] < 1e-4
  for key in keys:
    assert isinstance(res[key], (int, float)) and res[key] > 0, key
  env = data["environment"]
  assert env["threads"] >= 1
  # the CPU roofline: one large GEMM per framework, and each step's achieved FLOP/s against it
  assert env["gemm_peak_gflops"] == max(v for k, v in env.items() if k.startswith("gemm_gflops_"))
  for kind, per_clip in (("train", "flops_per_clip_train"), ("eval", "flops_per_clip_forward")):
    achieved = res[per_clip] * res[f"{kind}_clips_per_s"] / 1e9
    assert res[f"{kind}_gflops"] == pytest.approx(achieved)
    assert res[f"{kind}_fraction_of_gemm_peak"] == pytest.approx(achieved / env["gemm_peak_gflops"])
  assert "GEMM rate" in printed


def test_readme_table_is_replaced_between_markers(tmp_path, monkeypatch):
  run = _load_run()
  readme = tmp_path / "README.md"
  readme.write_text(f"# B\n\nintro\n\n{run.BEGIN}\nold table\n{run.END}\n\nafter\n")
  monkeypatch.setattr(run, "README", readme)
  res = {"size": "tiny", "dim_feat": 16, "mlp_ratio": 2, "frames": 9, "train_batch": 2,
         "eval_batch": 2, "train_clips_per_s": 3.0, "torch_train_clips_per_s": 2.0,
         "train_ratio": 1.5, "iters": 1}
  env = {"cpu": "x", "cores_usable": 2, "threads": 2, "jax": "0", "python": "3",
         "loadavg_1min_end": 0.5}
  run.write_readme([res], env, "python benchmarks/run.py --size tiny")
  text = readme.read_text()
  assert "old table" not in text and "intro" in text and "after" in text
  assert "**1.50x**" in text and text.count(run.BEGIN) == 1
