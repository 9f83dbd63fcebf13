"""The video written back with what the analysis saw: the 2D skeleton, the repetition count and the
findings, frame by frame (``perfectrep-jax infer --video V --overlay``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import atomic_write_bytes
from perfectrep_jax.skeleton import BONES, JOINT_INDEX

_LEFT = {v for k, v in JOINT_INDEX.items() if k.startswith("left")}
_RIGHT = {v for k, v in JOINT_INDEX.items() if k.startswith("right")}


def frame_texts(doc: dict, num_frames: int) -> list[list[str]]:
  """The lines drawn on each analysed frame: the whole repetitions completed so far (and the
  partial ones said), the exercise, and while a repetition that failed a rule is under way
  (and a second after it) what it failed."""
  reps = doc["reps"]
  fps = float(doc.get("fps") or 30.0)
  out = []
  for t in range(num_frames):
    done = sum(1 for r in reps if not r["partial"] and r["end"] <= t)
    part = sum(1 for r in reps if r["partial"] and r["end"] <= t)
    lines = [f"{doc.get('exercise', '')}: {done} reps" + (f" (+{part} partial)" if part else "")]
    for r in reps:
      if r["start"] <= t <= r["end"] + int(fps) and r["issues"]:
        lines.append(f"rep {r['index']}: " + ", ".join(i.replace("_", " ") for i in r["issues"]))
    out.append(lines)
  return out


def write_overlay(
  video: str | Path, keypoints_2d: np.ndarray, doc: dict, path: str | Path, frame_ids: list[int] | None = None
) -> Path:
  """Writes ``path`` (MP4): every frame of ``video`` with the 2D skeleton of the analysed frame
  it shows (``keypoints_2d`` (T, 17, 2|3) pixels; ``frame_ids[i]``: the video frame of analysed
  frame ``i``), the repetition count and the findings (:func:`frame_texts`). Whole or not at all.

  Raises:
    UserError: the video cannot be read or the output written.
  """
  import tempfile

  import cv2

  cap = cv2.VideoCapture(str(video))
  if not cap.isOpened():
    raise UserError(f"{video}: cannot read the video")
  fps = cap.get(cv2.CAP_PROP_FPS) or float(doc.get("fps") or 30.0)
  kp = np.asarray(keypoints_2d, np.float64)
  ids = list(range(len(kp))) if frame_ids is None else [int(i) for i in frame_ids]
  by_frame = {v: i for i, v in enumerate(ids)}
  texts = frame_texts(doc, len(kp))
  path = Path(path)
  with tempfile.TemporaryDirectory() as tmp:
    tmp_path = Path(tmp) / "overlay.mp4"
    writer = None
    number = 0
    last = None
    try:
      while True:
        ok, frame = cap.read()
        if not ok:
          break
        if writer is None:
          h, w = frame.shape[:2]
          writer = cv2.VideoWriter(str(tmp_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        i = by_frame.get(number, last)
        if i is not None:
          last = i
          _draw(frame, kp[i], texts[i])
        writer.write(frame)
        number += 1
    finally:
      cap.release()
      if writer is not None:
        writer.release()
    if number == 0:
      raise UserError(f"{video}: no frames could be read")
    try:
      atomic_write_bytes(path, tmp_path.read_bytes())
    except OSError as err:
      raise UserError(f"{path}: cannot write the overlay video ({err.strerror})") from err
  return path


def _draw(frame: np.ndarray, kp: np.ndarray, lines: list[str]) -> None:
  import cv2

  conf = kp[:, 2] if kp.shape[1] > 2 else np.ones(len(kp))
  for a, b in BONES:
    if conf[a] < 0.3 or conf[b] < 0.3:
      continue
    colour = (180, 119, 31) if b in _LEFT else (40, 39, 214) if b in _RIGHT else (44, 160, 44)
    cv2.line(
      frame, tuple(int(v) for v in kp[a, :2]), tuple(int(v) for v in kp[b, :2]), colour, 2, cv2.LINE_AA
    )
  scale = max(frame.shape[0] / 720.0, 0.4)
  for k, text in enumerate(lines):
    y = int((30 + 28 * k) * scale)
    cv2.putText(frame, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(
      frame,
      text,
      (10, y),
      cv2.FONT_HERSHEY_SIMPLEX,
      0.8 * scale,
      (255, 255, 255) if k == 0 else (80, 200, 255),
      2,
      cv2.LINE_AA,
    )
