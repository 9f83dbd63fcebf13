"""2D keypoints from a video or an image, offline, with MediaPipe Pose (the ``video`` extra).

MediaPipe's current pip package (1.x, Tasks API) bundles no model and its model downloads need the
network at run time. The BlazePose models themselves (Apache-2.0) ship inside the last wheel of the
legacy API, ``mediapipe==0.10.21``. :func:`build_pose_model` turns them into a PoseLandmarker
``.task`` bundle once: it takes the two ``.tflite`` files out of that wheel (downloaded with
``pip download``, or a wheel file you give), checks their SHA-256, adds the input normalisation the
Tasks API reads from each model's metadata (detector: ``(x - 127.5) / 127.5``; landmarker:
``x / 255``) and zips them as ``pose_detector.tflite`` and ``pose_landmarks_detector.tflite``.
The bundle lives in ``$XDG_CACHE_HOME/perfectrep_jax/`` (or ``$PERFECTREP_JAX_POSE_MODEL``).

:func:`detect_keypoints` runs it over every frame (video mode: the landmarker tracks the person from
frame to frame) and writes the 33 BlazePose landmarks mapped to COCO-17 as MMPose-style JSON, one
entry per frame, frames with nobody included, so :func:`perfectrep_jax.wild.keypoints.read_keypoints`
reads it like any detector's output and frame k of the file is frame k of the video.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import atomic_write_bytes

# MediaPipe BlazePose landmark of each COCO-17 keypoint.
BLAZEPOSE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

MODEL_WHEEL = "mediapipe==0.10.21"
# Path in the wheel -> (name in the bundle, SHA-256, input mean, input std).
MODEL_FILES = {
  "mediapipe/modules/pose_detection/pose_detection.tflite": (
    "pose_detector.tflite",
    "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    127.5,
    127.5,
  ),
  "mediapipe/modules/pose_landmark/pose_landmark_full.tflite": (
    "pose_landmarks_detector.tflite",
    "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    0.0,
    255.0,
  ),
}
POSE_MODEL_ENV = "PERFECTREP_JAX_POSE_MODEL"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
EXTRA_HINT = "pip install 'perfectrep-jax[video]'"


def default_pose_model() -> Path:
  """Where the bundle is kept: ``$PERFECTREP_JAX_POSE_MODEL``, else the user's cache folder."""
  if os.environ.get(POSE_MODEL_ENV):
    return Path(os.environ[POSE_MODEL_ENV])
  cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
  return cache / "perfectrep_jax" / "pose_landmarker_full.task"


# ---------------------------------------------------------------------------- the model bundle
def _with_normalisation_metadata(model: bytes, mean: float, std: float) -> bytes:
  """A ``.tflite`` flatbuffer with TFLite metadata naming its image input and its normalisation."""
  try:
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta_fb
    from mediapipe.tasks.metadata import schema_py_generated as tflite_fb
  except ImportError as e:
    raise UserError(
      f"building the pose model needs the video extra ({e.name} is missing): {EXTRA_HINT}"
    ) from None
  tree = tflite_fb.ModelT.InitFromObj(tflite_fb.Model.GetRootAsModel(model, 0))
  graph = tree.subgraphs[0]

  norm = meta_fb.NormalizationOptionsT()
  norm.mean, norm.std = [mean], [std]
  unit = meta_fb.ProcessUnitT()
  unit.optionsType, unit.options = meta_fb.ProcessUnitOptions.NormalizationOptions, norm
  props = meta_fb.ImagePropertiesT()
  props.colorSpace = meta_fb.ColorSpaceType.RGB
  content = meta_fb.ContentT()
  content.contentPropertiesType, content.contentProperties = meta_fb.ContentProperties.ImageProperties, props
  image = meta_fb.TensorMetadataT()
  image.name, image.content, image.processUnits = "image", content, [unit]
  outputs = []
  for i in graph.outputs:  # the Tasks API checks that every output has an entry
    t = meta_fb.TensorMetadataT()
    t.name = graph.tensors[i].name.decode()
    outputs.append(t)
  sub = meta_fb.SubGraphMetadataT()
  sub.inputTensorMetadata, sub.outputTensorMetadata = [image], outputs
  meta = meta_fb.ModelMetadataT()
  meta.name, meta.subgraphMetadata, meta.minParserVersion = "BlazePose", [sub], "1.0.0"
  b = flatbuffers.Builder(0)
  b.Finish(meta.Pack(b), b"M001")

  buffer = tflite_fb.BufferT()
  buffer.data = bytes(b.Output())
  tree.buffers.append(buffer)
  entry = tflite_fb.MetadataT()
  entry.name, entry.buffer = "TFLITE_METADATA", len(tree.buffers) - 1
  tree.metadata = [m for m in (tree.metadata or []) if m.name != b"TFLITE_METADATA"] + [entry]
  b = flatbuffers.Builder(0)
  b.Finish(tree.Pack(b), b"TFL3")
  return bytes(b.Output())


