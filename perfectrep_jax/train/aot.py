"""``perfectrep-jax compile``: the train step compiled ahead of time for a TPU slice, without one.

    perfectrep-jax compile --config configs/pretrain.py:full --topology v5e:4x4 \
        --config.compute_dtype=bfloat16 [--json report.json] [--search-mesh]

With ``libtpu`` installed (the ``tpu`` extra), ``jax.experimental.topologies`` describes a TPU
slice's devices on any machine; a mesh over them takes the same shardings as real chips and XLA
compiles the program for them. What is compiled is ``trainer.make_train_step``: the function,
shardings, donation, dtype and remat ``train`` runs. Its arguments are abstract (shapes, dtypes and
shardings): no data is read and no weights are made.

The report: XLA's peak memory per chip against the chip's HBM, the step's FLOPs, an estimate of
the step's time from XLA's cost analysis (``estimate_step_s``; not a measurement), the MFU that
implies, the collectives of the compiled program (count and bytes of each kind, from its HLO
text) and where its memory traffic goes (``hlo_traffic``: by model part and kind of work). A step
the TPU compiler refuses for want of HBM is reported with the compiler's figures.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from absl import flags
from ml_collections import config_flags

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import atomic_write_bytes
from perfectrep_jax.models.dstformer import AUTO_IMPLS, AUTO_LAYOUTS
from perfectrep_jax.train import hlo_traffic, trainer
from perfectrep_jax.train.config_check import check_config
from perfectrep_jax.train.config_load import HELP_FLAGS, parse_config_flags
from perfectrep_jax.wild.detect import _quiet_native_stderr  # the one fd-2 silencer

GiB = 2**30
# NVIDIA GPUs, compiled without one through the CUDA plugin (the gpu-compile extra) from a
# description of the device (XLA's GpuTargetConfigProto: what XLA would ask a real one), from the
# datasheet: 132 SMs at 1.98 GHz, 50 MB L2, 228 KB shared memory per SM.
GPUS = {
  "h100": {
    "name": "NVIDIA H100 80GB HBM3",
    "compute_capability": (9, 0),
    "cores": 132,
    "memory": 84_942_979_072,
    "memory_bandwidth": 3_352_320_000_000,
    "l2_cache": 52_428_800,
    "clock_ghz": 1.98,
    "shared_memory_per_core": 233_472,
    "shared_memory_per_block_optin": 232_448,
  },
}
GPUS_PER_NODE = 8
# device_kind -> (HBM bytes, dense bf16 FLOP/s, HBM bytes/s, link bytes/s each way) per chip. TPUs
# from Google Cloud's TPU pages: v5e 16 GiB, 197 TFLOP/s, 819 GB/s, 1600 Gbit/s ICI; v5p 95 GiB,
# 459 TFLOP/s, 2765 GB/s, 4800 Gbit/s; v6e 32 GiB, 918 TFLOP/s, 1640 GB/s, 3584 Gbit/s. The H100 SXM
# from NVIDIA's datasheet: 80 GB HBM3 at 3.35 TB/s, 989 TFLOP/s dense bf16, NVLink 4 at 900 GB/s
# both ways.
CHIPS = {
  "TPU v5 lite": (16 * GiB, 197e12, 819e9, 1600e9 / 8),
  "TPU v5": (95 * GiB, 459e12, 2765e9, 4800e9 / 8),
  "TPU v6 lite": (32 * GiB, 918e12, 1640e9, 3584e9 / 8),
  "NVIDIA H100 80GB HBM3": (GPUS["h100"]["memory"], 989e12, GPUS["h100"]["memory_bandwidth"], 450e9),
}
CHIP_NAMES = {"TPU v5 lite": "v5e", "TPU v5": "v5p", "TPU v6 lite": "v6e", "NVIDIA H100 80GB HBM3": "h100"}
# the TPU compiler's refusal: "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory
# required for HLO temporaries (139.11G) exceeds available HBM (15.75G)."
_OOM = re.compile(r"Ran out of memory[^(]*\(([0-9.]+)([KMGT]?)\)[^(]*\(([0-9.]+)([KMGT]?)\)")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": GiB, "T": 2**40}
# the report's fields (``compile_train_step`` adds the compiled program under "compiled")
FIELDS = (
  "topology",
  "chip",
  "devices",
  "mesh",
  "batch_size",
  "per_device_memory_bytes",
  "argument_bytes_per_device",
  "device_memory_bytes",
  "fits",
  "flops_per_step",
  "bytes_accessed_per_device",
  "estimated_step_s",
  "estimate",
  "estimated_clips_per_s",
  "estimated_mfu",
  "collectives",
  "compile_s",
  "compute_dtype",
  "remat",
  "scan_layers",
  "traffic",
)


# ---------------------------------------------------------------------------- topology
def is_gpu_topology(name: str) -> bool:
  """``h100:8``-style names: a GPU of :data:`GPUS` and how many of them."""
  return name.split(":")[0].lower() in GPUS


def gpu_target_config(gpu: str) -> str:
  """The text of XLA's ``GpuTargetConfigProto`` for a GPU of :data:`GPUS`."""
  g = GPUS[gpu]
  major, minor = g["compute_capability"]
  info = {
    "threads_per_block_limit": 1024,
    "threads_per_warp": 32,
    "shared_memory_per_block": 49152,
    "shared_memory_per_core": g["shared_memory_per_core"],
    "threads_per_core_limit": 2048,
    "core_count": g["cores"],
    "fpus_per_core": 128,
    "block_dim_limit_x": 2**31 - 1,
    "block_dim_limit_y": 65535,
    "block_dim_limit_z": 65535,
    "memory_bandwidth": g["memory_bandwidth"],
    "l2_cache_size": g["l2_cache"],
    "clock_rate_ghz": g["clock_ghz"],
    "device_memory_size": g["memory"],
    "shared_memory_per_block_optin": g["shared_memory_per_block_optin"],
    "registers_per_core_limit": 65536,
    "registers_per_block_limit": 65536,
  }
  fields = "\n".join(f"  {k}: {v}" for k, v in info.items())
  return (
    f"gpu_device_info {{\n{fields}\n  cuda_compute_capability {{ major: {major} minor: {minor} }}\n}}\n"
    f'platform_name: "CUDA"\ndnn_version_info {{ major: 9 minor: 8 }}\ndevice_description_str: "{g["name"]}"\n'
  )


