#!/usr/bin/env python
"""Throughput of the DSTformer lifter in JAX against the PyTorch reference, same weights, one process.

    python benchmarks/run.py [--size lite|full|both|tiny] [--json OUT.json] [--write-readme]

For each size: the train step (forward + MPJPE loss + gradient + AdamW update; JAX: one
``jax.jit`` with the parameters and optimizer state donated; PyTorch: forward, ``backward()``,
``torch.optim.AdamW.step()``) and the eval forward (PyTorch under ``inference_mode``), both run
on the same weights (``perfectrep_jax.interop.convert.to_state_dict``) and the same batch,
alternating one JAX call and one PyTorch call so that both see the same machine load. Also: the
compile time of both JAX functions, XLA's peak-memory estimate and FLOPs per clip (XLA's cost
analysis), the data pipeline's clips/s, and with ``--device gpu|tpu`` the model FLOP utilisation
against the peak of the chip. Figures are printed, never asserted.

Threads: both frameworks get the same cores. ``--threads N`` restricts this process to N cores
before JAX starts (XLA's CPU thread pool is sized from the cores it may run on) and calls
``torch.set_num_threads(N)``; the default is every core this process may use.

``--mode forward`` is issue 3's check: the eval forward only (default: full size), ours against
PyTorch's, reported as a ratio (``benchmarks/forward_full_size.py`` runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = Path(__file__).resolve().parent / "README.md"


def markers(tag: str = "") -> tuple[str, str]:
  """The comments around one generated block of README.md (one block per run kind)."""
  name = f"results{':' + tag if tag else ''}"
  return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


BEGIN, END = markers()

# Model sizes. lite = MotionBERT-Lite (configs/pretrain/MB_lite.yaml: dim 256, mlp_ratio 4);
# full = PerfectRep (train_config.yaml: dim 512, mlp_ratio 2). Both depth 5, 8 heads, T 243,
# dim_rep 512. ``batch`` is the train batch, ``eval_batch`` the forward batch (kept small: two
# CPU cores); ``tiny`` is for the smoke test.
SIZES = {
  "tiny": dict(
    model=dict(dim_feat=16, dim_rep=16, depth=1, num_heads=2, mlp_ratio=2, maxlen=9),
    frames=9,
    batch=2,
    eval_batch=2,
  ),
  "lite": dict(
    model=dict(dim_feat=256, dim_rep=512, depth=5, num_heads=8, mlp_ratio=4, maxlen=243),
    frames=243,
    batch=2,
    eval_batch=2,
  ),
  "full": dict(
    model=dict(dim_feat=512, dim_rep=512, depth=5, num_heads=8, mlp_ratio=2, maxlen=243),
    frames=243,
    batch=1,
    eval_batch=2,
  ),
}

# Dense peak FLOP/s per chip by compute dtype, for MFU (vendor figures, no sparsity). "float32" is
# the peak of what XLA's default matmul precision runs float32 products on: TF32 tensor cores on
# NVIDIA (Ampere and later), one bfloat16 pass on TPU.
PEAK_FLOPS = {
  "H100": {"bfloat16": 989e12, "float32": 495e12},  # SXM
  "H200": {"bfloat16": 989e12, "float32": 495e12},
  "A100": {"bfloat16": 312e12, "float32": 156e12},
  "L4": {"bfloat16": 121e12, "float32": 60e12},
  "TPU v4": {"bfloat16": 275e12, "float32": 275e12},
  "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12},  # v5e
  "TPU v5p": {"bfloat16": 459e12, "float32": 459e12},
  "TPU v5": {"bfloat16": 459e12, "float32": 459e12},
  "TPU v6 lite": {"bfloat16": 918e12, "float32": 918e12},  # v6e (Trillium)
}

# XLA CPU flags this benchmark sets (see README: measured, not assumed).
CPU_XLA_FLAGS: list[str] = []


def parse_args(argv=None, *, prog: str | None = None, description: str | None = None):
  p = argparse.ArgumentParser(
    prog=prog,
    description=description or __doc__.split("\n\n")[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument(
    "--size",
    choices=["lite", "full", "both", "tiny"],
    help="model size; both = lite then full (default; --mode forward: full)",
  )
  p.add_argument(
    "--mode",
    default="all",
    choices=["all", "train", "forward"],
    help="what to time (forward: issue 3's eval-forward ratio)",
  )
  p.add_argument("--json", help="write one object per size to this file")
  p.add_argument(
    "--write-readme", action="store_true", help=f"replace the results table in {README.relative_to(ROOT)}"
  )
  p.add_argument("--iters", type=int, default=3, help="timed calls per function (after warm-up)")
  p.add_argument("--warmup", type=int, default=1, help="untimed calls per function")
  p.add_argument("--batch", type=int, help="train batch (default: per size)")
  p.add_argument("--eval-batch", type=int, help="eval-forward batch (default: per size)")
  p.add_argument("--frames", type=int, help="clip length T (default: per size)")
  p.add_argument("--threads", type=int, help="cores for both frameworks (default: all usable)")
  p.add_argument("--device", default="cpu", choices=["cpu", "gpu", "tpu"])
  p.add_argument(
    "--dtype",
    default="float32",
    choices=["float32", "bfloat16"],
    help="JAX compute dtype (parameters stay float32; PyTorch runs float32)",
  )
  p.add_argument(
    "--attention-impl", default="auto", choices=["auto", "einsum", "dot_product_attention", "lanes", "tpu"]
  )
  p.add_argument("--remat", default=None, choices=["full", "dots", "dots_all"])
  p.add_argument("--no-torch", action="store_true", help="JAX figures only")
  p.add_argument("--no-pipeline", action="store_true", help="skip the data pipeline's clips/s")
  p.add_argument(
    "--default-malloc",
    action="store_true",
    help="keep glibc's default malloc (default: re-run with one that keeps its "
    "memory, perfectrep_jax/hostmem.py)",
  )
  p.add_argument(
    "--scaling", action="store_true", help="train clips/s on 1, 2, 4, ... local devices (data parallel)"
  )
  p.add_argument(
    "--xla-flag",
    action="append",
    default=[],
    help="extra XLA flag for this run, e.g. --xla-flag=--xla_cpu_use_thunk_runtime=true",
  )
  return p.parse_args(argv)


def setup_process(args) -> int:
  """Pins cores and sets XLA flags; must run before JAX or PyTorch start. Returns the thread count."""
  usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
  threads = args.threads or (len(usable) if usable else os.cpu_count() or 1)
  if usable and args.threads and args.threads < len(usable):
    os.sched_setaffinity(0, set(usable[: args.threads]))
  flags = os.environ.get("XLA_FLAGS", "").split()
  if args.device == "cpu":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    flags += CPU_XLA_FLAGS
  flags += args.xla_flag
  os.environ["XLA_FLAGS"] = " ".join(flags)
  return threads


# ----------------------------------------------------------------------------------- timing
def _stats(times: list[float], cpu: list[float]) -> dict:
  return {
    "median_s": statistics.median(times),
    "min_s": min(times),
    "max_s": max(times),
    "n": len(times),
    "cpu_median_s": statistics.median(cpu),
  }


def _record_timings(res: dict, phase: str, t: dict, clips: int, flops: float, peak: float | None) -> None:
  """Writes the timings ``interleaved`` measured for ``phase`` ("eval" or "train") into ``res``:
  ours (``jax``), PyTorch's when it ran (and the ratio), the MFU when the chip's ``peak`` FLOP/s is
  known; and prints the phase's line."""
  ours = t["jax"]
  res[f"{phase}_step_s"] = ours["median_s"]
  res[f"{phase}_step_min_s"] = ours["min_s"]
  res[f"{phase}_cpu_s"] = ours["cpu_median_s"]
  res[f"{phase}_clips_per_s"] = clips / ours["median_s"]
  torch_text = ""
  if "torch" in t:
    res[f"torch_{phase}_step_s"] = t["torch"]["median_s"]
    res[f"torch_{phase}_cpu_s"] = t["torch"]["cpu_median_s"]
    res[f"torch_{phase}_clips_per_s"] = clips / t["torch"]["median_s"]
    res[f"{phase}_ratio"] = res[f"{phase}_clips_per_s"] / res[f"torch_{phase}_clips_per_s"]
    torch_text = (
      f", torch {res[f'torch_{phase}_clips_per_s']:.3f} clips/s, ratio {res[f'{phase}_ratio']:.2f}x"
    )
  if peak:
    res[f"{phase}_mfu"] = flops / ours["median_s"] / peak
  print(
    f"  {phase:<5}: ours {res[f'{phase}_clips_per_s']:.3f} clips/s{torch_text}"
    f"  (compile {res[f'compile_{phase}_s']:.1f} s)",
    flush=True,
  )


