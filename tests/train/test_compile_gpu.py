"""``perfectrep-jax compile --topology h100:8``: the train step compiled for NVIDIA GPUs without one,
through JAX's CUDA plugin (the ``gpu-compile`` extra, in an environment of its own: with the plugin
installed every JAX process looks for a GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.train import aot

ROOT = Path(__file__).resolve().parents[2]
SMOKE = f"{ROOT / 'configs' / 'pretrain.py'}:smoke"


def _cuda_python() -> str | None:
  """A Python whose JAX has the CUDA plugin: this one, or ``PERFECTREP_CUDA_PYTHON`` (.ci/run makes one)."""
  if aot.cuda_plugin_installed():
    return sys.executable
  return os.environ.get("PERFECTREP_CUDA_PYTHON") or None


def test_a_gpu_topology_names_the_gpu_and_a_count_of_them():
  assert aot.is_gpu_topology("h100:8") and aot.is_gpu_topology("H100:16")
  assert not aot.is_gpu_topology("v5e:2x2")
  for bad in ("h100", "h100:0", "h100:12", "h100:x8"):
    with pytest.raises(UserError, match=f"--topology {bad}: give the GPU and how many"):
      aot.topology_devices(bad)
  # what XLA is told of the device: the datasheet's figures, as CHIPS has them
  text = aot.gpu_target_config("h100")
  assert 'device_description_str: "NVIDIA H100 80GB HBM3"' in text and "core_count: 132" in text
  assert "cuda_compute_capability { major: 9 minor: 0 }" in text
  assert aot.CHIPS["NVIDIA H100 80GB HBM3"][0] == aot.GPUS["h100"]["memory"]


def test_without_the_cuda_plugin_the_error_says_how_to_get_it(monkeypatch):
  monkeypatch.setattr(aot, "cuda_plugin_installed", lambda: False)
  with pytest.raises(UserError, match=r"--topology h100:8 needs JAX's CUDA plugin .*\.\[gpu-compile\]"):
    aot.topology_devices("h100:8")


@pytest.mark.slow
@pytest.mark.skipif(
  _cuda_python() is None, reason="no JAX with the CUDA plugin (pip install -e '.[gpu-compile]')"
)
def test_compile_smoke_for_h100x8(tmp_path):
  out = tmp_path / "report.json"
  done = subprocess.run(
    [_cuda_python(), "-m", "perfectrep_jax.cli", "compile", "--config", SMOKE, "--topology", "h100:8"]
    + ["--json", str(out)],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=900,
    env={k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "XLA_FLAGS")},
  )
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["chip"] == "h100" and report["devices"] == 8 and report["mesh"]["data"] == 8
  # "auto" options resolved as on a GPU: cuBLAS's (tokens, C) projection, not the TPU's heads
  assert report["attention_impl"] == "lanes" and report["qkv_layout"] == "tokens"
  assert report["fits"] and 0 < report["per_device_memory_bytes"] < report["device_memory_bytes"]
  # FLOPs of the unpartitioned step (the GPU compiler gives no cost analysis), the program's own
  # traffic, the gradient's all-reduce over the 8 GPUs, and a roofline estimate said to be one
  assert report["flops_per_step"] > 0 and report["estimate"] == "gpu" and report["estimated_step_s"] > 0
  assert report["collectives"]["all-reduce"]["count"] >= 1
  assert report["traffic"]["by_kind"]["matmul"] > 0  # cuBLAS's calls counted as matmuls
  assert "h100:8 (h100)" in done.stdout and "collectives over NVLink" in done.stdout