def prepare_gpu_compiler() -> None:
  """What a deviceless GPU compile needs before JAX starts its backends: the CUDA plugin skips
  its check of the (absent) GPU's driver, and XLA uses cuBLAS rather than Triton for matmuls
  (measured with jax 0.10.2: Triton's GEMM tiler, with no GPU to autotune on, fails on the
  spatial attention's (153, 16) projection with "Couldn't find output tile sizes")."""
  os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
  flags_now = os.environ.get("XLA_FLAGS", "")
  if "xla_gpu_enable_triton_gemm" not in flags_now:
    os.environ["XLA_FLAGS"] = f"{flags_now} --xla_gpu_enable_triton_gemm=false".strip()


def cuda_plugin_installed() -> bool:
  """Whether JAX's CUDA plugin (12 or 13) is installed in this environment."""
  import importlib.util

  try:
    return any(importlib.util.find_spec(f"jax_plugins.xla_cuda{v}") for v in (12, 13))
  except ModuleNotFoundError:  # no jax_plugins package at all
    return False


def _gpu_devices(name: str) -> list:
  """The devices of ``h100:N`` (N GPUs, :data:`GPUS_PER_NODE` to a node) through the CUDA plugin."""
  gpu, _, count = name.partition(":")
  gpu = gpu.lower()
  if not count.isdigit() or int(count) < 1 or (int(count) > GPUS_PER_NODE and int(count) % GPUS_PER_NODE):
    raise UserError(
      f"--topology {name}: give the GPU and how many, up to {GPUS_PER_NODE} or whole nodes of "
      f"{GPUS_PER_NODE} (e.g. {gpu}:8, {gpu}:32)"
    )
  if not cuda_plugin_installed():
    raise UserError(
      f"--topology {name} needs JAX's CUDA plugin for the GPU compiler (no GPU needed): "
      "pip install -e '.[gpu-compile]' in an environment of its own (benchmarks/README.md, 'TPU slices, compiled without one')"
    )
  n = int(count)
  nodes, per_node = max(1, n // GPUS_PER_NODE), min(n, GPUS_PER_NODE)
  from jax.experimental import topologies

  try:
    topology = topologies.get_topology_desc(
      gpu, "cuda", target_config=gpu_target_config(gpu), topology=f"1x{nodes}x{per_node}"
    )
  except Exception as e:  # noqa: BLE001  jax raises when the CUDA plugin did not register
    first = " ".join(str(e).split())[:200]
    raise UserError(
      f"--topology {name}: the CUDA plugin could not describe the GPUs ({first}); without a GPU it "
      "registers only when JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 is set before JAX starts (compile sets it)"
    ) from None
  return list(topology.devices)


def topology_devices(name: str) -> list:
  """The devices of the TPU slice ``name`` (e.g. ``v5e:4x4``, ``v5p:4x4x4``), from libtpu, or of
  ``h100:N`` (N NVIDIA H100s) from JAX's CUDA plugin.

  Raises:
    UserError: libtpu (the CUDA plugin) is not installed, the name is not a slice, or its chip is
      not one of CHIPS.
  """
  import importlib.util

  if is_gpu_topology(name):
    return _gpu_devices(name)
  if importlib.util.find_spec("libtpu") is None:
    raise UserError(
      "compile needs libtpu for the TPU compiler: pip install -e '.[tpu]' "
      "(jax[tpu]; it leaves the CPU jax working)"
    )
  # Every JAX process that starts with libtpu installed takes /tmp/libtpu_lockfile (meant for
  # processes sharing real chips); this one uses no chip, so it must not wait for or fail on it.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies

  try:
    with _quiet_native_stderr():  # libtpu logs that it found no TPU host (on fd 2, past Python)
      topology = topologies.get_topology_desc(topology_name=name, platform="tpu")
  except Exception as e:  # noqa: BLE001  libtpu raises XlaRuntimeError/ValueError for a bad name
    first = " ".join(str(e).split())[:200]
    raise UserError(
      f"--topology {name}: not a TPU slice libtpu can describe ({first}); "
      "e.g. v5e:2x2, v5e:16x16, v5p:4x4x4, v6e:4x4"
    ) from None
  devices = list(topology.devices)
  kind = devices[0].device_kind
  if kind not in CHIPS:
    raise UserError(
      f"--topology {name}: {kind} has no memory and peak figures here; "
      f"known chips: {', '.join(CHIP_NAMES.values())}"
    )
  return devices


PALLAS_CALL = 'custom_call_target="tpu_custom_call"'  # how a Pallas TPU kernel shows in the HLO text


def uncosted_kernels(hlo_text: str) -> int:
  """How many Pallas TPU kernels in a compiled program carry no cost estimate: XLA's cost analysis
  counts a Mosaic kernel's work only from the ``pl.CostEstimate`` it was given (without one,
  measured: a flash-attention gradient of ~250 GFLOP counted as 18.5)."""
  calls = [line for line in hlo_text.splitlines() if PALLAS_CALL in line]
  return sum('"cost_estimate"' not in line for line in calls)


# ---------------------------------------------------------------------------- step time
def estimate_step_s(
  cost: dict, coll: dict, peak: float, hbm_bw: float, ici_bw: float
) -> tuple[float | None, str]:
  """One device's step time from XLA's cost analysis, and which model gave it.

  A roofline over XLA's counts: the slower of its FLOPs at the chip's bf16 peak and its bytes
  accessed at HBM bandwidth, plus the collectives' bytes over the chip's ICI bandwidth
  (all-reduce twice: reduce-scatter then all-gather), none overlapped. The same model for every
  program, so rows compare: XLA's own estimate (``optimal_seconds``, kept in the report as
  ``xla_optimal_seconds``) answers -1 for most train steps, and where it does answer (some larger
  batches on v5p and v6e) it can be faster than the step's own FLOPs at peak allow (measured: MotionBERT-
  Lite at 128 clips per v5p chip, 0.10 s, an MFU of 135%).
  """
  flops, accessed = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
  if flops <= 0 and accessed <= 0:
    return None, "none"
  wire = sum(v["bytes"] * (2 if k == "all-reduce" else 1) for k, v in coll.items())
  return max(flops / peak, accessed / hbm_bw) + wire / ici_bw, "roofline"


# ---------------------------------------------------------------------------- compile
def _for_compile(config, platform: str):
  """A copy of ``config`` for compiling its train step for ``platform``'s devices ('tpu' or
  'gpu'): evaluation is not compiled, so its batch size follows the training batch (``build``
  checks both against the mesh), and the model's "auto" options are resolved as they would be on
  that platform (the model decides them from the tracing host's backend, here the CPU)."""
  config = config.copy_and_resolve_references()
  config.eval.batch_size = config.batch_size
  if config.get("attention_impl", "auto") == "auto":
    config.attention_impl = AUTO_IMPLS[platform]
  if config.get("qkv_layout", "auto") == "auto":
    config.qkv_layout = AUTO_LAYOUTS[platform]
  return config


def unpartitioned_flops(config) -> float:
  """The FLOPs of one train step of ``config`` at its global batch: the step built for this
  process's first CPU device and lowered (not compiled), counted by XLA's HLO cost analysis."""
  config = config.copy_and_resolve_references()
  config.mesh.update({"data": 1, "fsdp": 1, "tensor": 1})
  cpu = jax.local_devices(backend="cpu")[:1]
  parts = trainer.build(config, devices=cpu)
  step = trainer.make_train_step(config, parts)
  return float(step.train_step.lower(*_abstract_args(config, parts, step)).cost_analysis()["flops"])


def _abstract_args(config, parts, step) -> tuple:
  """The train step's arguments as shapes, dtypes and shardings: no data, no weights."""

  def abstract(tree, shardings):
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings)

  return (
    abstract(trainer._pure(parts.abs_params), parts.param_sh),
    abstract(trainer._pure(parts.abs_stats), parts.stats_sh),
    abstract(step.opt_shape, step.opt_sh),
    {
      k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=step.batch_sh)
      for k, v in trainer.device_batch_shapes(config, parts.task).items()
    },
    jax.ShapeDtypeStruct((), jnp.int32, sharding=step.repl),
  )


