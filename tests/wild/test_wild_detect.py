"""2D detection with MediaPipe Pose (the video extra): the bundle, the keypoint file, and
``perfectrep-jax infer --video`` with no keypoint file, on real footage from Debian's opencv-doc.

The footage tests need the video extra, the PoseLandmarker bundle (built once into the cache from
``mediapipe==0.10.21``'s wheel, so PyPI must be reachable the first time) and opencv-doc's example
data (``$OPENCV_DOC_DATA`` or ``/usr/share/doc/opencv-doc/examples/data``). They skip where those are
missing and fail in CI, which installs them.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from perfectrep_jax.cli import main
from perfectrep_jax.errors import UserError
from perfectrep_jax.wild import detect
from perfectrep_jax.wild.keypoints import read_keypoints, select_track

OPENCV_DOC_DIRS = (os.environ.get("OPENCV_DOC_DATA", ""), "/usr/share/doc/opencv-doc/examples/data")


def _need(what: str):
  if os.environ.get("CI"):
    pytest.fail(f"{what} (CI installs it)")
  pytest.skip(what)


@pytest.fixture(scope="session")
def footage() -> Path:
  for d in OPENCV_DOC_DIRS:
    if d and (Path(d) / "vtest.avi").is_file():
      return Path(d)
  _need("opencv-doc's example data (vtest.avi, messi5.jpg) not found")


@pytest.fixture(scope="session")
def pose_model() -> Path:
  try:
    import mediapipe  # noqa: F401
  except ImportError:
    _need("the video extra (mediapipe) is not installed")
  return detect.ensure_pose_model()


# ---------------------------------------------------------------------------- without the extra
def test_blazepose_landmarks_map_to_coco_pixels():
  marks = [SimpleNamespace(x=i / 40.0, y=i / 80.0, visibility=0.5 + i / 100.0) for i in range(33)]
  coco = detect.blazepose_to_coco(marks, (640, 480))
  assert coco.shape == (17, 3)
  assert detect.BLAZEPOSE_TO_COCO[11] == 23  # COCO left hip <- BlazePose left hip
  assert coco[11].tolist() == pytest.approx([23 / 40 * 640, 23 / 80 * 480, 0.73])
  marks[0].visibility = float("nan")
  assert detect.blazepose_to_coco(marks, (640, 480))[0, 2] == 1.0


@pytest.mark.parametrize("missing", [("mediapipe", "cv2"), ("mediapipe",)])
def test_detection_without_the_extra_is_a_one_line_error(tmp_path, monkeypatch, missing):
  import builtins

  from perfectrep_jax.deploy.stream_io import video_keypoints

  real_import = builtins.__import__

  def no_mediapipe(name, *args, **kwargs):
    if name.split(".")[0] in missing:
      raise ImportError(f"No module named {name!r}", name=name)
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_mediapipe)
  (tmp_path / "pose.task").write_bytes(b"x")
  with pytest.raises(UserError, match=r"video extra .*perfectrep-jax\[video\]"):
    next(video_keypoints(tmp_path / "v.mp4", tmp_path / "pose.task"))
  with pytest.raises(UserError, match="video extra"):
    detect._with_normalisation_metadata(b"", 0.0, 1.0)


def _fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z:
    for name, data in members.items():
      z.writestr(name, data)
  path.write_bytes(buf.getvalue())
  return path


def test_bundle_from_a_wrong_wheel_is_refused_and_writes_nothing(tmp_path):
  out = tmp_path / "pose.task"
  with pytest.raises(UserError, match="wheel not found"):
    detect.build_pose_model(out, tmp_path / "missing.whl")
  (tmp_path / "junk.whl").write_bytes(b"not a zip")
  with pytest.raises(UserError, match=r"junk.whl: not a mediapipe==0.10.21 wheel"):
    detect.build_pose_model(out, tmp_path / "junk.whl")
  other = _fake_wheel(tmp_path / "other.whl", {"mediapipe/__init__.py": b""})
  with pytest.raises(UserError, match="not a mediapipe==0.10.21 wheel"):
    detect.build_pose_model(out, other)
  tampered = _fake_wheel(tmp_path / "tampered.whl", {name: b"\0" * 64 for name in detect.MODEL_FILES})
  with pytest.raises(UserError, match="SHA-256 differs"):
    detect.build_pose_model(out, tampered)
  assert list(tmp_path.glob("pose.task*")) == [] and list(tmp_path.glob(".pose.task*")) == []


def test_a_named_pose_model_must_exist(tmp_path):
  with pytest.raises(UserError, match=r"pose model not found .*perfectrep-jax pose-model"):
    detect.ensure_pose_model(tmp_path / "none.task")


def test_default_pose_model_follows_the_environment(tmp_path, monkeypatch):
  monkeypatch.setenv(detect.POSE_MODEL_ENV, str(tmp_path / "x.task"))
  assert detect.default_pose_model() == tmp_path / "x.task"
  monkeypatch.delenv(detect.POSE_MODEL_ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert detect.default_pose_model() == tmp_path / "perfectrep_jax" / "pose_landmarker_full.task"


def test_infer_without_keypoints_or_video_says_what_it_needs(tmp_path, capsys):
  assert main(["infer", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err.strip()
  assert "needs --keypoints, or --video" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------- on real footage
def test_bundle_holds_both_models_uncompressed_with_their_normalisation(pose_model):
  from mediapipe.tasks.metadata import metadata_schema_py_generated as meta_fb
  from mediapipe.tasks.metadata import schema_py_generated as tflite_fb

  with zipfile.ZipFile(pose_model) as z:
    assert sorted(z.namelist()) == ["pose_detector.tflite", "pose_landmarks_detector.tflite"]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    for member, (mean, std) in (
      ("pose_detector.tflite", (127.5, 127.5)),
      ("pose_landmarks_detector.tflite", (0.0, 255.0)),
    ):
      model = tflite_fb.Model.GetRootAsModel(z.read(member), 0)
      names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
      buf = model.Buffers(model.Metadata(names.index(b"TFLITE_METADATA")).Buffer()).DataAsNumpy()
      meta = meta_fb.ModelMetadataT.InitFromObj(
        meta_fb.ModelMetadata.GetRootAsModelMetadata(buf.tobytes(), 0)
      )
      norm = meta.subgraphMetadata[0].inputTensorMetadata[0].processUnits[0].options
      assert (norm.mean, norm.std) == ([mean], [std])


def test_messi_image_gives_one_upright_person(footage, pose_model, tmp_path, capsys):
  """opencv-doc's messi5.jpg (548 x 342): one footballer, full body, mid-kick."""
  out = tmp_path / "messi.json"
  assert main(["detect", str(footage / "messi5.jpg"), "--out", str(out)]) == 0
  assert "a person in 1 of 1 frame(s)" in capsys.readouterr().out
  kf = read_keypoints(out)
  assert kf.format == "mmpose" and kf.num_frames == 1 and len(kf.tracks) == 1
  kp = kf.tracks[0].coco[0]
  assert kp.shape == (17, 3)
  assert ((kp[:, 0] >= 0) & (kp[:, 0] < 548) & (kp[:, 1] >= 0) & (kp[:, 1] < 342)).all()
  assert kp[:, 2].mean() > 0.8  # a clear, whole body
  nose, shoulders, hips, ankles = kp[0, 1], kp[5:7, 1].mean(), kp[11:13, 1].mean(), kp[15:17, 1].max()
  assert nose < shoulders < hips < ankles  # head over shoulders over hips over the lower foot
  height = ankles - nose
  assert 0.4 * 342 < height < 342  # he fills most of the frame's height


