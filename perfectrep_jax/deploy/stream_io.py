"""``perfectrep-jax stream``: JSON lines of 2D keypoints in, JSON lines of 3D and repetitions out.

Input, one line per frame (standard input), one COCO-17 person per line, any of::

    {"frame": 12, "keypoints": [[x, y, score], ... 17 of them]}
    {"frame": 13, "keypoints": [x0, y0, s0, x1, y1, s1, ...]}      (flat, 51 numbers)
    {"frame": 14, "keypoints": null}                                (nobody in this frame)
    [[x, y, score], ...]                                            (a bare list; frame = previous + 1)

``frame`` is optional (default: the previous frame + 1) and must increase; a jump leaves the frames
in between missing. Keypoints are pixels; ``[x, y]`` pairs mean confidence 1; a score of 0 or a NaN
coordinate marks a missing joint; skeletons whose first 17 keypoints are COCO-17 (Halpe-26,
COCO-WholeBody-133, ...) are cut to those. A line that cannot be read (not JSON, not UTF-8, nested
too deep, a number too long, a wrong shape, longer than :data:`MAX_LINE_BYTES`) is reported on
standard error and skipped; the stream goes on, and ends with the ``end`` line whatever happens.

Output (standard output, flushed line by line)::

    {"event": "start", "window": 243, "hop": 1, "lookahead": 0, "delay_frames": 0, "units": ..., ...}
    {"frame": 12, "time_s": 0.4, "detected": true, "joints_3d": [[x, y, z], ... 17], "reps": 3}
    {"event": "rep", "count": 4, "start": 100, "turn": 131, "end": 160, "amplitude_deg": 412.5, "partial": false}
    {"event": "end", "frames": 900, "reps": 10, "bad_lines": 0, "model_calls": 900, "ms_per_call": 21.3}

Joints are Human3.6M-17 (listed in the start line); ``joints_3d`` is ``null`` for frames in which
nobody is followed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from perfectrep_jax.deploy import runtime
from perfectrep_jax.deploy.export import check_frames, load_lifter
from perfectrep_jax.deploy.online_reps import OnlineRepCounter
from perfectrep_jax.deploy.stream import StreamFrame, StreamingLifter
from perfectrep_jax.errors import UserError
from perfectrep_jax.skeleton import H36M_JOINTS
from perfectrep_jax.wild.detect import iter_keypoints
from perfectrep_jax.wild.keypoints import coco_keypoints


# A frame is a few kilobytes at most (133 keypoints); a longer line is skipped unread.
MAX_LINE_BYTES = 1 << 20
# Frame numbers beyond this cannot be told apart as floats (time_s); refused.
MAX_FRAME = 2**53


class LineError(ValueError):
  """A line of the input stream that cannot be used."""


def read_lines(stream, max_bytes: int = MAX_LINE_BYTES) -> Iterator[str | LineError]:
  """The lines of ``stream`` (text or binary), each read with at most ``max_bytes`` in memory.

  Yields:
    each line as text, or a :class:`LineError` for a line that is too long (the rest of it is
    read and dropped piece by piece) or not UTF-8.
  """
  while True:
    line = stream.readline(max_bytes + 1)
    if not line:
      return
    if len(line) > max_bytes and not line.endswith(b"\n" if isinstance(line, bytes) else "\n"):
      while line and not line.endswith(b"\n" if isinstance(line, bytes) else "\n"):
        line = stream.readline(max_bytes + 1)
      yield LineError(f"longer than {max_bytes} bytes")
      continue
    if isinstance(line, bytes):
      try:
        line = line.decode("utf-8")
      except UnicodeDecodeError:
        yield LineError("not UTF-8 text")
        continue
    yield line


# ---------------------------------------------------------------------------- input
def parse_keypoints(value) -> np.ndarray | None:
  """One person's keypoints from JSON: (17, 3) float64 x, y, confidence, or ``None`` for nobody.

  Raises:
    LineError: not a list of numbers in (x, y, score) or (x, y) groups of a COCO-prefixed
      skeleton (``perfectrep_jax.wild.keypoints.coco_keypoints``), or not finite.
  """
  if value is None or (isinstance(value, (list, dict)) and len(value) == 0):
    return None
  try:
    a = coco_keypoints(value)
  except ValueError as e:
    raise LineError(str(e)) from None
  if np.isinf(a).any() or np.isnan(a[:, 2]).any():
    raise LineError("keypoints contain infinite values or a NaN score")
  return a


def parse_line(text: str) -> tuple[int | None, np.ndarray | None]:
  """``(frame or None, keypoints (17, 3) or None)`` from one input line.

  Raises:
    LineError: not JSON, or not in one of the accepted shapes.
  """
  try:
    doc = json.loads(text)
  except json.JSONDecodeError as e:
    raise LineError(f"not JSON ({e.msg} at column {e.colno})") from None
  except RecursionError:
    raise LineError("not JSON this parser reads (nested too deep)") from None
  except ValueError as e:  # e.g. an integer of more digits than int() converts
    raise LineError(f"not JSON this parser reads ({str(e)[:80]})") from None
  try:
    if isinstance(doc, list) or doc is None:
      return None, parse_keypoints(doc)
    if not isinstance(doc, dict):
      raise LineError("expected a JSON object with 'keypoints', or a list of keypoints")
    frame = doc.get("frame")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 0):
      raise LineError(f"'frame' must be a non-negative integer, got {str(frame)[:40]!r}")
    if frame is not None and frame > MAX_FRAME:
      raise LineError(f"'frame' must be at most {MAX_FRAME}")
    if "keypoints" not in doc:
      raise LineError("no 'keypoints' (use null for a frame without a person)")
    return frame, parse_keypoints(doc["keypoints"])
  except LineError:
    raise
  except (ValueError, TypeError, OverflowError, RecursionError) as e:  # a shape numpy refuses
    raise LineError(f"cannot read the keypoints ({type(e).__name__})") from None


# ---------------------------------------------------------------------------- the loop
def _round(a: np.ndarray) -> list:
  return np.round(np.asarray(a, np.float64), 5).tolist()


class StreamRunner:
  """Feeds parsed frames to a :class:`StreamingLifter` and an :class:`OnlineRepCounter` and writes
  the JSON documents of the module docstring through ``write``."""

  def __init__(
    self,
    lifter: StreamingLifter,
    counter: OnlineRepCounter,
    fps: float,
    write: Callable[[dict], None],
    warn: Callable[[str], None],
  ):
    self.lifter, self.counter, self.fps = lifter, counter, fps
    self.write, self.warn = write, warn
    self.last_frame: int | None = None
    self.frames_written = self.bad_lines = 0
    self.model_seconds = 0.0

  def _emit(self, results: list[StreamFrame]) -> None:
    for r in results:
      rep = None
      if r.joints is None:
        self.counter.interrupt()
      else:
        rep = self.counter.update(r.frame, r.joints)
      self.write(
        {
          "frame": r.frame,
          "time_s": round(r.frame / self.fps, 4),
          "detected": r.detected,
          "joints_3d": None if r.joints is None else _round(r.joints),
          "reps": self.counter.count,
        }
      )
      self.frames_written += 1
      if rep is not None:
        self.write(rep.to_json())

  def _push(self, frame: int, keypoints: np.ndarray | None) -> None:
    start = time.perf_counter()
    calls = self.lifter.model_calls
    results = self.lifter.push(frame, keypoints)
    if self.lifter.model_calls > calls:
      self.model_seconds += time.perf_counter() - start
    self._emit(results)

  def feed(self, frame: int | None, keypoints: np.ndarray | None) -> None:
    """One frame: ``frame`` None = the previous + 1; a jump leaves the frames between missing.

    Raises:
      LineError: the frame number does not increase.
    """
    if frame is None:
      frame = 0 if self.last_frame is None else self.last_frame + 1
    if self.last_frame is not None and frame <= self.last_frame:
      raise LineError(f"frame {frame} does not come after frame {self.last_frame}")
    first_missing = 0 if self.last_frame is None else self.last_frame + 1
    missing = range(first_missing, frame) if self.last_frame is not None else range(0)
    limit = self.lifter.max_gap + 1
    for f in missing[:limit]:
      self._push(f, None)
    if len(missing) > limit:
      self.write({"event": "gap", "first": missing[limit], "last": frame - 1})
    self.last_frame = frame
    self._push(frame, keypoints)

  def feed_lines(self, lines: Iterable[str | LineError]) -> None:
    """Parses and feeds every line (``read_lines`` gives them); bad lines are reported through
    ``warn`` and skipped."""
    for number, text in enumerate(lines, start=1):
      try:
        if isinstance(text, LineError):
          raise text
        if not text.strip():
          continue
        self.feed(*parse_line(text))
      except LineError as e:
        self.bad_lines += 1
        self.warn(f"line {number}: {e}; skipped")

  def finish(self) -> dict:
    """Writes the pending frames, a last partial repetition and the closing summary."""
    self._emit(self.lifter.finish())
    rep = self.counter.finish()
    if rep is not None:
      self.write(rep.to_json())
    return self.end()

  def end(self, error: str | None = None) -> dict:
    """Writes the closing summary (with ``error`` when the stream stopped on one)."""
    calls = self.lifter.model_calls
    summary = {
      "event": "end",
      "frames": self.frames_written,
      "reps": self.counter.count,
      "bad_lines": self.bad_lines,
      "model_calls": calls,
      "ms_per_call": round(1000.0 * self.model_seconds / calls, 3) if calls else None,
    }
    if error is not None:
      summary["error"] = error
    self.write(summary)
    return summary


def start_event(lifter: StreamingLifter, fps: float, source: str) -> dict:
  """The first output line: what the numbers that follow mean."""
  return {
    "event": "start",
    "model": source,
    "window": lifter.window,
    "hop": lifter.hop,
    "lookahead": lifter.lookahead,
    "delay_frames": lifter.delay_frames,
    "delay_s": round(lifter.delay_frames / fps, 4),
    "fps": fps,
    "lifted_at_fps": lifter.lifted_at_fps or fps,
    "flip": lifter.flip,
    "normalization": lifter.normalization,
    "units": lifter.units,
    "image_size": list(lifter.image_size) if lifter.image_size else None,
    "max_gap": lifter.max_gap,
    "joints": list(H36M_JOINTS),
  }


# ---------------------------------------------------------------------------- the model
def make_lift_fn(path: str | Path, window: int | None, flip: bool):
  """The lifting function for a model directory, a run directory or an exported artifact.

  Returns:
    ``(lift_fn, window, description)``; the function is compiled (warmed up) for its one shape.
  Raises:
    UserError: a bad directory, or a window the model or artifact cannot take.
  """
  path = Path(path)
  batch = 2 if flip else 1
  if (path / runtime.MANIFEST).is_file():
    try:
      art = runtime.load(path)
    except runtime.ArtifactError as e:
      raise UserError(str(e)) from None
    if window is not None and window != art.frames:
      raise UserError(
        f"{path}: exported for {art.frames}-frame windows; --window {window} "
        "needs an artifact exported with --frames that many"
      )
    if art.batch is not None and art.batch != batch:
      raise UserError(
        f"{path}: exported for batch {art.batch}; streaming needs batch {batch} "
        f"({'with' if flip else 'without'} --flip)"
      )
    fn, window, desc = art, art.frames, f"{path} ({art.kind})"
  else:
    # lazy on purpose: a model directory needs jax and flax, an exported artifact does not
    from perfectrep_jax.models.model_dir import make_apply_fn

    model, _ = load_lifter(path)
    window = check_frames(window, model.config.maxlen, str(path))
    apply = make_apply_fn(model)
    fn, desc = (lambda x: np.asarray(apply(x))), f"{path} (jax)"
  fn(np.zeros((batch, window, 17, 3), np.float32))  # compile now, not on the first frame
  return fn, window, desc


def lifter_fps(path: str | Path) -> float | None:
  """The frame rate the lifter at ``path`` was trained at: a model directory's ``model.json``
  (``data.fps``) or an exported artifact's manifest (``model.fps``); ``None`` when not recorded."""
  from perfectrep_jax.wild.lift import frame_rate_or_none, trained_fps  # lazy: scipy

  path = Path(path)
  if (path / runtime.MANIFEST).is_file():
    try:
      model = runtime.read_manifest(path).get("model")
    except runtime.ArtifactError as e:
      raise UserError(str(e)) from None
    return frame_rate_or_none(model.get("fps") if isinstance(model, dict) else None)
  from perfectrep_jax.models import model_dir  # lazy: as make_lift_fn

  return trained_fps(model_dir.read_meta(path))


# ---------------------------------------------------------------------------- video (MediaPipe)
def video_keypoints(
  video: str | Path, pose_model: str | Path | None = None
) -> Iterator[tuple[int, np.ndarray | None, float, tuple[int, int]]]:
  """COCO-17 keypoints of the person MediaPipe's PoseLandmarker follows (video mode), frame by
  frame, as they are decoded (see :mod:`perfectrep_jax.wild.detect`).

  Yields:
    ``(frame, keypoints (17, 3) pixels + visibility or None, fps, (width, height))``.
  Raises:
    UserError: the video extra is missing, the files cannot be read.
  """
  for frame, people, fps, size, _ in iter_keypoints(video, pose_model, num_poses=1):
    yield frame, (people[0] if people else None), fps, size
