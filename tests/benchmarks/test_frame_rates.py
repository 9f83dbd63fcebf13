"""The frame-rate check of the shipped lifter: footage at 15 fps is lifted better on its own clock."""

from __future__ import annotations

import pytest

from perfectrep_jax.data import mocap
from perfectrep_jax.models.model_dir import load_model, make_apply_fn
from perfectrep_jax.weights import DEFAULT_LIFTER
from perfectrep_jax.wild.lift import trained_fps


def test_low_frame_rate_footage_is_lifted_better_on_the_lifters_clock(benchmark_script, capsys):
  # The held-out performer's jogs and kicks as a 15 fps camera films them: lifted as they are,
  # the 27-frame window spans 1.8 s of fast motion instead of the 0.54 s of training; on the
  # lifter's 50 fps clock (as infer lifts them) the error drops by a quarter (one view each:
  # P-MPJPE 78.7 -> 56.6 mm; over all 58 held-out takes 48.6 -> 43.6).
  bench = benchmark_script("frame_rates")
  model, meta = load_model(DEFAULT_LIFTER)
  assert trained_fps(meta) == mocap.FPS
  takes = {name: w for name, w in bench.held_out_takes().items() if "_jog" in name or "_kick" in name}
  assert len(takes) >= 5
  got = bench.rate_errors(make_apply_fn(model), meta["config"]["maxlen"], mocap.FPS, takes, 15.0, views=1)
  assert got["on_clock"] < 0.85 * got["as_filmed"], got
  # at the lifter's own rate both are one lifting
  same = bench.rate_errors(make_apply_fn(model), meta["config"]["maxlen"], mocap.FPS, takes, 50.0, views=1)
  assert same["on_clock"] == pytest.approx(same["as_filmed"], abs=1e-6)


def test_the_script_prints_its_table(benchmark_script, capsys):
  assert benchmark_script("frame_rates").main(["--rates", "25", "--takes", "1"]) == 0
  out = capsys.readouterr().out
  assert "1 held-out takes x 1 view(s)" in out and "trained at 50 fps" in out
  assert out.strip().splitlines()[-1].startswith("| 25 fps | ")
