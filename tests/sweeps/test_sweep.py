"""Sweeps: grids, run names, config building and validation, local runs, emitted jobs, summaries.

The fast tests replace training by a function that writes what the trainer writes
(``metrics.jsonl``, ``config.json``); the slow test runs a real two-run sweep from the command line.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from perfectrep_jax import cli
from perfectrep_jax.errors import UserError
from perfectrep_jax.sweeps import launch as sweep_launch, spec as sweep, summary as sweep_summary
from tests.train.conftest import CONFIGS, REPO, read_metrics, run_cli


def _write_sweep(directory: Path, body: str, name: str = "grid.py") -> Path:
  """A sweep file in ``directory`` whose configs are the repository's (``CONFIG`` is bound)."""
  path = directory / name
  path.write_text(
    "from perfectrep_jax.sweeps.spec import Sweep, axis, product, zipped, chain\n"
    f"CONFIG = {str(CONFIGS / 'pretrain.py')!r}\n" + textwrap.dedent(body)
  )
  return path


@pytest.fixture
def grid_sweep(tmp_path):
  """2 x 2 product over the smoke config, with shared overrides."""
  path = _write_sweep(
    tmp_path,
    """
      def get_sweep(arg=None):
        return Sweep(config=CONFIG + ":smoke",
                     grid=product(axis("optim.lr", [1e-3, 1e-4]), axis("model.depth", [1, 2])),
                     fixed={"total_steps": 4})
      """,
  )
  return sweep.load_sweep(str(path))


# ---------------------------------------------------------------------------- grids and names
def test_product_zip_chain():
  lr = sweep.axis("optim.lr", [1e-3, 1e-4])
  size = sweep.zipped(sweep.axis("model.dim_feat", [64, 128]), sweep.axis("model.depth", [2, 3]))
  grid = sweep.product(lr, size)
  assert grid == [
    {"optim.lr": 1e-3, "model.dim_feat": 64, "model.depth": 2},
    {"optim.lr": 1e-3, "model.dim_feat": 128, "model.depth": 3},
    {"optim.lr": 1e-4, "model.dim_feat": 64, "model.depth": 2},
    {"optim.lr": 1e-4, "model.dim_feat": 128, "model.depth": 3},
  ]
  assert sweep.chain(lr, [{"seed": 1}]) == [{"optim.lr": 1e-3}, {"optim.lr": 1e-4}, {"seed": 1}]
  with pytest.raises(ValueError, match="different lengths"):
    sweep.zipped(lr, sweep.axis("seed", [0, 1, 2]))
  with pytest.raises(ValueError, match="optim.lr is set by two"):
    sweep.product(lr, lr)
  with pytest.raises(ValueError, match="dotted config field"):
    sweep.axis("optim lr", [1])


@pytest.mark.parametrize(
  "overrides, name",
  [
    ({"optim.lr": 0.0001, "model.depth": 3}, "optim.lr=1e-4_model.depth=3"),
    ({"optim.lr": 5e-4}, "optim.lr=5e-4"),
    ({"optim.lr": 0.5, "data.flip": False}, "optim.lr=0.5_data.flip=False"),
    ({"optim.lr": 2.5e-05}, "optim.lr=2.5e-5"),
    ({"data.scale_range": (1.0, 3.0)}, "data.scale_range=1.0,3.0"),
    ({"data.source": "fit3d"}, "data.source=fit3d"),
    ({"total_steps": 100000}, "total_steps=100000"),
    ({}, "base"),
  ],
)
def test_run_names(overrides, name):
  assert sweep.run_name(overrides) == name


def test_unsafe_and_long_names_stay_distinct_and_safe():
  a = sweep.run_name({"init.checkpoint": "runs/a b"})
  b = sweep.run_name({"init.checkpoint": "runs/a-b"})
  c = sweep.run_name({"init.checkpoint": "runs/a/b"})
  assert len({a, b, c}) == 3
  assert a.startswith("init.checkpoint=runs-a-b~") and "/" not in a + b + c
  long = sweep.run_name({f"model.field_{i}": 123456789 for i in range(20)})
  assert len(long) <= sweep.MAX_NAME and "~" in long
  assert sweep.run_name({"optim.lr": 1e-4}) == sweep.run_name({"optim.lr": 0.0001})  # stable