def _download_wheel(into: Path) -> Path:
  """``pip download``s the model wheel (the CPython 3.11 manylinux build: its models are the same
  on every platform, and this build exists whatever Python runs here)."""
  cmd = [
    sys.executable,
    "-m",
    "pip",
    "download",
    "--no-deps",
    "--only-binary=:all:",
    "--quiet",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--platform",
    "manylinux_2_28_x86_64",
    "-d",
    str(into),
    MODEL_WHEEL,
  ]
  res = subprocess.run(cmd, capture_output=True, text=True, check=False)
  wheels = sorted(into.glob("mediapipe-*.whl"))
  if res.returncode != 0 or not wheels:
    last = (res.stderr.strip().splitlines() or ["no wheel"])[-1]
    raise UserError(
      f"could not download {MODEL_WHEEL} with pip ({last}); download the wheel where "
      "PyPI can be reached and give it with --wheel"
    )
  return wheels[0]


def build_pose_model(out: str | Path | None = None, wheel: str | Path | None = None) -> Path:
  """Builds the PoseLandmarker bundle from the BlazePose models in ``mediapipe==0.10.21``'s wheel.

  Args:
    out: the ``.task`` file to write (default :func:`default_pose_model`).
    wheel: that wheel as a file; default: ``pip download`` it (about 36 MB, needs PyPI).
  Returns:
    the bundle's path (written atomically: a failure leaves no partial file).
  Raises:
    UserError: the wheel cannot be had or read, a model's checksum differs, or the video extra is
      missing.
  """
  out = Path(out) if out is not None else default_pose_model()
  with tempfile.TemporaryDirectory() as tmp:
    whl = Path(wheel) if wheel is not None else _download_wheel(Path(tmp))
    if not whl.is_file():
      raise UserError(f"{whl}: wheel not found")
    try:
      with zipfile.ZipFile(whl) as z:
        models = {name: z.read(name) for name in MODEL_FILES}
    except (zipfile.BadZipFile, KeyError) as e:
      raise UserError(f"{whl}: not a {MODEL_WHEEL} wheel ({e})") from None
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as bundle:  # the Tasks API maps members uncompressed
    for name, data in models.items():
      member, sha256, mean, std = MODEL_FILES[name]
      if hashlib.sha256(data).hexdigest() != sha256:
        raise UserError(f"{whl}: {name} is not the model this bundle is built for (SHA-256 differs)")
      bundle.writestr(member, _with_normalisation_metadata(data, mean, std))
  return atomic_write_bytes(out, buf.getvalue())


def ensure_pose_model(path: str | Path | None = None) -> Path:
  """The bundle to use: ``path`` (must exist), else the default one, built on first use."""
  if path is not None:
    path = Path(path)
    if not path.is_file():
      raise UserError(
        f"{path}: pose model not found (build one with: perfectrep-jax pose-model --out {path})"
      )
    return path
  path = default_pose_model()
  if not path.is_file():
    print(
      f"building the MediaPipe pose model once into {path} (downloads {MODEL_WHEEL} from PyPI)",
      file=sys.stderr,
    )
    build_pose_model(path)
  return path


# ---------------------------------------------------------------------------- detection
# MediaPipe's C++ side (LiteRT, XNNPACK, glog) writes about 54 lines of INFO and WARNING to the
# process's stderr per run, past any Python logging setting; the CLI's --verbose shows them.
_native_logs = {"show": False}


