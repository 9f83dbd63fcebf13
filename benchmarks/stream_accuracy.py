"""How far streamed 3D is from offline lifting, and whether both count the same repetitions, with a
real (trained) lifter on the held-out performers' exercise takes of the bundled mocap.

    perfectrep-jax train --config configs/pretrain.py:demo --workdir runs/demo
    python benchmarks/stream_accuracy.py --checkpoint runs/demo [--lookahead 0,13] [--takes N]

Each take is filmed by the demo data's first test camera (exact 2D, confidence 1), lifted offline
(:func:`perfectrep_jax.wild.lift.lift_keypoints`: windows of ``maxlen`` blended, image
normalisation, no flip, no smoothing) and streamed (:class:`perfectrep_jax.deploy.stream.StreamingLifter`,
the same normalisation, a model call per frame). Printed per look-ahead: the mean per-joint
distance between streamed and offline 3D (root-relative, millimetres, frames after the first full
window), each one's MPJPE to the true 3D, and the repetitions counted online on the stream, by the
offline segmentation on the offline 3D, and in ``takes.json``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from perfectrep_jax.data import cameras, demo
from perfectrep_jax.deploy.online_reps import OnlineRepCounter
from perfectrep_jax.deploy.stream import StreamingLifter
from perfectrep_jax.deploy.stream_io import make_lift_fn
from perfectrep_jax.form.reps import segment_repetitions
from perfectrep_jax.skeleton import H36M_FOR_COCO, coco_to_h36m
from perfectrep_jax.wild import lift

SIZE = (demo.INTRINSICS.res_w, demo.INTRINSICS.res_h)


def filmed(take: str, motion: np.ndarray):
  """``(coco (T, 17, 3) pixels, camera-frame mm (T, 17, 3), mm per normalised unit (T,))``."""
  rotation, centre = demo.camera_views(take, motion, "test")[0]
  cam = cameras.world_to_camera_rt(motion, rotation, centre)
  pixels = cameras.project(cam, demo.INTRINSICS)
  coco = np.concatenate([pixels[:, list(H36M_FOR_COCO)], np.ones(pixels.shape[:2] + (1,))], axis=-1)
  mm_per_unit = cameras.image_scale_factor(pixels, cam) * (min(SIZE) / 2.0)
  return coco, cam, mm_per_unit


def rel_mm(y: np.ndarray, mm_per_unit: np.ndarray) -> np.ndarray:
  """Root-relative joints in millimetres from normalised units (T, 17, 3)."""
  return (y - y[:, :1]) * mm_per_unit[:, None, None]


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--checkpoint", required=True)
  ap.add_argument("--lookahead", default="0,13")
  ap.add_argument(
    "--takes", type=int, default=0, help="at most this many takes (0: all held-out exercise takes)"
  )
  args = ap.parse_args(argv)
  fn, window, desc = make_lift_fn(args.checkpoint, None, flip=False)
  motion, meta = demo.load_takes()
  takes = [k for k in sorted(motion) if meta[k].get("exercise") and demo.split_of(meta[k]) == "test"]
  takes = takes[: args.takes or None]
  fps = float(demo.FPS)
  print(f"model {desc}, window {window}; {len(takes)} held-out exercise takes at {fps:g} fps")
  print(
    "| take | look-ahead | stream vs offline (mm) | offline MPJPE | stream MPJPE | reps online / offline / true |"
  )
  print("|---|---:|---:|---:|---:|---|")
  for take in takes:
    coco, cam, mm = filmed(take, motion[take])
    offline, _ = lift.lift_keypoints(
      coco_to_h36m(coco),
      fn,
      window,
      fps=fps,
      normalization="image",
      image_size=SIZE,
      flip=False,
      smooth_s=None,
    )
    truth = cam - cam[:, :1]
    off_count = len(segment_repetitions(offline, fps).reps)
    for look in (int(v) for v in args.lookahead.split(",")):
      lifter = StreamingLifter(
        fn, window, lookahead=look, normalization="image", image_size=SIZE, units="normalized"
      )
      counter = OnlineRepCounter(fps)
      out = []
      for t, kp in enumerate(coco):
        for r in lifter.push(t, kp):
          out.append(r.joints)
          counter.update(r.frame, r.joints)
      for r in lifter.finish():
        out.append(r.joints)
        counter.update(r.frame, r.joints)
      counter.finish()
      streamed = np.stack(out)
      full = slice(window - 1, None)
      gap = np.linalg.norm(rel_mm(streamed, mm) - rel_mm(offline, mm), axis=-1)[full].mean()
      e_off = np.linalg.norm(rel_mm(offline, mm) - truth, axis=-1)[full].mean()
      e_str = np.linalg.norm(rel_mm(streamed, mm) - truth, axis=-1)[full].mean()
      print(
        f"| {take} | {look} | {gap:.1f} | {e_off:.1f} | {e_str:.1f} | "
        f"{counter.count} / {off_count} / {meta[take]['reps']} |",
        flush=True,
      )
  return 0


if __name__ == "__main__":
  sys.exit(main())