def test_flags_build_the_config_the_train_command_would(grid_sweep):
  run = sweep.Run(
    name="x",
    config=f"{CONFIGS / 'action.py'}:full",
    fixed={},
    overrides={
      "optim.lr": 1e-4,
      "data.scale_range": (1.0, 2.0),
      "data.flip": False,
      "data.source": "demo",
      "model.depth": 2,
      "init.checkpoint": "runs/a b",
      "action.classes": ("a", "b c"),
    },
  )
  config = sweep.build_config(run)
  assert config.optim.lr == 1e-4 and config.data.scale_range == (1.0, 2.0)
  assert config.data.flip is False and config.model.depth == 2
  assert config.init.checkpoint == "runs/a b" and config.action.classes == ("a", "b c")
  assert run.train_args("W")[:4] == ["--config", run.config, "--workdir", "W"]
  # the sweep's own runs: shared overrides first, then the run's
  first = grid_sweep.runs[0]
  assert first.name == "optim.lr=1e-3_model.depth=1"
  assert first.flags == ["--config.total_steps=4", "--config.optim.lr=0.001", "--config.model.depth=1"]
  built = sweep.build_config(first)
  assert (built.total_steps, built.optim.lr, built.model.depth) == (4, 1e-3, 1)


# ---------------------------------------------------------------------------- loading, checks
def test_load_by_name_with_argument(monkeypatch):
  monkeypatch.chdir(REPO)
  loaded = sweep.load_sweep("pretrain_scale:tpu")
  assert loaded.path == REPO / "configs" / "sweeps" / "pretrain_scale.py"
  assert loaded.config_spec(REPO) == "configs/pretrain.py:full"
  assert len(loaded.runs) == 6 and loaded.runs[0].fixed["mesh.fsdp"] == 4
  with pytest.raises(UserError, match="argument gpu, tpu or cpu"):
    sweep.load_sweep("pretrain_scale:nope")


@pytest.mark.parametrize(
  "body, message",
  [
    ("x = 1\n", "defines no get_sweep"),
    ("def get_sweep(arg=None):\n  return {}\n", "not a Sweep"),
    ("import nonexistent_module_xyz\n", "cannot import the sweep file"),
    ("def get_sweep(arg=None):\n  return Sweep(config='missing.py:x')\n", "no such file"),
    (
      "def get_sweep(arg=None):\n  return Sweep(config=CONFIG, grid=[{'seed': 1}, {'seed': 1}])\n",
      "two runs named seed=1",
    ),
    (
      "def get_sweep(arg=None):\n  return Sweep(config=CONFIG, grid=axis('seed', [1]), fixed={'seed': 2})\n",
      "set both in the grid and in fixed",
    ),
  ],
)
def test_bad_sweep_files(tmp_path, body, message):
  path = _write_sweep(tmp_path, body)
  with pytest.raises(UserError, match=message):
    sweep.load_sweep(str(path))
  with pytest.raises(UserError, match="no such file"):
    sweep.load_sweep(str(tmp_path / "absent.py"))


def test_every_config_is_checked_before_anything_runs(tmp_path):
  path = _write_sweep(
    tmp_path,
    """
      def get_sweep(arg=None):
        return Sweep(config=CONFIG + ":smoke",
                     grid=[{"optim.lr": 1e-3}, {"optim.schedule": "cosine"}, {"model.nope": 1},
                           {"mesh.fsdp": 4}])
      """,
  )
  loaded = sweep.load_sweep(str(path))
  calls = []
  with pytest.raises(UserError) as err:
    sweep_launch.run_local(loaded, tmp_path / "w", train=lambda r, d: calls.append(r) or 0)
  text = str(err.value)
  assert calls == [] and not (tmp_path / "w").exists()
  assert "run optim.schedule=cosine: optim.schedule" in text
  assert "run model.nope=1" in text and "nope" in text
  assert "run mesh.fsdp=4: mesh" in text and "does not divide" in text  # 1 CPU device here
  assert "optim.lr=1e-3" not in text
  # for a cluster the mesh is checked against its devices, not this machine's
  ok = sweep.load_sweep(
    str(
      _write_sweep(
        tmp_path,
        """
      def get_sweep(arg=None):
        return Sweep(config=CONFIG + ":smoke", grid=axis("mesh.fsdp", [4]))
      """,
        "mesh.py",
      )
    )
  )
  sweep.check_runs(ok.runs, mesh_devices=None)
  sweep.check_runs(ok.runs, mesh_devices=8)
  with pytest.raises(UserError, match="run mesh.fsdp=4: mesh.*does not divide the 6 devices"):
    sweep.check_runs(ok.runs, mesh_devices=6)


