"""``perfectrep-jax compile``: train's own step compiled for a TPU slice on this CPU machine (libtpu,
the ``tpu`` extra), with memory, FLOPs, estimated time and collectives; a step too big for the chip
refused in one line. The mesh candidates and the step-time model are tested without libtpu (the HLO
text's parsing in test_hlo_traffic.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perfectrep_jax import cli
from perfectrep_jax.train import aot

# Set at collection, before this worker's JAX starts its backends: with libtpu installed every JAX
# process takes /tmp/libtpu_lockfile (meant for processes sharing real chips), and a compile-only
# topology must not fail on one another test process holds (aot.topology_devices sets it too).
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
ROOT = Path(__file__).resolve().parents[2]
SMOKE = f"{ROOT / 'configs' / 'pretrain.py'}:smoke"
needs_libtpu = pytest.mark.skipif(
  importlib.util.find_spec("libtpu") is None,
  reason="libtpu is not installed (pip install -e '.[tpu]'): no TPU compiler to compile with",
)


def test_candidate_meshes_divide_the_slice_the_batch_and_the_heads():
  from ml_collections import ConfigDict

  config = ConfigDict(dict(batch_size=8, model=dict(num_heads=2)))
  meshes = aot.candidate_meshes(config, 4)
  assert {tuple(m.values()) for m in meshes} == {(4, 1, 1), (2, 2, 1), (1, 4, 1), (2, 1, 2), (1, 2, 2)}
  config.batch_size = 2  # data x fsdp must split the batch: only the meshes with tensor 2
  assert all(m["tensor"] == 2 for m in aot.candidate_meshes(config, 4))


def test_the_estimate_is_the_roofline_whether_or_not_xla_gives_a_time():
  coll = {"all-reduce": {"count": 1, "bytes": 100}, "all-gather": {"count": 1, "bytes": 50}}
  step, model = aot.estimate_step_s(
    {"flops": 1e12, "bytes accessed": 1e9, "optimal_seconds": -1}, coll, peak=1e14, hbm_bw=1e12, ici_bw=1e3
  )
  assert model == "roofline" and step == pytest.approx(0.01 + 250 / 1e3)
  # XLA's own time, where it gives one, can be faster than the FLOPs at peak allow: not used
  step, model = aot.estimate_step_s(
    {"flops": 1e12, "bytes accessed": 1e9, "optimal_seconds": 0.001}, coll, peak=1e14, hbm_bw=1e12, ici_bw=1e3
  )
  assert model == "roofline" and step == pytest.approx(0.01 + 250 / 1e3)


@needs_libtpu
def test_compile_smoke_for_v5e_2x2(tmp_path, capsys):
  out = tmp_path / "report.json"
  assert cli.main(["compile", "--config", SMOKE, "--topology", "v5e:2x2", "--json", str(out)]) == 0
  table = capsys.readouterr().out
  report = json.loads(out.read_text())
  assert set(aot.FIELDS) <= set(report)
  assert report["topology"] == "v5e:2x2" and report["chip"] == "v5e" and report["devices"] == 4
  assert report["mesh"] == {"data": 4, "fsdp": 1, "tensor": 1} and report["batch_size"] == 8
  assert report["device_memory_bytes"] == 16 * 2**30 and report["fits"]
  # attention "auto" compiled as a TPU runs it, not as this CPU host would pick
  assert report["attention_impl"] == "pallas" and report["qkv_layout"] == "heads"
  assert 0 < report["argument_bytes_per_device"] <= report["per_device_memory_bytes"] < 2**30
  assert report["flops_per_step"] > 0 and report["estimated_step_s"] > 0
  assert 0 < report["estimated_mfu"] < 1
  # data parallel over 4 chips: the gradients are all-reduced across them
  assert report["collectives"]["all-reduce"]["count"] > 0
  assert report["collectives"]["all-reduce"]["bytes"] > 0
  for field in ("per_device_memory", "estimated_mfu", "collectives", "all-reduce"):
    assert field in table
  # where the step's memory traffic goes (a program this small lives mostly in on-chip memory,
  # so little is counted; tests/train/test_hlo_traffic.py checks the counting itself)
  traffic = report["traffic"]
  assert traffic["total"] == sum(c["bytes"] for c in traffic["cells"]) > 0
  assert sum(traffic["by_kind"].values()) == sum(traffic["by_part"].values()) == traffic["total"]
  assert "memory traffic counted from the program's text" in table


@needs_libtpu
def test_under_fsdp_each_attention_gathers_the_parameters_not_the_activations(tmp_path):
  # A mesh given on the command line is the topology's (4 chips here, 1 CPU device on this host).
  # Under fsdp the step gathers each layer's sharded parameters; the TPU's attention forms, whose
  # q, k, v are (B, H, J, D, T) or (B, J, H, T, D), once made XLA split them over another axis and
  # gather activations instead (44x the bytes here, 610x on v5e-16 at full size).
  gathered = {}
  for impl in ("dot_product_attention", "lanes", "tpu", "pallas"):
    out = tmp_path / f"{impl}.json"
    mesh = ["--config.mesh.data=1", "--config.mesh.fsdp=4", f"--config.attention_impl={impl}"]
    assert cli.main(["compile", "--config", SMOKE, "--topology", "v5e:2x2", *mesh, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1} and report["attention_impl"] == impl
    assert report["collectives"]["all-to-all"]["count"] == 0, impl
    gathered[impl] = report["collectives"]["all-gather"]["bytes"]
  assert 0 < gathered["lanes"] <= 1.1 * gathered["dot_product_attention"]
  assert 0 < gathered["tpu"] <= 1.1 * gathered["dot_product_attention"]
  assert 0 < gathered["pallas"] <= 1.1 * gathered["dot_product_attention"]


@needs_libtpu
def test_a_batch_too_big_for_the_chip_is_refused_in_one_line(tmp_path):
  out = tmp_path / "report.json"
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "perfectrep_jax.cli",
      "compile",
      "--config",
      SMOKE,
      "--topology",
      "v5e:2x2",
      "--config.batch_size=262144",
      "--json",
      str(out),
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=900,
    env=dict(os.environ, JAX_PLATFORMS=""),
  )
  assert done.returncode == 2, done.stderr
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1, done.stderr
  # the TPU compiler's own figures: what the step needs against the HBM the chip has
  assert "batch 262144: does not fit a v5e chip" in lines[0] and "(15.75G)" in lines[0], lines
  assert done.stdout == ""
  report = json.loads(out.read_text())  # the whole report, saying it does not fit
  assert not report["fits"] and report["per_device_memory_bytes"] > 16 * 2**30


@needs_libtpu
def test_unknown_topology_and_bad_override_are_one_line(capsys):
  # in-process, the --config.KEY overrides are read from these words, not from pytest's sys.argv
  assert cli.main(["compile", "--config", SMOKE, "--topology", "v5e:3x7", "--config.batch_size=2"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--topology v5e:3x7" in err[0]
  assert cli.main(["compile", "--config", SMOKE, "--topology", "v5e:2x2", "--config.batch_sizee=2"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--config.batch_sizee: no such config field" in err[0]


@needs_libtpu
@pytest.mark.slow
def test_search_mesh_ranks_the_meshes_that_fit(tmp_path, capsys):
  out = tmp_path / "meshes.json"
  assert (
    cli.main(
      [
        "compile",
        "--config",
        SMOKE,
        "--topology",
        "v5e:2x2",
        "--search-mesh",
        "--config.batch_size=2",
        "--json",
        str(out),
      ]
    )
    == 0
  )
  reports = json.loads(out.read_text())
  assert [r["mesh"] for r in reports] and all(r["mesh"]["tensor"] == 2 for r in reports)
  assert len(reports) == 2 and all(r["fits"] for r in reports)
  times = [r["estimated_step_s"] for r in reports]
  assert times == sorted(times)
  assert capsys.readouterr().out.splitlines()[0].lstrip().startswith("rank")


@needs_libtpu
@pytest.mark.slow
def test_scan_layers_compiles_and_gives_no_cost_figures_it_cannot_vouch_for(tmp_path, capsys):
  """XLA's cost analysis counts a scanned loop's body once: the report keeps memory, fit and
  compile time, and says the cost figures are not available rather than give a depth's worth."""
  out = tmp_path / "report.json"
  args = ["compile", "--config", SMOKE, "--topology", "v5e:2x2", "--config.model.depth=3"]
  assert cli.main([*args, "--config.scan_layers=True", "--json", str(out)]) == 0
  table = capsys.readouterr().out
  report = json.loads(out.read_text())
  assert report["scan_layers"] and report["fits"] and report["per_device_memory_bytes"] > 0
  assert report["flops_per_step"] is None and report["estimated_mfu"] is None
  assert report["estimate"] == "scan" and report["collectives"] is None
  assert "XLA counts the scanned depths once" in table
