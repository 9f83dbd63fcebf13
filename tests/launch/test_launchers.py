"""The launch scripts' own logic, with a stand-in for Python (and srun): fast, no JAX.

Each stand-in records its arguments and the environment variables that decide how JAX joins the
processes; the real multi-process training is ``test_slurm.py`` (SLURM) and
``tests/train/test_sharded.py`` (two local processes).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
RECORDER = """#!/bin/bash
# Records one call: arguments and JAX's distributed settings, as JSON lines.
python3 - "$@" <<'EOF' >> "$RECORD"
import json, os, sys
keys = ("JAX_COORDINATOR_ADDRESS", "JAX_LOCAL_DEVICE_IDS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES",
        "SRUN_CPUS_PER_TASK")
print(json.dumps({"args": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys}}))
EOF
for a in "$@"; do
  if [[ "$a" == "--config.distributed.process_id=$FAIL_PROCESS" ]]; then exit 7; fi
done
if [[ -n "${SLEEP:-}" ]]; then exec sleep "$SLEEP"; fi
"""
TRAIN_ARGS = ["--config", "configs/pretrain.py:smoke", "--workdir", "runs/x y", "--config.optim.lr=0.001"]


@pytest.fixture
def recorder(tmp_path):
  """(fake interpreter path, record file, environment) with the real PATH kept."""
  fake = tmp_path / "bin" / "python-fake"
  fake.parent.mkdir()
  fake.write_text(RECORDER)
  fake.chmod(0o755)
  record = tmp_path / "record.jsonl"
  env = {
    k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_", "TPU_")) and k != "XLA_FLAGS"
  }
  env.update(PYTHON=str(fake), RECORD=str(record), FAIL_PROCESS="none")
  return fake, record, env


def _calls(record: Path) -> list[dict]:
  return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


# ---------------------------------------------------------------------------- local.sh
def test_local_one_process_passes_the_arguments(recorder):
  _, record, env = recorder
  proc = subprocess.run(
    [LAUNCH / "local.sh", *TRAIN_ARGS],
    env=dict(env, CPU_DEVICES="4"),
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 0, proc.stderr
  [call] = _calls(record)
  assert call["args"] == ["-m", "perfectrep_jax.cli", "train", *TRAIN_ARGS]
  assert "--xla_force_host_platform_device_count=4" in call["env"]["XLA_FLAGS"]


def test_local_processes_share_a_coordinator_and_have_distinct_ids(recorder):
  _, record, env = recorder
  proc = subprocess.run(
    [LAUNCH / "local.sh", *TRAIN_ARGS],
    env=dict(env, PROCESSES="3"),
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 0, proc.stderr
  calls = _calls(record)
  assert len(calls) == 3
  coordinators = {a for c in calls for a in c["args"] if "coordinator=" in a}
  assert len(coordinators) == 1 and coordinators.pop().startswith(
    "--config.distributed.coordinator=127.0.0.1:"
  )
  ids = sorted(a.rsplit("=", 1)[1] for c in calls for a in c["args"] if "process_id=" in a)
  assert ids == ["0", "1", "2"]
  assert all("--config.distributed.num_processes=3" in c["args"] for c in calls)
  assert all(c["args"][3 : 3 + len(TRAIN_ARGS)] == TRAIN_ARGS for c in calls)


def test_local_one_failed_process_stops_the_others(recorder):
  _, record, env = recorder
  proc = subprocess.run(
    [LAUNCH / "local.sh", *TRAIN_ARGS],
    env=dict(env, PROCESSES="2", FAIL_PROCESS="1", SLEEP="60"),
    capture_output=True,
    text=True,
    timeout=30,
  )
  assert proc.returncode == 7
  assert "process 1 failed (exit status 7); stopping the others" in proc.stderr


def test_launchers_without_arguments_print_usage(recorder):
  _, _, env = recorder
  for script in ("local.sh", "tpu_pod.sh", "slurm.sbatch"):
    proc = subprocess.run(["bash", LAUNCH / script], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "usage:" in proc.stderr, script


# ---------------------------------------------------------------------------- slurm.sbatch
@pytest.mark.parametrize(
  "tasks, nodes, gpus, local_ids",
  [
    ("16", "2", "8", None),  # one process per GPU: JAX picks GPU SLURM_LOCALID
    ("2", "2", "8", "0,1,2,3,4,5,6,7"),  # one process per node: all of the node's GPUs
    ("2", "1", "0", None),  # CPU only (the SLURM test's job)
  ],
)
def test_slurm_batch_script_process_layouts(recorder, tmp_path, tasks, nodes, gpus, local_ids):
  fake, record, env = recorder
  srun = fake.parent / "srun"
  srun.write_text(f'#!/bin/bash\nexec {fake} "$@"\n')
  srun.chmod(0o755)
  env = dict(
    env,
    PATH=f"{fake.parent}:{env['PATH']}",
    SLURM_NTASKS=tasks,
    SLURM_JOB_NUM_NODES=nodes,
    SLURM_GPUS_ON_NODE=gpus,
    SLURM_CPUS_PER_TASK="6",
    SLURM_JOB_ID="42",
    PYTHON="python3",
  )
  proc = subprocess.run(
    ["bash", LAUNCH / "slurm.sbatch", *TRAIN_ARGS], env=env, capture_output=True, text=True, timeout=60
  )
  assert proc.returncode == 0, proc.stderr
  assert f"job 42: {tasks} processes on {nodes} nodes" in proc.stdout
  [call] = _calls(record)
  assert call["args"] == [
    "--kill-on-bad-exit=1",
    "--label",
    "python3",
    "-m",
    "perfectrep_jax.cli",
    "train",
    *TRAIN_ARGS,
  ]
  assert call["env"]["JAX_LOCAL_DEVICE_IDS"] == local_ids
  assert call["env"]["SRUN_CPUS_PER_TASK"] == "6"


# ---------------------------------------------------------------------------- tpu_pod.sh
class _Metadata(http.server.BaseHTTPRequestHandler):
  """The two TPU VM metadata attributes the launcher reads."""

  attributes: dict[str, str] = {}

  def do_GET(self):  # noqa: N802 (http.server's name)
    name = self.path.rsplit("/", 1)[-1]
    if self.headers.get("Metadata-Flavor") != "Google" or name not in self.attributes:
      self.send_response(404)
      self.end_headers()
      return
    body = self.attributes[name].encode()
    self.send_response(200)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  def log_message(self, *args):
    pass


@pytest.fixture
def metadata_server():
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield server
  server.shutdown()
  server.server_close()


@pytest.mark.parametrize(
  "endpoints, coordinator",
  [
    ("t1v-n-0-w-0:0:10.130.0.5,t1v-n-0-w-1:1:10.130.0.6", "10.130.0.5:8482"),  # older images
    ("10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5", "10.0.0.2:8482"),
    ("10.0.0.2", None),  # one host
  ],
)
def test_tpu_pod_points_every_worker_at_worker_0(recorder, metadata_server, endpoints, coordinator):
  _, record, env = recorder
  _Metadata.attributes = {"worker-network-endpoints": endpoints, "agent-worker-number": "1"}
  host, port = metadata_server.server_address
  proc = subprocess.run(
    ["bash", LAUNCH / "tpu_pod.sh", *TRAIN_ARGS],
    env=dict(env, GCE_METADATA_IP=f"{host}:{port}"),
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 0, proc.stderr
  hosts = endpoints.count(",") + 1
  assert f"TPU worker 1 of {hosts}" in proc.stdout
  [call] = _calls(record)
  assert call["args"] == ["-m", "perfectrep_jax.cli", "train", *TRAIN_ARGS]
  assert call["env"]["JAX_COORDINATOR_ADDRESS"] == coordinator


def test_tpu_pod_off_a_tpu_vm_runs_one_process(recorder):
  _, record, env = recorder
  proc = subprocess.run(
    ["bash", LAUNCH / "tpu_pod.sh", *TRAIN_ARGS],
    env=dict(env, GCE_METADATA_IP="127.0.0.1:9"),  # nothing listens there
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 0, proc.stderr
  assert "coordinator none (one host)" in proc.stdout
  assert _calls(record)[0]["env"]["JAX_COORDINATOR_ADDRESS"] is None
