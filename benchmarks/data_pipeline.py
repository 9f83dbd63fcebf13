"""Clips per second through the grain pipeline on this machine, with the bundled demo data.

Prints figures, asserts nothing. Next to them: how many clips per second one accelerator step
of the full-size DSTformer consumes, from a measured step time (``--step-ms``) or else from an
analytic FLOP count at an assumed accelerator throughput (printed as an estimate).

    python benchmarks/data_pipeline.py                  # in-memory demo source, 0 and N workers
    python benchmarks/data_pipeline.py --tfds           # also through prepared array_record files
    python benchmarks/data_pipeline.py --step-ms 95     # a measured train step time
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import grain
import numpy as np

from perfectrep_jax.data import demo, pipeline


def clips_per_second(
  config: pipeline.PipelineConfig, source=None, batches: int = 60, warmup: int = 5
) -> float:
  """Clips/s of ``next(iterator)`` after ``warmup`` batches (process start and first reads excluded)."""
  it = pipeline.make_train_iterator(config, grain.sharding.NoSharding(), source)
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * config.batch_size / (time.perf_counter() - start)


def dstformer_train_flops(
  batch: int, frames: int, joints: int = 17, dim: int = 512, depth: int = 5, mlp_ratio: int = 2
) -> float:
  """FLOPs of one training step (forward + backward ~ 3x forward) of the DSTformer.

  Per depth, two branches (spatial-temporal, temporal-spatial), each with a spatial and a
  temporal attention + MLP unit: per token 2 * (4 d^2 + 2 mlp_ratio d^2) for the linear layers
  and 2 * 2 * L * d for the attention over L (= joints or frames).
  """
  tokens = batch * frames * joints
  linear = 2 * (4 + 2 * mlp_ratio) * dim * dim
  attention = 2 * 2 * dim * (joints + frames)  # one spatial and one temporal unit
  forward = depth * 2 * tokens * (2 * linear + attention)
  return 3.0 * forward


def corruption_ms(batch: int, frames: int) -> float:
  """Milliseconds of the jitted on-device corruption for one batch (after compilation)."""
  import jax
  import jax.numpy as jnp

  from perfectrep_jax.data.corruption import CorruptionConfig, corrupt_2d

  x = jnp.zeros((batch, frames, 17, 3))
  config = CorruptionConfig(limb_mask_prob=0.1, half_mask_prob=0.05, span_mask_prob=0.05)
  corrupt_2d(jax.random.key(0), x, config).block_until_ready()
  start = time.perf_counter()
  for i in range(20):
    out = corrupt_2d(jax.random.key(i), x, config)
  out.block_until_ready()
  return (time.perf_counter() - start) / 20 * 1000


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--clip-len", type=int, default=243)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--batches", type=int, default=60)
  parser.add_argument("--tfds", action="store_true", help="also prepare demo/clipN and read array_record")
  parser.add_argument(
    "--step-ms", type=float, default=None, help="measured train step time at this batch size"
  )
  parser.add_argument(
    "--tflops",
    type=float,
    default=400.0,
    help="sustained accelerator TFLOP/s for the estimate (H100 bf16 at ~40%% of peak)",
  )
  args = parser.parse_args()
  t, b = args.clip_len, args.batch_size
  print(f"machine: {os.cpu_count()} CPU cores; clips of {t} frames, batch {b} per process")

  start = time.perf_counter()
  source = demo.demo_source("train", t)
  print(f"demo source in memory: {len(source)} clips in {time.perf_counter() - start:.1f} s")

  settings = {
    "finetune (flip)": dict(flip=True),
    "pretrain (flip, scale 0.5-1, synthetic 2D)": dict(flip=True, scale_range=(0.5, 1.0), synthetic_2d=True),
  }
  results = {}
  for name, aug in settings.items():
    for workers in sorted({0, args.workers}):
      config = pipeline.PipelineConfig(clip_len=t, batch_size=b, worker_count=workers, **aug)
      rate = clips_per_second(config, source, args.batches)
      results[(name, workers)] = rate
      print(f"  in-memory, {name:45s} workers={workers}: {rate:8.0f} clips/s")

  if args.tfds:
    from perfectrep_jax.data.prepare import prepare

    configs = {27: "clip27", 81: "clip81", 243: "clip243"}
    if t not in configs:
      raise SystemExit(f"--tfds needs --clip-len in {sorted(configs)}")
    with tempfile.TemporaryDirectory() as data_dir:
      summary = prepare(f"demo/{configs[t]}", None, data_dir, progress=False)
      print(f"prepared demo/{configs[t]} ({summary['splits']}) in {summary['seconds']:.0f} s")
      for workers in sorted({0, args.workers}):
        config = pipeline.PipelineConfig(
          source=f"demo/{configs[t]}",
          data_dir=data_dir,
          clip_len=t,
          batch_size=b,
          worker_count=workers,
          flip=True,
          scale_range=(0.5, 1.0),
          synthetic_2d=True,
        )
        rate = clips_per_second(config, None, args.batches)
        print(f"  array_record, pretrain augmentation, workers={workers}: {rate:8.0f} clips/s")

  print(f"on-device corruption (jit, this machine's default device): {corruption_ms(b, t):.2f} ms per batch")
  flops = dstformer_train_flops(b, t)
  if args.step_ms:
    step_s, how = args.step_ms / 1000, f"measured step {args.step_ms:.0f} ms"
  else:
    step_s, how = (
      flops / (args.tflops * 1e12),
      (f"estimate: {flops / 1e12:.1f} TFLOP per step at {args.tflops:.0f} TFLOP/s"),
    )
  need = b / step_s
  best = max(results.values())
  print(
    f"full-size DSTformer (dim 512, depth 5, T={t}), batch {b}: one step every {step_s * 1000:.0f} ms "
    f"({how}) consumes {need:.0f} clips/s per accelerator"
  )
  print(f"best pipeline rate here: {best:.0f} clips/s = {best / need:.2f} accelerators' worth")


if __name__ == "__main__":
  np.set_printoptions(precision=3)
  main()