def compile_train_step(config, devices, topology: str = "") -> dict[str, Any]:
  """AOT-compiles ``train``'s step for ``devices`` (a slice's, see ``topology_devices``) and
  returns the report (FIELDS) with the compiled program under ``"compiled"``."""
  config = _for_compile(config, devices[0].platform)
  start = time.perf_counter()
  parts = trainer.build(config, devices=devices)
  step = trainer.make_train_step(config, parts)
  args = _abstract_args(config, parts, step)
  n = len(devices)
  kind = devices[0].device_kind
  hbm, peak, hbm_bw, ici_bw = CHIPS[kind]
  report = {
    "topology": topology,
    "chip": CHIP_NAMES[kind],
    "devices": n,
    "mesh": dict(parts.mesh.shape),
    "batch_size": int(config.batch_size),
    "device_memory_bytes": hbm,
    "compute_dtype": config.get("compute_dtype", "float32"),
    "remat": config.get("remat") or "",
    "attention_impl": config.attention_impl,
    "qkv_layout": config.qkv_layout,
    "scan_layers": bool(config.get("scan_layers", False)),
  }
  try:
    compiled = step.train_step.lower(*args).compile()
  except Exception as e:  # noqa: BLE001  the TPU compiler refuses a program beyond the chip's HBM
    oom = _OOM.search(str(e))
    if oom is None:
      raise
    need = float(oom.group(1)) * _UNITS[oom.group(2)]
    return dict(
      report,
      per_device_memory_bytes=int(need),
      argument_bytes_per_device=None,
      fits=False,
      flops_per_step=None,
      bytes_accessed_per_device=None,
      estimated_step_s=None,
      estimate="none",
      estimated_clips_per_s=None,
      estimated_mfu=None,
      collectives=None,
      traffic=None,
      compile_s=round(time.perf_counter() - start, 2),
      refused=" ".join(oom.group(0).split()),
      compiled=None,
    )
  compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  used = int(
    getattr(mem, "peak_memory_in_bytes", 0)
    or (
      mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes - mem.alias_size_in_bytes
    )
  )
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  text = compiled.as_text()
  coll, traffic = hlo_traffic.collectives(text), hlo_traffic.traffic(text)
  if cost:
    flops = float(cost.get("flops", 0.0)) * n  # the partitioned program is one device's
  else:
    # XLA's GPU compiler gives no cost analysis: the step's FLOPs are counted on its unpartitioned
    # program (the same step lowered for one CPU device, not compiled), its HBM bytes are the
    # compiled program's own traffic (``hlo_traffic``: operands and results outside fusions).
    flops = unpartitioned_flops(config)
    cost = {"flops": flops / n, "bytes accessed": float(traffic["total"])}
  step_s, model = estimate_step_s(cost, coll, peak, hbm_bw, ici_bw)
  if kind in CHIP_NAMES and CHIP_NAMES[kind] in GPUS:
    model = "gpu"
  if report["scan_layers"]:
    # XLA's cost analysis and the HLO text hold a scanned loop's body once, not once per depth
    # (measured: the smoke config at depth 4 counts 3.1x fewer FLOPs scanned), so none of the
    # figures built on them would be the step's; memory, fit and compile time still are.
    flops, cost, coll, traffic, step_s, model = None, {}, None, None, None, "scan"
  elif uncosted_kernels(text):
    # A Pallas (Mosaic) kernel without a cost estimate is opaque to XLA's cost analysis, so FLOPs
    # and time would leave out the work it does; its HBM operands and results are in ``traffic``,
    # which stays, with memory and fit. (``pallas_attention`` gives its estimate.)
    flops, cost, step_s, model = None, {}, None, "kernel"
  return dict(
    report,
    **{
      "per_device_memory_bytes": used,
      "argument_bytes_per_device": int(mem.argument_size_in_bytes),
      "device_memory_bytes": hbm,
      "fits": used <= hbm,
      "flops_per_step": flops,
      "bytes_accessed_per_device": float(cost["bytes accessed"]) if "bytes accessed" in cost else None,
      "estimated_step_s": step_s,
      "estimated_clips_per_s": config.batch_size / step_s if step_s else None,
      "estimated_mfu": flops / (n * peak * step_s) if step_s and flops is not None else None,
      "estimate": model,
      "xla_optimal_seconds": float(cost.get("optimal_seconds", -1.0) or -1.0) if cost else None,
      "collectives": coll,
      "collective_bytes": "tuple-sum",
      "traffic": traffic,
      "compile_s": round(compile_s, 2),
      "refused": None,
      "compiled": compiled,
    },
  )


