"""Smoke run of benchmarks/run.py at a tiny size: it runs and reports its figures (never timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def test_tiny_run_prints_and_returns_the_figures(tmp_path, capsys, benchmark_script):
  run = benchmark_script("run")
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
  keys = [
    "train_clips_per_s",
    "eval_clips_per_s",
    "compile_train_s",
    "compile_eval_s",
    "flops_per_clip_forward",
    "flops_per_clip_train",
    "train_peak_bytes",
  ]
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


def test_readme_table_is_replaced_between_markers(tmp_path, monkeypatch, benchmark_script):
  run = benchmark_script("run")
  readme = tmp_path / "README.md"
  readme.write_text(f"# B\n\nintro\n\n{run.BEGIN}\nold table\n{run.END}\n\nafter\n")
  monkeypatch.setattr(run, "README", readme)
  res = {
    "size": "tiny",
    "dim_feat": 16,
    "mlp_ratio": 2,
    "frames": 9,
    "train_batch": 2,
    "eval_batch": 2,
    "train_clips_per_s": 3.0,
    "torch_train_clips_per_s": 2.0,
    "train_ratio": 1.5,
    "iters": 1,
  }
  env = {"cpu": "x", "cores_usable": 2, "threads": 2, "jax": "0", "python": "3", "loadavg_1min_end": 0.5}
  run.write_readme([res], env, "python benchmarks/run.py --size tiny")
  text = readme.read_text()
  assert "old table" not in text and "intro" in text and "after" in text
  assert "**1.50x**" in text and text.count(run.BEGIN) == 1


def test_a_run_of_one_size_keeps_the_other_sizes_rows(tmp_path, monkeypatch, benchmark_script):
  run = benchmark_script("run")
  readme = tmp_path / "README.md"
  full_row = "| full (dim 512, mlp 2) | 243 | 1 / 2 | 0.110 | 0.113 | **0.98x** | 0.450 | 0.368 | **1.22x** |"
  readme.write_text(
    f"# B\n\n{run.BEGIN}\n| size | T |\n|---|---|\n"
    "| lite (dim 256, mlp 4) | 243 | 2 / 2 | 0.291 |\n" + full_row + "\n\n"
    "- Command: `python benchmarks/run.py --size both --iters 5 --write-readme`; medians\n"
    "- lite: max |ours - PyTorch| 4.5e-07.\n- full: max |ours - PyTorch| 7.0e-07.\n"
    f"{run.END}\n"
  )
  monkeypatch.setattr(run, "README", readme)
  res = {
    "size": "lite",
    "dim_feat": 256,
    "mlp_ratio": 4,
    "frames": 243,
    "train_batch": 2,
    "eval_batch": 2,
    "train_clips_per_s": 0.5,
    "iters": 1,
  }
  env = {"cpu": "x", "cores_usable": 2, "threads": 2, "jax": "0", "python": "3", "loadavg_1min_end": 0.5}
  run.write_readme([res], env, "python benchmarks/run.py --size lite --write-readme")
  block = readme.read_text().split(run.BEGIN)[1].split(run.END)[0]
  rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| size")]
  assert [run._row_size(r) for r in rows] == ["lite", "full"] and rows[1] == full_row
  assert "0.500" in rows[0] and "0.291" not in block
  assert "- full: max |ours - PyTorch| 7.0e-07." in block and "- lite: max" not in block
  assert "(`python benchmarks/run.py --size both --iters 5 --write-readme`), not from this command" in block


def test_forward_full_size_help_is_its_own():
  import subprocess
  import sys

  script = RUN_PY.parent / "forward_full_size.py"
  proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("usage: forward_full_size.py")
  assert "the full PerfectRep DSTformer (dim 512, depth 5, 8 heads, T 243) runs forward" in proc.stdout
