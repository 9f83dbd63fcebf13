"""From one camera view of a sequence to clip examples in the data contract.

Every builder (Fit3D, Human3.6M, MPI-INF-3DHP, the bundled demo) turns its raw files into
``Sequence`` objects (one per subject x action x camera) and lets ``ClipSource`` cut them.

Normalisation, as MotionBERT's Human3.6M reader: 2D and the 2.5D target share the screen frame
``x / w * 2 - 1, y / w * 2 - h / w``; the target depth is camera depth over the 2.5D factor (see
``cameras.image_scale_factor``), scaled by ``2 / w`` like x and y, and made relative to the first
frame's root in every clip. ``scale_mm`` (factor * w / 2) takes a clip back to millimetres.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from perfectrep_jax import skeleton
from perfectrep_jax.data import cameras, clips

NUM_JOINTS = skeleton.NUM_JOINTS


@dataclass
class Sequence:
  """One camera view of one recorded sequence, normalised, before cutting.

  Attributes:
    source: unique id of the view (``subject_action_camera``).
    subject, action, camera: labels.
    input_2d: (N, 17, 3) float32, x, y in the screen frame, confidence.
    target_3d: (N, 17, 3) float32, 2.5D pose in the screen frame (absolute depth).
    scale_mm: (N,) float32, millimetres per normalised unit in each frame.
    resolution: (w, h) pixels.
    reps: JSON text of the repetition annotation of the whole sequence ('' when none), frame
      indices in the sequence's own numbering (compare with an example's ``frame_index``).
    correct: 1 / 0 for a correct / faulty exercise execution, -1 unknown.
    frame_ids: (N,) frame numbers in the original recording when frames were dropped
      (``None``: 0..N-1).
  """

  source: str
  subject: str
  action: str
  camera: str
  input_2d: np.ndarray
  target_3d: np.ndarray
  scale_mm: np.ndarray
  resolution: tuple[int, int]
  reps: str = ""
  correct: int = -1
  frame_ids: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.target_3d)


def make_sequence(
  *,
  source: str,
  subject: str,
  action: str,
  camera: str,
  points_cam_mm: np.ndarray,
  pixels: np.ndarray,
  res_w: int,
  res_h: int,
  input_px: np.ndarray | None = None,
  reps: str = "",
  correct: int = -1,
  frame_ids: np.ndarray | None = None,
) -> Sequence:
  """Normalises one camera view.

  Args:
    points_cam_mm: (N, 17, 3) camera-frame joints in millimetres.
    pixels: (N, 17, 2) their projection (the ground-truth 2D, used for the target's x, y).
    res_w, res_h: image size.
    input_px: the 2D input in pixels, (N, 17, 2) or (N, 17, 3) with confidence; ``None`` uses
      ``pixels`` with confidence 1.
  Returns:
    a ``Sequence``.
  """
  points_cam_mm = np.asarray(points_cam_mm, np.float64)
  pixels = np.asarray(pixels, np.float64)
  if points_cam_mm.shape[1:] != (NUM_JOINTS, 3) or pixels.shape != points_cam_mm.shape[:2] + (2,):
    raise ValueError(
      f"{source}: expected (N, 17, 3) and (N, 17, 2), got {points_cam_mm.shape}, {pixels.shape}"
    )
  factor = cameras.image_scale_factor(pixels, points_cam_mm)
  image = cameras.to_image_frame(pixels, points_cam_mm, factor)
  target = np.empty(image.shape, np.float32)
  target[..., :2] = clips.normalize_screen(image[..., :2], res_w, res_h)
  target[..., 2] = image[..., 2] / res_w * 2
  if input_px is None:
    input_px = pixels
  input_px = np.asarray(input_px, np.float64)
  if input_px.shape[:2] != pixels.shape[:2]:
    raise ValueError(
      f"{source}: 2D input has {input_px.shape[:2]} frames x joints, 3D has {pixels.shape[:2]}"
    )
  inputs = np.ones(input_px.shape[:2] + (3,), np.float32)
  inputs[..., :2] = clips.normalize_screen(input_px[..., :2], res_w, res_h)
  if input_px.shape[-1] > 2:
    inputs[..., 2] = input_px[..., 2]
  return Sequence(
    source=source,
    subject=subject,
    action=action,
    camera=camera,
    input_2d=inputs,
    target_3d=target,
    scale_mm=(factor * res_w / 2).astype(np.float32),
    resolution=(int(res_w), int(res_h)),
    reps=reps,
    correct=int(correct),
    frame_ids=None if frame_ids is None else np.asarray(frame_ids, np.int64),
  )


def clip_example(seq: Sequence, frames: np.ndarray) -> dict:
  """One clip of a sequence in the data contract.

  Args:
    frames: (T,) frame indices into the sequence.
  Returns:
    dict: ``input_2d`` (T, 17, 3) f32, ``target_3d`` (T, 17, 3) f32 with z relative to the first
    frame's root, ``scale_mm`` (T,) f32, ``frame_index`` (T,) i32 (frame numbers in the original
    recording), ``resolution`` (2,) i32,
    ``correct`` i32, and the strings ``source``, ``subject``, ``action``, ``camera``, ``reps``.
  """
  frames = np.asarray(frames, np.int64)
  return {
    "input_2d": seq.input_2d[frames],
    "target_3d": clips.first_root_depth_to_zero(seq.target_3d[frames]),
    "scale_mm": seq.scale_mm[frames],
    "frame_index": (frames if seq.frame_ids is None else seq.frame_ids[frames]).astype(np.int32),
    "resolution": np.asarray(seq.resolution, np.int32),
    "correct": np.int32(seq.correct),
    "source": seq.source,
    "subject": seq.subject,
    "action": seq.action,
    "camera": seq.camera,
    "reps": seq.reps,
  }


def sequence_rng(seed: int, source: str) -> np.random.Generator:
  """A Generator that depends only on ``seed`` and the sequence id (order-independent)."""
  return np.random.default_rng([seed, zlib.crc32(source.encode())])


class ClipSource:
  """Random access to the clips of a list of sequences (a grain data source).

  Clips are cut per sequence with ``clips.sequence_clips`` (windows at ``stride``, short
  sequences resampled with a Generator seeded by ``seed`` and the sequence id), in sequence
  order. Only index arrays are stored; examples are sliced on access.
  """

  def __init__(self, sequences: list[Sequence], clip_len: int, stride: int, seed: int = 0):
    if clip_len < 1 or stride < 1:
      raise ValueError(f"clip_len and stride must be positive, got {clip_len}, {stride}")
    self.sequences = list(sequences)
    self.clip_len = clip_len
    self.stride = stride
    self._index: list[tuple[int, np.ndarray]] = []
    for i, seq in enumerate(self.sequences):
      rng = sequence_rng(seed, seq.source)
      for frames in clips.sequence_clips(len(seq), clip_len, stride, rng):
        self._index.append((i, frames))

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"clip {index} out of range ({len(self)} clips)")
    i, frames = self._index[index]
    return clip_example(self.sequences[i], frames)

  def __repr__(self) -> str:
    return (
      f"ClipSource({len(self.sequences)} sequences, {len(self)} clips of {self.clip_len}, "
      f"stride {self.stride})"
    )