def candidate_meshes(config, num_devices: int) -> list[dict[str, int]]:
  """(data, fsdp, tensor) meshes of ``num_devices`` whose data-parallel size divides the batch
  and whose tensor size divides the attention heads."""
  heads = int(config.model.get("num_heads", 1))
  out = []
  for tensor in range(1, num_devices + 1):
    if num_devices % tensor or heads % tensor:
      continue
    rest = num_devices // tensor
    for fsdp in range(1, rest + 1):
      if rest % fsdp == 0 and config.batch_size % rest == 0:
        out.append({"data": rest // fsdp, "fsdp": fsdp, "tensor": tensor})
  return out


def search_mesh(config, devices, topology: str = "", log=None) -> list[dict[str, Any]]:
  """Every candidate mesh compiled; the reports, those that fit first, fastest first."""
  reports = []
  for mesh in candidate_meshes(config, len(devices)):
    c = config.copy_and_resolve_references()
    c.mesh.update(mesh)
    report = compile_train_step(c, devices, topology)
    report.pop("compiled")
    reports.append(report)
    if log:
      log(report)
  return sorted(reports, key=lambda r: (not r["fits"], r["estimated_step_s"] or math.inf))


# ---------------------------------------------------------------------------- report
def _bytes(n: float) -> str:
  return f"{n / GiB:.2f} GiB"


def _mesh(mesh: dict) -> str:
  return "x".join(str(mesh[a]) for a in ("data", "fsdp", "tensor")) + " (data x fsdp x tensor)"


def _collectives_line(coll: dict | None, scanned: bool = False) -> str:
  if coll is None:
    return "(not counted: scan_layers)" if scanned else "(not compiled: out of HBM)"
  parts = [f"{k} {v['count']} ({v['bytes'] / 2**20:.1f} MiB)" for k, v in coll.items() if v["count"]]
  return ", ".join(parts) or "none"


_MODELS = {
  "none": "",
  "scan": "",
  "kernel": "",
  "roofline": "roofline of XLA's FLOP and byte counts + collectives over ICI",
  "gpu": "roofline of the unpartitioned step's FLOPs, the program's HBM traffic + collectives over NVLink",
}


def _no_cost(report: dict) -> str:
  if report.get("estimate") == "scan":
    return "n/a (scan_layers: XLA counts the scanned depths once; compile without it for costs)"
  if report.get("estimate") == "kernel":
    return "n/a (a Pallas kernel: XLA's cost model does not count its work; see traffic)"
  return "n/a"


def table(report: dict) -> str:
  """The report as 'field  value' lines."""
  step, mfu = report["estimated_step_s"], report["estimated_mfu"]
  rows = [
    ("topology", f"{report['topology']} ({report['chip']})"),
    ("devices", str(report["devices"])),
    ("mesh", _mesh(report["mesh"])),
    ("batch_size", f"{report['batch_size']} ({report['compute_dtype']}, remat {report['remat'] or 'off'})"),
    ("per_device_memory", _bytes(report["per_device_memory_bytes"])),
    ("argument_bytes_per_device", _bytes(report["argument_bytes_per_device"])),
    ("device_memory", _bytes(report["device_memory_bytes"])),
    ("fits", "yes" if report["fits"] else "NO"),
    ("flops_per_step", f"{report['flops_per_step']:.4g}" if report["flops_per_step"] else _no_cost(report)),
    ("estimated_step_s", f"{step:.4g} ({_MODELS[report['estimate']]})" if step else _no_cost(report)),
    ("estimated_clips_per_s", f"{report['estimated_clips_per_s']:.4g}" if step else "n/a"),
    ("estimated_mfu", f"{100 * mfu:.1f}%" if mfu is not None else "n/a"),
    ("collectives", _collectives_line(report["collectives"], report.get("scan_layers", False))),
    ("compile_s", f"{report['compile_s']:.1f}"),
  ]
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def estimate_cells(report: dict, missing: str = "n/a", clips_format: str = ".4g") -> tuple[str, str, str]:
  """A report's XLA estimates as table cells: step seconds, clips/s and MFU (``missing`` where
  the cost model gave none)."""
  step, clips, mfu = (report[k] for k in ("estimated_step_s", "estimated_clips_per_s", "estimated_mfu"))
  return (
    f"{step:.4g}" if step else missing,
    f"{clips:{clips_format}}" if clips else missing,
    f"{100 * mfu:.1f}%" if mfu is not None else missing,
  )


def ranking(reports: list[dict]) -> str:
  """--search-mesh: one line per mesh, best first."""
  head = (
    f"{'rank':>4}  {'data x fsdp x tensor':<20}  {'memory/chip':>11}  {'fits':>4}  "
    f"{'step_s':>9}  {'clips/s':>9}  {'MFU':>6}  collectives"
  )
  lines = [head]
  for i, r in enumerate(reports, 1):
    mesh = "x".join(str(r["mesh"][a]) for a in ("data", "fsdp", "tensor"))
    step, clips, mfu = estimate_cells(r)
    lines.append(
      f"{i if r['fits'] else '-':>4}  {mesh:<20}  "
      f"{_bytes(r['per_device_memory_bytes']):>11}  {'yes' if r['fits'] else 'NO':>4}  "
      f"{step:>9}  {clips:>9}  {mfu:>6}  {_collectives_line(r['collectives'], r.get('scan_layers', False))}"
    )
  return "\n".join(lines)


def too_big(report: dict) -> str:
  if report.get("refused"):  # the compiler's own words: what it needs against what it has
    return (
      f"{report['topology']}, mesh {_mesh(report['mesh'])}, batch {report['batch_size']}: "
      f"does not fit a {report['chip']} chip: {report['refused']}"
    )
  return (
    f"{report['topology']}, mesh {_mesh(report['mesh'])}, batch {report['batch_size']}: "
    f"the step needs {_bytes(report['per_device_memory_bytes'])} per chip, a "
    f"{report['chip']} chip has {_bytes(report['device_memory_bytes'])}"
  )


def _write_json(path: str, payload) -> None:
  atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())


# ---------------------------------------------------------------------------- command line
HELP = """usage: perfectrep-jax compile --config FILE.py[:VARIANT] --topology NAME [--config.KEY=VALUE ...]
                              [--json OUT] [--search-mesh]

Compiles the train step `train` runs (same function, shardings, donation, dtype, remat) for a TPU
slice's devices without the chips (libtpu: pip install -e '.[tpu]'), from abstract shapes (no data
read, no weights made), and reports XLA's peak memory per chip against the chip's HBM, FLOPs, a
step time estimated from XLA's cost analysis (not a measurement), MFU and the program's collectives.
A program that does not fit ends in one line with exit status 2 (--json is still written, fits
false).

arguments:
  --config FILE.py[:VARIANT]  task config (its mesh, batch_size, compute_dtype, remat are compiled)
  --topology NAME             TPU slice, e.g. v5e:2x2, v5e:4x4, v5e:16x16, v5p:4x4x4, v6e:4x4;
                              or NVIDIA GPUs, h100:8 (a node), h100:32 (nodes of 8), through
                              JAX's CUDA plugin (pip install -e '.[gpu-compile]'; no GPU needed)
  --config.KEY=VALUE          override a config field, e.g. --config.compute_dtype=bfloat16
  --json OUT                  write the report (or, with --search-mesh, every mesh's) as JSON
  --search-mesh               compile every (data, fsdp, tensor) mesh of the slice (tensor dividing
                              the heads, data x fsdp the batch); rank those that fit by step time
  -h, --help                  this help

examples:
  perfectrep-jax compile --config configs/pretrain.py:smoke --topology v5e:2x2
  perfectrep-jax compile --config configs/pretrain.py:full --topology v5e:4x4 --config.compute_dtype=bfloat16 --config.batch_size=128 --json full_v5e16.json
  perfectrep-jax compile --config configs/pretrain.py:lite --topology v6e:4x4 --config.batch_size=256 --search-mesh"""


def run(argv: list[str]) -> None:
  """``perfectrep-jax compile ARGS``; UserError for what a user can get wrong."""
  if any(word in HELP_FLAGS for word in argv):
    print(HELP, flush=True)
    return
  argv = ["perfectrep-jax compile", *("--search_mesh" if w == "--search-mesh" else w for w in argv)]
  values = flags.FlagValues()
  # sys_argv: the --config.KEY overrides are defined from these words, not from sys.argv (which
  # is another program's when compile runs in-process)
  holder = config_flags.DEFINE_config_file(
    "config", None, "task config", lock_config=True, flag_values=values, sys_argv=argv
  )
  topology = flags.DEFINE_string("topology", None, "TPU slice", flag_values=values)
  out = flags.DEFINE_string("json", None, "report JSON", flag_values=values)
  search = flags.DEFINE_bool("search_mesh", False, "rank the meshes", flag_values=values)
  config = parse_config_flags(values, argv, holder)
  if config is None:
    raise UserError("--config is required, e.g. --config configs/pretrain.py:smoke")
  if not topology.value:
    raise UserError("--topology is required, e.g. --topology v5e:2x2")
  if out.value and Path(out.value).is_dir():
    raise UserError(f"--json {out.value}: is a directory")
  if is_gpu_topology(topology.value):
    prepare_gpu_compiler()  # before JAX starts its backends
  devices = topology_devices(topology.value)
  check_config(config, len(devices))  # the mesh is the topology's, not this host's
  if search.value:
    if not candidate_meshes(config, len(devices)):
      raise UserError(
        f"no (data, fsdp, tensor) mesh of {len(devices)} devices splits batch_size {config.batch_size}"
      )
    print(
      f"compiling {len(candidate_meshes(config, len(devices)))} meshes of {topology.value}",
      file=sys.stderr,
      flush=True,
    )
    reports = search_mesh(config, devices, topology.value)
    if out.value:
      _write_json(out.value, reports)
    if not any(r["fits"] for r in reports):
      raise UserError(
        f"no mesh fits; the smallest: {too_big(min(reports, key=lambda r: r['per_device_memory_bytes']))}"
      )
    print(ranking(reports), flush=True)
    return
  report = compile_train_step(config, devices, topology.value)
  report.pop("compiled")
  if out.value:
    _write_json(out.value, report)
  if not report["fits"]:
    raise UserError(too_big(report))
  print(table(report), flush=True)
  if report["traffic"]:
    print(hlo_traffic.table(report["traffic"]), flush=True)
