"""``perfectrep-jax infer`` end to end: keypoint file -> 3D -> animation -> form report.

:func:`infer` takes the lifting model as a plain callable, so the command line passes the
jit-compiled DSTformer loaded from ``--checkpoint`` and the tests pass a fake.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np

from perfectrep_jax.errors import UserError
from perfectrep_jax.form.analyze import ANY_VIEW, MAX_UNCERTAINTY, analyze
from perfectrep_jax.form.overlay import write_overlay
from perfectrep_jax.form.report import video_frame_reader
from perfectrep_jax.wild import keypoints as kpio
from perfectrep_jax.wild import lift
from perfectrep_jax.wild.render import render_motion


def video_info(path: str | Path) -> tuple[tuple[int, int], float]:
  """``((width, height), fps)`` of a video, read with ffprobe.

  Raises:
    UserError: the file is missing, ffprobe is not installed, or it is not a video.
  """
  path = Path(path)
  if not path.is_file():
    raise UserError(f"{path}: video not found")
  if shutil.which("ffprobe") is None:
    raise UserError(
      f"{path}: reading a video's size needs ffprobe (install ffmpeg), "
      "or give --image-size and --fps instead of --video"
    )
  cmd = [
    "ffprobe",
    "-v",
    "error",
    "-select_streams",
    "v:0",
    "-show_entries",
    "stream=width,height,avg_frame_rate,r_frame_rate",
    "-of",
    "json",
    str(path),
  ]
  res = subprocess.run(cmd, capture_output=True, text=True, check=False)
  try:
    stream = json.loads(res.stdout)["streams"][0]
    num, den = (stream.get("avg_frame_rate") or stream["r_frame_rate"]).split("/")
    fps = float(num) / float(den) if float(den) else float("nan")
    if not np.isfinite(fps) or fps <= 0:
      num, den = stream["r_frame_rate"].split("/")
      fps = float(num) / float(den)
    return (int(stream["width"]), int(stream["height"])), fps
  except (KeyError, IndexError, ValueError, ZeroDivisionError, json.JSONDecodeError) as e:
    raise UserError(f"{path}: not a readable video ({res.stderr.strip() or 'no video stream'})") from e


def uncertainty_threshold(model_meta: dict) -> float | None:
  """The doubt beyond which a lifter's joint is not judged: the threshold measured for it on the
  held-out takes (``model.json["uncertainty"]``, written by ``publish``; ``None`` when its
  uncertainty did not tell its errors), else :data:`perfectrep_jax.form.analyze.MAX_UNCERTAINTY`."""
  calibration = model_meta.get("uncertainty")
  if not isinstance(calibration, dict) or "threshold" not in calibration:
    return MAX_UNCERTAINTY
  threshold = calibration["threshold"]
  return None if threshold is None else float(threshold)


def figure_margins(model_meta: dict) -> dict | None:
  """The lifter's error margin per form figure (``model.json["figure_errors"]``, written by
  ``publish``: ``margin``, the absolute error most repetitions stay within; ``median_abs`` for a
  lifter published before margins were measured): over every view (figure -> error), or by view
  when measured so (``{"any": {figure: error}, "side": {...}, ...}``,
  :func:`perfectrep_jax.form.analyze.margins_for_view`). A rule whose repetitions all sit that
  close to its limit is said to be borderline rather than judged; ``None`` for a lifter without
  them."""

  def margins(table) -> dict[str, float] | None:
    if not isinstance(table, dict):
      return None
    values = table.get("margin", table.get("median_abs"))
    return {str(k): float(v) for k, v in values.items()} if isinstance(values, dict) else None

  errors = model_meta.get("figure_errors")
  overall = margins(errors)
  if overall is None:
    return None
  by_view = {str(view): margins(table) for view, table in (errors.get("by_view") or {}).items()}
  by_view = {view: m for view, m in by_view.items() if m is not None}
  return {ANY_VIEW: overall} | by_view if by_view else overall


def infer(
  keypoints_path: str | Path,
  lift_fn: Callable[[np.ndarray], np.ndarray],
  maxlen: int,
  out_dir: str | Path,
  *,
  video: str | Path | None = None,
  fps: float | None = None,
  image_size: tuple[int, int] | None = None,
  person: str | int | None = None,
  all_people: bool = False,
  coords: str = "auto",
  exercise: str | None = None,
  classify: Callable[[np.ndarray], str] | None = None,
  flip: bool = True,
  normalization: str = "crop",
  smooth_s: float | None = 0.2,
  units: str = "normalized",
  body_height_mm: float | None = None,
  batch_size: int = 8,
  render: bool = True,
  report: bool = True,
  frames_video: str | Path | None = None,
  overlay: bool = False,
  max_uncertainty: float | None = MAX_UNCERTAINTY,
  figure_margins: dict | None = None,
  model_fps: float | None = None,
) -> dict:
  """Lifts the people of a keypoint file and analyses their form.

  Writes into ``out_dir`` for the chosen person (or, with ``all_people``, into
  ``out_dir/person_<id>/`` for each): ``X3D.npy`` and ``X3D.json`` (3D joints, their units and
  frame), ``X3D.mp4`` or ``X3D.gif`` (3D skeleton beside the 2D input), ``report.json``,
  ``report.html`` and ``angles.png`` (form analysis).

  Args:
    keypoints_path: ViTPose/easy_ViTPose, AlphaPose (COCO-17, Halpe-26), MMPose JSON or .npy.
    lift_fn: the model, float32 (B, T, 17, 3) -> (B, T, 17, 3).
    maxlen: the model's longest clip (243 upstream).
    out_dir: output folder.
    video: the source video, for its size and frame rate (read with ffprobe).
    fps: frame rate when there is no video (default 30).
    image_size: (width, height) when there is no video; needed for ``normalization="image"``
      and ``units="pixel"``.
    person: a track id to analyse; default the most present and largest person.
    all_people: lift and analyse every person.
    coords: 'auto', 'xy' or 'yx' (see :func:`perfectrep_jax.wild.keypoints.read_keypoints`).
    exercise: exercise name for the rules; ``None`` asks ``classify`` (else generic rules).
    classify: optional action classifier, 3D joints (T, 17, 3) -> exercise name.
    flip: flip test-time augmentation.
    normalization: 'crop' (upstream default) or 'image' (upstream ``--pixel``).
    smooth_s: temporal smoothing window in seconds (None or 0: off).
    units: 'normalized', 'pixel' or 'metric' (needs ``body_height_mm``).
    batch_size: windows per model call.
    render: write the animation; report: write the form report.
    frames_video: the video the keypoints come from, when ``video`` is not given (detected
      keypoints): its frames show each finding's worst repetition in the report.
    overlay: write ``overlay.mp4``, that video with the skeleton, the repetition count and the
      findings drawn on it (:func:`perfectrep_jax.form.overlay.write_overlay`).
    max_uncertainty: the lifter's uncertainty beyond which the analysis does not judge a joint
      (the model's own: :func:`uncertainty_threshold`); written
      to ``X3D.json`` as ``uncertainty_threshold`` so ``analyze X3D.json`` judges alike.
    figure_margins: the lifter's error margin per form figure, by view (:func:`figure_margins`):
      rules whose repetitions all sit that close to the limit (at the view the 3D is seen from)
      are said to be borderline; written to ``X3D.json`` too.
    model_fps: the frame rate the lifter was trained at (:func:`perfectrep_jax.wild.lift.trained_fps`):
      footage at another rate is lifted on that clock and its 3D returned on the footage's
      frames (:func:`perfectrep_jax.wild.lift.lift_keypoints`).
  Returns:
    ``{"people": {id: {"frames": T, "files": {...}, "score": ..., "num_reps": ...}}, "file": {...}}``.
  Raises:
    UserError: any bad input (file, person id, video, options).
  """

  size = image_size
  if video is not None:
    size, vfps = video_info(video)
    fps = fps or vfps
  fps = float(fps or 30.0)
  if units == "pixel" and size is None:
    raise UserError("pixel units need the video's size (give --video or --image-size)")
  kf = kpio.read_keypoints(keypoints_path, coords=coords)
  tracks = kf.tracks if all_people else [kpio.select_track(kf, person)]
  out = Path(out_dir)
  summary = {
    "file": {
      "path": str(kf.path),
      "format": kf.format,
      "skeleton": kf.skeleton,
      "num_frames": kf.num_frames,
      "people": [t.id for t in kf.tracks],
      "notes": list(kf.notes),
    },
    "people": {},
  }
  for track in tracks:
    where = out / f"person_{track.id}" if all_people else out
    kp = kpio.to_h36m(kf, track)
    joints, meta = lift.lift_keypoints(
      kp,
      lift_fn,
      maxlen,
      fps=fps,
      normalization=normalization,
      image_size=size,
      flip=flip,
      batch_size=batch_size,
      smooth_s=smooth_s,
      units=units,
      body_height_mm=body_height_mm,
      model_fps=model_fps,
    )
    meta.update(
      {
        "person": track.id,
        "keypoints_file": str(kf.path),
        "keypoints_format": kf.format,
        "frame_ids": kf.frame_ids.tolist(),
        "detected": track.present.tolist(),
        "uncertainty_threshold": max_uncertainty,
        "figure_margins": figure_margins,
      }
    )
    npy, js = lift.save_3d(where, joints, meta)
    files = {"npy": str(npy), "json": str(js)}
    entry = {"frames": int(len(joints)), "files": files}
    if render:
      files["video"] = str(
        render_motion(joints, where / "X3D.mp4", fps, keypoints_2d=kp, title=f"person {track.id}")
      )
    if report:
      if len(joints) >= max(3, int(np.ceil(fps))):
        # The detector's confidences say where a joint was hidden, and the lifter's camera
        # frame looks along z with the picture's up along -y: the report says what such an
        # input cannot support and takes a level camera's vertical; a video
        # shows each finding on the frame of its worst repetition.
        reader = None
        source = video if video is not None else frames_video
        if source is not None:
          reader = video_frame_reader(source, kf.frame_ids.tolist())
        doc = analyze(
          joints,
          exercise,
          where,
          fps=fps,
          classify=classify,
          name=str(kf.path),
          confidence=kp[..., 2],
          camera_axis=lift.CAMERA_AXIS,
          camera_up=lift.CAMERA_UP,
          keypoints_2d=kp,
          read_frame=reader,
          uncertainty=lift.uncertainty(meta),
          max_uncertainty=max_uncertainty,
          figure_margins=figure_margins,
        )
        files.update({"report_json": str(where / "report.json"), "report_html": str(where / "report.html")})
        entry.update(
          {
            "score": doc["score"],
            "score_low": doc["score_low"],
            "num_reps": doc["num_reps"],
            "exercise": doc["exercise"],
          }
        )
        if overlay and source is not None:
          files["overlay"] = str(write_overlay(source, kp, doc, where / "overlay.mp4", kf.frame_ids.tolist()))
      else:
        entry["report_skipped"] = f"{len(joints)} frame(s) is too short for a form analysis"
    summary["people"][track.id] = entry
  return summary