def test_mediapipe_native_log_lines_only_with_verbose(footage, pose_model, tmp_path):
  """MediaPipe's C++ side writes ~54 INFO/WARNING lines to fd 2; a subprocess sees what a user sees."""
  import subprocess
  import sys

  env = dict(os.environ, PERFECTREP_JAX_POSE_MODEL=str(pose_model))
  runs = {}
  for flags in ([], ["--verbose"]):
    proc = subprocess.run(
      [
        sys.executable,
        "-m",
        "perfectrep_jax.cli",
        "detect",
        str(footage / "messi5.jpg"),
        "--out",
        str(tmp_path / f"m{len(flags)}.json"),
        *flags,
      ],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "a person in 1 of 1 frame(s)" in proc.stdout
    runs[bool(flags)] = [
      line for line in proc.stderr.splitlines() if line.startswith(("INFO:", "WARNING:", "W0000"))
    ]
  assert runs[False] == []
  assert len(runs[True]) > 10  # the lines are there to be shown: what was silenced is real


def test_infer_video_without_keypoints_detects_lifts_and_reports(
  footage, pose_model, tiny_model_dir, tmp_path, capsys
):
  """vtest.avi: 795 frames (768 x 576, 10 fps) of pedestrians; two people per frame at most."""
  out = tmp_path / "run"
  assert (
    main(
      [
        "infer",
        "--checkpoint",
        str(tiny_model_dir),
        "--video",
        str(footage / "vtest.avi"),
        "--num-poses",
        "2",
        "--out",
        str(out),
        "--no-render",
      ]
    )
    == 0
  )
  printed = capsys.readouterr().out
  assert "of 795 frames" in printed and "wrote" in printed
  kf = read_keypoints(out / "keypoints_2d.json")
  assert kf.num_frames == 795 and kf.frame_ids[0] == 0
  assert len(kf.tracks) >= 2  # different pedestrians, linked into tracks of their own
  chosen = select_track(kf, None)
  assert chosen.num_detected >= 100
  seen = chosen.coco[chosen.present]
  assert (
    (seen[..., 0] > -50) & (seen[..., 0] < 818) & (seen[..., 1] > -50) & (seen[..., 1] < 626)
  ).mean() > 0.95
  x3d = np.load(out / "X3D.npy")
  assert x3d.shape == (795, 17, 3) and np.isfinite(x3d).all()
  meta = json.loads((out / "X3D.json").read_text())
  assert meta["fps"] == pytest.approx(10.0) and meta["person"] == chosen.id
  report = json.loads((out / "report.json").read_text())
  assert {"reps", "score", "feedback"} <= set(report)
