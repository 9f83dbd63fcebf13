"""How a lifter does on footage filmed at other frame rates than its training's: lifted as filmed
against lifted on its own clock (what ``infer`` does), on the held-out performers' takes.

    python benchmarks/frame_rates.py [--checkpoint DIR] [--rates 15,20,25,30,60,120] [--views 1] [--takes N]

Each held-out take (at least 2 s) is resampled in time to the frame rate, filmed by a camera of
its own seed (upright, any azimuth, detector-like 2D: noise, drops, swaps), and its keypoints are
lifted twice by :func:`perfectrep_jax.wild.lift.lift_keypoints`: at the footage's rate, and on
the lifter's (``model.json`` data.fps, 50 for the shipped lifter). Printed per rate: the mean
P-MPJPE of both against the true 3D in the camera's frame (millimetres).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from perfectrep_jax.data import mocap, shared
from perfectrep_jax.metrics import p_mpjpe_per_pose
from perfectrep_jax.models.model_dir import load_model, make_apply_fn
from perfectrep_jax.weights import checkpoint_or_default
from perfectrep_jax.wild.keypoints import fill_missing
from perfectrep_jax.wild.lift import lift_keypoints, resample_frames, trained_fps

SEED = 777  # cameras of this check: apart from training, evaluation and the agreement check
MIN_SECONDS = 2.0


def held_out_takes(limit: int = 0) -> dict[str, np.ndarray]:
  """The held-out performers' takes of at least :data:`MIN_SECONDS`: take -> world mm at 50 fps."""
  motion, meta = shared.load_mocap()
  names = [
    k
    for k in sorted(motion)
    if mocap.split_of(meta[k]) == "test" and len(motion[k]) >= MIN_SECONDS * mocap.FPS
  ]
  return {k: motion[k] for k in names[: limit or None]}


def rate_errors(lift_fn, maxlen: int, model_fps: float, takes: dict, fps: float, views: int) -> dict:
  """``{"as_filmed": mm, "on_clock": mm}``: mean P-MPJPE over the takes' views at ``fps``."""
  film = mocap.FilmConfig(tilt_prob=0.0, noise=1.0)
  errors: dict[str, list[float]] = {"as_filmed": [], "on_clock": []}
  for name, world in takes.items():
    moved = resample_frames(world, mocap.FPS, fps)
    for v in range(views):
      seen = mocap.view(moved, np.random.default_rng([SEED, v, sum(map(ord, name))]), film)
      keypoints = fill_missing(seen["keypoints"]).astype(np.float32)
      for key, clock in (("as_filmed", None), ("on_clock", model_fps)):
        lifted, _ = lift_keypoints(keypoints, lift_fn, maxlen, fps=fps, model_fps=clock, batch_size=16)
        errors[key].append(float(np.mean(p_mpjpe_per_pose(lifted, seen["camera"]))))
  return {key: float(np.mean(v)) for key, v in errors.items()}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--checkpoint", default=None, help="a lifter (default: the package's)")
  ap.add_argument("--rates", default="15,20,25,30,60,120", help="frame rates, comma-separated")
  ap.add_argument("--views", type=int, default=1, help="cameras per take")
  ap.add_argument("--takes", type=int, default=0, help="at most this many takes (0: all)")
  args = ap.parse_args(argv)
  model, meta = load_model(checkpoint_or_default(args.checkpoint))
  model_fps = trained_fps(meta)
  if model_fps is None:
    print(f"{args.checkpoint}: its model.json does not say the frame rate it was trained at", file=sys.stderr)
    return 2
  lift_fn, maxlen = make_apply_fn(model), meta["config"]["maxlen"]
  takes = held_out_takes(args.takes)
  print(
    f"{len(takes)} held-out takes x {args.views} view(s), detector-like 2D; lifter trained at {model_fps:g} fps"
  )
  print("| footage | P-MPJPE as filmed | on the lifter's clock |")
  print("|---|---|---|")
  for fps in [float(r) for r in args.rates.split(",")]:
    got = rate_errors(lift_fn, maxlen, model_fps, takes, fps, args.views)
    print(f"| {fps:g} fps | {got['as_filmed']:.1f} mm | {got['on_clock']:.1f} mm |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
