"""The demo dataset: the bundled real mocap seen through virtual cameras.

It reads ``data/mocap/mocap_h36m17.npz`` from the data folder (``../shared`` beside the checkout
or ``$PERFECTREP_JAX_DATA``, see ``perfectrep_jax.data.shared``): 37 takes of optical marker motion
capture from UI-PRMD and the CMU database, Human3.6M-17 joints, Z-up world millimetres, 50 fps;
origin and licences in that folder's README. Each take is filmed by virtual pinhole cameras (the
linear part of Human3.6M camera 55011271, 1000 x 1000 pixels) placed around the performer at
2.5-5 m and 1.0-1.8 m above the floor: four views per training take at azimuths around
0/90/180/270 degrees from the performer's mean facing direction, jittered per take; two fixed
front-diagonal views per test take. The 2D input is the exact projection (confidence 1); the
corruption of ``perfectrep_jax.data.corruption`` makes it detector-like during training.

Split by performer as the mocap README suggests: train = UI-PRMD s01-s08 and the CMU takes,
test = UI-PRMD s09 and s10, so evaluation is on people the model never saw.
"""

from __future__ import annotations

import functools
import json
import numpy as np

from perfectrep_jax import skeleton
from perfectrep_jax.data import cameras
from perfectrep_jax.data import shared
from perfectrep_jax.data.sequences import ClipSource, Sequence, make_sequence, sequence_rng

TEST_SUBJECTS = ("uiprmd_s09", "uiprmd_s10")
SPLITS = ("train", "test")
FPS = 50
MOCAP_FILES = ("mocap_h36m17.npz",)  # the demo's takes; mocap_h36m17_ext.npz is not part of it
INTRINSICS = cameras.Intrinsics(
  f=(1149.6756591796875, 1147.5916748046875), c=(508.8486328125, 508.0649108886719), res_w=1000, res_h=1000
)
TRAIN_AZIMUTHS_DEG = (0.0, 90.0, 180.0, 270.0)
AZIMUTH_JITTER_DEG = 25.0
DISTANCE_RANGE_MM = (2500.0, 5000.0)
HEIGHT_RANGE_MM = (1000.0, 1800.0)
TEST_VIEWS = ((45.0, 3500.0, 1200.0), (-45.0, 4500.0, 1600.0))  # azimuth deg, distance mm, height mm
ANKLE_HEIGHT_MM = 80.0
CLEARANCE_MM = 1500.0  # the camera stays this far outside the performer's whole trajectory
FRAME_MARGIN = 0.95  # every joint of the take projects inside this fraction of the image
MAX_DISTANCE_MM = 12000.0


def load_takes() -> tuple[dict[str, np.ndarray], dict[str, dict]]:
  """The demo's mocap takes, read from the data folder (cached there).

  Returns:
    (motion, meta): take id -> (T, 17, 3) float32 world millimetres (Z up); take id -> its
    ``takes.json`` entry.
  Raises:
    perfectrep_jax.errors.UserError: the data folder or a file in it is missing.
  """
  return shared.load_mocap(MOCAP_FILES)


def split_of(meta: dict) -> str:
  """'test' for the held-out performers, else 'train'."""
  return "test" if meta["subject"] in TEST_SUBJECTS else "train"


def action_of(meta: dict) -> str:
  """Short action label: the description without notes ('deep squat', 'soccer - kick ball')."""
  text = meta["description"].split(" (")[0].split(",")[0].strip()
  return "unlabelled" if text.startswith("unknown") else text


def facing_direction(motion: np.ndarray) -> np.ndarray:
  """Mean horizontal facing direction of a take, (2,) unit vector in world x, y."""
  left = motion[:, skeleton.JOINT_INDEX["left_hip"], :2] - motion[:, skeleton.JOINT_INDEX["right_hip"], :2]
  left = left.mean(axis=0)
  forward = np.array([left[1], -left[0]])  # left x up, in the ground plane
  return forward / np.linalg.norm(forward)


