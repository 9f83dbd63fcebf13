"""``perfectrep-jax export-model``: a lifter as a self-contained artifact for serving and phones.

Formats (each a directory with ``manifest.json``, see :mod:`perfectrep_jax.deploy.runtime`):

- ``stablehlo``: ``jax.export`` of the jit-compiled eval-mode lifter with its weights folded in as
  constants, lowered for several platforms (CPU and CUDA by default), serialised. It reloads with
  ``jax.export.deserialize`` alone, no model code. The batch is symbolic (any batch runs) unless
  ``batch`` is given.
- ``onnx``: the project's PyTorch reference (``perfectrep_jax.interop.torch_reference``, the same
  weights through ``perfectrep_jax.interop.convert.to_state_dict``; parity with the JAX model is
  tested) exported by ``torch.onnx.export(dynamo=True)`` (``torch.export`` then onnxscript), with a
  dynamic batch. PyTorch's own exporter is the maintained path that installs cleanly beside this
  project: jax2onnx (0.17) also converts this model exactly, but its releases pin
  ``orbax-checkpoint<0.11.37`` (the project needs the current orbax) and pull in equinox,
  huggingface-hub and netron.
- ``tflite``: the same PyTorch reference through ``litert_torch.convert`` (Google's maintained
  PyTorch-to-LiteRT converter), a static batch (1 by default). Runs in ``ai_edge_litert``.

Every artifact is checked before it is kept: it is reloaded through the runtime and run on a probe
input, and its output must match the JAX model's to ``TOLERANCE`` (the error is recorded in the
manifest). Everything is written into a temporary sibling directory renamed into place at the end,
so a failure leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from perfectrep_jax.deploy import runtime
from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import atomic_directory, new_directory
from perfectrep_jax.skeleton import COCO_JOINTS, COCO_TO_H36M, H36M_JOINTS

FORMATS = ("stablehlo", "onnx", "tflite")
TOLERANCE = 1e-4
DEFAULT_PLATFORMS = ("cpu", "cuda")
ONNX_OPSET = 18

NORMALIZATION = {
  "reference": "perfectrep_jax.wild.lift.normalize",
  "joints": "Human3.6M-17 order (see 'joints'); COCO-17 detections map to it by averaging the "
  "COCO joints listed in 'coco_to_h36m' (x, y and confidence alike)",
  "channels": "x, y normalised as below, then the detector's confidence in [0, 1] (0 = missing joint, "
  "its x, y interpolated from neighbouring frames)",
  "modes": {
    "crop": "upstream default: box = the bounding box of every keypoint with confidence > 0 over "
    "the clip, scale = its longer side, offset = (lo + hi - scale) / 2 per axis; "
    "x_norm = clip(((x - offset_x) / scale - 0.5) * 2, -1, 1), y likewise",
    "image": "upstream --pixel: x_norm = (x - width / 2) / (min(width, height) / 2), "
    "y_norm = (y - height / 2) / (min(width, height) / 2)",
  },
  "short_clips": "a clip shorter than the exported frames is padded at the start by repeating its "
  "first frame (what `perfectrep-jax stream` does)",
}
OUTPUT_FRAME = (
  "normalised camera frame of upstream PerfectRep/MotionBERT: x right, y down in the "
  "input's normalised units, z depth in the same scale, relative to the pelvis depth of "
  "the clip's first frame; pixels: crop mode x_px = (x + 1) * scale / 2 + offset_x, "
  "image mode x_px = x * scale + offset_x with scale = min(width, height) / 2"
)


# ---------------------------------------------------------------------------- loading
def load_lifter(path: str | Path, *, step: int | None = None):
  """Loads a model or run directory that must hold a DSTformer lifter.

  Returns:
    ``(model, meta)`` as :func:`perfectrep_jax.models.model_dir.load_model`.
  Raises:
    UserError: no such directory, not a model directory, or not a DSTformer lifter.
  """
  from perfectrep_jax.models import model_dir  # lazy: jax and flax, not needed to parse the CLI

  meta = model_dir.read_meta(path)
  if meta["kind"] != "lifter":
    raise UserError(
      f"{path}: is a {meta['kind']} model; export-model and stream take a DSTformer lifter (kind 'lifter')"
    )
  return model_dir.load_model(path, step=step)


def check_frames(frames: int | None, maxlen: int, where: str) -> int:
  """The clip length to export or stream: ``frames`` (default ``maxlen``), 1 to ``maxlen``."""
  frames = maxlen if frames is None else int(frames)
  if not 1 <= frames <= maxlen:
    raise UserError(f"{where}: --frames {frames}: this model takes 1 to {maxlen} frames per clip")
  return frames


def _torch_reference(model):
  """The PyTorch reference with the model's weights, in eval mode."""
  try:  # lazy on purpose: PyTorch is an optional dependency (the torch extra)
    import torch
    from perfectrep_jax.interop.convert import to_state_dict
    from perfectrep_jax.interop.torch_reference import TorchDSTformer
  except ImportError as e:
    raise UserError(
      f"this format is exported through PyTorch, which is not installed ({e.name}): "
      "pip install 'perfectrep-jax[torch,deploy]'"
    ) from None
  ref = TorchDSTformer(model.config)
  ref.load_state_dict({k: torch.from_numpy(v) for k, v in to_state_dict(model).items()}, strict=True)
  return ref.eval()