def show_native_logs(show: bool = True) -> None:
  """Whether MediaPipe's native log lines reach stderr (off by default; the CLI's --verbose)."""
  _native_logs["show"] = bool(show)


@contextlib.contextmanager
def _quiet_native_stderr():
  """Points file descriptor 2 at /dev/null while MediaPipe's native code runs (not across yields,
  so that Python's own stderr, progress bars and errors included, is never lost)."""
  if _native_logs["show"]:
    yield
    return
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError, AttributeError):  # no real descriptor 2: nothing to quieten
    yield
    return
  try:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
      os.dup2(devnull, 2)
    finally:
      os.close(devnull)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def _mediapipe():
  """``(mediapipe, its tasks' BaseOptions, vision)``, or a one-line error naming the extra."""
  os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and up
  try:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
  except ImportError as e:
    raise UserError(f"2D detection needs the video extra ({e.name} is missing): {EXTRA_HINT}") from None
  return mp, BaseOptions, vision


@contextlib.contextmanager
def _landmarker(pose_model: Path, video_mode: bool, num_poses: int):
  _, BaseOptions, vision = _mediapipe()
  mode = vision.RunningMode.VIDEO if video_mode else vision.RunningMode.IMAGE
  options = vision.PoseLandmarkerOptions(
    base_options=BaseOptions(model_asset_path=str(pose_model)), running_mode=mode, num_poses=num_poses
  )
  try:
    with _quiet_native_stderr():
      landmarker = vision.PoseLandmarker.create_from_options(options)
  except Exception as e:  # mediapipe raises RuntimeError/ValueError/FileNotFoundError for a bad bundle
    raise UserError(f"{pose_model}: not a PoseLandmarker model ({str(e).strip().splitlines()[0]})") from None
  try:
    yield landmarker
  finally:
    with _quiet_native_stderr():
      landmarker.close()  # MediaPipe's graph threads outlive the object otherwise


def blazepose_to_coco(landmarks, size: tuple[int, int]) -> np.ndarray:
  """33 BlazePose landmarks (normalised x, y, visibility) -> (17, 3) COCO-17 pixels + visibility."""
  w, h = size
  out = np.zeros((len(BLAZEPOSE_TO_COCO), 3))
  for k, i in enumerate(BLAZEPOSE_TO_COCO):
    lm = landmarks[i]
    vis = getattr(lm, "visibility", None)
    out[k] = (lm.x * w, lm.y * h, 1.0 if vis is None or math.isnan(vis) else vis)
  return out


# The most pixels a frame may have: 16384 x 8192 (the pose model sees 256 x 256 anyway). Decoding
# a bigger image takes gigabytes before anything can be said about it.
MAX_FRAME_PIXELS = 1 << 27


def check_frame_size(source: Path, width: int, height: int, what: str = "an image") -> None:
  if width * height > MAX_FRAME_PIXELS:
    raise UserError(
      f"{source}: {what} of {width} x {height} pixels; detect reads frames of at most "
      f"{MAX_FRAME_PIXELS:,} pixels (downscale it first)"
    )


def image_header_size(source: Path) -> tuple[int, int] | None:
  """An image's (width, height) read from its header, before anything is decoded (None when
  Pillow does not know the format: OpenCV then decodes it under its own pixel limit)."""
  from PIL import Image

  limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # only the header is read here
  try:
    with Image.open(source) as im:
      return im.size
  except Exception:  # pylint: disable=broad-except  # not an image Pillow reads
    return None
  finally:
    Image.MAX_IMAGE_PIXELS = limit


@contextlib.contextmanager
def open_source(source: str | Path):
  """``(frames, fps, (width, height), num_frames)`` of a video or an image; frames are RGB uint8.

  Raises:
    UserError: the file is missing or OpenCV cannot decode it.
  """
  try:
    import cv2
  except ImportError as e:
    raise UserError(f"2D detection needs the video extra ({e.name} is missing): {EXTRA_HINT}") from None
  source = Path(source)
  if not source.is_file():
    raise UserError(f"{source}: file not found")
  if source.suffix.lower() in IMAGE_SUFFIXES:
    size = image_header_size(source)
    if size is not None:
      check_frame_size(source, *size)
    bgr = cv2.imread(str(source))
    if bgr is None:
      raise UserError(f"{source}: not a readable image")
    yield iter([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)]), 0.0, (bgr.shape[1], bgr.shape[0]), 1
    return
  cap = cv2.VideoCapture(str(source))
  try:
    if not cap.isOpened():
      raise UserError(f"{source}: not a readable video")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    check_frame_size(source, *size, what="a video with frames")

    def frames():
      while True:
        ok, bgr = cap.read()
        if not ok:
          return
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    yield frames(), (fps if fps > 0 else 30.0), size, count
  finally:
    cap.release()