def camera_views(
  take: str, motion: np.ndarray, split: str, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
  """Virtual cameras for one take.

  Args:
    take: take id (seeds the per-take jitter together with ``seed``).
    motion: (T, 17, 3) world millimetres, Z up.
    split: 'train' (four jittered views) or 'test' (two fixed views).
  Returns:
    list of (R (3, 3), centre (3,)) for ``cameras.world_to_camera_rt``.
  """
  rng = sequence_rng(seed, take)
  pelvis = motion[:, 0]
  centre_xy = pelvis[:, :2].mean(axis=0)
  ankles = motion[:, [skeleton.JOINT_INDEX["left_ankle"], skeleton.JOINT_INDEX["right_ankle"]], 2]
  floor = float(np.percentile(ankles.min(axis=1), 1)) - ANKLE_HEIGHT_MM
  top = float(motion[..., 2].max())
  target = np.array([centre_xy[0], centre_xy[1], (floor + top) / 2])
  reach = float(np.max(np.linalg.norm(motion[..., :2] - centre_xy, axis=-1)))
  forward = facing_direction(motion)
  base = np.arctan2(forward[1], forward[0])
  if split == "train":
    views = [
      (
        az + rng.uniform(-AZIMUTH_JITTER_DEG, AZIMUTH_JITTER_DEG),
        rng.uniform(*DISTANCE_RANGE_MM),
        rng.uniform(*HEIGHT_RANGE_MM),
      )
      for az in TRAIN_AZIMUTHS_DEG
    ]
  else:
    views = list(TEST_VIEWS)
  out = []
  for azimuth, distance, height in views:
    angle = base + np.deg2rad(azimuth)
    distance = max(distance, reach + CLEARANCE_MM)
    while True:  # move back until the whole take is in the picture
      position = np.array(
        [centre_xy[0] + distance * np.cos(angle), centre_xy[1] + distance * np.sin(angle), floor + height]
      )
      rotation = cameras.look_at_rotation(position, target)
      if _in_frame(motion, rotation, position) or distance >= MAX_DISTANCE_MM:
        break
      distance *= 1.1
    out.append((rotation, position))
  return out


def _in_frame(motion: np.ndarray, rotation: np.ndarray, position: np.ndarray) -> bool:
  """Whether every joint of every frame projects inside ``FRAME_MARGIN`` of the image."""
  cam = cameras.world_to_camera_rt(motion, rotation, position)
  if cam[..., 2].min() <= 100.0:
    return False
  pixels = cameras.project(cam, INTRINSICS)
  half = np.array([INTRINSICS.res_w, INTRINSICS.res_h]) / 2
  return bool(np.all(np.abs(pixels - half) <= FRAME_MARGIN * half))


def take_sequences(take: str, motion: np.ndarray, meta: dict, seed: int = 0) -> list[Sequence]:
  """All camera views of one take as normalised sequences (``source`` = ``take_camK``)."""
  split = split_of(meta)
  reps = json.dumps(meta.get("rep_frames") or [])
  correct = {True: 1, False: 0}.get(meta.get("correct"), -1)
  out = []
  for k, (rotation, centre) in enumerate(camera_views(take, motion, split, seed)):
    cam = cameras.world_to_camera_rt(motion, rotation, centre)
    if cam[..., 2].min() < 100.0:
      raise ValueError(f"virtual camera {k} of {take} sees a joint behind it")
    pixels = cameras.project(cam, INTRINSICS)
    out.append(
      make_sequence(
        source=f"{take}_cam{k}",
        subject=meta["subject"],
        action=action_of(meta),
        camera=f"{split}_view{k}",
        points_cam_mm=cam,
        pixels=pixels,
        res_w=INTRINSICS.res_w,
        res_h=INTRINSICS.res_h,
        reps=reps,
        correct=correct,
      )
    )
  return out


def demo_sequences(split: str, seed: int = 0) -> list[Sequence]:
  """Every camera view of every take of a split, in take-id order.

  Args:
    split: 'train' or 'test'.
    seed: jitters the training cameras (0 is what the ``demo`` TFDS builder writes).
  """
  if split not in SPLITS:
    raise ValueError(f"demo split must be one of {SPLITS}, got {split!r}")
  motion, meta = load_takes()
  out = []
  for take in sorted(motion):
    if split_of(meta[take]) == split:
      out.extend(take_sequences(take, motion[take], meta[take], seed))
  return out


@functools.lru_cache(maxsize=8)
def demo_source(split: str, clip_len: int = 81, stride: int | None = None, seed: int = 0) -> ClipSource:
  """In-memory demo clips (cached): no download, no preparation, a few seconds at most.

  Args:
    split: 'train' or 'test'.
    clip_len: frames per clip.
    stride: frames between clip starts; default ``clip_len // 3`` for train (upstream's
      243/81 ratio) and ``clip_len`` for test.
  """
  if stride is None:
    stride = max(1, clip_len // 3) if split == "train" else clip_len
  return ClipSource(demo_sequences(split, seed), clip_len=clip_len, stride=stride, seed=seed)
