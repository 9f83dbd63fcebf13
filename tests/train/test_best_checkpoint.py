"""The best checkpoint a run keeps is the one ``best.json`` names, for both kinds of metric."""

from __future__ import annotations

import json

import grain
import numpy as np
import pytest

from perfectrep_jax.models import model_dir
from perfectrep_jax.train import checkpoints
from tests.train.conftest import CONFIGS, read_metrics, run_cli


def _save_sequence(workdir, metrics):
  """Saves steps 1..n with the given lower-is-better metrics, keeping one latest; -> steps left."""
  mngr = checkpoints.make_manager(workdir, keep=1)
  data_iter = iter(grain.MapDataset.range(4).to_iter_dataset())
  for step, metric in enumerate(metrics, start=1):
    checkpoints.save(
      mngr,
      step,
      model={"w": np.full(2, step, np.float32)},
      opt={"c": np.zeros(1, np.float32)},
      train={"step": step},
      data_iter=data_iter,
      metric=metric,
    )
    mngr.wait_until_finished()
  mngr.close()
  return sorted(int(p.name) for p in (workdir / checkpoints.CHECKPOINT_DIR).iterdir() if p.name.isdigit())


@pytest.mark.parametrize(
  "kind, values, best",
  [
    # pose: MPJPE, lowest kept; the tie at 40 mm goes to the later step
    ("pose", [50.0, 40.0, 40.0, 45.0, 60.0], 3),
    # action: minus top-1, so the highest top-1 is kept; the tie at 60% goes to the later step
    ("action", [-20.0, -60.0, -60.0, -40.0, -10.0], 3),
    ("action", [-0.0, -100.0, -100.0, -100.0, -100.0], 5),
    # a diverged evaluation (NaN) is never the best
    ("pose", [30.0, float("nan"), 50.0], 1),
  ],
)
def test_manager_keeps_the_best_and_the_latest(tmp_path, kind, values, best):
  del kind
  assert _save_sequence(tmp_path, values) == sorted({best, len(values)})


def test_action_run_keeps_the_highest_top1_that_best_json_names(tmp_path):
  """Evaluations every 10 steps (and at step 0), one kept checkpoint: the step with the highest
  top-1 (the latest of equal ones) is on disk and is the step best.json names."""
  workdir = tmp_path / "run"
  proc = run_cli(
    [
      "train",
      "--config",
      f"{CONFIGS / 'action.py'}:smoke",
      "--workdir",
      str(workdir),
      "--config.total_steps=30",
      "--config.eval_every=10",
      "--config.checkpoint_every=30",
      "--config.keep_checkpoints=1",
      "--config.eval_at_start=True",
    ]
  )
  # the run says in its first lines that it trains on the bundled demo set
  assert proc.stdout.splitlines()[1].startswith("data: demo, the small bundled demo mocap")
  evals = [m for m in read_metrics(workdir) if m.get("split") == "test"]
  assert [m["step"] for m in evals] == [0, 10, 20, 30]
  top = max(m["top1"] for m in evals)
  best_step = max(m["step"] for m in evals if m["top1"] == top)
  best = json.loads((workdir / "best.json").read_text())
  assert best == {"step": best_step, "top1": pytest.approx(top)}
  on_disk = {int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()}
  assert best_step in on_disk and on_disk <= {best_step, 30}


def test_a_best_json_naming_a_missing_step_is_said(tmp_path, capsys):
  workdir = tmp_path / "run"
  _save_sequence(workdir, [3.0, 2.0, 1.0])  # keeps step 3 only
  (workdir / "best.json").write_text(json.dumps({"step": 2, "mpjpe": 2.0}))
  assert model_dir._weights_dir(workdir, None) == workdir / "checkpoints" / "3" / "model"
  err = capsys.readouterr().err
  assert "best.json names step 2, which is not on disk" in err and "step 3" in err
  (workdir / "best.json").write_text(json.dumps({"step": 3, "mpjpe": 1.0}))
  assert model_dir._weights_dir(workdir, None) == workdir / "checkpoints" / "3" / "model"
  assert capsys.readouterr().err == ""