def iter_keypoints(
  source: str | Path, pose_model: str | Path | None = None, *, num_poses: int = 1
) -> Iterator[tuple[int, list[np.ndarray], float, tuple[int, int], int]]:
  """COCO-17 keypoints of the people in each frame, as the frames are decoded.

  Args:
    source: a video (video mode: each person is tracked from frame to frame) or an image.
    pose_model: a PoseLandmarker ``.task`` bundle (default: :func:`ensure_pose_model`).
    num_poses: most people per frame.
  Yields:
    ``(frame, [(17, 3) pixels x, y and visibility per person], fps, (width, height), num_frames)``;
    fps is 0 for an image, num_frames is OpenCV's estimate (0 if unknown).
  Raises:
    UserError: missing extra, unreadable file or bundle.
  """
  if num_poses < 1:
    raise UserError(f"num_poses must be at least 1, not {num_poses}")
  mp, _, _ = _mediapipe()
  model = ensure_pose_model(pose_model)
  with open_source(source) as (frames, fps, size, count):
    with _landmarker(model, video_mode=fps > 0, num_poses=num_poses) as landmarker:
      for t, rgb in enumerate(frames):
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        with _quiet_native_stderr():
          if fps > 0:
            result = landmarker.detect_for_video(image, int(round(1000.0 * t / fps)))
          else:
            result = landmarker.detect(image)
        yield t, [blazepose_to_coco(p, size) for p in result.pose_landmarks], fps, size, count


def detect_keypoints(
  source: str | Path,
  out: str | Path,
  pose_model: str | Path | None = None,
  *,
  num_poses: int = 1,
  progress: bool = True,
) -> dict:
  """Runs :func:`iter_keypoints` over a whole video or image and writes the keypoint file.

  The file is MMPose-style JSON, one entry per frame (frames with nobody included)::

      [{"frame_id": 0, "instances": [{"keypoints": [[x, y], ...17], "keypoint_scores": [...17]}]}, ...]

  Returns:
    ``{"path", "source", "frames", "frames_with_person", "fps", "image_size"}``; the keypoint
    file is written atomically.
  Raises:
    UserError: see :func:`iter_keypoints`; also when nobody is found in any frame (nothing is
      written then).
  """
  entries, fps, size, seen = [], 0.0, (0, 0), 0
  bar = None
  # fps and size: the last frame's, read after the loop
  for t, people, fps, size, count in iter_keypoints(source, pose_model, num_poses=num_poses):  # noqa: B007
    if bar is None and progress:
      from tqdm.auto import tqdm

      bar = tqdm(
        total=count or None,
        unit="frame",
        desc=f"detecting 2D in {Path(source).name}",
        dynamic_ncols=True,
        mininterval=1.0,
        file=sys.stderr,
      )
    entries.append(
      {
        "frame_id": t,
        "instances": [
          {"keypoints": np.round(p[:, :2], 2).tolist(), "keypoint_scores": np.round(p[:, 2], 4).tolist()}
          for p in people
        ],
      }
    )
    seen += bool(people)
    if bar is not None:
      bar.update(1)
  if bar is not None:
    bar.close()
  if not entries:
    raise UserError(f"{source}: no frame could be decoded")
  if not seen:
    raise UserError(f"{source}: no person detected in any of its {len(entries)} frame(s)")
  path = atomic_write_bytes(out, json.dumps(entries, separators=(",", ":")).encode())
  return {
    "path": str(path),
    "source": str(source),
    "frames": len(entries),
    "frames_with_person": seen,
    "fps": fps,
    "image_size": list(size),
  }
