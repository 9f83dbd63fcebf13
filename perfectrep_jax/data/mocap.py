"""All the motion capture of the data folder, filmed by a new virtual camera for every clip.

The training data of the default lifter (``configs/lifter.py``). Every take of
``data/mocap`` (both npz files; see that folder's README) is cut into windows of world-frame
motion; each training clip is then filmed on the fly (``film``) by a camera drawn for it, so the
lifter never sees the same view twice:

- the body: with probability ``tilt_prob`` the whole clip is turned about its centre by a pitch
  and a roll (push-ups, planks and lying bodies: no assumption that the body is upright), and its
  heading is free (the camera's azimuth is uniform);
- the camera: 2-8 m away, from slightly below to well above the body's centre, a phone's field
  of view (50-80 degrees along the long side) in portrait or landscape; moved back until the
  whole clip is in the picture;
- the 2D skeleton is the one the wild path builds from COCO-17 (``skeleton.COCO_TO_H36M``): the
  head joint is the middle of the eyes, placed on the head from the nose and the head top, not
  the mocap's head top (the 3D target keeps the head top);
- detector-like 2D: per-joint noise at MediaPipe / ViTPose levels that drifts over the clip
  (offsets at key frames interpolated) plus frame jitter, confidences that fall with the error,
  dropped joints (x = y = confidence = 0), occasional left/right swaps of a limb over a few frames;
- normalisation as ``wild.lift.normalize`` (``crop``): the box of the confident 2D keypoints
  mapped to [-1, 1], here enlarged by a random factor so the person need not fill it; the 2.5D
  target (x, y the clean projection, z the camera depth in the same pixel scale) goes through the
  same map, depth relative to the first frame's root; ``scale_mm`` takes it back to millimetres.

Split by performer (``TEST_SUBJECTS``, as the data folder's README suggests). Evaluation clips get a
camera drawn from the same distribution with a seed of their own (views unseen in training) and
clean or detector-like 2D (``FilmConfig.noise``).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from perfectrep_jax import skeleton
from perfectrep_jax.data import cameras, clips, shared
from perfectrep_jax.data.demo import action_of
from perfectrep_jax.data.sequences import sequence_rng

TEST_SUBJECTS = ("uiprmd_s09", "uiprmd_s10", "hdm05_tr", "cmu_118")
SPLITS = ("train", "test")
FPS = 50
J = skeleton.JOINT_INDEX
# Per-joint 2D noise of a detector, as a fraction of the person's box (larger at the extremities:
# ViTPose / MediaPipe errors on COCO grow from hips and shoulders to wrists and ankles).
JOINT_NOISE = (
  np.array([0.8, 1.0, 1.2, 1.5, 1.0, 1.2, 1.5, 0.8, 0.8, 0.7, 0.7, 1.0, 1.3, 1.6, 1.0, 1.3, 1.6], np.float64)
  * 0.012
)
LIMB_SWAPS = (
  ((1, 4), (2, 5), (3, 6)),
  ((2, 5), (3, 6)),
  ((3, 6),),
  ((11, 14), (12, 15), (13, 16)),
  ((12, 15), (13, 16)),
  ((13, 16),),
)


@dataclasses.dataclass(frozen=True)
class FilmConfig:
  """How a clip is filmed (see the module docstring).

  Attributes:
    elevation_deg: camera elevation above the body's centre, degrees.
    distance_mm: camera distance from the body's centre.
    fov_deg: field of view along the image's long side.
    image_sizes: (w, h) choices (portrait and landscape).
    tilt_prob, pitch_deg, roll_deg: how often and how far the body is turned.
    noise: scale of the detector-like noise (0: the exact projection, confidence 1).
    noise_level: per-clip factor range of the noise (people and videos differ).
    drop_prob: probability that a joint is dropped in a frame (plus whole-span drops).
    swap_prob: probability that a clip has a left/right swap of a limb over a span.
    zoom_out: range of the factor enlarging the normalisation box.
  """

  elevation_deg: tuple[float, float] = (-10.0, 50.0)
  distance_mm: tuple[float, float] = (2000.0, 8000.0)
  fov_deg: tuple[float, float] = (50.0, 80.0)
  image_sizes: tuple[tuple[int, int], ...] = ((1920, 1080), (1080, 1920), (1280, 720), (720, 1280))
  tilt_prob: float = 0.3
  pitch_deg: tuple[float, float] = (-100.0, 100.0)
  roll_deg: tuple[float, float] = (-60.0, 60.0)
  noise: float = 1.0
  noise_level: tuple[float, float] = (0.3, 1.5)
  drop_prob: float = 0.02
  swap_prob: float = 0.1
  zoom_out: tuple[float, float] = (1.0, 1.4)


def split_of(meta: dict) -> str:
  """'test' for the held-out performers, else 'train'."""
  return "test" if meta["subject"] in TEST_SUBJECTS else "train"


def _rotation(axis: int, angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  i, k = [a for a in range(3) if a != axis]
  r = np.eye(3)
  r[i, i], r[i, k], r[k, i], r[k, k] = c, -s, s, c
  return r


def eyes_from_head(world: np.ndarray) -> np.ndarray:
  """(..., 17, 3) -> (..., 3): the middle of the eyes, placed between the nose and the head top
  (where COCO's eyes sit on the mocap's head; what the wild path's head joint is)."""
  nose, head = world[..., J["nose"], :], world[..., J["head"], :]
  return nose + 0.35 * (head - nose)


def place_camera(
  world: np.ndarray, rng: np.random.Generator, film: FilmConfig
) -> tuple[np.ndarray, np.ndarray, cameras.Intrinsics]:
  """A camera for a (T, 17, 3) world clip: (R, centre, intrinsics) with the clip in the picture."""
  w, h = film.image_sizes[rng.integers(len(film.image_sizes))]
  fov = np.deg2rad(rng.uniform(*film.fov_deg))
  f = max(w, h) / 2.0 / np.tan(fov / 2.0)
  intr = cameras.Intrinsics(
    f=(f, f),
    c=(w / 2.0 + rng.normal(0, 0.01 * w), h / 2.0 + rng.normal(0, 0.01 * h)),
    res_w=int(w),
    res_h=int(h),
  )
  lo, hi = world.reshape(-1, 3).min(axis=0), world.reshape(-1, 3).max(axis=0)
  target = (lo + hi) / 2.0
  azimuth = rng.uniform(-np.pi, np.pi)
  elevation = np.deg2rad(rng.uniform(*film.elevation_deg))
  direction = np.array(
    [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
  )
  distance = max(rng.uniform(*film.distance_mm), float(np.linalg.norm(hi - lo)) * 0.6 + 800.0)
  half = np.array([w, h]) / 2.0
  for _ in range(30):  # move back until every joint of the clip is in the picture
    centre = target + distance * direction
    centre[2] = max(centre[2], lo[2] + 300.0)  # not under the floor
    rotation = cameras.look_at_rotation(centre, target)
    cam = cameras.world_to_camera_rt(world, rotation, centre)
    if cam[..., 2].min() > 300.0:
      pixels = cameras.project(cam, intr)
      if np.all(np.abs(pixels - np.asarray(intr.c)) <= 0.97 * half):
        break
    distance *= 1.15
  return rotation, centre, intr


def _detector_2d(pixels: np.ndarray, rng: np.random.Generator, film: FilmConfig) -> np.ndarray:
  """Exact (T, 17, 2) pixels -> detector-like (T, 17, 3) x, y, confidence (dropped: all 0)."""
  t = pixels.shape[0]
  size = float(np.max(pixels.reshape(-1, 2).max(axis=0) - pixels.reshape(-1, 2).min(axis=0)))
  level = film.noise * rng.uniform(*film.noise_level)
  sigma = JOINT_NOISE[None, :, None] * size * level
  keys = max(2, t // 9 + 1)
  drift = rng.normal(size=(keys, 17, 2)) * sigma
  pos = np.linspace(0, keys - 1, t)
  lo_k = np.floor(pos).astype(int)
  hi_k = np.minimum(lo_k + 1, keys - 1)
  frac = (pos - lo_k)[:, None, None]
  offset = drift[lo_k] * (1 - frac) + drift[hi_k] * frac + rng.normal(size=(t, 17, 2)) * sigma * 0.4
  out = np.empty((t, 17, 3), np.float64)
  out[..., :2] = pixels + offset
  err = np.linalg.norm(offset, axis=-1) / max(size, 1.0)
  out[..., 2] = np.clip(1.0 - 6.0 * err + rng.normal(0, 0.05, size=(t, 17)), 0.05, 1.0)
  if rng.random() < film.swap_prob and t > 2:
    pairs = LIMB_SWAPS[rng.integers(len(LIMB_SWAPS))]
    start = rng.integers(t)
    span = slice(start, min(t, start + rng.integers(1, 6)))
    for a, b in pairs:
      out[span, [a, b]] = out[span, [b, a]]
  dropped = rng.random((t, 17)) < film.drop_prob * level
  if rng.random() < 0.2:  # a joint lost for a span (occlusion)
    start = rng.integers(t)
    dropped[start : start + rng.integers(2, max(3, t // 3)), rng.integers(17)] = True
  out[dropped] = 0.0
  return out


def view(world: np.ndarray, rng: np.random.Generator, config: FilmConfig) -> dict:
  """What a camera drawn for a (T, 17, 3) world-mm motion sees, in pixels.

  Returns:
    dict with ``world`` (the motion as filmed, turned when tilted), ``camera`` ((T, 17, 3) mm in
    the camera's frame), ``pixels`` ((T, 17, 2), the exact projection of the mocap joints),
    ``keypoints`` ((T, 17, 3) pixel x, y and confidence of the wild path's skeleton: head from
    the eyes, detector-like when ``config.noise`` > 0, dropped joints all 0) and ``intrinsics``.
  """
  world = np.asarray(world, np.float64)
  if rng.random() < config.tilt_prob:
    centre = world[:, J["pelvis"]].mean(axis=0)
    turn = _rotation(0, np.deg2rad(rng.uniform(*config.pitch_deg))) @ _rotation(
      1, np.deg2rad(rng.uniform(*config.roll_deg))
    )
    world = (world - centre) @ turn.T + centre
  rotation, centre, intr = place_camera(world, rng, config)
  cam = cameras.world_to_camera_rt(world, rotation, centre)
  pixels = cameras.project(cam, intr)
  seen = pixels.copy()
  seen[:, J["head"]] = cameras.project(
    cameras.world_to_camera_rt(eyes_from_head(world)[:, None], rotation, centre), intr
  )[:, 0]
  if config.noise > 0:
    keypoints = _detector_2d(seen, rng, config)
  else:
    keypoints = np.concatenate([seen, np.ones(seen.shape[:2] + (1,))], axis=-1)
  return {"world": world, "camera": cam, "pixels": pixels, "keypoints": keypoints, "intrinsics": intr}


def film(world: np.ndarray, rng: np.random.Generator, config: FilmConfig) -> dict:
  """Films one (T, 17, 3) world-mm clip: the example fields of the data contract.

  Returns:
    dict with ``input_2d`` (T, 17, 3) float32, ``target_3d`` (T, 17, 3) float32 (2.5D, depth
    relative to the first frame's root), ``scale_mm`` (T,) float32 and ``resolution`` (2,) int32.
  """
  seen = view(world, rng, config)
  inputs, pixels, cam, intr = seen["keypoints"], seen["pixels"], seen["camera"], seen["intrinsics"]
  visible = inputs[..., 2] > 0
  pts = inputs[..., :2][visible] if visible.sum() >= 4 else pixels.reshape(-1, 2)
  lo, hi = pts.min(axis=0), pts.max(axis=0)
  zoom = rng.uniform(*config.zoom_out)
  side = float(max(hi - lo)) * zoom
  offset = (lo + hi) / 2.0 - side / 2.0 + rng.uniform(-0.5, 0.5, 2) * (side - (hi - lo))
  x = np.zeros_like(inputs, dtype=np.float32)
  x[..., :2] = (inputs[..., :2] - offset) / side * 2.0 - 1.0
  x[..., 2] = inputs[..., 2]
  x[~visible] = 0.0
  factor = cameras.image_scale_factor(pixels, cam)
  image = cameras.to_image_frame(pixels, cam, factor)
  target = np.empty(image.shape, np.float32)
  target[..., :2] = (image[..., :2] - offset) / side * 2.0 - 1.0
  target[..., 2] = image[..., 2] / side * 2.0
  return {
    "input_2d": x,
    "target_3d": clips.first_root_depth_to_zero(target),
    "scale_mm": (factor * side / 2.0).astype(np.float32),
    "resolution": np.asarray([intr.res_w, intr.res_h], np.int32),
  }


class MocapClips:
  """Random access to world-frame windows of the mocap takes of one split (a grain source).

  ``source[i]`` is a dict with ``world`` (T, 17, 3) float32 mm and the labels of the data
  contract (``frame_index``, ``correct``, ``source``, ``subject``, ``action``, ``camera``,
  ``reps``). ``film`` (or ``FilmedClips`` for evaluation) turns it into an example.
  """

  def __init__(self, split: str, clip_len: int, stride: int, seed: int = 0):
    if split not in SPLITS:
      raise ValueError(f"mocap split must be one of {SPLITS}, got {split!r}")
    motion, meta = shared.load_mocap()
    self.split, self.clip_len = split, clip_len
    self.takes = sorted(k for k in motion if split_of(meta[k]) == split)
    self.motion = {k: motion[k] for k in self.takes}
    self.meta = {k: meta[k] for k in self.takes}
    self._index: list[tuple[str, np.ndarray]] = []
    for take in self.takes:
      rng = sequence_rng(seed, take)
      for frames in clips.sequence_clips(len(self.motion[take]), clip_len, stride, rng):
        self._index.append((take, frames))

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, index: int) -> dict:
    take, frames = self._index[int(index)]
    meta = self.meta[take]
    return {
      "world": self.motion[take][frames],
      "frame_index": frames.astype(np.int32),
      "correct": np.int32({True: 1, False: 0}.get(meta.get("correct"), -1)),
      "source": take,
      "subject": meta["subject"],
      "action": action_of(meta),
      "camera": "virtual",
      "reps": "",
    }


def film_example(example: dict, rng: np.random.Generator, config: FilmConfig) -> dict:
  """A ``MocapClips`` example filmed (``world`` replaced by the example fields)."""
  out = {k: v for k, v in example.items() if k != "world"}
  out.update(film(example["world"], rng, config))
  return out


class FilmedClips:
  """``MocapClips`` with a fixed camera per clip (seeded by ``seed`` and the clip's position):
  the evaluation source, the same views on every pass.

  Each clip's ``camera`` names its own view (``virtual/<index>``): overlapping clips see the same
  frames from different cameras, so an evaluation that merges a frame's predictions across clips
  of one camera (as for Human3.6M's fixed views) must not merge these.
  """

  def __init__(self, clips_source: MocapClips, config: FilmConfig, seed: int):
    self.clips, self.config, self.seed = clips_source, config, seed

  def __len__(self) -> int:
    return len(self.clips)

  def __getitem__(self, index: int) -> dict:
    rng = np.random.default_rng([self.seed, int(index)])
    return dict(film_example(self.clips[index], rng, self.config), camera=f"virtual/{int(index)}")


EVAL_SEED = 10_007  # evaluation cameras: drawn apart from every training draw


@functools.lru_cache(maxsize=8)
def mocap_clips(split: str, clip_len: int, stride: int | None = None) -> MocapClips:
  """Cached ``MocapClips`` (train stride default ``clip_len // 3``, test ``clip_len``)."""
  if stride is None:
    stride = max(1, clip_len // 3) if split == "train" else clip_len
  return MocapClips(split, clip_len, stride)