# ---------------------------------------------------------------------------- local runs
def _fake_trainer(results: dict[str, float], calls: list, fail: set = frozenset()):
  """Writes what ``perfectrep-jax train`` writes: config.json and metrics.jsonl with evals."""

  def train(run, run_dir):
    calls.append(run.name)
    if run.name in fail:
      return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"total_steps": 4}))
    lines = [
      {"step": 2, "loss": 1.0},
      {"step": 2, "split": "test", "mpjpe": 200.0, "p_mpjpe": 150.0, "mpjpe/squat": 1.0, "eval_clips": 3},
      {"step": 4, "loss": 0.5},
      {"step": 4, "split": "test", "mpjpe": results[run.name], "p_mpjpe": 100.0},
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    return 0

  return train


def test_local_sweep_runs_resumes_and_summarises(grid_sweep, tmp_path, capsys):
  names = [r.name for r in grid_sweep.runs]
  results = dict(zip(names, [90.0, 50.0, 300.0, 120.0]))
  calls: list = []
  workdir = tmp_path / "w"
  out = sweep_launch.run_local(grid_sweep, workdir, train=_fake_trainer(results, calls))
  assert calls == names and set(out.values()) == {"done"}
  for name in names:
    state = json.loads((workdir / name / "sweep.json").read_text())
    assert state["status"] == "done" and state["settings"]["flags"][-1].startswith("--config.")
  printed = capsys.readouterr().out
  assert "best: optim.lr=1e-3_model.depth=2 (mpjpe 50.00 at step 4)" in printed
  # rerunning is a no-op
  calls.clear()
  out = sweep_launch.run_local(grid_sweep, workdir, train=_fake_trainer(results, calls))
  assert calls == [] and set(out.values()) == {"skipped"}
  # summary table and CSV
  rows = sweep_summary.summarize(grid_sweep, workdir)
  assert [r["run"] for r in rows] == names
  assert [r["mpjpe"] for r in rows] == [90.0, 50.0, 200.0, 120.0]  # each run's best
  assert all(r["status"] == "done" and r["step"] == 4 for r in rows)
  with open(workdir / "summary.csv") as f:
    table = list(csv.DictReader(f))
  assert [t["run"] for t in table] == names
  assert table[0]["optim.lr"] == "0.001" and table[0]["model.depth"] == "1"
  assert float(table[1]["mpjpe"]) == 50.0 and table[2]["best_step"] == "2"
  assert "mpjpe/squat" not in table[0] and "eval_clips" not in table[0]


def test_failed_runs_do_not_stop_the_others_unless_fail_fast(grid_sweep, tmp_path):
  names = [r.name for r in grid_sweep.runs]
  results = dict.fromkeys(names, 80.0)
  calls: list = []
  with pytest.raises(UserError, match=f"1 of 4 runs failed: {names[1]}"):
    sweep_launch.run_local(grid_sweep, tmp_path / "a", train=_fake_trainer(results, calls, {names[1]}))
  assert calls == names
  rows = {r["run"]: r for r in sweep_summary.summarize(grid_sweep, tmp_path / "a")}
  assert rows[names[1]]["status"] == "failed" and rows[names[2]]["status"] == "done"
  calls.clear()
  with pytest.raises(UserError, match="failed"):
    sweep_launch.run_local(
      grid_sweep, tmp_path / "b", fail_fast=True, train=_fake_trainer(results, calls, {names[1]})
    )
  assert calls == names[:2]
  # a failed run is run again next time
  calls.clear()
  sweep_launch.run_local(grid_sweep, tmp_path / "a", train=_fake_trainer(results, calls))
  assert calls == [names[1]]


def test_a_run_directory_is_never_reused_for_other_settings(grid_sweep, tmp_path):
  workdir = tmp_path / "w"
  sweep_launch.run_local(
    grid_sweep, workdir, train=_fake_trainer(dict.fromkeys([r.name for r in grid_sweep.runs], 1.0), [])
  )
  grid = sweep.product(sweep.axis("optim.lr", [1e-3, 1e-4]), sweep.axis("model.depth", [1, 2]))
  changed = sweep.expand(
    sweep.Sweep(config=f"{CONFIGS / 'pretrain.py'}:smoke", grid=grid, fixed={"total_steps": 5}),
    grid_sweep.path,
  )
  assert [r.name for r in changed.runs] == [r.name for r in grid_sweep.runs]
  with pytest.raises(UserError, match="(?s)other settings.*total_steps=4"):
    sweep_launch.run_local(changed, workdir, train=lambda r, d: 0)


def test_summary_statuses(grid_sweep, tmp_path):
  workdir = tmp_path / "w"
  a, b, c, d = (workdir / r.name for r in grid_sweep.runs)
  a.mkdir(parents=True)
  (a / "config.json").write_text(json.dumps({"total_steps": 10}))
  (a / "metrics.jsonl").write_text('{"step": 3, "loss": 1}\n{"step": 3, "split": "te')  # cut
  sweep_launch.write_state(b, {"status": "failed"})
  c.mkdir(parents=True)
  (c / "config.json").write_text(json.dumps({"total_steps": 10}))
  (c / "metrics.jsonl").write_text(
    "".join(
      json.dumps(m) + "\n"
      for m in [
        {"step": 10, "split": "test", "top1": 40.0, "top5": 90.0},
        {"step": 5, "split": "test", "top1": 60.0, "top5": 80.0},
      ]
    )
  )
  rows = sweep_summary.summarize(grid_sweep, workdir)
  assert [r["status"] for r in rows] == ["partial", "failed", "done", "pending"]
  assert rows[2]["top1"] == 60.0 and rows[2]["best_step"] == 5  # action: highest top-1
  text = sweep_summary.format_table(rows)
  assert text.splitlines()[3].startswith("*") and "best: " + c.name in text


# ---------------------------------------------------------------------------- emitted jobs
def test_emit_slurm_writes_scripts_that_pass_each_runs_arguments(grid_sweep, tmp_path):
  workdir = tmp_path / "w w"  # a space: the scripts must quote
  lines = sweep_launch.emit_slurm(
    grid_sweep, workdir, sbatch_options="--nodes=2 --gpus-per-node 8 -t 1:00:00"
  )
  commands = [line for line in lines if line.startswith("sbatch ")]
  assert len(commands) == 4
  fake_bin = tmp_path / "bin"
  fake_bin.mkdir()
  (fake_bin / "srun").write_text('#!/bin/bash\nprintf \'%s\\n\' "$@" > "$SRUN_ARGS"\n')
  (fake_bin / "srun").chmod(0o755)
  for run, command in zip(grid_sweep.runs, commands):
    script = workdir / run.name / "job.sbatch"
    assert shlex.split(command) == ["sbatch", str(script)]
    text = script.read_text()
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert f"#SBATCH --job-name={run.name}" in directives
    assert "#SBATCH --nodes=2" in directives and "#SBATCH --gpus-per-node 8" in directives
    assert "#SBATCH -t 1:00:00" in directives
    assert "#SBATCH --job-name=perfectrep-jax" not in directives  # the template's, replaced
    assert "#SBATCH --signal=TERM@120" in directives  # the template's, kept
    assert f"#SBATCH --output={workdir / run.name}/slurm-%j.out" in directives
    # sbatch reads directives only before the first command: they all come before `set --`
    assert text.index("set -- ") > text.rindex("#SBATCH")
    env = dict(
      os.environ,
      PATH=f"{fake_bin}:{os.environ['PATH']}",
      PYTHON="python3",
      SLURM_NTASKS="16",
      SLURM_JOB_NUM_NODES="2",
      SLURM_GPUS_ON_NODE="8",
      SRUN_ARGS=str(tmp_path / "srun_args"),
    )
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "16 processes on 2 nodes" in proc.stdout
    args = (tmp_path / "srun_args").read_text().splitlines()
    assert args[:6] == ["--kill-on-bad-exit=1", "--label", "python3", "-m", "perfectrep_jax.cli", "train"]
    assert args[6:] == [
      "--config",
      f"{CONFIGS / 'pretrain.py'}:smoke",
      "--workdir",
      str(workdir.resolve() / run.name),
      *run.flags,
    ]  # absolute paths
  state = json.loads((workdir / grid_sweep.runs[0].name / "sweep.json").read_text())
  assert state["emitted"] == "slurm"
  with pytest.raises(UserError, match="'nodes=2' is not an sbatch option"):
    sweep_launch.emit_slurm(grid_sweep, workdir, sbatch_options="nodes=2")
  # an option given with --sbatch replaces the sweep's own (here the job name)
  sweep_launch.emit_slurm(grid_sweep, workdir, sbatch_options="-J mine")
  directives = (workdir / run.name / "job.sbatch").read_text().splitlines()
  assert "#SBATCH -J mine" in directives and not any("--job-name" in d for d in directives)


def test_emitted_slurm_lines_piped_to_bash_check_for_sbatch_once(grid_sweep, tmp_path):
  lines = sweep_launch.emit_slurm(grid_sweep, tmp_path / "w")
  text = "\n".join(lines) + "\n"
  bare = tmp_path / "bare"  # bash's own directory for nothing but the shell: no sbatch
  bare.mkdir()
  os.symlink(shutil.which("bash"), bare / "bash")
  proc = subprocess.run(
    [str(bare / "bash")], input=text, env={"PATH": str(bare)}, capture_output=True, text=True
  )
  assert proc.returncode == 127 and proc.stdout == ""
  assert len(proc.stderr.strip().splitlines()) == 1 and "sbatch not found" in proc.stderr
  fake_bin = tmp_path / "bin"
  fake_bin.mkdir()
  (fake_bin / "sbatch").write_text('#!/bin/bash\necho "Submitted batch job for $1"\n')
  (fake_bin / "sbatch").chmod(0o755)
  proc = subprocess.run(
    ["bash"],
    input=text,
    env=dict(os.environ, PATH=f"{fake_bin}:{os.environ['PATH']}"),
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.count("Submitted batch job for ") == len(grid_sweep.runs)


def test_emit_tpu_prints_one_pod_command_per_run(grid_sweep, monkeypatch):
  monkeypatch.chdir(REPO)
  lines = sweep_launch.emit_tpu(
    grid_sweep, "/mnt/shared/runs/", tpu="pod-1", zone="us-east5-a", project="proj"
  )
  commands = lines[1:]
  assert len(commands) == 4
  for run, line in zip(grid_sweep.runs, commands):
    words = shlex.split(line)
    assert words[:8] == [
      "gcloud",
      "compute",
      "tpus",
      "tpu-vm",
      "ssh",
      "pod-1",
      "--zone=us-east5-a",
      "--project=proj",
    ]
    assert words[8] == "--worker=all" and words[9].startswith("--command=")
    remote = shlex.split(words[9][len("--command=") :])
    assert remote[:5] == ["cd", "~/perfectrep-jax", "&&", "bash", "launch/tpu_pod.sh"]
    assert remote[5:] == [
      "--config",
      "configs/pretrain.py:smoke",
      "--workdir",
      f"/mnt/shared/runs/{run.name}",
      *run.flags,
    ]
  default = sweep_launch.emit_tpu(grid_sweep, "runs")
  assert '"$TPU_NAME" --zone="$ZONE"' in default[1] and "set TPU_NAME and ZONE" in default[0]


def test_cli_list_and_summary(grid_sweep, tmp_path, capsys):
  assert cli.main(["sweep", str(grid_sweep.path), "--workdir", str(tmp_path), "--list"]) == 0
  listed = capsys.readouterr().out.splitlines()
  assert [line.split("\t")[0] for line in listed] == [r.name for r in grid_sweep.runs]
  assert cli.main(["sweep", str(grid_sweep.path), "--workdir", str(tmp_path), "--summary"]) == 0
  out = capsys.readouterr().out
  assert out.count("pending") == 4 and (tmp_path / "summary.csv").is_file()
  assert cli.main(["sweep", "no/such/sweep.py", "--workdir", str(tmp_path)]) == 2
  assert "no such file" in capsys.readouterr().err


# ---------------------------------------------------------------------------- real runs
@pytest.mark.slow
def test_smoke_sweep_trains_both_runs_and_a_rerun_is_a_no_op(tmp_path):
  workdir = tmp_path / "sweep"
  proc = run_cli(["sweep", "smoke", "--workdir", str(workdir)], timeout=1200)
  names = ["optim.lr=1e-3", "optim.lr=5e-4"]
  for name in names:
    evals = [m for m in read_metrics(workdir / name) if m.get("split") == "test"]
    assert evals and evals[-1]["step"] == 4 and evals[-1]["mpjpe"] > 0
    assert sorted(p.name for p in (workdir / name / "checkpoints").iterdir()) == ["4"]
    assert "--config.optim.lr" in (workdir / name / "train.log").read_text()
  assert "best: optim.lr=" in proc.stdout
  again = run_cli(["sweep", "smoke", "--workdir", str(workdir)], timeout=300)
  assert again.stdout.count("finished before, skipped") == 2
  with open(workdir / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["run"] for r in rows] == names and {r["status"] for r in rows} == {"done"}
