"""The project's SLURM batch script on a real scheduler: a one-node cluster on localhost.

``sbatch --ntasks=2 --nodes=1 launch/slurm.sbatch ...`` starts two training processes on CPU; they
join through ``jax.distributed.initialize()`` from SLURM's environment alone and train over one
global mesh of 2 devices, writing one checkpoint and one ``metrics.jsonl`` between them. Then a
sweep's emitted job scripts go through the same scheduler.

Needs root (slurmd starts the jobs); installs Debian's slurm-wlm and munge when missing. Skipped
with the reason when SLURM cannot be installed or started, except under CI, where that fails.
"""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import sys

import pytest

from tests.launch.slurm_cluster import Unavailable, ensure_installed, local_cluster, wait_for_job
from tests.train.conftest import REPO, read_metrics, run_cli

pytestmark = pytest.mark.slow
JOB_TIMEOUT = 900


@pytest.fixture(scope="module")
def slurm():
  try:
    ensure_installed()
    cluster = local_cluster(cpus=2)
    info = cluster.__enter__()
  except Unavailable as e:
    if os.environ.get("CI"):  # CI installs SLURM: not having it there is a failure
      pytest.fail(f"SLURM unavailable: {e}")
    pytest.skip(f"SLURM unavailable: {e}")
  try:
    yield info
  finally:
    cluster.__exit__(None, None, None)


def _sbatch(slurm, args: list[str]) -> str:
  """Submits a job (environment: this one, this interpreter, CPU); returns its id."""
  cmd = ["sbatch", "--parsable", f"--export=ALL,PYTHON={sys.executable},JAX_PLATFORMS=cpu", *args]
  proc = subprocess.run(cmd, env=slurm["env"], cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 0, f"{shlex.join(cmd)}: {proc.stderr}"
  return proc.stdout.strip().split(";")[0]


def test_two_tasks_train_one_run_over_one_global_mesh(slurm, tmp_path):
  workdir = tmp_path / "run"
  log = tmp_path / "job.out"
  job = _sbatch(
    slurm,
    [
      "--ntasks=2",
      "--nodes=1",
      f"--output={log}",
      "launch/slurm.sbatch",
      "--config",
      "configs/pretrain.py:smoke",
      "--workdir",
      str(workdir),
      "--config.total_steps=4",
      "--config.eval_every=0",
      "--config.checkpoint_every=4",
      "--config.log_every=1",
    ],
  )
  fields = wait_for_job(job, slurm["env"], JOB_TIMEOUT)
  text = log.read_text(errors="replace")
  # srun's exit status is the highest of its tasks': 0:0 means both tasks exited 0
  assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), text[-4000:]
  assert "2 processes on 1 nodes (localhost), 2 per node" in text
  for task in (0, 1):  # srun --label: each task says it is one of 2 processes over 2 devices
    assert f"{task}: pretrain: 2 processes, 2 devices, mesh {{'data': 2," in text, text[-4000:]
  # one checkpoint, written by the two processes together
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4"]
  # metrics.jsonl from process 0 only: every step logged once
  assert [m["step"] for m in read_metrics(workdir) if "split" not in m] == [1, 2, 3, 4]
  from perfectrep_jax.models import model_dir

  model, _ = model_dir.load_model(workdir, step=4)
  assert model is not None


def test_emitted_sweep_jobs_run_and_summarise(slurm, tmp_path):
  workdir = tmp_path / "sweep"
  proc = run_cli(["sweep", "smoke", "--workdir", str(workdir), "--emit", "slurm", "--sbatch=--ntasks=1"])
  commands = [shlex.split(line) for line in proc.stdout.splitlines() if line.startswith("sbatch ")]
  assert len(commands) == 2
  jobs = [_sbatch(slurm, cmd[1:]) for cmd in commands]  # both fit: one CPU each
  for job, cmd in zip(jobs, commands):
    fields = wait_for_job(job, slurm["env"], JOB_TIMEOUT)
    run_dir = os.path.dirname(cmd[1])
    logs = [f for f in os.listdir(run_dir) if f.startswith("slurm-")]
    assert logs == [f"slurm-{job}.out"]
    text = open(os.path.join(run_dir, logs[0]), errors="replace").read()
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), text[-4000:]
    assert "0: pretrain: 1 processes, 1 devices" in text
  summary = run_cli(["sweep", "smoke", "--workdir", str(workdir), "--summary"])
  assert "best: optim.lr=" in summary.stdout
  with open(workdir / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["run"] for r in rows] == ["optim.lr=1e-3", "optim.lr=5e-4"]
  assert all(r["status"] == "done" and float(r["mpjpe"]) > 0 for r in rows)
