"""A run directory: locked while a train runs in it (a second one gets one line saying who holds
it; a dead holder's lock is stale), its model never changed under its checkpoints nor a converted
model overwritten, and a SIGTERM leaves a saved checkpoint, exit status 143 and status
'preempted', which a sweep runs again instead of skipping."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.sweeps import launch as sweep_launch
from perfectrep_jax.train import rundir
from tests.train.conftest import CONFIGS, REPO, run_cli

SMOKE = ["--config", f"{CONFIGS / 'pretrain.py'}:smoke"]


def _write_lock(workdir, pid, host=None):
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / rundir.LOCK_FILE).write_text(
    json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "2026-01-01T00:00:00+00:00"})
  )


def test_a_live_holder_is_named_in_one_line(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    _write_lock(tmp_path, holder.pid)
    with pytest.raises(UserError) as err:
      rundir.RunLock(tmp_path).acquire()
    text = str(err.value)
    assert f"pid {holder.pid} on {socket.gethostname()} since 2026-01-01T00:00:00" in text
    assert "\n" not in text
  finally:
    holder.kill()
    holder.wait()


def test_a_dead_holders_lock_is_stale_and_taken_over(tmp_path, capsys):
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  _write_lock(tmp_path, dead.pid)
  lock = rundir.RunLock(tmp_path).acquire()
  assert json.loads((tmp_path / rundir.LOCK_FILE).read_text())["pid"] != dead.pid
  assert f"left by pid {dead.pid}" in capsys.readouterr().out
  lock.release()
  assert not (tmp_path / rundir.LOCK_FILE).exists()


def test_a_lock_held_on_another_host_is_trusted(tmp_path):
  _write_lock(tmp_path, 12345, host="node-7.cluster")
  with pytest.raises(UserError, match="pid 12345 on node-7.cluster since .*delete"):
    rundir.RunLock(tmp_path).acquire()


def test_lock_run_releases_on_error(tmp_path):
  with pytest.raises(RuntimeError):
    with rundir.lock_run(tmp_path):
      assert (tmp_path / rundir.LOCK_FILE).is_file()
      raise RuntimeError("boom")
  assert not (tmp_path / rundir.LOCK_FILE).exists()


def test_check_model_refuses_another_model_and_a_converted_directory(tmp_path):
  meta = {"format": 1, "kind": "lifter", "config": {"dim_feat": 16, "depth": 1}}
  rundir.check_model(tmp_path, meta)  # an empty directory: anything goes
  (tmp_path / "model.json").write_text(json.dumps(meta))
  rundir.check_model(tmp_path, meta)  # the same model
  other = {**meta, "config": {"dim_feat": 32, "depth": 1}}
  with pytest.raises(UserError, match=r"another model config \(dim_feat 16 -> 32\)"):
    rundir.check_model(tmp_path, other)
  with pytest.raises(UserError, match="holds a lifter run; this config trains a action"):
    rundir.check_model(tmp_path, {**meta, "kind": "action"})
  (tmp_path / "params").mkdir()
  with pytest.raises(UserError, match="written by convert.*--config.init.checkpoint="):
    rundir.check_model(tmp_path, meta)


def test_train_on_a_convert_output_writes_nothing(tiny_model_dir, tmp_path):
  workdir = tmp_path / "converted"
  shutil.copytree(tiny_model_dir, workdir)
  before = {p.relative_to(workdir): p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
  proc = run_cli(["train", *SMOKE, "--workdir", str(workdir)], check=False)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert "holds a model directory (written by convert)" in proc.stderr
  after = {p.relative_to(workdir): p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
  assert after == before


@pytest.fixture(scope="module")
def preempted_run(tmp_path_factory):
  """A smoke run of 2000 steps stopped by SIGTERM once it trains."""
  workdir = tmp_path_factory.mktemp("preempt") / "run"
  proc = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "perfectrep_jax.cli",
      "train",
      *SMOKE,
      "--workdir",
      str(workdir),
      "--config.total_steps=2000",
      "--config.checkpoint_every=1000",
      "--config.eval_every=1000",
    ],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 400
  metrics = workdir / "metrics.jsonl"  # its first line is written at step 2: the loop runs
  while not (metrics.is_file() and metrics.stat().st_size) and time.time() < deadline and proc.poll() is None:
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  return workdir, proc.returncode, out, err


def test_sigterm_saves_exits_143_and_says_preempted(preempted_run):
  workdir, code, out, err = preempted_run
  assert code == rundir.PREEMPTED_EXIT, err[-2000:]
  status = rundir.read_status(workdir)
  assert status["status"] == "preempted" and status["signal"] == signal.SIGTERM
  step = status["step"]
  assert 2 <= step < 2000
  assert f"stopped by signal 15 at step {step} of 2000" in err and "Traceback" not in err
  assert (workdir / "checkpoints" / str(step) / "digest.json").is_file()
  assert not (workdir / rundir.LOCK_FILE).exists()


def test_sigterm_just_after_an_evaluated_steps_save_stops_cleanly(tmp_path):
  # The step was saved with its evaluation; the stop must not save it again (orbax refuses a
  # second save of a step: this used to end in a traceback with status.json still 'running').
  workdir = tmp_path / "run"
  args = ["train", *SMOKE, "--workdir", str(workdir), "--config.total_steps=12"]
  args += ["--config.eval_every=4", "--config.checkpoint_every=100"]
  proc = run_cli(args, env={"PERFECTREP_JAX_TERM_AFTER_CHECKPOINT": "4"}, check=False)
  assert proc.returncode == rundir.PREEMPTED_EXIT, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr and "step 4 is saved; stopping" in proc.stdout
  status = rundir.read_status(workdir)
  assert status["status"] == "preempted" and status["step"] == 4
  assert (workdir / "checkpoints" / "4" / "digest.json").is_file()
  again = run_cli(args)  # and it resumes from there to the end
  assert "resumed from" in again.stdout and rundir.read_status(workdir)["status"] == "finished"


def test_a_second_train_on_a_locked_directory_gets_one_line(preempted_run):
  workdir = preempted_run[0]
  files = sorted(p.name for p in workdir.iterdir())
  lock = rundir.RunLock(workdir).acquire()  # this test process plays the first train
  try:
    proc = run_cli(["train", *SMOKE, "--workdir", str(workdir), "--config.total_steps=2000"], check=False)
  finally:
    lock.release()
  assert proc.returncode == 2
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith("perfectrep-jax train: error:") and "Traceback" not in proc.stderr
  assert f"in use by another train (pid {os.getpid()} on {socket.gethostname()} since" in line
  assert sorted(p.name for p in workdir.iterdir()) == files


def test_resuming_with_another_model_config_is_refused_before_writing(preempted_run):
  workdir = preempted_run[0]
  before = {p.relative_to(workdir): p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
  proc = run_cli(
    ["train", *SMOKE, "--workdir", str(workdir), "--config.total_steps=2000", "--config.model.dim_feat=24"],
    check=False,
  )
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert "another model config (dim_feat" in proc.stderr
  after = {p.relative_to(workdir): p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
  assert after == before
  assert not list(workdir.glob("unreadable-checkpoint-*"))


def _fake(codes, calls):
  def train(run, run_dir):
    calls.append(run.name)
    code = codes.get(run.name, 0)
    # as the trainer does: status.json says how the process left the run
    rundir.write_status(run_dir, "preempted" if code == rundir.PREEMPTED_EXIT else "finished", step=950)
    return code

  return train


def test_a_sweep_reruns_a_preempted_run(tmp_path):
  from perfectrep_jax.sweeps import spec as sweep

  grid = sweep.axis("optim.lr", [1e-3, 5e-4])
  loaded = sweep.expand(sweep.Sweep(config=f"{CONFIGS / 'pretrain.py'}:smoke", grid=grid), tmp_path / "s.py")
  names = [r.name for r in loaded.runs]
  calls: list = []
  with pytest.raises(UserError, match=f"1 of 2 runs were preempted before finishing: {names[0]}"):
    sweep_launch.run_local(loaded, tmp_path / "w", train=_fake({names[0]: rundir.PREEMPTED_EXIT}, calls))
  assert calls == names
  assert sweep_launch.read_state(tmp_path / "w" / names[0])["status"] == "preempted"
  calls.clear()
  out = sweep_launch.run_local(loaded, tmp_path / "w", train=_fake({}, calls))
  assert calls == [names[0]] and out == {names[0]: "done", names[1]: "skipped"}
  # A run recorded done whose own status says preempted (a trainer that exited 0) is rerun too.
  rundir.write_status(tmp_path / "w" / names[1], "preempted", step=950)
  calls.clear()
  sweep_launch.run_local(loaded, tmp_path / "w", train=_fake({}, calls))
  assert calls == [names[1]]


_JOB = """
import json, os, sys
import jax
jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from perfectrep_jax.errors import UserError
from perfectrep_jax.train import rundir
try:
  with rundir.lock_run(sys.argv[3]) as lock:
    holder = json.loads(open(os.path.join(sys.argv[3], rundir.LOCK_FILE)).read())["pid"]
    print("HELD", jax.process_index(), lock is not None, holder == os.getpid(), flush=True)
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("both looked")
except UserError as e:
  print("REFUSED", jax.process_index(), e, flush=True)
"""


def _job(workdir):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", _JOB, f"127.0.0.1:{port}", str(i), str(workdir)],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
  return sorted(line for o in outs for line in o[0].splitlines() if line.startswith(("HELD", "REFUSED")))


def test_a_multi_host_job_shares_one_lock(tmp_path):
  # Process 0 takes the lock for the job; process 1 holds none and goes on with it.
  assert _job(tmp_path) == ["HELD 0 True True", "HELD 1 False False"]
  assert not (tmp_path / rundir.LOCK_FILE).exists()
  # Held by another live process: both processes of the job stop, process 1 told by process 0.
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  try:
    _write_lock(tmp_path, holder.pid)
    lines = _job(tmp_path)
  finally:
    holder.kill()
    holder.wait()
  assert lines[0].startswith(f"REFUSED 0 {tmp_path}: in use by another train (pid {holder.pid}")
  assert lines[1] == f"REFUSED 1 {tmp_path}: in use by another train (process 0 says who)"
