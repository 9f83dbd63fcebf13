"""Lifting 2D keypoints to 3D with any model: normalisation, windows, blending, flip, smoothing, units.

The model is a plain callable ``lift_fn(x) -> y`` on float32 arrays of shape (B, T, 17, 3), with
T at most its ``maxlen``: the real jit-compiled DSTformer, or a fake one in tests.

- Normalisation as upstream (``dataset_wild.read_input``): ``"image"`` centres on the image and
  divides by half its shorter side (upstream ``--pixel``); ``"crop"`` fits the box around every
  confident keypoint of the sequence into [-1, 1] (upstream ``crop_scale`` with scale 1).
- Windows: a sequence longer than ``maxlen`` is cut into evenly spaced windows of exactly
  ``maxlen`` frames (one compiled shape) that overlap by at least ``overlap`` frames; each
  window's depth is shifted to agree with what is already lifted over their overlap (a lifter's
  depth is relative to its window's first frame), then the windows are cross-faded with weights
  that ramp linearly across each overlap, so there is no jump at window borders.
- Frame rate: a lifter trained at one frame rate (``model_fps``, its model.json's ``data.fps``)
  lifts footage at another after the keypoints are resampled onto its clock (linear in time,
  confidences too), and its 3D is resampled back onto the footage's frames: a 27-frame window
  then spans the time it spans in training, whatever the camera's rate (the shipped lifter, 50 fps,
  on held-out takes filmed at 15 fps: P-MPJPE 48.6 -> 43.6 mm; 120 fps: 40.9 -> 38.5; 30 fps: level).
- Flip test-time augmentation: the input mirrored (x negated, left and right swapped) is lifted too
  and its mirrored output averaged in, as upstream's evaluation does.
- Output frames: ``"normalized"`` (the model's: upstream's normalised camera frame, depth 0 at the
  first frame's pelvis), ``"pixel"`` (x, y on the image's pixels, depth in the same pixel scale,
  as upstream ``--pixel``), ``"metric"`` (millimetres, scaled so the person is ``body_height_mm``
  tall, origin at the first frame's pelvis, camera axes).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.interpolate import make_interp_spline
from scipy.signal import savgol_filter

from perfectrep_jax.errors import UserError
from perfectrep_jax.skeleton import H36M_JOINTS, JOINT_INDEX as J, flip_pose
from perfectrep_jax.fileio import atomic_write_bytes

LiftFn = Callable[[np.ndarray], np.ndarray]
# Standing height over the head-top-to-ankle distance (the ankle joint is about 6% of the height
# above the floor): mean over the 37 bundled mocap takes (sd 0.017), floor 80 mm below the ankles.
HEIGHT_OVER_HEAD_TO_ANKLE = 1.064
# Every frame the lifted 3D is written in has the camera's axes (x right, y down, z away from the
# camera): the camera looks along +z and its picture's up is -y. ``X3D.json`` carries both, so a
# form analysis knows the view (``camera_axis``) and can take a level camera's vertical
# (``camera_up``; see :func:`perfectrep_jax.form.analyze.analyze_motion`).
CAMERA_AXIS = (0.0, 0.0, 1.0)
CAMERA_UP = (0.0, -1.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Normalization:
  """How pixels were mapped to the model's input: ``norm = (pixel - offset) / scale * 2 - 1``
  for ``crop`` and ``norm = (pixel - offset) / scale`` for ``image``, on x and y."""

  mode: str  # "image" or "crop"
  offset: tuple[float, float]
  scale: float

  def to_pixels(self, y: np.ndarray) -> np.ndarray:
    """Model-frame 3D (..., 3) to pixel-aligned 3D: x, y on the image, z in the same scale."""
    out = np.array(y, np.float64)
    if self.mode == "image":
      out *= self.scale
    else:
      out = (out + np.array([1.0, 1.0, 0.0])) * (self.scale / 2.0)
    out[..., :2] += np.asarray(self.offset)
    return out


def normalize(
  keypoints: np.ndarray, mode: str = "crop", image_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, Normalization]:
  """Maps pixel keypoints to the model's input range.

  Args:
    keypoints: (T, 17, 3) pixel x, y and confidence.
    mode: "crop" (box of the confident keypoints to [-1, 1], clipped) or "image" (needs
      ``image_size``: centre of the image at 0, half its shorter side at 1).
    image_size: (width, height) in pixels.
  Returns:
    ``(x, norm)``: (T, 17, 3) float32 normalised x, y with the confidence unchanged, and how.
  Raises:
    UserError: "image" without a size, or no confident keypoint to size the crop.
  """
  kp = np.asarray(keypoints, np.float64)
  out = kp.copy()
  if mode == "image":
    if image_size is None:
      raise UserError("pixel normalisation needs the video's size (give --video or --image-size)")
    w, h = image_size
    scale = min(w, h) / 2.0
    out[..., :2] = (kp[..., :2] - np.array([w, h]) / 2.0) / scale
    return out.astype(np.float32), Normalization("image", (w / 2.0, h / 2.0), scale)
  if mode != "crop":
    raise ValueError(f"mode must be 'crop' or 'image', got {mode!r}")
  valid = kp[kp[..., 2] > 0][:, :2]
  if len(valid) < 4:
    raise UserError("too few confident keypoints to normalise (fewer than 4 in the whole sequence)")
  lo, hi = valid.min(axis=0), valid.max(axis=0)
  scale = float(max(hi - lo))
  if scale <= 0:
    raise UserError("every confident keypoint is at the same place; cannot normalise")
  offset = (lo + hi - scale) / 2.0
  out[..., :2] = np.clip(((kp[..., :2] - offset) / scale - 0.5) * 2.0, -1.0, 1.0)
  return out.astype(np.float32), Normalization("crop", (float(offset[0]), float(offset[1])), scale)


def plan_windows(num_frames: int, maxlen: int, overlap: int) -> list[tuple[int, int]]:
  """Windows ``(start, end)`` covering ``num_frames``: one if it fits, else evenly spaced windows
  of exactly ``maxlen`` frames overlapping by at least ``overlap``."""
  if maxlen < 1:
    raise ValueError(f"maxlen must be positive, got {maxlen}")
  if num_frames <= maxlen:
    return [(0, num_frames)]
  overlap = int(np.clip(overlap, 1, maxlen - 1))
  n = int(np.ceil((num_frames - overlap) / (maxlen - overlap)))
  starts = np.round(np.linspace(0, num_frames - maxlen, n)).astype(int)
  return [(int(s), int(s) + maxlen) for s in starts]


def window_weights(windows: list[tuple[int, int]]) -> list[np.ndarray]:
  """Blending weight of every frame of every window: 1 inside, ramping linearly to about 0 across
  the overlap with the neighbouring window (no ramp at the sequence's own ends)."""
  out = []
  for k, (s, e) in enumerate(windows):
    t = np.arange(s, e, dtype=np.float64)
    w = np.ones(e - s)
    if k > 0:
      ramp = max(windows[k - 1][1] - s, 1)
      w = np.minimum(w, (t - s + 0.5) / ramp)
    if k + 1 < len(windows):
      ramp = max(e - windows[k + 1][0], 1)
      w = np.minimum(w, (e - t - 0.5) / ramp)
    out.append(np.clip(w, 1e-6, 1.0))
  return out


def _run_batches(lift_fn: LiftFn, clips: np.ndarray, batch_size: int) -> np.ndarray:
  """lift_fn over (N, T, 17, 3) in batches of exactly ``batch_size`` (the last one padded by
  repeating its final clip, so a compiled model sees one shape)."""
  n = clips.shape[0]
  outs = []
  for i in range(0, n, batch_size):
    batch = clips[i : i + batch_size]
    real = batch.shape[0]
    if real < batch_size and n > batch_size:
      batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - real, axis=0)], axis=0)
    y = np.asarray(lift_fn(np.ascontiguousarray(batch, dtype=np.float32)))
    if y.shape != batch.shape:
      raise ValueError(f"the lifting model returned shape {y.shape} for input {batch.shape}")
    outs.append(y[:real])
  return np.concatenate(outs, axis=0).astype(np.float64)


