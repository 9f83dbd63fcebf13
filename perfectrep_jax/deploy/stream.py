"""Lifting a live stream of 2D keypoints to 3D, frame by frame, with a bounded delay.

:class:`StreamingLifter` takes one person's COCO-17 keypoints per frame and returns each frame's 3D
as soon as it is lifted. It keeps the last frames of the current person in a buffer and runs the
model on a sliding window of exactly ``window`` frames (at most the model's ``maxlen``; one shape,
so a jit-compiled model or an exported artifact compiles once), the start of a stream padded by
repeating its first frame.

Timing (frames are numbered as they arrive):

- ``lookahead`` L: frame t is lifted once frame t + L has arrived, at position ``window - 1 - L``
  of the window ending at t + L. L = 0 is causal; a few frames of look-ahead give the model some
  future context, as offline lifting has.
- ``hop`` H: the model runs once every H frames and emits H frames at a time, which divides the
  cost per frame by H (a full-size model on a CPU needs it to keep up with 30 fps).
- delay: a frame's 3D is written at most ``lookahead + hop - 1`` frames after the frame arrived,
  plus the time of one model call (:attr:`StreamingLifter.delay_frames`).

Preparation is the offline path's (:mod:`perfectrep_jax.wild`), applied to what has arrived:
missing joints and frames are filled by :func:`perfectrep_jax.wild.keypoints.fill_missing`
(interpolated between sightings, held after the last one), COCO-17 becomes Human3.6M-17 by
:func:`perfectrep_jax.skeleton.coco_to_h36m`, and :func:`perfectrep_jax.wild.lift.normalize`
normalises the window (``image``: the same per frame as offline; ``crop``: the box of the window's
keypoints, where offline uses the box of the whole recording). The depth of each window is
shifted to agree with the frames already written over their overlap (a lifter's depth is relative
to its window's first frame), with 0 at the pelvis of the person's first frame, as offline.

Frame rate: a lifter trained at one frame rate (``model_fps``, its model.json's ``data.fps``) is
given, for a stream at another (``fps``), a window of ``window`` samples on its own clock: the
keypoints that arrived are interpolated (linearly in time) at the window's sample times, which end
at the newest frame, and the window's 3D is interpolated back at the frames' times, as offline
lifting does (:func:`perfectrep_jax.wild.lift.lift_keypoints`); the window then spans the time it
spans in training whatever the camera's rate.

People leaving the view: a frame without the person (too few confident joints) is filled and lifted
like a missing frame while the gap lasts at most ``max_gap`` frames (its output says
``detected: false``); after that the person is gone: the pending frames are written, the buffer
is cleared, and frames are written without 3D until somebody is seen again, who starts afresh.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable

import numpy as np

from perfectrep_jax.errors import UserError
from perfectrep_jax.skeleton import JOINT_INDEX, coco_to_h36m, flip_pose
from perfectrep_jax.wild import lift
from perfectrep_jax.wild.keypoints import fill_missing

LiftFn = Callable[[np.ndarray], np.ndarray]
PELVIS = JOINT_INDEX["pelvis"]
UNITS = ("pixel", "normalized")


@dataclasses.dataclass(frozen=True)
class StreamFrame:
  """One frame's result.

  Attributes:
    frame: the frame number.
    joints: (17, 3) float64 3D joints, or ``None`` when nobody is being followed.
    detected: whether the person was seen in this frame (``False``: filled from nearby frames).
  """

  frame: int
  joints: np.ndarray | None
  detected: bool


class StreamingLifter:
  """Sliding-window lifting of one person's keypoints, fed one frame at a time.

  Args:
    lift_fn: the model, float32 (B, window, 17, 3) -> (B, window, 17, 3) (B = 1, or 2 with ``flip``).
    window: frames per model call, 1 to the model's maxlen.
    hop: frames written per model call (1 = a call per frame); ``lookahead + hop < window``.
    lookahead: frames of future context (0 = causal).
    normalization: 'crop' or 'image' (needs ``image_size``), as :func:`perfectrep_jax.wild.lift.normalize`.
    image_size: (width, height) in pixels.
    units: 'pixel' (x, y on the image, z in the same pixel scale) or 'normalized' (the model's
      frame; needs 'image' normalisation, whose frame is the same for every window).
    flip: flip test-time augmentation (a batch of 2 per call).
    max_gap: frames without the person after which they count as gone.
    min_joints: confident joints (confidence > 0) needed to count the person as seen.
    fps, model_fps: the stream's frame rate and the one the lifter was trained at; when both are
      given and differ (:func:`perfectrep_jax.wild.lift.on_another_clock`) the model sees the
      stream on its own clock (a window of ``window`` samples at ``model_fps``).
  Raises:
    UserError: inconsistent options.
  """

  def __init__(
    self,
    lift_fn: LiftFn,
    window: int,
    *,
    hop: int = 1,
    lookahead: int = 0,
    normalization: str = "crop",
    image_size: tuple[int, int] | None = None,
    units: str = "pixel",
    flip: bool = False,
    max_gap: int = 30,
    min_joints: int = 4,
    fps: float | None = None,
    model_fps: float | None = None,
  ):
    if window < 2:
      raise UserError(f"window must be at least 2 frames, got {window}")
    if hop < 1 or lookahead < 0 or lookahead + hop >= window:
      # Each window must share a frame with what is written, to align its depth.
      raise UserError(
        f"need hop >= 1, lookahead >= 0 and lookahead + hop < window "
        f"(got hop {hop}, lookahead {lookahead}, window {window})"
      )
    if normalization not in ("crop", "image"):
      raise UserError(f"normalization must be 'crop' or 'image', got {normalization!r}")
    if normalization == "image" and image_size is None:
      raise UserError("image normalisation needs the image size (--image-size W H)")
    if units not in UNITS:
      raise UserError(f"units must be one of {', '.join(UNITS)}, got {units!r}")
    if units == "normalized" and normalization != "image":
      raise UserError(
        "normalized units need image normalisation (--image-size): with crop "
        "normalisation every window has its own frame; use pixel units"
      )
    # frames per model sample: 1, or the stream's rate over the lifter's (its own clock)
    self.on_clock = lift.on_another_clock(fps, model_fps)
    self.frames_per_sample = fps / model_fps if self.on_clock else 1.0
    self.lifted_at_fps = float(model_fps) if self.on_clock else fps  # the clock the model sees
    span = (window - 1) * self.frames_per_sample  # the window's span, in the stream's frames
    if self.on_clock and lookahead + hop > span:
      raise UserError(
        f"a {window}-sample window at the lifter's {model_fps:g} fps spans {span:.1f} frames of a "
        f"{fps:g} fps stream; lookahead + hop ({lookahead} + {hop}) must fit in it"
      )
    self.lift_fn, self.window, self.hop, self.lookahead = lift_fn, window, hop, lookahead
    self.normalization, self.image_size, self.units, self.flip = normalization, image_size, units, flip
    self.max_gap, self.min_joints = max_gap, min_joints
    self.model_calls = 0
    self._active = False
    self._raw: collections.deque = collections.deque(maxlen=int(np.ceil(span)) + 1 + max_gap + 1)
    self._pending: list[tuple[int, bool]] = []
    self._written_z: collections.OrderedDict[int, float] = collections.OrderedDict()
    self._first_frame = None
    self._gap = 0

  @property
  def delay_frames(self) -> int:
    """Most frames between a frame's arrival and the writing of its 3D (plus one model call)."""
    return self.lookahead + self.hop - 1

  # ---------------------------------------------------------------- feeding
  def push(self, frame: int, coco: np.ndarray | None) -> list[StreamFrame]:
    """Adds frame number ``frame``: the person's COCO-17 keypoints (17, 3) x, y, confidence in
    pixels (NaN or confidence 0 for a missing joint), or ``None`` when nobody was detected.

    Returns:
      the frames whose 3D is ready, in order (possibly none, possibly several).
    """
    seen = coco is not None and self._count_seen(coco) >= self.min_joints and self._has_extent(coco)
    if not seen:
      if not self._active:
        return [StreamFrame(frame, None, False)]
      self._gap += 1
      if self._gap > self.max_gap:
        return self._end_person() + [StreamFrame(frame, None, False)]
      self._append(frame, np.full((17, 3), np.nan), False)
    else:
      if not self._active:
        self._start_person(frame)
      self._gap = 0
      self._append(frame, np.asarray(coco, np.float64), True)
    ready = [p for p in self._pending if p[0] <= frame - self.lookahead]
    if len(ready) < self.hop:
      return []
    return self._lift_and_write(len(ready))

  def finish(self) -> list[StreamFrame]:
    """The stream ended: writes every frame still pending (with less look-ahead)."""
    return self._end_person() if self._active else []

  @staticmethod
  def _count_seen(coco: np.ndarray) -> int:
    c = np.asarray(coco, np.float64)
    return int(np.sum((c[:, 2] > 0) & np.isfinite(c[:, :2]).all(axis=1)))

  @staticmethod
  def _has_extent(coco: np.ndarray) -> bool:
    """Whether the confident joints are not all at one place (a crop needs a size)."""
    c = np.asarray(coco, np.float64)
    xy = c[(c[:, 2] > 0) & np.isfinite(c[:, :2]).all(axis=1), :2]
    return len(xy) > 0 and float(np.max(xy.max(axis=0) - xy.min(axis=0))) > 0

  def _start_person(self, frame: int) -> None:
    self._active = True
    self._raw.clear()
    self._pending.clear()
    self._written_z.clear()
    self._first_frame = frame

  def _end_person(self) -> list[StreamFrame]:
    out = self._lift_and_write(len(self._pending)) if self._pending else []
    self._active = False
    self._raw.clear()
    self._written_z.clear()
    return out

  def _append(self, frame: int, coco: np.ndarray, seen: bool) -> None:
    coco = coco.copy()
    bad = ~((coco[:, 2] > 0) & np.isfinite(coco[:, :2]).all(axis=1))
    coco[bad, 2] = 0.0
    coco[bad, :2] = np.nan
    self._raw.append((frame, coco))
    self._pending.append((frame, seen))

  # ---------------------------------------------------------------- lifting
  def window_input(self) -> tuple[np.ndarray, np.ndarray, lift.Normalization]:
    """The model's input for the window ending at the newest frame.

    Returns:
      ``(x, at, norm)``: (window, 17, 3) float32 normalised input, where each row is in the
      stream's frames (a frame number, or between two on another clock; the padding rows at a
      stream's start repeat the first frame), and the normalisation used.
    """
    frames = np.array([f for f, _ in self._raw], np.float64)
    h36m = coco_to_h36m(fill_missing(np.stack([c for _, c in self._raw])))
    if not self.on_clock:
      h36m, at = h36m[-self.window :], frames[-self.window :]
      pad = self.window - len(at)
      h36m = np.concatenate([np.repeat(h36m[:1], pad, axis=0), h36m], axis=0)
      at = np.concatenate([np.repeat(at[:1], pad), at])
    else:
      at = frames[-1] - self.frames_per_sample * np.arange(self.window - 1, -1, -1)
      at = np.maximum(at, frames[0])
      h36m = lift.frames_at(h36m, frames, at)  # confidences too, as offline lifting does
    if self.normalization == "crop" and np.count_nonzero(h36m[..., 2] > 0) < 4:
      # Out of view for the whole window (a gap longer than the window, shorter than
      # max_gap): the filled frames hold the last pose seen, so its box sizes the crop.
      held = h36m.copy()
      held[..., 2] = 1.0
      x, norm = lift.normalize(held, "crop")
      x[..., 2] = h36m[..., 2]
    else:
      x, norm = lift.normalize(h36m, self.normalization, self.image_size)
    return x, at, norm

  def _per_frame(self, y: np.ndarray, at: np.ndarray) -> dict[int, np.ndarray]:
    """The window's 3D ``y`` (window, 17, 3), rows at stream frames ``at``, for every frame it
    covers: frame number -> (17, 3)."""
    if not self.on_clock:
      return {int(f): y[i] for i, f in enumerate(at)}  # a padded first frame: its last (real) row
    first = int(np.flatnonzero(at == at[0])[-1])  # rows padded at a stream's start: the last one
    frames = [f for f, _ in self._raw if at[0] <= f <= at[-1]]
    return dict(zip(frames, lift.frames_at(y[first:], at[first:], np.asarray(frames, np.float64))))

  def _lift_and_write(self, count: int) -> list[StreamFrame]:
    """Lifts the window ending at the newest frame and writes the first ``count`` pending frames."""
    x, at, norm = self.window_input()
    batch = np.stack([x, flip_pose(x)]) if self.flip else x[None]
    y = np.asarray(self.lift_fn(np.ascontiguousarray(batch, np.float32)), np.float64)
    self.model_calls += 1
    if y.shape != batch.shape:
      raise ValueError(f"the lifting model returned shape {y.shape} for input {batch.shape}")
    y = 0.5 * (y[0] + flip_pose(y[1])) if self.flip else y[0]
    if self.units == "pixel":
      y = norm.to_pixels(y)
    per_frame = self._per_frame(y, at)
    shift = self._depth_shift(per_frame)
    out = []
    for frame, seen in self._pending[:count]:
      joints = per_frame[frame].copy()
      joints[:, 2] += shift
      self._written_z[frame] = float(joints[PELVIS, 2])
      out.append(StreamFrame(frame, joints, seen))
    del self._pending[:count]
    while len(self._written_z) > len(self._raw):
      self._written_z.popitem(last=False)
    return out

  def _depth_shift(self, per_frame: dict[int, np.ndarray]) -> float:
    """What to add to the window's depth so that it agrees with the frames already written (mean
    pelvis depth over the overlap, at least one frame as ``lookahead + hop`` fits in the window),
    or, before any, puts the person's first pelvis at depth 0.

    Args:
      per_frame: frame number -> its (17, 3) joints in this window.
    """
    done = [self._written_z[f] - y[PELVIS, 2] for f, y in per_frame.items() if f in self._written_z]
    if done:
      return float(np.mean(done))
    return -float(per_frame[self._first_frame][PELVIS, 2])