# ---------------------------------------------------------------------------- writers
def write_stablehlo(
  model, out_dir: Path, frames: int, batch: int | None, platforms: tuple[str, ...] = DEFAULT_PLATFORMS
) -> dict[str, Any]:
  """Serialises ``jax.export`` of the lifter to ``out_dir/model.stablehlo``.

  Returns:
    manifest fields: ``{"platforms": [...], "exporter": {...}}``.
  """
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from jax import export

  graphdef, state = nnx.split(model)

  def lift(x):
    return nnx.merge(graphdef, state)(x)

  b = export.symbolic_shape("batch")[0] if batch is None else batch
  spec = jax.ShapeDtypeStruct((b, frames, model.config.num_joints, model.config.dim_in), jnp.float32)
  try:
    exp = export.export(jax.jit(lift), platforms=list(platforms))(spec)
  except Exception as e:  # an unknown platform name, or a lowering the platform lacks
    raise UserError(
      f"cannot export for platforms {','.join(platforms)}: {str(e).strip().splitlines()[0]}"
    ) from None
  (out_dir / runtime.FILES["stablehlo"]).write_bytes(exp.serialize())
  return {
    "platforms": list(exp.platforms),
    "exporter": {"jax": jax.__version__, "calling_convention_version": exp.calling_convention_version},
  }


def write_onnx(
  model, out_dir: Path, frames: int, batch: int | None, opset: int = ONNX_OPSET
) -> dict[str, Any]:
  """Exports the PyTorch reference with the model's weights to ``out_dir/model.onnx``."""
  ref = _torch_reference(model)
  import contextlib
  import io

  import torch

  cfg = model.config
  example = torch.zeros((batch or 2, frames, cfg.num_joints, cfg.dim_in))
  dynamic = None if batch is not None else ({0: torch.export.Dim("batch", min=1, max=4096)},)
  try:
    import onnxscript  # noqa: F401  (the dynamo exporter needs it; fail early with a clear message)
  except ImportError:
    raise UserError(
      "--format onnx needs onnx and onnxscript: pip install 'perfectrep-jax[torch,deploy]'"
    ) from None
  import logging

  logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notes
  log = io.StringIO()
  with contextlib.redirect_stdout(log), torch.no_grad():  # the exporter prints progress lines
    program = torch.onnx.export(
      ref,
      (example,),
      dynamo=True,
      dynamic_shapes=dynamic,
      input_names=["x"],
      output_names=["y"],
      opset_version=opset,
      verbose=False,
    )
    program.save(str(out_dir / runtime.FILES["onnx"]))
  import onnx

  return {
    "exporter": {
      "torch": torch.__version__,
      "onnx": onnx.__version__,
      "opset": opset,
      "path": "torch.onnx.export(dynamo=True) of perfectrep_jax.interop.torch_reference",
    }
  }


def write_tflite(model, out_dir: Path, frames: int, batch: int | None) -> dict[str, Any]:
  """Converts the PyTorch reference with the model's weights to ``out_dir/model.tflite``."""
  ref = _torch_reference(model)
  import contextlib
  import io

  import torch

  try:
    import litert_torch
  except ImportError:
    raise UserError(
      "--format tflite needs litert-torch: pip install 'perfectrep-jax[torch,litert]'"
    ) from None
  cfg = model.config
  example = torch.zeros((batch or 1, frames, cfg.num_joints, cfg.dim_in))
  log = io.StringIO()
  with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), torch.no_grad():
    edge = litert_torch.convert(ref, (example,))
    edge.export(str(out_dir / runtime.FILES["tflite"]))
  version = getattr(litert_torch, "__version__", "unknown")
  return {
    "exporter": {
      "torch": torch.__version__,
      "litert_torch": version,
      "path": "litert_torch.convert of perfectrep_jax.interop.torch_reference",
    }
  }


