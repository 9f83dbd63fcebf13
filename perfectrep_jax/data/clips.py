"""Clip utilities with upstream behaviour: normalise, flip, cut into clips, denormalise.

The normalisations follow MotionBERT / PerfectRep (``src/utils/data.py``) to float32 round-off;
randomness comes from an explicit ``numpy.random.Generator`` instead of the global numpy state.

Shapes: a motion is ``(..., T, 17, C)``; C is 3 (x, y, confidence for 2D; x, y, z for 3D).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perfectrep_jax import skeleton


def _draw_ratio(scale_range: Sequence[float], rng: np.random.Generator | None) -> float:
  """One scale ratio drawn uniformly from ``scale_range`` (exactly ``low`` when low == high)."""
  low, high = float(scale_range[0]), float(scale_range[1])
  if low == high:
    return low
  if rng is None:
    raise ValueError(f"scale_range {tuple(scale_range)} is random: pass rng=np.random.Generator")
  return float(rng.uniform(low, high))


def crop_scale(
  motion: np.ndarray, scale_range: Sequence[float] = (1, 1), rng: np.random.Generator | None = None
) -> np.ndarray:
  """Normalises 2D keypoints into [-1, 1] by their joint bounding square (upstream ``crop_scale``).

  Only joints with non-zero confidence define the box; the square side is the longer box side
  times a ratio drawn from ``scale_range`` and the box is centred in it.

  Args:
    motion: (..., T, 17, 3) x, y, confidence (pixels or any unit).
    scale_range: (low, high) of the side ratio; (1, 1) is the tight box.
    rng: draws the ratio when low != high.
  Returns:
    same shape and dtype, x and y in [-1, 1] (clipped, confidence clipped too, as upstream);
    all zeros (float64, as upstream) when fewer than 4 joints are valid or the box is a point.
  """
  motion = np.asarray(motion)
  valid = motion[motion[..., 2] != 0][:, :2]
  if len(valid) < 4:
    return np.zeros(motion.shape)
  xmin, ymin = valid.min(axis=0)
  xmax, ymax = valid.max(axis=0)
  ratio = _draw_ratio(scale_range, rng)
  side = max(xmax - xmin, ymax - ymin) * ratio
  if side == 0:
    return np.zeros(motion.shape)
  origin = np.array([(xmin + xmax - side) / 2, (ymin + ymax - side) / 2], np.float64)
  result = motion.copy()
  result[..., :2] = (motion[..., :2] - origin) / side
  result[..., :2] = (result[..., :2] - 0.5) * 2
  return np.clip(result, -1, 1)


def crop_scale_3d_affine(
  motion: np.ndarray, scale_range: Sequence[float] = (1, 1), rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
  """``crop_scale_3d`` that also returns the map it applied.

  ``x, y -> (v - origin) / side * 2 - 1`` and ``z -> (z - z[0, 0]) / side * 2 - 1``: one output
  unit is ``side / 2`` input units, so a per-frame mm-per-unit factor is multiplied by that, and
  the same x, y map can be applied to a 2D input given in the same frame.

  Returns:
    (normalised motion, origin (2,), side); side is 0.0 when x and y have no extent (the
    motion is then all zeros).
  """
  motion = np.asarray(motion)
  result = motion.copy()
  result[:, :, 2] = result[:, :, 2] - result[0, 0, 2]
  xmin, xmax = np.min(motion[..., 0]), np.max(motion[..., 0])
  ymin, ymax = np.min(motion[..., 1]), np.max(motion[..., 1])
  ratio = _draw_ratio(scale_range, rng)
  side = max(xmax - xmin, ymax - ymin) / ratio
  if side == 0:
    return np.zeros(motion.shape), np.zeros(2), 0.0
  origin = np.array([(xmin + xmax - side) / 2, (ymin + ymax - side) / 2], np.float64)
  result[..., :2] = (motion[..., :2] - origin) / side
  result[..., 2] = result[..., 2] / side
  result = (result - 0.5) * 2
  return result, origin, float(side)


def crop_scale_3d(
  motion: np.ndarray, scale_range: Sequence[float] = (1, 1), rng: np.random.Generator | None = None
) -> np.ndarray:
  """Normalises a 3D clip into [-1, 1] by its x-y bounding square (upstream ``crop_scale_3d``).

  z is first made relative to the first frame's root and scaled like x and y; the square side
  is the longer x/y extent divided by a ratio drawn from ``scale_range``. As upstream, the final
  ``(v - 0.5) * 2`` also shifts z by -1: subtract the first frame's root z again if you need it 0.

  Args:
    motion: (T, 17, 3).
    scale_range: (low, high) of the ratio; (1, 1) fills [-1, 1] exactly.
    rng: draws the ratio when low != high.
  Returns:
    (T, 17, 3), same dtype (all zeros, float64, when x and y have no extent).
  """
  return crop_scale_3d_affine(motion, scale_range, rng)[0]


# Horizontal flip of (..., 17, C) poses, NumPy or JAX: upstream's name for ``skeleton.flip_pose``.
flip_data = skeleton.flip_pose


def resample(
  ori_len: int,
  target_len: int,
  replay: bool = False,
  randomness: bool = True,
  rng: np.random.Generator | None = None,
) -> np.ndarray:
  """Frame indices that stretch (or shrink) a sequence of ``ori_len`` frames to ``target_len``.

  Upstream ``resample``: ``replay`` loops the sequence (or takes a random window when longer);
  otherwise frames are spread evenly, each index jittered at random within its interval when
  ``randomness`` (rounded up or down at random when stretching).

  Returns:
    (target_len,) integer indices in [0, ori_len).
  """
  needs_rng = (replay and ori_len > target_len) or (not replay and randomness)
  if needs_rng and rng is None:
    raise ValueError("resample with randomness needs rng=np.random.Generator")
  if replay:
    if ori_len > target_len:
      start = int(rng.integers(ori_len - target_len))
      return np.arange(start, start + target_len)
    return np.arange(target_len) % ori_len
  if not randomness:
    return np.linspace(0, ori_len, num=target_len, endpoint=False, dtype=int)
  even = np.linspace(0, ori_len, num=target_len, endpoint=False)
  if ori_len < target_len:
    pick_low = rng.integers(2, size=even.shape)
    result = np.sort(pick_low * np.floor(even) + (1 - pick_low) * np.ceil(even))
  else:
    interval = even[1] - even[0]
    result = rng.random(even.shape) * interval + even
  return np.clip(result, 0, ori_len - 1).astype(np.uint32)


def split_clips(
  vid_list: Sequence, n_frames: int, data_stride: int, rng: np.random.Generator | None = None
) -> list:
  """Cuts a per-frame list of sequence ids into clips (upstream ``split_clips``, same quirks).

  Windows of ``n_frames`` start every ``data_stride`` frames inside each sequence; the tail of
  a sequence that already gave a window is dropped; a sequence shorter than a clip is resampled
  to ``n_frames`` (see ``resample``) -- except the very last sequence of the list, which upstream
  drops when it gave no window.

  Args:
    vid_list: (N,) sequence id of every frame of the concatenated sequences.
    rng: for the random resampling of short sequences.
  Returns:
    list of clips, each a ``range`` or an index array of length ``n_frames`` into ``vid_list``.
  """
  result = []
  start = 0
  i = 0
  saved = set()
  while i < len(vid_list):
    i += 1
    if i - start == n_frames:
      result.append(range(start, i))
      saved.add(vid_list[i - 1])
      start += data_stride
    if i == len(vid_list):
      break
    if vid_list[i] != vid_list[i - 1]:
      if vid_list[i - 1] not in saved:
        result.append(resample(i - start, n_frames, rng=rng) + start)
        saved.add(vid_list[i - 1])
      start = i
  return result


def sequence_clips(
  length: int, n_frames: int, stride: int, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
  """Clips of one sequence as ``split_clips`` cuts it when it is not the last of the list.

  Args:
    length: frames in the sequence.
    n_frames: clip length.
    stride: frames between window starts.
    rng: for resampling a sequence shorter than a clip.
  Returns:
    list of (n_frames,) int64 frame indices: windows at ``stride`` (tail dropped), or one
    resampled clip when ``length < n_frames``; empty when ``length`` is 0.
  """
  if length <= 0:
    return []
  if length < n_frames:
    return [resample(length, n_frames, rng=rng).astype(np.int64)]
  return [np.arange(s, s + n_frames, dtype=np.int64) for s in range(0, length - n_frames + 1, stride)]


def normalize_screen(points: np.ndarray, res_w: float, res_h: float) -> np.ndarray:
  """Pixels to the upstream screen frame: [0, w] -> [-1, 1], aspect ratio kept.

  Args:
    points: (..., 2) x, y pixels.
  Returns:
    (..., 2) ``p / w * 2 - [1, h / w]``, float32.
  """
  points = np.asarray(points, np.float64)
  return (points / res_w * 2 - np.array([1.0, res_h / res_w])).astype(np.float32)


def denormalize_pixels(motion: np.ndarray, res_w: float, res_h: float) -> np.ndarray:
  """Undoes the screen normalisation of 2D or 2.5D poses (upstream ``DataReader.denormalize``).

  Args:
    motion: (..., C) with C >= 2; x, y map back to pixels, a third channel (depth) is scaled by
      ``w / 2`` to pixel units, further channels are kept.
  Returns:
    float64 array of the same shape.
  """
  out = np.array(motion, np.float64)
  out[..., :2] = (out[..., :2] + np.array([1.0, res_h / res_w])) * res_w / 2
  if out.shape[-1] > 2:
    out[..., 2] = out[..., 2] * res_w / 2
  return out


def denormalize_mm(motion, scale_mm):
  """Normalised 3D poses to root-relative millimetres.

  Every example carries ``scale_mm`` (T,): millimetres per normalised unit in each frame (the
  2.5D factor times ``w / 2``); the screen offset cancels once the root is subtracted.

  Args:
    motion: (..., T, 17, 3) normalised poses (prediction or ``target_3d``), numpy or JAX.
    scale_mm: (..., T) matching leading shape.
  Returns:
    (..., T, 17, 3) root-relative poses in millimetres.
  """
  return (motion - motion[..., 0:1, :]) * scale_mm[..., None, None]


def first_root_depth_to_zero(motion: np.ndarray) -> np.ndarray:
  """Makes z relative to the first frame's root, as the upstream train step does.

  Args:
    motion: (T, 17, 3).
  Returns:
    a copy with ``z - z[0, 0]``.
  """
  out = np.array(motion, copy=True)
  out[..., 2] -= out[0, 0, 2]
  return out
