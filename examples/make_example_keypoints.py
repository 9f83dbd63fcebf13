"""Makes ``examples/squat_vitpose.json``: detector-like 2D keypoints of a real squat set.

The file is made on demand from the motion capture in the data folder (``../shared`` beside the
checkout, or ``$PERFECTREP_JAX_DATA``) and is not kept in the repository.

Source: the motion capture take ``uiprmd_m01_s09`` (UI-PRMD subject s09, ten correct deep
squats, a test-split subject the demo model never trained on), filmed by a virtual 1280x720
pinhole camera 3.5 m away at 45 degrees to the subject's front, 1.2 m high, at 25 fps. A
bystander (CMU take ``cmu_14_19``, walking) crosses the back of the scene for a few seconds.

Detector-like: COCO-17 keypoints (the eyes and ears, which the mocap lacks, placed from the head
and nose), Gaussian pixel noise growing with the keypoint's distance from the hips, confidences
0.55-0.98, about 3% of keypoints dropped (confidence 0.02, position off by up to 40 px), and the
lifter missing entirely in three short runs of frames.

Written in easy_ViTPose's JSON layout: ``{"keypoints": [{person_id: [[y, x, score] * 17]} per
frame], "skeleton": ...}`` (easy_ViTPose writes y before x). Run from the repository root:
``python examples/make_example_keypoints.py [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from perfectrep_jax.data import cameras
from perfectrep_jax.data.demo import load_takes
from perfectrep_jax.fileio import atomic_write_bytes
from perfectrep_jax.skeleton import COCO_JOINTS, JOINT_INDEX as J

OUT = Path(__file__).resolve().parent / "squat_vitpose.json"
TAKE, BYSTANDER = "uiprmd_m01_s09", "cmu_14_19"
SOURCE_FPS, FPS = 50, 25
WIDTH, HEIGHT = 1280, 720
INTR = cameras.Intrinsics(f=(1000.0, 1000.0), c=(WIDTH / 2, HEIGHT / 2), res_w=WIDTH, res_h=HEIGHT)
SEED = 7
# H36M joint for every COCO joint that the mocap has.
DIRECT = {
  "nose": "nose",
  "left_shoulder": "left_shoulder",
  "right_shoulder": "right_shoulder",
  "left_elbow": "left_elbow",
  "right_elbow": "right_elbow",
  "left_wrist": "left_wrist",
  "right_wrist": "right_wrist",
  "left_hip": "left_hip",
  "right_hip": "right_hip",
  "left_knee": "left_knee",
  "right_knee": "right_knee",
  "left_ankle": "left_ankle",
  "right_ankle": "right_ankle",
}


def h36m_to_coco_world(x: np.ndarray) -> np.ndarray:
  """(T, 17, 3) H36M world mm -> (T, 17, 3) COCO-17 world mm, eyes and ears placed on the head."""
  out = np.zeros_like(x)
  for coco_name, h36m_name in DIRECT.items():
    out[:, COCO_JOINTS.index(coco_name)] = x[:, J[h36m_name]]
  left = x[:, J["left_shoulder"]] - x[:, J["right_shoulder"]]
  left /= np.linalg.norm(left, axis=-1, keepdims=True)
  nose, head = x[:, J["nose"]], x[:, J["head"]]
  eye_centre = nose + 0.35 * (head - nose)
  ear_centre = nose + 0.45 * (head - nose) - 0.25 * (nose - x[:, J["thorax"]]) * [1, 1, 0]
  for side, sign in (("left", 1.0), ("right", -1.0)):
    out[:, COCO_JOINTS.index(f"{side}_eye")] = eye_centre + sign * 32.0 * left
    out[:, COCO_JOINTS.index(f"{side}_ear")] = ear_centre + sign * 75.0 * left
  return out


def camera_for(motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """A camera 3.5 m from the subject at 45 degrees to the front, 1.2 m above the floor."""
  centre = motion[:, J["pelvis"], :2].mean(axis=0)
  left = (motion[:, J["left_hip"]] - motion[:, J["right_hip"]])[:, :2].mean(axis=0)
  forward = np.array([-left[1], left[0]]) / np.linalg.norm(left)
  angle = np.arctan2(forward[1], forward[0]) + np.deg2rad(45)
  floor = float(motion[..., 2].min()) - 80.0
  position = np.array([centre[0] + 3500 * np.cos(angle), centre[1] + 3500 * np.sin(angle), floor + 1200])
  target = np.array([centre[0], centre[1], floor + 900])
  return cameras.look_at_rotation(position, target), position


def detect(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Detector-like noise and dropouts on exact (T, 17, 2) pixels -> (T, 17, 3) x, y, score."""
  t = pixels.shape[0]
  hips = pixels[:, [11, 12]].mean(axis=1, keepdims=True)
  size = np.linalg.norm(pixels.max(axis=1) - pixels.min(axis=1), axis=-1)[:, None, None]
  spread = 0.006 + 0.006 * np.linalg.norm(pixels - hips, axis=-1, keepdims=True) / size
  noisy = pixels + rng.normal(size=pixels.shape) * spread * size
  score = rng.uniform(0.55, 0.98, size=(t, 17, 1))
  dropped = rng.random((t, 17)) < 0.03
  noisy[dropped] += rng.uniform(-40, 40, size=(int(dropped.sum()), 2))
  score[dropped] = 0.02
  return np.concatenate([noisy, score], axis=-1)