# ---------------------------------------------------------------------------- the whole export
def manifest_for(model, meta: dict, fmt: str, frames: int, batch: int | None, source: str) -> dict:
  """The manifest of an artifact: shapes, model config (and the frame rate it was trained at),
  input normalisation, output frame."""
  from perfectrep_jax.wild.lift import trained_fps  # lazy: scipy, not needed to parse the CLI

  cfg = model.config
  b = "batch" if batch is None else int(batch)
  return {
    "format": runtime.MANIFEST_FORMAT,
    "version": runtime.MANIFEST_VERSION,
    "kind": fmt,
    "file": runtime.FILES[fmt],
    "input": {
      "name": "x",
      "shape": [b, frames, cfg.num_joints, cfg.dim_in],
      "dtype": "float32",
      "layout": "(batch, frames, joints, [x, y, confidence])",
    },
    "output": {
      "name": "y",
      "shape": [b, frames, cfg.num_joints, cfg.dim_out],
      "dtype": "float32",
      "layout": "(batch, frames, joints, [x, y, z])",
    },
    "frames": frames,
    "maxlen": cfg.maxlen,
    "batch": b,
    "model": {
      "kind": meta["kind"],
      "config": dataclasses.asdict(cfg),
      "source": source,
      "fps": trained_fps(meta),  # the clock it was trained at (None: not recorded), for stream
    },
    "joints": list(H36M_JOINTS),
    "coco_joints": list(COCO_JOINTS),
    "coco_to_h36m": [list(g) for g in COCO_TO_H36M],
    "normalization": NORMALIZATION,
    "output_frame": OUTPUT_FRAME,
  }


def verify(out_dir: Path, model, frames: int, batch: int | None, seed: int = 0) -> dict[str, Any]:
  """Runs the artifact in ``out_dir`` and the JAX model on the same probe input.

  Returns:
    ``{"max_abs_err", "tolerance", "probe_shape"}``.
  Raises:
    RuntimeError: the outputs differ by more than ``TOLERANCE`` (a bug in an exporter).
  """
  from perfectrep_jax.models.model_dir import make_apply_fn  # lazy: jax and flax, as load_lifter

  cfg = model.config
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, size=(batch or 3, frames, cfg.num_joints, cfg.dim_in)).astype(np.float32)
  x[..., 2] = rng.uniform(0, 1, size=x.shape[:-1])
  want = np.asarray(make_apply_fn(model)(x))
  got = runtime.load(out_dir)(x)
  err = float(np.max(np.abs(got - want)))
  if not err <= TOLERANCE:
    raise RuntimeError(f"exported model differs from the JAX model by {err:.3g} > {TOLERANCE}")
  return {"max_abs_err": err, "tolerance": TOLERANCE, "probe_shape": list(x.shape)}


def export_model(
  checkpoint: str | Path,
  out_dir: str | Path,
  fmt: str,
  *,
  frames: int | None = None,
  batch: int | None = None,
  platforms: tuple[str, ...] = DEFAULT_PLATFORMS,
  step: int | None = None,
) -> dict[str, Any]:
  """Exports a lifter's model or run directory as an artifact directory ``out_dir``.

  Args:
    checkpoint: model directory (``perfectrep-jax convert``) or training run directory.
    out_dir: new directory (must not exist, or be empty).
    fmt: 'stablehlo', 'onnx' or 'tflite'.
    frames: clip length T of the artifact (default the model's maxlen).
    batch: fixed batch size; ``None`` = dynamic (stablehlo, onnx), 1 for tflite.
    platforms: stablehlo only: platforms to lower for.
  Returns:
    the manifest written.
  Raises:
    UserError: a bad checkpoint, option or output directory, or a missing exporter package.
  """
  if fmt not in FORMATS:
    raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
  if batch is not None and batch < 1:
    raise UserError(f"--batch must be at least 1, got {batch}")
  if fmt == "tflite" and batch is None:
    batch = 1
  out_dir = new_directory(out_dir)  # refused before the model is loaded
  model, meta = load_lifter(checkpoint, step=step)
  frames = check_frames(frames, model.config.maxlen, str(checkpoint))
  with atomic_directory(out_dir, mode=0o755) as tmp:
    manifest = manifest_for(model, meta, fmt, frames, batch, str(checkpoint))
    if fmt == "stablehlo":
      manifest.update(write_stablehlo(model, tmp, frames, batch, tuple(platforms)))
    elif fmt == "onnx":
      manifest.update(write_onnx(model, tmp, frames, batch))
    else:
      manifest.update(write_tflite(model, tmp, frames, batch))
    (tmp / runtime.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["check"] = verify(tmp, model, frames, batch)
    (tmp / runtime.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
  return manifest