def interleaved(fns: dict, warmup: int, iters: int) -> dict:
  """Times each function ``iters`` times, in rounds that take the functions in turn.

  ``warmup`` untimed calls of each first. Then in each round, each function runs twice in a row and
  only the second call is timed: the first pays for switching from the other framework (its freed
  memory faulted back in, its caches and thread pools cold), which a training run that uses one
  framework never pays. Rounds alternate the frameworks, so a change in machine load hits both.
  Wall time is the figure; the process CPU time of each call is kept too (with one thread it is
  the work done whatever else the machine runs; with more it also counts spin-waiting).
  """
  for _ in range(warmup):
    for f in fns.values():
      f()
  times = {k: [] for k in fns}
  cpu = {k: [] for k in fns}
  for _ in range(iters):
    for k, f in fns.items():
      if len(fns) > 1:
        f()  # the switch
      c0, t0 = time.process_time(), time.perf_counter()
      f()
      times[k].append(time.perf_counter() - t0)
      cpu[k].append(time.process_time() - c0)
  return {k: _stats(times[k], cpu[k]) for k in fns}


# ----------------------------------------------------------------------------------- JAX side
def _cost(compiled) -> dict:
  out = {}
  try:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    out["flops"] = float(ca.get("flops", 0.0))
    out["bytes_accessed"] = float(ca.get("bytes accessed", 0.0))
  except Exception as e:  # noqa: BLE001 - a backend without cost analysis
    out["cost_error"] = str(e)[:200]
  try:
    ma = compiled.memory_analysis()
    out["peak_bytes"] = int(
      ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes + ma.temp_size_in_bytes
    )
    out["temp_bytes"] = int(ma.temp_size_in_bytes)
  except Exception as e:  # noqa: BLE001
    out["memory_error"] = str(e)[:200]
  return out


