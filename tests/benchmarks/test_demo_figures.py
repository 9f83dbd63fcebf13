"""benchmarks/demo_figures.py: the README's demo table from the runs' evaluations (not the training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfectrep_jax.fileio import print_block


def _evaluation(run_dir: Path, step: int, per_action: dict[str, tuple[float, float]]):
  d = run_dir / "eval" / f"step_{step}"
  d.mkdir(parents=True)
  (d / "metrics.json").write_text(
    json.dumps(
      {
        "metrics": {},
        "per_action": {a: {"P1": p1, "P2": p2, "frames": 10} for a, (p1, p2) in per_action.items()},
      }
    )
  )


def test_the_block_holds_per_action_means_of_each_run_and_says_when_and_where(tmp_path, benchmark_script):
  demo = benchmark_script("demo_figures")
  w = tmp_path / "runs"
  _evaluation(w / "dstformer", 0, {"squat": (500.0, 400.0), "lunge": (540.0, 420.0)})
  _evaluation(w / "dstformer", 500, {"squat": (170.0, 110.0), "lunge": (190.0, 120.0)})
  _evaluation(w / "dstformer", 1000, {"squat": (150.0, 100.0), "lunge": (160.0, 104.0)})
  _evaluation(w / "mlp", 0, {"squat": (600.0, 500.0), "lunge": (600.0, 500.0)})
  _evaluation(w / "mlp", 1000, {"squat": (260.0, 180.0), "lunge": (280.0, 186.0)})
  text = demo.block(
    w,
    {"dstformer": 420.0, "mlp": 240.0},
    "python benchmarks/demo_figures.py",
    "2026-12-01",
    "Some CPU, 2 cores",
  )
  assert text.startswith(demo.BEGIN) and text.endswith(demo.END)
  assert "| untrained DSTformer (step 0 of the run below) | 520.0 mm | 410.0 mm |" in text
  assert "| 270.0 mm | 183.0 mm |" in text and "| DSTformer | 155.0 mm | 102.0 mm |" in text
  assert "same 1000-step budget" in text
  assert "43% below the MLP" in text and "at step 500 of the same schedule, it stood at 180.0 mm" in text
  assert demo.compared(154.5, 102.7).startswith("The MLP ends 34% below the DSTformer (P1)")
  assert (
    "Measured 2026-12-01 on Some CPU, 2 cores (training wall time: dstformer 7.0 min, mlp 4.0 min)" in text
  )
  readme = tmp_path / "README.md"
  readme.write_text(f"# x\n\nbefore\n{demo.BEGIN}\nold\n{demo.END}\nafter\n")
  print_block(text, demo.BEGIN, demo.END, readme)
  assert readme.read_text() == f"# x\n\nbefore\n{text}\nafter\n"


def test_a_run_without_evaluations_is_named(tmp_path, benchmark_script):
  demo = benchmark_script("demo_figures")
  (tmp_path / "dstformer").mkdir()
  with pytest.raises(SystemExit, match="dstformer: no evaluations"):
    demo.evaluation(tmp_path / "dstformer")