def write_example(out: Path = OUT) -> Path:
  """Writes the example keypoint file to ``out`` (atomically) and returns its path."""
  out = Path(out)
  rng = np.random.default_rng(SEED)
  motion, _ = load_takes()
  lifter = motion[TAKE].astype(np.float64)[:: SOURCE_FPS // FPS]
  rotation, position = camera_for(lifter)
  frames = len(lifter)
  lifter_px = cameras.project(
    cameras.world_to_camera_rt(h36m_to_coco_world(lifter), rotation, position), INTR
  )
  people = {"0": detect(lifter_px, rng)}

  # The bystander walks behind the lifter for 4 s, starting at 6 s.
  walk = motion[BYSTANDER].astype(np.float64)[:: SOURCE_FPS // FPS][: 4 * FPS]
  walk = walk - walk[:1, J["pelvis"]] * [1, 1, 0]
  behind = position + 2.2 * (lifter[:, J["pelvis"]].mean(axis=0) - position) * [1, 1, 0]
  walk = walk + behind * [1, 1, 0]
  walk_px = cameras.project(cameras.world_to_camera_rt(h36m_to_coco_world(walk), rotation, position), INTR)
  start = 6 * FPS
  bystander = np.full((frames, 17, 3), np.nan)
  bystander[start : start + len(walk_px)] = detect(walk_px, rng)[: frames - start]

  missing = np.zeros(frames, bool)
  for s in (40, 300, 520):
    missing[s : s + 4] = True
  per_frame = []
  for t in range(frames):
    frame = {}
    if not missing[t]:
      frame["0"] = people["0"][t]
    if np.isfinite(bystander[t]).all():
      frame["1"] = bystander[t]
    # easy_ViTPose order: (y, x, score).
    per_frame.append({pid: np.round(kp[:, [1, 0, 2]], 2).tolist() for pid, kp in frame.items()})
  doc = {
    "keypoints": per_frame,
    "skeleton": {str(i): name for i, name in enumerate(COCO_JOINTS)},
    "note": f"synthetic detections of mocap take {TAKE} (UI-PRMD, PDDL 1.0), {FPS} fps, "
    f"{WIDTH}x{HEIGHT} px, easy_ViTPose layout (y, x, score); made by {Path(__file__).name}",
  }
  atomic_write_bytes(out, (json.dumps(doc, separators=(",", ":")) + "\n").encode())
  print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB, {frames} frames at {FPS} fps)")
  return out


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=Path, default=OUT, help=f"where to write it (default {OUT})")
  write_example(parser.parse_args(argv).out)


if __name__ == "__main__":
  main()