def mpjpe(pred, target):
  import jax.numpy as jnp

  return jnp.mean(jnp.sqrt(jnp.sum((pred - target) ** 2, axis=-1)))


def build_jax(cfg, args, devices=None):
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from perfectrep_jax.models.dstformer import DSTformer

  dtype = jnp.bfloat16 if args.dtype == "bfloat16" else None
  model = DSTformer(cfg, dtype=dtype, attention_impl=args.attention_impl, remat=args.remat, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adamw(5e-4, weight_decay=0.01)

  def train_step(params, opt_state, x, y):
    def loss_fn(p):
      return mpjpe(nnx.merge(graphdef, p, rest)(x).astype(jnp.float32), y)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def forward(params, x):
    return nnx.merge(graphdef, params, rest)(x)

  return model, params, tx, jax.jit(train_step, donate_argnums=(0, 1)), jax.jit(forward)


def compile_timed(jitted, *args):
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - t0


# ----------------------------------------------------------------------------------- PyTorch side
def build_torch(cfg, model, threads, device):
  import numpy as np
  import torch

  from perfectrep_jax.interop.convert import to_state_dict
  from perfectrep_jax.interop.torch_reference import TorchDSTformer

  torch.set_num_threads(threads)
  tm = TorchDSTformer(cfg)
  tm.load_state_dict(
    {k: torch.from_numpy(np.asarray(v)) for k, v in to_state_dict(model).items()}, strict=True
  )
  tdev = "cuda" if device == "gpu" and torch.cuda.is_available() else "cpu"
  return tm.to(tdev), tdev


def _torch_sync(tdev):
  import torch

  if tdev == "cuda":
    torch.cuda.synchronize()


# ----------------------------------------------------------------------------------- pipeline
def pipeline_clips_per_s(frames: int, batch: int, seconds: float = 5.0) -> dict:
  """Clips/s of the training input pipeline on the bundled demo mocap (flip + synthetic 2D)."""
  try:
    from perfectrep_jax.data.pipeline import PipelineConfig, make_train_iterator

    cfg = PipelineConfig(source="demo", batch_size=batch, clip_len=frames, flip=True, synthetic_2d=True)
    it = make_train_iterator(cfg)
    next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
      next(it)
      n += 1
    dt = time.perf_counter() - t0
    return {"pipeline_clips_per_s": n * batch / dt, "pipeline_batch": batch}
  except Exception as e:  # noqa: BLE001 - report, don't fail the benchmark
    return {"pipeline_error": f"{type(e).__name__}: {str(e)[:200]}"}


# ----------------------------------------------------------------------------------- CPU roofline
GEMM_SHAPE = (4096, 1024, 1024)  # (M, K, N): large enough for both libraries' best blocking


def gemm_rates(threads: int, use_torch: bool, calls: int = 15) -> dict:
  """GFLOP/s of one large float32 matrix product in each framework on this machine's cores.

  The best of the two is the CPU's counterpart of an accelerator's peak: the lifter's achieved
  FLOP/s divided by it says how much room any implementation has left. Fastest of ``calls``
  after three untimed ones (a peak, not a typical call).
  """
  import jax
  import jax.numpy as jnp
  import numpy as np

  m, k, n = GEMM_SHAPE
  rng = np.random.default_rng(0)
  a, b = (rng.standard_normal(s).astype(np.float32) for s in ((m, k), (k, n)))
  flops = 2.0 * m * k * n

  def rate(f):
    for _ in range(3):
      f()
    times = []
    for _ in range(calls):
      t0 = time.perf_counter()
      f()
      times.append(time.perf_counter() - t0)
    return flops / min(times) / 1e9

  ja, jb = jax.device_put(a), jax.device_put(b)
  dot = jax.jit(jnp.dot)
  out = {"gemm_shape": list(GEMM_SHAPE), "gemm_gflops_jax": rate(lambda: dot(ja, jb).block_until_ready())}
  if use_torch:
    import torch

    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    out["gemm_gflops_torch"] = rate(lambda: torch.mm(ta, tb))
  out["gemm_peak_gflops"] = max(v for k_, v in out.items() if k_.startswith("gemm_gflops"))
  return out


def add_achieved_flops(res: dict, gemm_peak_gflops: float | None) -> None:
  """GFLOP/s each framework achieved (XLA's FLOP count: the same computation in both), and the
  fraction of the machine's GEMM rate that is."""
  for kind in ("train", "eval"):
    per_clip = res.get("flops_per_clip_train" if kind == "train" else "flops_per_clip_forward")
    for who in ("", "torch_"):
      clips = res.get(f"{who}{kind}_clips_per_s")
      if per_clip and clips:
        res[f"{who}{kind}_gflops"] = per_clip * clips / 1e9
        if gemm_peak_gflops:
          res[f"{who}{kind}_fraction_of_gemm_peak"] = res[f"{who}{kind}_gflops"] / gemm_peak_gflops


# ----------------------------------------------------------------------------------- one size
def peak_flops(device) -> float | None:
  kind = getattr(device, "device_kind", "")
  for name, table in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
    if name.lower() in kind.lower():
      return table
  return None


def run_size(name: str, args, threads: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from perfectrep_jax.models.dstformer import DSTformerConfig

  spec = SIZES[name]
  cfg = DSTformerConfig(**spec["model"])
  frames = args.frames or spec["frames"]
  batch = args.batch or spec["batch"]
  eval_batch = args.eval_batch or spec["eval_batch"]
  do_train = args.mode in ("all", "train")
  do_eval = args.mode in ("all", "forward")
  res = {
    "size": name,
    "dim_feat": cfg.dim_feat,
    "depth": cfg.depth,
    "num_heads": cfg.num_heads,
    "mlp_ratio": cfg.mlp_ratio,
    "dim_rep": cfg.dim_rep,
    "frames": frames,
    "train_batch": batch,
    "eval_batch": eval_batch,
    "dtype": args.dtype,
    "attention_impl": args.attention_impl,
    "remat": args.remat,
    "threads": threads,
    "device": str(jax.devices()[0].device_kind),
    "backend": jax.default_backend(),
  }
  print(
    f"\n== {name}: dim {cfg.dim_feat}, depth {cfg.depth}, heads {cfg.num_heads}, mlp_ratio "
    f"{cfg.mlp_ratio}, T {frames}; train batch {batch}, eval batch {eval_batch}",
    flush=True,
  )

  rng = np.random.default_rng(0)
  x_np = rng.standard_normal((max(batch, eval_batch), frames, 17, 3)).astype(np.float32)
  y_np = rng.standard_normal((batch, frames, 17, 3)).astype(np.float32)
  model, params, tx, train_jit, fwd_jit = build_jax(cfg, args)
  x_train, y_train = jax.device_put(x_np[:batch]), jax.device_put(y_np)
  x_eval = jax.device_put(x_np[:eval_batch])

  use_torch = not args.no_torch
  if use_torch:
    import torch

    tm, tdev = build_torch(cfg, model, threads, args.device)
    tx_train = torch.from_numpy(x_np[:batch]).to(tdev)
    ty_train = torch.from_numpy(y_np).to(tdev)
    tx_eval = torch.from_numpy(x_np[:eval_batch]).to(tdev)
    res["torch_version"] = torch.__version__
    res["torch_device"] = tdev

  chip_peak = peak_flops(jax.devices()[0]) if args.device != "cpu" else None

  if do_eval:
    fwd, res["compile_eval_s"] = compile_timed(fwd_jit, params, x_eval)
    cost = _cost(fwd)
    res["flops_per_clip_forward"] = cost.get("flops", 0.0) / eval_batch
    res["eval_peak_bytes"] = cost.get("peak_bytes")
    fns = {"jax": lambda: fwd(params, x_eval).block_until_ready()}
    if args.dtype != "float32":  # the float32 forward alongside, same weights and load
      f32_args = argparse.Namespace(**{**vars(args), "dtype": "float32"})
      _, params32, _, _, fwd32_jit = build_jax(cfg, f32_args)
      fwd32, _ = compile_timed(fwd32_jit, params32, x_eval)
      fns["jax_f32"] = lambda: fwd32(params32, x_eval).block_until_ready()
    if use_torch:
      tm.eval()

      def torch_eval():
        with torch.inference_mode():
          tm(tx_eval)
        _torch_sync(tdev)

      fns["torch"] = torch_eval
      # same weights, same input: how far apart the two outputs are
      with torch.inference_mode():
        ref = tm(tx_eval).float().cpu().numpy()
      res["eval_max_abs_diff_vs_torch"] = float(
        np.abs(np.asarray(fwd(params, x_eval), np.float32) - ref).max()
      )
    t = interleaved(fns, args.warmup, args.iters)
    _record_timings(res, "eval", t, eval_batch, cost.get("flops", 0.0), chip_peak and chip_peak[args.dtype])
    if "jax_f32" in t:
      res["eval_f32_clips_per_s"] = eval_batch / t["jax_f32"]["median_s"]
      res["eval_vs_f32_ratio"] = res["eval_clips_per_s"] / res["eval_f32_clips_per_s"]

  if do_train:
    opt_state = tx.init(params)
    # donation consumes its inputs: compile on copies, keep `params` for the torch weights
    state = {"p": jax.tree.map(jnp.copy, params), "o": opt_state}
    step, res["compile_train_s"] = compile_timed(train_jit, state["p"], state["o"], x_train, y_train)
    cost = _cost(step)
    res["flops_per_clip_train"] = cost.get("flops", 0.0) / batch
    res["train_peak_bytes"] = cost.get("peak_bytes")

    def jax_step():
      state["p"], state["o"], loss = step(state["p"], state["o"], x_train, y_train)
      loss.block_until_ready()

    fns = {"jax": jax_step}
    if use_torch:
      tm.train()
      opt = torch.optim.AdamW(tm.parameters(), lr=5e-4, weight_decay=0.01)

      def torch_step():
        opt.zero_grad(set_to_none=True)
        loss = torch.linalg.vector_norm(tm(tx_train) - ty_train, dim=-1).mean()
        loss.backward()
        opt.step()
        _torch_sync(tdev)

      fns["torch"] = torch_step
    t = interleaved(fns, args.warmup, args.iters)
    _record_timings(res, "train", t, batch, cost.get("flops", 0.0), chip_peak and chip_peak[args.dtype])
    if args.scaling:
      res["scaling"] = scaling(cfg, args, frames, batch)

  if args.dtype == "bfloat16" and do_eval:
    res.update(bf16_error(cfg, args, x_eval))
  if not args.no_pipeline and args.mode == "all":
    res.update(pipeline_clips_per_s(frames, batch=max(batch, 8)))
  if args.device != "cpu":
    try:
      stats = jax.devices()[0].memory_stats() or {}
      res["device_peak_bytes"] = stats.get("peak_bytes_in_use")
    except Exception:  # noqa: BLE001
      pass
  return res


def bf16_error(cfg, args, x) -> dict:
  """Max |bf16 output - float32 output| of the eval forward on the same weights and input."""
  import numpy as np
  from flax import nnx

  from perfectrep_jax.models.dstformer import DSTformer

  f32 = DSTformer(cfg, attention_impl=args.attention_impl, rngs=nnx.Rngs(0))
  b16 = DSTformer(cfg, dtype="bfloat16", attention_impl=args.attention_impl, rngs=nnx.Rngs(0))
  a = np.asarray(nnx.jit(lambda m, x: m(x))(f32, x), np.float32)
  b = np.asarray(nnx.jit(lambda m, x: m(x))(b16, x), np.float32)
  return {"bf16_max_abs_diff": float(np.abs(a - b).max()), "f32_max_abs": float(np.abs(a).max())}


def scaling(cfg, args, frames, per_device_batch) -> list[dict]:
  """Train clips/s with the batch sharded over 1, 2, 4, ... local devices (parameters replicated)."""
  import jax
  import numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  out = []
  n_all = len(jax.local_devices())
  counts = sorted({1, n_all} | {2**i for i in range(1, 8) if 2**i < n_all})
  for n in counts:
    mesh = Mesh(np.array(jax.local_devices()[:n]), ("data",))
    batch = per_device_batch * n
    model, params, tx, train_jit, _ = build_jax(cfg, args)
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    params = jax.device_put(params, repl)
    opt_state = jax.device_put(tx.init(params), repl)
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.standard_normal((batch, frames, 17, 3)).astype(np.float32), data)
    y = jax.device_put(rng.standard_normal((batch, frames, 17, 3)).astype(np.float32), data)
    step, _ = compile_timed(train_jit, params, opt_state, x, y)
    state = {"p": params, "o": opt_state}

    def f(step=step, state=state, x=x, y=y):
      state["p"], state["o"], loss = step(state["p"], state["o"], x, y)
      loss.block_until_ready()

    t = interleaved({"jax": f}, args.warmup, args.iters)["jax"]
    out.append({"devices": n, "batch": batch, "train_clips_per_s": batch / t["median_s"]})
    print(f"  scaling: {n} device(s), batch {batch}: {batch / t['median_s']:.2f} clips/s", flush=True)
  return out


# ----------------------------------------------------------------------------------- output
def _fmt(v, spec=".2f"):
  return "n/a" if v is None else format(v, spec)


def _ratio(v) -> str:
  return "n/a" if v is None else f"**{v:.2f}x**"


def table(results: list[dict]) -> str:
  rows = [
    "| size | T | batch (train / eval) | train clips/s: ours | PyTorch | ratio "
    "| eval clips/s: ours | PyTorch | ratio | compile s (train / eval) "
    "| XLA peak MiB (train / eval) | GFLOP per clip (fwd / train) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  mib = lambda b: None if b is None else b / 2**20  # noqa: E731
  for r in results:
    rows.append(
      f"| {r['size']} (dim {r['dim_feat']}, mlp {r['mlp_ratio']:g}) | {r['frames']} "
      f"| {r['train_batch']} / {r['eval_batch']} "
      f"| {_fmt(r.get('train_clips_per_s'), '.3f')} | {_fmt(r.get('torch_train_clips_per_s'), '.3f')} "
      f"| {_ratio(r.get('train_ratio'))} "
      f"| {_fmt(r.get('eval_clips_per_s'), '.3f')} | {_fmt(r.get('torch_eval_clips_per_s'), '.3f')} "
      f"| {_ratio(r.get('eval_ratio'))} "
      f"| {_fmt(r.get('compile_train_s'), '.0f')} / {_fmt(r.get('compile_eval_s'), '.0f')} "
      f"| {_fmt(mib(r.get('train_peak_bytes')), '.0f')} / {_fmt(mib(r.get('eval_peak_bytes')), '.0f')} "
      f"| {_fmt(r.get('flops_per_clip_forward', 0) / 1e9 if 'flops_per_clip_forward' in r else None, '.0f')} "
      f"/ {_fmt(r.get('flops_per_clip_train', 0) / 1e9 if 'flops_per_clip_train' in r else None, '.0f')} |"
    )
  return "\n".join(rows)


def environment(threads: int) -> dict:
  import jax
  import jaxlib
  from perfectrep_jax.hostmem import cpu_model

  env = {
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": getattr(jaxlib, "__version__", "?"),
    "threads": threads,
    "cpu": cpu_model(),
    "cores_usable": len(os.sched_getaffinity(0)),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    "loadavg_1min_end": os.getloadavg()[0],
    "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  }
  try:
    import torch

    env["torch"] = torch.__version__
  except ImportError:
    pass
  return env


def achieved_lines(results: list[dict], env: dict) -> list[str]:
  """One line per size: achieved GFLOP/s of both frameworks against the machine's GEMM rate."""
  if "gemm_peak_gflops" not in env:
    return []
  m, k, n = env["gemm_shape"]
  rates = ", ".join(
    f"{who} {env[f'gemm_gflops_{who}']:.0f}" for who in ("jax", "torch") if f"gemm_gflops_{who}" in env
  )
  lines = [
    f"- This machine's float32 GEMM rate ({m}x{k} @ {k}x{n}, same threads): {rates} "
    f"GFLOP/s; the best, {env['gemm_peak_gflops']:.0f}, is the roofline below."
  ]
  for r in results:
    parts = []
    for kind in ("train", "eval"):
      if f"{kind}_gflops" not in r:
        continue

      def pct(who, r=r, kind=kind):
        return f"{r[f'{who}{kind}_gflops']:.0f} ({100 * r[f'{who}{kind}_fraction_of_gemm_peak']:.0f}%)"

      parts.append(
        f"{kind} ours {pct('')}" + (f", PyTorch {pct('torch_')}" if f"torch_{kind}_gflops" in r else "")
      )
    if parts:
      lines.append(
        f"- {r['size']}: achieved GFLOP/s (XLA's FLOP count for both; % of the GEMM "
        f"rate): " + "; ".join(parts) + "."
      )
  return lines


def _row_size(row: str) -> str:
  """'| lite (dim 256, mlp 4) | 243 | ...' -> 'lite'."""
  cells = row.strip().strip("|").split("|")
  return cells[0].strip().split(" ")[0] if cells else ""


def _rows_of_other_sizes(block: str, sizes: set[str]) -> tuple[dict[str, str], list[str]]:
  """The table rows (by size) and the '- size: ...' lines of a README block for sizes not in
  ``sizes``: what a run of fewer sizes must keep."""
  rows, lines = {}, []
  for line in block.splitlines():
    if line.startswith("| ") and not line.startswith("| size |"):
      name = _row_size(line)
      if name and name not in sizes:
        rows[name] = line
  for line in block.splitlines():
    if any(line.startswith(f"- {name}: ") for name in rows):
      lines.append(line)
  return rows, lines


def write_readme(results: list[dict], env: dict, command: str, tag: str = "") -> None:
  pipe = [
    f"{r['size']}: {r['pipeline_clips_per_s']:.0f} clips/s (batch {r['pipeline_batch']})"
    for r in results
    if "pipeline_clips_per_s" in r
  ]
  extra = [
    f"- Machine: {env['cpu']}, {env['cores_usable']} cores; {env['threads']} threads for "
    f"each framework; jax {env['jax']}, torch {env.get('torch', 'n/a')}, Python "
    f"{env['python']}; load average at the end {env['loadavg_1min_end']:.1f}; "
    f"GLIBC_TUNABLES={env.get('glibc_tunables') or '(none)'}.",
    f"- Command: `{command}`; medians of {results[0].get('iters', '?')} timed calls after "
    "a warm-up call, in rounds alternating JAX and PyTorch, each timed call after an "
    "untimed call of the same framework.",
  ]
  if pipe:
    extra.append(
      "- Data pipeline (bundled demo mocap, flip + synthetic 2D, in-process): " + "; ".join(pipe) + "."
    )
  extra += achieved_lines(results, env)
  for r in results:
    if "bf16_max_abs_diff" in r:
      extra.append(
        f"- {r['size']}: bfloat16 compute (float32 parameters, softmax and LayerNorm "
        f"statistics in float32): eval {r['eval_clips_per_s']:.3f} clips/s against "
        f"{r['eval_f32_clips_per_s']:.3f} for float32 in the same run "
        f"({r['eval_vs_f32_ratio']:.2f}x); max |bf16 - f32| on the output "
        f"{r['bf16_max_abs_diff']:.3f} (outputs up to {r['f32_max_abs']:.2f})."
      )
      continue
    if "eval_max_abs_diff_vs_torch" in r:
      extra.append(
        f"- {r['size']}: max |ours - PyTorch| on the eval output "
        f"{r['eval_max_abs_diff_vs_torch']:.1e} (same weights, float32)."
      )
  begin, end = markers(tag)
  text = README.read_text() if README.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
  if begin not in text or end not in text:
    text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
  head, rest = text.split(begin, 1)
  old, tail = rest.split(end, 1)
  rows = table(results).splitlines()
  kept_rows, kept_lines = _rows_of_other_sizes(old, {r["size"] for r in results})
  if kept_rows:  # a run of some sizes keeps the others' rows, saying where they come from
    order = {name: i for i, name in enumerate(SIZES)}
    body = sorted(rows[2:] + list(kept_rows.values()), key=lambda row: order.get(_row_size(row), 99))
    rows = rows[:2] + body
    command_line = next((line for line in old.splitlines() if line.startswith("- Command: ")), "")
    earlier = command_line[len("- Command: ") :].split(";")[0] if command_line else "an earlier command"
    extra.append(
      f"- The {', '.join(kept_rows)} row{'s' if len(kept_rows) > 1 else ''} and "
      f"{'their' if len(kept_rows) > 1 else 'its'} lines below come from an earlier run "
      f"({earlier}), not from this command."
    )
    extra += kept_lines
  block = "\n".join([begin, *rows, "", *extra, end])
  README.write_text(head + block + tail)
  print(f"wrote {README}")


def main(
  argv=None, *, from_command_line: bool | None = None, prog: str | None = None, description: str | None = None
) -> list[dict]:
  """Runs the benchmark; from the command line (default: when ``argv`` is None) the script first
  re-executes itself once with the malloc of ``perfectrep_jax.hostmem`` (both frameworks share
  this process and its malloc). ``prog`` and ``description``: what ``--help`` says, for a script
  that calls this one with fixed options (``forward_full_size.py``)."""
  args = parse_args(argv, prog=prog, description=description)
  sys.path.insert(0, str(ROOT))
  if from_command_line is None:
    from_command_line = argv is None
  if from_command_line and not args.default_malloc:
    from perfectrep_jax.hostmem import reexec_with_retained_heap

    reexec_with_retained_heap([sys.executable, str(Path(sys.argv[0]).resolve()), *sys.argv[1:]])
  threads = setup_process(args)
  size = args.size or ("full" if args.mode == "forward" else "both")
  sizes = ["lite", "full"] if size == "both" else [size]
  gemm = gemm_rates(threads, not args.no_torch) if args.device == "cpu" else {}
  results = []
  for name in sizes:
    r = run_size(name, args, threads)
    r["iters"] = args.iters
    add_achieved_flops(r, gemm.get("gemm_peak_gflops"))
    results.append(r)
  env = {**environment(threads), **gemm}
  print("\n" + table(results))
  print(
    f"\n{env['cpu']}, {threads} threads each; jax {env['jax']}, torch {env.get('torch', 'n/a')}; "
    f"load average {env['loadavg_1min_end']:.1f}"
  )
  for line in achieved_lines(results, env):
    print(line)
  if args.json:
    Path(args.json).write_text(json.dumps({"environment": env, "results": results}, indent=2))
    print(f"wrote {args.json}")
  if args.write_readme:
    shown = list(argv if argv is not None else sys.argv[1:])
    if "--json" in shown:  # where this run's JSON went is not part of the recipe
      i = shown.index("--json")
      del shown[i : i + 2]
    shown = [a for a in shown if not a.startswith("--json=")]
    command = "python benchmarks/run.py " + " ".join(shown)
    tag = "" if args.mode == "all" else args.mode
    if args.threads:
      tag += f"{'-' if tag else ''}threads{args.threads}"
    if args.dtype != "float32":
      tag += f"{'-' if tag else ''}{args.dtype}"
    write_readme(results, env, command.strip(), tag)
  return results


if __name__ == "__main__":
  main()
