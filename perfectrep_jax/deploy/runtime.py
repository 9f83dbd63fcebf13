"""Runs an exported lifter without the model code: StableHLO through ``jax.export``, ONNX through
onnxruntime, TFLite through LiteRT.

This module imports nothing from the rest of ``perfectrep_jax`` (only the standard library, numpy
and, when asked for, jax, onnxruntime or ai_edge_litert), so it can be copied alone next to an
exported artifact on a server or an edge box. An artifact is a directory::

    OUT/manifest.json      what ``perfectrep-jax export-model`` wrote: format, file, input and output
                           shapes ("batch" where the batch is dynamic), the model's config, how the
                           2D input must be normalised and what the 3D output means
    OUT/model.stablehlo    jax.export serialisation (format "stablehlo"), or
    OUT/model.onnx         ONNX graph (format "onnx"), or
    OUT/model.tflite       LiteRT flatbuffer (format "tflite")

Input (B, T, 17, 3) float32: Human3.6M-17 x, y normalised as the manifest's ``normalization``
says, and the detector's confidence; output (B, T, 17, 3) float32 in the normalised camera frame.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "perfectrep-jax-export"
MANIFEST_VERSION = 1
FILES = {"stablehlo": "model.stablehlo", "onnx": "model.onnx", "tflite": "model.tflite"}


class ArtifactError(ValueError):
  """An artifact directory that is missing, incomplete, corrupt or given a wrong input."""


def read_manifest(path: str | Path) -> dict[str, Any]:
  """Reads and checks ``manifest.json`` of an exported artifact directory.

  Raises:
    ArtifactError: not a directory, no manifest, corrupt JSON or an unknown format.
  """
  path = Path(path)
  if not path.is_dir():
    raise ArtifactError(f"{path}: no such directory")
  mpath = path / MANIFEST
  if not mpath.is_file():
    raise ArtifactError(
      f"{path}: not an exported model (no {MANIFEST}); make one with `perfectrep-jax export-model`"
    )
  try:
    meta = json.loads(mpath.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ArtifactError(f"{mpath}: corrupt JSON ({e})") from None
  if not isinstance(meta, dict) or meta.get("format") != MANIFEST_FORMAT:
    raise ArtifactError(f"{mpath}: not a perfectrep-jax export manifest")
  if meta.get("version") != MANIFEST_VERSION:
    raise ArtifactError(
      f"{mpath}: manifest version {meta.get('version')!r}, this runtime reads version {MANIFEST_VERSION}"
    )
  if meta.get("kind") not in FILES or not (path / FILES[meta["kind"]]).is_file():
    raise ArtifactError(f"{mpath}: kind {meta.get('kind')!r} without its model file")
  return meta


class ExportedLifter:
  """An exported lifter as a callable ``(B, T, 17, 3) float32 -> (B, T, 17, 3) float32``.

  Attributes:
    meta: the manifest.
    frames: T, the clip length the artifact was exported for.
    batch: the fixed batch size, or ``None`` when any batch runs.
  """

  def __init__(self, path: str | Path, *, threads: int | None = None):
    self.path = Path(path)
    self.meta = read_manifest(self.path)
    self.kind = self.meta["kind"]
    shape = self.meta["input"]["shape"]
    self.frames = int(shape[1])
    self.batch = shape[0] if isinstance(shape[0], int) else None
    self.input_shape = tuple(shape[1:])
    model_file = self.path / FILES[self.kind]
    try:
      self._run = getattr(self, f"_load_{self.kind}")(model_file, threads)
    except ArtifactError:
      raise
    except ImportError as e:
      raise ArtifactError(
        f"{model_file}: running a {self.kind} artifact needs the "
        f"'{e.name}' package (pip install perfectrep-jax[deploy])"
      ) from None
    except Exception as e:  # each runtime has its own exception types for a damaged file
      raise ArtifactError(
        f"{model_file}: cannot load ({type(e).__name__}: "
        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})"
      ) from None

  # ---------------------------------------------------------------- loaders
  @staticmethod
  def _load_stablehlo(model_file: Path, threads: int | None):
    import jax
    from jax import export

    exp = export.deserialize(bytearray(model_file.read_bytes()))
    call = jax.jit(exp.call)
    return lambda x: np.asarray(call(x))

  @staticmethod
  def _load_onnx(model_file: Path, threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Idle worker threads must not spin between calls: a stream prepares the next window in
    # Python meanwhile, and spinning threads would take the cores it needs.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
      opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]

  @staticmethod
  def _load_tflite(model_file: Path, threads: int | None):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_file), num_threads=threads)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

    def run(x):
      interp.set_tensor(inp["index"], x)
      interp.invoke()
      return np.array(interp.get_tensor(out["index"]))

    return run

  # ---------------------------------------------------------------- calling
  def __call__(self, x: np.ndarray) -> np.ndarray:
    """Lifts (B, T, 17, 3) normalised 2D + confidence to (B, T, 17, 3) 3D.

    Raises:
      ArtifactError: a shape the artifact was not exported for.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != self.input_shape:
      raise ArtifactError(
        f"{self.path}: expected input (batch, {', '.join(map(str, self.input_shape))}), got {x.shape}"
      )
    if self.batch is not None and x.shape[0] != self.batch:
      raise ArtifactError(f"{self.path}: exported for batch {self.batch}, got {x.shape[0]}")
    return np.asarray(self._run(x), dtype=np.float32)


def load(path: str | Path, *, threads: int | None = None) -> ExportedLifter:
  """Loads an exported artifact directory (any of the three formats)."""
  return ExportedLifter(path, threads=threads)
