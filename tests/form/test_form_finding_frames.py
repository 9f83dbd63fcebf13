"""Video input: each finding is shown on the video frame of its worst repetition, the 2D skeleton
drawn on it (real squat take with a knee fault put into every repetition, filmed from the front by
projection; the video is a small generated one whose frames say their own number)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfectrep_jax.data import shared
from perfectrep_jax.form import synth as S
from perfectrep_jax.form.analyze import analyze
from perfectrep_jax.form.report import video_frame_reader, worst_frames

cv2 = pytest.importorskip("cv2")
FPS = 50.0
TAKE = "uiprmd_m01_s01"


def _shade(i: int) -> int:
  return (i * 7) % 200 + 20


def test_each_finding_shows_its_worst_repetition_on_the_video(tmp_path):
  motion, meta = shared.load_mocap()
  x = motion[TAKE].astype(np.float64)
  truth = [(a, c) for a, _, c in S.pelvis_repetitions(x, meta[TAKE]["rep_frames"])]
  x = S.inject_fault(x, truth[3:4], "knees_in", 0.04)
  x = S.inject_fault(x, truth[6:7], "knees_in", 0.6)  # the worst
  # A front view: image x from the world's x, image y from minus the height, in pixels.
  kp = np.stack([160 + x[..., 0] * 0.1, 240 - x[..., 2] * 0.1, np.ones(x.shape[:2])], axis=-1)
  video = tmp_path / "clip.avi"
  writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (320, 240))
  for i in range(len(x)):
    writer.write(np.full((240, 320, 3), _shade(i), np.uint8))
  writer.release()
  doc = analyze(x, "squat", tmp_path / "out", fps=FPS, keypoints_2d=kp, read_frame=video_frame_reader(video))
  finding = next(f for f in doc["findings"] if f["rule"] == "knees_in")
  worst = doc["reps"][6]
  assert finding["frame"] == worst["turn"] == worst_frames(doc)["knees_in"]
  assert (tmp_path / "out" / finding["image"]).stat().st_size > 1000
  assert (
    json.loads((tmp_path / "out" / "report.json").read_text())["findings"][0]["image"] == finding["image"]
  )
  assert (
    "Worst repetition for &#x27;knees_in&#x27; (repetition 7"
    in (tmp_path / "out" / "report.html").read_text()
  )
  # The frame read is the video's own frame of that number.
  image = video_frame_reader(video)(finding["frame"])
  assert abs(float(image.mean()) - _shade(finding["frame"])) < 4


def test_overlay_video_draws_skeleton_count_and_findings(tmp_path):
  from perfectrep_jax.form.overlay import frame_texts, write_overlay

  motion, meta = shared.load_mocap()
  x = motion[TAKE].astype(np.float64)[:400]
  truth = [(a, c) for a, _, c in S.pelvis_repetitions(motion[TAKE], meta[TAKE]["rep_frames"])][:3]
  x = S.inject_fault(x, truth[1:2], "knees_in", 0.6)
  kp = np.stack([160 + x[..., 0] * 0.1, 240 - x[..., 2] * 0.1, np.ones(x.shape[:2])], axis=-1)
  video = tmp_path / "clip.avi"
  writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (320, 240))
  for _ in range(len(x)):
    writer.write(np.full((240, 320, 3), 90, np.uint8))
  writer.release()
  doc = analyze(x, "squat", None, fps=FPS)
  texts = frame_texts(doc, len(x))
  second = doc["reps"][1]
  assert texts[0][0] == "squat: 0 reps" and texts[-1][0].startswith(f"squat: {doc['num_reps']} reps")
  assert any("knees in" in line for line in texts[second["turn"]])
  assert not any("knees in" in line for line in texts[doc["reps"][0]["turn"]])
  out = write_overlay(video, kp, doc, tmp_path / "overlay.mp4")
  cap = cv2.VideoCapture(str(out))
  frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
  cap.set(cv2.CAP_PROP_POS_FRAMES, second["turn"])
  ok, frame = cap.read()
  cap.release()
  assert ok and frames == len(x)
  # The skeleton and the text are drawn over the flat grey frame.
  assert (np.abs(frame.astype(int) - 90).max(axis=-1) > 40).sum() > 300
  with pytest.raises(Exception, match="cannot read the video"):
    write_overlay(tmp_path / "missing.avi", kp, doc, tmp_path / "o.mp4")
