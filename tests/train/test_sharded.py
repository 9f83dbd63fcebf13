"""Sharding and multi-host change nothing but speed.

Each run is a fresh process (the device count is fixed when JAX starts). Tolerances: losses and
weights after 4 AdamW steps agree to 2e-5 (absolute, weights of magnitude ~0.1-1): the only
difference between meshes is the order of float32 reductions across devices, ~1e-7 per step,
amplified a little by Adam's normalisation of small gradients.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from perfectrep_jax.models import model_dir
from tests.train.conftest import CONFIGS, REPO, read_metrics, run_cli

STEPS = 4
COMMON = [
  "--config.total_steps=4",
  "--config.eval_every=0",
  "--config.checkpoint_every=4",
  "--config.log_every=1",
]
ATOL = 2e-5


def _train(workdir, devices: int, mesh: tuple[int, int, int], extra=()):
  data, fsdp, tensor = mesh
  run_cli(
    [
      "train",
      "--config",
      f"{CONFIGS / 'pretrain.py'}:smoke",
      "--workdir",
      str(workdir),
      *COMMON,
      f"--config.mesh.data={data}",
      f"--config.mesh.fsdp={fsdp}",
      f"--config.mesh.tensor={tensor}",
      *extra,
    ],
    env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"},
  )


def _result(workdir):
  model, _ = model_dir.load_model(workdir, step=STEPS)
  losses = [m["loss"] for m in read_metrics(workdir) if "split" not in m]
  return jax.tree.leaves(model_dir.weights_of(model)), np.asarray(losses)


def _assert_same(a, b):
  (wa, la), (wb, lb) = a, b
  np.testing.assert_allclose(la, lb, rtol=0, atol=ATOL)
  for x, y in zip(wa, wb):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=ATOL)


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("one") / "run"
  _train(workdir, 1, (1, 1, 1))
  return _result(workdir)


@pytest.mark.slow
@pytest.mark.parametrize("mesh", [(8, 1, 1), (4, 2, 1), (2, 1, 4)])
def test_meshes_on_8_devices_match_one_device(single_device, tmp_path, mesh):
  _train(tmp_path / "run", 8, mesh)
  _assert_same(single_device, _result(tmp_path / "run"))


@pytest.mark.slow
def test_the_tpus_attention_kernels_and_layout_under_a_mesh_match_one_device(single_device, tmp_path):
  # attention_impl 'pallas' (Pallas's interpreter on this CPU) runs per device in a shard_map,
  # clips split over data and fsdp; qkv_layout 'heads' keeps the norms and MLPs unflattened
  tpu_forms = ["--config.attention_impl=pallas", "--config.qkv_layout=heads"]
  _train(tmp_path / "run", 8, (4, 2, 1), tpu_forms)
  _assert_same(single_device, _result(tmp_path / "run"))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  """Two processes joined by jax.distributed on 127.0.0.1 (one global mesh over both)."""
  extra = ["--config.data_global_order=True"]
  _train(tmp_path / "one", 1, (1, 1, 1), extra)
  port = _free_port()
  workdir = tmp_path / "two"
  procs = []
  for pid in range(2):
    args = [
      sys.executable,
      "-m",
      "perfectrep_jax.cli",
      "train",
      "--config",
      f"{CONFIGS / 'pretrain.py'}:smoke",
      "--workdir",
      str(workdir),
      *COMMON,
      *extra,
      f"--config.distributed.coordinator=127.0.0.1:{port}",
      "--config.distributed.num_processes=2",
      f"--config.distributed.process_id={pid}",
    ]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs.append(
      subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    )
  outs = [p.communicate(timeout=900)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
  # one checkpoint written by the two processes together
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [str(STEPS)]
  _assert_same(_result(tmp_path / "one"), _result(workdir))
