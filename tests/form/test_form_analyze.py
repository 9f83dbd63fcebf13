"""analyze(): the report's contract, any-frame inputs, and clear errors for bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.form.analyze import analyze, analyze_motion, parse_up


@pytest.fixture(scope="module")
def squat_report(mocap, tmp_path_factory):
  motion, _ = mocap
  out = tmp_path_factory.mktemp("report")
  doc = analyze(motion["uiprmd_m01_s06_inc"], "squat", out, fps=50.0, name="uiprmd_m01_s06_inc")
  return doc, out


def test_report_json_contract(squat_report):
  doc, out = squat_report
  on_disk = json.loads((out / "report.json").read_text())
  assert on_disk == json.loads(json.dumps(doc))
  assert 0 <= doc["score"] <= 100 and doc["num_reps"] == len(doc["reps"]) == 10
  assert isinstance(doc["feedback"], list) and all(isinstance(m, str) and m for m in doc["feedback"])
  for i, rep in enumerate(doc["reps"]):
    assert rep["index"] == i + 1 and 0 <= rep["start"] < rep["end"] < doc["num_frames"]
    for name in (
      "knee_angle_min",
      "hip_angle_min",
      "elbow_angle_min",
      "trunk_lean_max",
      "hip_depth_max",
      "knee_asymmetry",
      "hip_asymmetry",
      "hold_s",
      "rom_ratio",
    ):
      assert isinstance(rep["figures"][name], float), name
    assert set(rep["angles"]) >= {"knee_left", "knee_right", "hip_left", "elbow_right", "trunk"}
    assert rep["angles"]["knee_left"]["rom"] == pytest.approx(
      rep["angles"]["knee_left"]["max"] - rep["angles"]["knee_left"]["min"], abs=1e-3
    )
  assert len(doc["series"]["knee_left"]) == doc["num_frames"]
  assert (out / "report.html").stat().st_size > 10_000 and (out / "angles.png").read_bytes()[:4] == b"\x89PNG"


def test_same_counts_and_score_in_any_frame_and_unit(mocap, similarity, analysed):
  # Motion capture (Z-up mm) moved into a camera-like frame (y down) in metres.
  motion, _ = mocap
  x = motion["uiprmd_m01_s07_inc"].astype(np.float64)
  rot, shift, scale = similarity(11)
  moved = analyze_motion((x @ rot.T) * scale + shift, "squat", fps=50.0)
  base = analysed("uiprmd_m01_s07_inc", "squat")
  # Ten by construction, but in one of them (frames ~390-440) the legs bend 10 degrees against
  # 110 in the others: followed on the legs (a squat's own signal) it is not a squat.
  assert len(moved.segmentation.reps) == len(base.segmentation.reps) == 9
  assert moved.assessment.score == pytest.approx(base.assessment.score, abs=1e-6)
  # Giving the vertical explicitly agrees with the estimate closely.
  given = analyze_motion((x @ rot.T) * scale + shift, "squat", fps=50.0, up=rot @ np.array([0.0, 0.0, 1.0]))
  assert len(given.segmentation.reps) == 9
  assert given.assessment.score == pytest.approx(base.assessment.score, abs=10)


def test_generic_exercise_still_gets_reps_and_figures(analysed):
  result = analysed("uiprmd_m07_s05", None)
  # One arm raised sideways: none of the exercises with their own rules.
  assert result.exercise == "generic" and result.exercise_source == "recognised"
  assert len(result.segmentation.reps) == 10 and result.main_angle == "shoulder_right"
  assert 0 <= result.assessment.score <= 100


def test_classifier_picks_the_rules_when_no_exercise_given(mocap):
  motion, _ = mocap
  seen = []

  def classify(joints):
    seen.append(joints.shape)
    return "Deep squat"

  result = analyze_motion(motion["uiprmd_m01_s02"], None, fps=50.0, classify=classify)
  assert seen == [motion["uiprmd_m01_s02"].shape]
  assert result.exercise == "squat" and result.exercise_source == "classifier"


@pytest.mark.parametrize(
  "bad,match",
  [
    (np.zeros((0, 17, 3)), "too short"),
    (np.zeros((100, 16, 3)), "expected 17 Human3.6M joints"),
    (np.zeros((100, 17, 2)), "2D keypoints must be lifted"),
    (np.zeros((100, 17)), "shape"),
    (np.zeros((1, 17, 3)), "too short"),
    (np.zeros((100, 17, 3)), "not a skeleton"),
    (np.array([["a"] * 3] * 17)[None].repeat(60, 0), "expected numbers"),
  ],
)
def test_bad_inputs_are_clear_errors(bad, match):
  with pytest.raises(UserError, match=match):
    analyze_motion(bad, "squat", fps=50.0, name="X3D.npy")


def test_nan_is_a_clear_error(mocap):
  motion, _ = mocap
  x = motion["uiprmd_m01_s01"][:200].copy()
  x[57, 3, 1] = np.nan
  with pytest.raises(UserError, match=r"X3D.npy: 1 frame\(s\) contain NaN.*frame 57"):
    analyze_motion(x, "squat", fps=50.0, name="X3D.npy")


@pytest.mark.parametrize(
  "text,vec", [("z", [0, 0, 1]), ("-y", [0, -1, 0]), ("+x", [1, 0, 0]), ("0,0,2", [0, 0, 1]), (None, None)]
)
def test_parse_up(text, vec):
  out = parse_up(text)
  assert (out is None) if vec is None else np.allclose(out, vec)


@pytest.mark.parametrize("text", ["up", "0,0", "0,0,0", "nan,0,1"])
def test_parse_up_errors(text):
  with pytest.raises(UserError):
    parse_up(text)


def test_analyze_file_reads_npy_and_infer_json(mocap, tmp_path):
  motion, _ = mocap
  x = motion["uiprmd_m07_s04"].astype(np.float32)
  np.save(tmp_path / "X3D.npy", x)
  (tmp_path / "X3D.json").write_text(json.dumps({"fps": 50.0}))
  from perfectrep_jax.form.analyze import analyze_file, load_joints

  doc = analyze_file(tmp_path / "X3D.npy", None, tmp_path / "out", html=False)
  # The take starts as the arm starts rising (its first maximum at frame 22): 9 whole + 1 partial.
  assert doc["fps"] == 50.0 and (doc["num_reps"], doc["num_partial"]) == (9, 1)
  assert (tmp_path / "out" / "report.json").exists()
  (tmp_path / "full.json").write_text(json.dumps({"fps": 25.0, "joints_3d": x[::2].tolist()}))
  joints, fps = load_joints(tmp_path / "full.json")
  assert joints.shape == (len(x[::2]), 17, 3) and fps == 25.0
  (tmp_path / "empty.npy").write_bytes(b"")
  with pytest.raises(UserError, match="empty.npy: the file is empty"):
    analyze_file(tmp_path / "empty.npy")
  (tmp_path / "junk.npy").write_bytes(b"not numpy")
  with pytest.raises(UserError, match="junk.npy: not a readable .npy"):
    analyze_file(tmp_path / "junk.npy")
  with pytest.raises(UserError, match="nothere.npy: file not found"):
    analyze_file(tmp_path / "nothere.npy")
  np.save(tmp_path / "wrong.npy", x[:, :16])
  with pytest.raises(UserError, match="wrong.npy: expected 17 Human3.6M joints"):
    analyze_file(tmp_path / "wrong.npy")
