"""benchmarks/lifter_figures.py: the README's default-lifter table from a published model.json."""

from __future__ import annotations

import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import print_block


def _figures(mpjpe):
  return {
    "mpjpe": mpjpe,
    "p_mpjpe": mpjpe * 0.7,
    "depth_mm": mpjpe * 0.5,
    "pck150": 80.0,
    "per_action_mpjpe": {"deep squat": mpjpe - 5, "jump": mpjpe + 5},
  }


def _summary(views):
  return {
    "views": views,
    "same_findings": views - 2,
    "with_false_findings": 1,
    "score_within_10": views - 1,
    "reps_exact": views,
    "mean_score_diff": 3.25,
  }


def test_block_reports_errors_baseline_feedback_and_provenance(tmp_path, benchmark_script):
  mod = benchmark_script("lifter_figures")
  meta = {
    "held_out": {"clean_2d": _figures(50.0), "detector_2d": _figures(70.0)},
    "feedback": {"clean_2d": _summary(56), "detector_2d": _summary(56), "views_per_take": 8},
    "trained": {
      "config": {"total_steps": 4500, "batch_size": 16, "model": {"dim_feat": 64, "depth": 4, "maxlen": 27}},
      "step": 4500,
      "commit": "a" * 40,
    },
    "weight_bytes": 3 * 2**20,
  }
  mlp = {"clean_2d": _figures(100.0), "detector_2d": _figures(120.0), "step": 3000, "total_steps": 4500}
  assert "position losses only" not in mod.block(meta, mlp, "2026-12-01", "x")  # not recorded: not said
  mlp["lambda_3d_velocity"] = 0.0
  text = mod.block(meta, mlp, "2026-12-01", "python benchmarks/lifter_figures.py")
  assert "(batches of 16 clips; position losses only: one frame at a time cannot" in text
  assert text.startswith(mod.BEGIN) and text.endswith(mod.END)
  assert "| clean 2D | 50.0 mm | 35.0 mm | 25.0 mm | 80.0% | <= 60 / 40 mm |" in text
  assert (
    "| deep squat | 45.0 mm | 65.0 mm |" in text
    and "jump" not in text.split("Per exercise")[1].split("\n\n")[1]
  )
  assert "the DSTformer is 50% below it" in text and "at step 3000 of its 4500-step schedule" in text
  assert "| detector-like 2D | 56 | 54 | 1 | 55 | - | - | 56 | 3.2 |" in text  # not recorded: -
  meta["feedback"]["detector_2d"].update(judged_score_within_10=56, score_range_within_10=55)
  assert "| detector-like 2D | 56 | 54 | 1 | 55 | 56 | 55 | 56 | 3.2 |" in mod.block(
    meta, mlp, "2026-12-01", "x"
  )
  assert "filmed whole from 8 unseen views" in text
  assert (
    "Written 2026-12-01 by" in text
    and "MotionBERT: 16.9 mm" in text
    and "step 4500" in text
    and "3.0 MiB" in text
  )
  readme = tmp_path / "README.md"
  readme.write_text(f"a\n{mod.BEGIN}\nold\n{mod.END}\nb\n")
  print_block(text, mod.BEGIN, mod.END, readme)
  assert readme.read_text() == f"a\n{text}\nb\n"


def test_block_says_the_stages_and_what_the_uncertainty_is_worth(benchmark_script):
  mod = benchmark_script("lifter_figures")
  first = {"step": 4500, "commit": "b" * 40}
  meta = {
    "held_out": {"clean_2d": _figures(50.0), "detector_2d": _figures(70.0)},
    "trained": {
      "config": {"batch_size": 16, "model": {"dim_feat": 64, "depth": 4, "maxlen": 27}},
      "step": 4500,
      "commit": "a" * 40,
      "initialised_from": {"checkpoint": "weights/lifter", "trained": first},
    },
    "uncertainty": {
      "threshold": 0.1,
      "error_ratio": 2.0,
      "spearman": 0.41,
      "table": [
        {"threshold": 0.08, "share": 0.08, "error_mm": 90.0, "rest_error_mm": 50.0, "ratio": 1.8},
        {"threshold": 0.1, "share": 0.052, "error_mm": 110.0, "rest_error_mm": 52.0, "ratio": 2.12},
      ],
    },
    "weight_bytes": 2**20,
  }
  text = mod.block(meta, None, "2026-12-02", "cmd")
  assert "9000 steps in 2 runs (4500 + 4500, each initialised from the last)" in text
  assert (
    "Spearman 0.41" in text and "joints beyond 10% of the body's height (5.20% of them) err 110 mm" in text
  )
  meta["uncertainty"]["threshold"] = None
  assert "no threshold marks joints that err 2x the rest" in mod.block(meta, None, "d", "c")
  meta["uncertainty"]["min_share"] = 0.005
  assert (
    "no threshold marks joints (at least 0.5% of them) that err 2x the rest; the most it singles out: "
    "joints beyond 10% of the body's height (5.20% of them) err 2.1x the rest, so it is not used."
  ) in mod.block(meta, None, "d", "c")


def test_the_margins_are_said_by_view_when_measured_so(benchmark_script):
  mod = benchmark_script("lifter_figures")
  errors = {"median_abs": {"trunk_lean_max": 2.0}, "views": 96}
  assert "By the view" not in mod.margins_line(errors)  # measured over every view only
  errors["by_view"] = {
    "side": {"median_abs": {"trunk_lean_max": 1.8}},
    "facing": {"median_abs": {"trunk_lean_max": 3.2, "hip_depth_max": 0.089}},
  }
  lines = mod.margins_line(errors).splitlines()
  assert "| figure | side | oblique | facing |" in lines
  assert (
    "| `trunk_lean_max` | 2° | - | 3° |" in lines
    and "| `hip_depth_max` | - | - | 0.09 thigh lengths |" in lines
  )
  # published with margins: the table gives those, and says what they are
  errors.update(margin={"trunk_lean_max": 4.2}, margin_quantile=0.8)
  errors["by_view"]["side"]["margin"] = {"trunk_lean_max": 3.4}
  text = mod.margins_line(errors)
  assert (
    text.startswith("The error that 80% of the lifter's repetitions stay within")
    and "`trunk_lean_max` 4°" in text
  )
  assert "| `trunk_lean_max` | 3° | - | - |" in text.splitlines()


def test_the_baseline_is_kept_once_evaluated(tmp_path, benchmark_script, monkeypatch):
  # The MLP baseline is evaluated from its run once; later tables (a new lifter stage, a machine
  # without that run) report the kept figures rather than dropping the comparison.
  mod = benchmark_script("lifter_figures")
  kept = tmp_path / "lifter_mlp.json"
  assert mod.baseline(None, kept) is None
  measured = {"clean_2d": _figures(300.0), "detector_2d": _figures(310.0), "step": 4500, "total_steps": 4500}
  monkeypatch.setattr(mod, "mlp_figures", lambda run: measured)
  assert mod.baseline(tmp_path / "run", kept) == measured
  assert mod.baseline(None, kept) == measured
  kept.write_text("{not json")
  with pytest.raises(UserError, match="lifter_mlp.json"):
    mod.baseline(None, kept)