def lift_sequence(
  x: np.ndarray,
  lift_fn: LiftFn,
  maxlen: int,
  *,
  overlap: int | None = None,
  flip: bool = False,
  batch_size: int = 8,
  return_spread: bool = False,
):
  """Lifts a normalised 2D sequence of any length.

  Args:
    x: (T, 17, 3) float normalised x, y and confidence (:func:`normalize`).
    lift_fn: the model, (B, t, 17, 3) -> (B, t, 17, 3), t <= maxlen.
    maxlen: the longest clip the model takes.
    overlap: frames shared by neighbouring windows (default a quarter of ``maxlen``).
    flip: average with the mirrored input's mirrored output.
    batch_size: windows per model call.
    return_spread: also return how far the two passes of the flip augmentation disagree.
  Returns:
    (T, 17, 3) float64 in the model's frame, depth 0 at the first frame's pelvis; with
    ``return_spread``, also (T, 17) the distance between the direct and the mirrored pass's
    joints in the same units (``None`` without ``flip``): a lifter unsure of a pose (one unlike
    its training, a confusing input) answers the mirror image differently.
  """
  x = np.asarray(x, np.float32)
  t = x.shape[0]
  if t == 0:
    raise UserError("no frames to lift")
  windows = plan_windows(t, maxlen, overlap if overlap is not None else max(1, maxlen // 4))
  clips = np.stack([x[s:e] for s, e in windows])
  if flip:
    clips = np.concatenate([clips, flip_pose(clips)], axis=0)
  y = _run_batches(lift_fn, clips, batch_size)
  spread = None
  weights = window_weights(windows)
  if flip:
    n = len(windows)
    mirrored = flip_pose(y[n:])
    gap = np.linalg.norm(y[:n] - mirrored, axis=-1)  # (windows, t, 17)
    y = 0.5 * (y[:n] + mirrored)
    spread = np.zeros((t, x.shape[1]))
    total = np.zeros(t)
    for (s, e), g, w in zip(windows, gap, weights):
      spread[s:e] += w[:, None] * g
      total[s:e] += w
    spread /= total[:, None]
  acc = np.zeros((t, x.shape[1], 3))
  wsum = np.zeros(t)
  for (s, e), yw, w in zip(windows, y, weights):
    covered = wsum[s:e] > 0
    if covered.any():
      # Agree with the depth already lifted on the overlap (pelvis depth, weighted mean).
      done = acc[s:e][covered, J["pelvis"], 2] / wsum[s:e][covered]
      yw = yw.copy()
      yw[..., 2] += float(np.mean(done - yw[covered, J["pelvis"], 2]))
    acc[s:e] += w[:, None, None] * yw
    wsum[s:e] += w
  out = acc / wsum[:, None, None]
  out[..., 2] -= out[0, J["pelvis"], 2]
  return (out, spread) if return_spread else out


RATE_TOLERANCE = 0.02  # frame rates within 2% of the lifter's are lifted as they are


def frames_at(x: np.ndarray, t_in: np.ndarray, t_out: np.ndarray) -> np.ndarray:
  """Frames ``x`` (T, ...) taken at increasing times ``t_in`` (T,), linearly interpolated at the
  times ``t_out`` (N,); a time before the first frame or after the last takes that frame.

  Returns:
    (N, ...) float64.
  """
  x = np.asarray(x, np.float64)
  t_in = np.asarray(t_in, np.float64)
  if len(x) < 2:
    return np.repeat(x[:1], len(t_out), axis=0)
  return make_interp_spline(t_in, x, k=1, axis=0)(np.clip(t_out, t_in[0], t_in[-1]))


def resample_frames(x: np.ndarray, fps: float, to_fps: float, num_frames: int | None = None) -> np.ndarray:
  """Frames at ``fps`` resampled onto a clock of ``to_fps``, linearly in time.

  Args:
    x: (T, ...) frames, the first at time 0.
    num_frames: how many frames to return (default: enough to reach the last input frame's
      time, the last one exactly at it); times past the input's last frame take its value.
  Returns:
    (num_frames, ...) float64.
  """
  t_in = np.arange(len(x)) / float(fps)
  if num_frames is None:
    num_frames = int(np.ceil(t_in[-1] * to_fps - 1e-9)) + 1 if len(x) else 0
  return frames_at(x, t_in, np.arange(num_frames) / float(to_fps))


def trained_fps(model_meta: dict) -> float | None:
  """The frame rate a lifter was trained at (``model.json["data"]["fps"]``, written by
  ``publish``), or ``None`` when its model.json does not say (a converted upstream checkpoint):
  footage is then lifted at its own rate."""
  data = model_meta.get("data")
  return frame_rate_or_none(data.get("fps") if isinstance(data, dict) else None)


def frame_rate_or_none(fps) -> float | None:
  """``fps`` as a float when it is a positive finite number, else ``None``."""
  if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0:
    return None
  return float(fps)


def on_another_clock(fps: float | None, model_fps: float | None) -> bool:
  """Whether footage at ``fps`` is lifted on the lifter's clock, ``model_fps`` (not within
  :data:`RATE_TOLERANCE` of it; ``None`` for either: as it is)."""
  return bool(fps and model_fps and abs(fps / model_fps - 1.0) > RATE_TOLERANCE)


def smooth(y: np.ndarray, fps: float, window_s: float = 0.2, polyorder: int = 2) -> np.ndarray:
  """Savitzky-Golay smoothing over time so short clips do not jitter.

  Args:
    y: (T, 17, 3).
    window_s: window length in seconds (made odd, at least ``polyorder + 2`` frames, at most T).
  Returns:
    (T, 17, 3); unchanged when the sequence is shorter than the smallest window.
  """
  y = np.asarray(y, np.float64)
  n = int(round(window_s * fps)) | 1
  n = min(n, y.shape[0] if y.shape[0] % 2 else y.shape[0] - 1)
  if n < polyorder + 2:
    return y.copy()
  return savgol_filter(y, n, polyorder, axis=0, mode="interp")


def standing_height(y: np.ndarray) -> float:
  """The person's height in ``y``'s unit: the head-top-to-ankles distance of the most extended
  frames (95th percentile) times :data:`HEIGHT_OVER_HEAD_TO_ANKLE`."""
  mid_ankle = 0.5 * (y[:, J["left_ankle"]] + y[:, J["right_ankle"]])
  d = np.linalg.norm(y[:, J["head"]] - mid_ankle, axis=-1)
  return float(np.quantile(d, 0.95)) * HEIGHT_OVER_HEAD_TO_ANKLE


def to_metric(y: np.ndarray, body_height_mm: float) -> np.ndarray:
  """Scales a lifted motion to millimetres for a person ``body_height_mm`` tall, origin at the
  first frame's pelvis (camera axes kept)."""
  if not body_height_mm or body_height_mm <= 0:
    raise UserError(f"body height must be positive, got {body_height_mm}")
  h = standing_height(y)
  if h <= 0:
    raise UserError("cannot scale to metric: the lifted skeleton has no height")
  return (y - y[0, J["pelvis"]]) * (body_height_mm / h)


UNITS = {
  "normalized": (
    "normalised camera frame (upstream PerfectRep/MotionBERT): x right and y down in the "
    "normalised image ([-1, 1] over the crop or image), z depth in the same scale, z = 0 at "
    "the first frame's pelvis",
    "normalised",
  ),
  "pixel": (
    "pixel-aligned camera frame: x right and y down on the video's pixels, z depth in the same "
    "pixel scale, z = 0 at the first frame's pelvis",
    "pixels",
  ),
  "metric": (
    "metric camera frame: camera axes (x right, y down, z away from the camera), origin at the "
    "first frame's pelvis, scaled to the given body height",
    "millimetres",
  ),
}


def lift_keypoints(
  keypoints: np.ndarray,
  lift_fn: LiftFn,
  maxlen: int,
  *,
  fps: float,
  normalization: str = "crop",
  image_size: tuple[int, int] | None = None,
  flip: bool = True,
  overlap: int | None = None,
  batch_size: int = 8,
  smooth_s: float | None = 0.2,
  units: str = "normalized",
  body_height_mm: float | None = None,
  model_fps: float | None = None,
) -> tuple[np.ndarray, dict]:
  """Pixel keypoints of one person to 3D, end to end.

  Args:
    keypoints: (T, 17, 3) Human3.6M-17 pixel x, y and confidence
      (:func:`perfectrep_jax.wild.keypoints.load_person`).
    lift_fn, maxlen: the model and its longest clip.
    fps: frames per second (for smoothing and the metadata).
    normalization: "crop" or "image" (see :func:`normalize`).
    image_size: (width, height), needed for "image" normalisation and "pixel" units.
    flip: flip test-time augmentation.
    overlap, batch_size: see :func:`lift_sequence`.
    smooth_s: Savitzky-Golay window in seconds, ``None`` or 0 for none.
    units: "normalized", "pixel" or "metric" (needs ``body_height_mm``).
    model_fps: the frame rate the lifter was trained at (:func:`trained_fps`);
      footage at another rate (beyond :data:`RATE_TOLERANCE`) is lifted on that clock
      (:func:`resample_frames`) and the 3D returned on the footage's frames. ``None``: as given.
  Returns:
    ``(joints, meta)``: (T, 17, 3) float32 and a JSON-ready description (units, frame, the
    camera's axis and up (:data:`CAMERA_AXIS`, :data:`CAMERA_UP`), options; with ``flip``, ``uncertainty``: (T, 17) nested lists, how far the direct and the mirrored
    pass disagree on each joint, as a share of the body's height).
  Raises:
    UserError: NaN input, unknown units, metric without a height.
  """
  kp = np.asarray(keypoints, np.float64)
  if kp.ndim != 3 or kp.shape[1:] != (len(H36M_JOINTS), 3):
    raise UserError(f"keypoints must have shape (frames, 17, 3), got {kp.shape}")
  if not np.isfinite(kp).all():
    raise UserError(
      "keypoints contain NaN or infinite values; fill them first (perfectrep_jax.wild.keypoints.fill_missing)"
    )
  if units not in UNITS:
    raise UserError(f"units must be one of {', '.join(UNITS)}, got {units!r}")
  if units == "metric" and not body_height_mm:
    raise UserError("metric output needs the person's body height (--body-height MM)")
  x, norm = normalize(kp, normalization, image_size)
  lift_fps = fps
  if on_another_clock(fps, model_fps):
    lift_fps = float(model_fps)
    x = resample_frames(x, fps, lift_fps).astype(np.float32)
  y, spread = lift_sequence(
    x, lift_fn, maxlen, overlap=overlap, flip=flip, batch_size=batch_size, return_spread=True
  )
  if lift_fps != fps:
    y = resample_frames(y, lift_fps, fps, len(kp))
    if spread is not None:
      spread = resample_frames(spread, lift_fps, fps, len(kp))
  height = standing_height(y)
  if smooth_s:
    y = smooth(y, fps, smooth_s)
  if units == "pixel":
    y = norm.to_pixels(y)
    y[..., 2] -= y[0, J["pelvis"], 2]
  elif units == "metric":
    y = to_metric(y, body_height_mm)
  frame, unit = UNITS[units]
  meta = {
    "joints": list(H36M_JOINTS),
    "fps": float(fps),
    "lifted_at_fps": float(lift_fps),
    "num_frames": int(y.shape[0]),
    "units": unit,
    "frame": frame,
    "normalization": dataclasses.asdict(norm),
    "flip_augmentation": bool(flip),
    "smoothing_s": float(smooth_s or 0.0),
    "maxlen": int(maxlen),
    "body_height_mm": body_height_mm,
    "camera_axis": list(CAMERA_AXIS),
    "camera_up": list(CAMERA_UP),
  }
  if spread is not None and height > 0:
    meta["uncertainty"] = np.round(spread / height, 4).tolist()
  return y.astype(np.float32), meta


def uncertainty(meta: dict) -> np.ndarray | None:
  """The (T, 17) uncertainty :func:`lift_keypoints` recorded in ``meta``, or ``None``."""
  values = meta.get("uncertainty")
  return None if values is None else np.asarray(values, np.float64)


def save_3d(out_dir: str | Path, joints: np.ndarray, meta: dict, stem: str = "X3D") -> tuple[Path, Path]:
  """Writes ``<stem>.npy`` ((T, 17, 3) float32) and ``<stem>.json`` (the metadata plus the joints
  as nested lists) into ``out_dir``, each whole or not at all.

  Raises:
    UserError: the folder cannot be created or written.
  """
  import io

  out = Path(out_dir)
  try:
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, np.asarray(joints, np.float32))
    npy, js = out / f"{stem}.npy", out / f"{stem}.json"
    atomic_write_bytes(npy, buf.getvalue())
    doc = {
      **meta,
      "shape": list(np.shape(joints)),
      "joints_3d": np.round(np.asarray(joints, np.float64), 5).tolist(),
    }
    atomic_write_bytes(js, json.dumps(doc).encode("utf-8"))
  except OSError as err:
    raise UserError(f"{out}: cannot write the 3D output ({err.strerror})") from err
  return npy, js
