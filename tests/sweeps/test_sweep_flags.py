"""A sweep's summary flags runs that diverged and runs whose validation metric never improved on
their first evaluation: such a run is not "done" in any useful sense."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.sweeps import summary as sweep_summary
from perfectrep_jax.train.reporting import Reporter
from tests.train.conftest import CONFIGS, run_cli

NAN = float("nan")


def _evals(key, values, steps=None):
  steps = steps or [i * 500 for i in range(len(values))]
  return [{"step": s, "split": "test", key: v} for s, v in zip(steps, values)]


@pytest.mark.parametrize(
  "records, flag",
  [
    (
      _evals("mpjpe", [516.9, 517.0, 516.9]),
      "never improved: mpjpe 516.90 at its first evaluation (step 0), no better in 2 later",
    ),
    (_evals("mpjpe", [516.9, 400.0, 450.0]), ""),
    (
      _evals("top1", [50.0, 50.0]),
      "never improved: top1 50.00 at its first evaluation (step 0), no better in 1 later",
    ),
    (_evals("top1", [50.0, 40.0, 60.0]), ""),
    (_evals("mpjpe", [300.0]), ""),  # one evaluation: nothing to compare
    (
      [{"step": 20, "loss": 1.0}, *_evals("mpjpe", [300.0, 200.0], [20, 40]), {"step": 60, "loss": NAN}],
      "diverged: loss nan at step 60",
    ),
    (_evals("mpjpe", [300.0, NAN], [20, 40]), "diverged: mpjpe nan at step 40"),
  ],
)
def test_run_flag(records, flag):
  assert sweep_summary.run_flag(records) == flag


def _run_dir(workdir, name, records, total=1000):
  d = workdir / name
  d.mkdir(parents=True)
  (d / "config.json").write_text(json.dumps({"total_steps": total}))
  (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_summary_marks_and_explains_flagged_runs(tmp_path):
  sweep_file = tmp_path / "lr.py"
  sweep_file.write_text(
    "from perfectrep_jax.sweeps.spec import Sweep, axis\n"
    "def get_sweep(arg=None):\n"
    f"  return Sweep(config={str(CONFIGS / 'pretrain.py') + ':smoke'!r},\n"
    "               grid=axis('optim.lr', [1e-3, 2e-3, 5e-4]))\n"
  )
  workdir = tmp_path / "w"
  _run_dir(workdir, "optim.lr=1e-3", _evals("mpjpe", [516.9, 200.0, 150.0]))
  # never learned: flat at the untrained model's error, but "done"
  _run_dir(workdir, "optim.lr=2e-3", _evals("mpjpe", [516.9, 516.9, 517.3]))
  # best evaluation of all, then NaN: not the sweep's best
  _run_dir(workdir, "optim.lr=5e-4", [*_evals("mpjpe", [516.9, 90.0], [0, 500]), {"step": 520, "loss": NAN}])
  proc = run_cli(["sweep", str(sweep_file), "--workdir", str(workdir), "--summary"])
  lines = proc.stdout.splitlines()
  rows = {line.split()[1] if line.startswith(("*", "!")) else line.split()[0]: line for line in lines[1:4]}
  assert rows["optim.lr=1e-3"].startswith("* ")
  assert rows["optim.lr=2e-3"].startswith("! ") and " done " in rows["optim.lr=2e-3"]
  assert rows["optim.lr=5e-4"].startswith("! ")
  assert "best: optim.lr=1e-3 (mpjpe 150.00 at step 1000)" in lines
  assert (
    "flagged: optim.lr=2e-3: never improved: mpjpe 516.90 at its first evaluation (step 0), "
    "no better in 2 later" in lines
  )
  assert "flagged: optim.lr=5e-4: diverged: loss nan at step 520" in lines
  with open(workdir / "summary.csv") as f:
    flags = {r["run"]: r["flag"] for r in csv.DictReader(f)}
  assert flags["optim.lr=1e-3"] == "" and flags["optim.lr=2e-3"].startswith("never improved")
  assert flags["optim.lr=5e-4"] == "diverged: loss nan at step 520"


def test_a_diverged_loss_is_on_record(tmp_path):
  """The reporter writes the NaN line before it stops the run, so the summary can say so."""
  reporter = Reporter(tmp_path, 10, 8, enabled=True)
  try:
    reporter.train(2, [{"loss": np.float32(1.0)}])
    with pytest.raises(UserError, match="training diverged: loss is nan at step 4"):
      reporter.train(4, [{"loss": np.float32(1.0)}, {"loss": np.float32(NAN)}])
  finally:
    reporter.close()
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [2, 4] and math.isnan(records[1]["loss"])
  assert sweep_summary.run_flag(records) == "diverged: loss nan at step 4"
