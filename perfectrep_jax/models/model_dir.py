"""The model's own loader: a directory that holds a model's kind, config and weights.

Layout of a model directory (what ``perfectrep-jax convert`` writes)::

    OUT_DIR/model.json   {"format": 1, "kind": "lifter" | "action", "config": {...}, "source": ...}
    OUT_DIR/params/      an orbax checkpoint of the model's parameters and batch statistics

A training run directory (``perfectrep-jax train --workdir``) holds ``model.json`` too, with its
checkpoints under ``checkpoints/<step>/model``; ``load_model`` reads either.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from perfectrep_jax import digests
from perfectrep_jax.errors import UserError
from perfectrep_jax.fileio import atomic_directory, load_json
from perfectrep_jax.models.baseline import MLPLifter, MLPLifterConfig
from perfectrep_jax.models.dstformer import DSTformer, DSTformerConfig
from perfectrep_jax.models.heads import ActionConfig, ActionNet

FORMAT_VERSION = 1
MODEL_JSON = "model.json"
PARAMS_DIR = "params"
KINDS = ("lifter", "action", "mlp_lifter")

# What a checkpoint stores of a model: its parameters and BatchNorm statistics, not RNG state.
WEIGHTS = nnx.Any(nnx.Param, nnx.BatchStat)


# ---------------------------------------------------------------------------- config.model -> model config
# A training config's ``model`` section: the DSTformer's fields, ``name`` (which lifter) and the
# MLP baseline's widths. Fields it leaves out take the config dataclasses' own defaults.
MODEL_NAMES = {"dstformer": "lifter", "mlp": "mlp_lifter"}
_DSTFORMER_FIELDS = frozenset(f.name for f in dataclasses.fields(DSTformerConfig))
_MLP_WIDTHS = {"mlp_hidden": "hidden", "mlp_blocks": "num_blocks"}  # config field -> MLPLifterConfig's
_MLP_SHARED = ("dim_in", "dim_out", "num_joints", "drop_rate", "maxlen")  # the same name in both
MODEL_FIELDS = _DSTFORMER_FIELDS | {"name", *_MLP_WIDTHS}


def _section(model: Mapping[str, Any]) -> dict[str, Any]:
  """A ``model`` section (an ml_collections ConfigDict or any mapping) as a plain dict."""
  return model.to_dict() if hasattr(model, "to_dict") else dict(model)


def backbone_config(model: Mapping[str, Any]) -> DSTformerConfig:
  """A config's ``model`` section -> the DSTformer's config (the lifter, or an action model's
  backbone); ``name`` and the ``mlp_*`` widths are not the DSTformer's and are skipped.

  Raises:
    ValueError: a field no model knows (``unknown fields [...]``), or a value the config refuses.
  """
  m = _section(model)
  unknown = sorted(set(m) - MODEL_FIELDS)
  if unknown:
    raise ValueError(f"unknown fields {unknown}")
  return DSTformerConfig(**{k: v for k, v in m.items() if k in _DSTFORMER_FIELDS})


def lifter_config(model: Mapping[str, Any]) -> DSTformerConfig | MLPLifterConfig:
  """A config's ``model`` section -> the lifter's config, by ``model.name``: ``dstformer`` (the
  default) or ``mlp``, the per-frame baseline (widths ``mlp_hidden``, ``mlp_blocks``; ``dim_in``,
  ``dim_out``, ``num_joints``, ``drop_rate``, ``maxlen`` shared with the DSTformer's fields).

  Raises:
    ValueError: an unknown name or field, or a value the config refuses.
  """
  m = _section(model)
  name = m.get("name", "dstformer")
  if name not in MODEL_NAMES:
    raise ValueError(f"model.name: {' or '.join(MODEL_NAMES)}, not {name!r}")
  if name == "mlp":
    unknown = sorted(set(m) - MODEL_FIELDS)
    if unknown:
      raise ValueError(f"unknown fields {unknown}")
    fields = {k: m[k] for k in _MLP_SHARED if k in m}
    fields.update({ours: m[field] for field, ours in _MLP_WIDTHS.items() if field in m})
    return MLPLifterConfig(**fields)
  return backbone_config(m)


def config_kind(config: DSTformerConfig | ActionConfig | MLPLifterConfig) -> str:
  """The model kind (one of ``KINDS``) a model config builds."""
  for kind, cls in (("lifter", DSTformerConfig), ("action", ActionConfig), ("mlp_lifter", MLPLifterConfig)):
    if isinstance(config, cls):
      return kind
  raise TypeError(f"not a perfectrep_jax model config: {type(config).__name__}")


def model_kind(model: nnx.Module) -> str:
  if isinstance(model, DSTformer):
    return "lifter"
  if isinstance(model, ActionNet):
    return "action"
  if isinstance(model, MLPLifter):
    return "mlp_lifter"
  raise TypeError(f"not a perfectrep_jax model: {type(model).__name__}")


def build_model(
  kind: str,
  config: dict[str, Any] | DSTformerConfig | ActionConfig,
  *,
  dtype=None,
  seed: int = 0,
  **options: Any,
) -> nnx.Module:
  """Makes a freshly initialised lifter or action model from its config.

  ``options`` are the DSTformer's execution options (``attention_impl``, ``qkv_layout``,
  ``remat``, ``scan_layers``): they change
  how it runs, never its parameters.
  """
  rngs = nnx.Rngs(params=seed, dropout=seed + 1)
  if kind == "lifter":
    cfg = config if isinstance(config, DSTformerConfig) else DSTformerConfig.from_dict(config)
    return DSTformer(cfg, dtype=dtype, rngs=rngs, **options)
  if kind == "action":
    cfg = config if isinstance(config, ActionConfig) else ActionConfig.from_dict(config)
    return ActionNet(cfg, dtype=dtype, rngs=rngs, **options)
  if kind == "mlp_lifter":
    cfg = config if isinstance(config, MLPLifterConfig) else MLPLifterConfig.from_dict(config)
    return MLPLifter(cfg, dtype=dtype, rngs=rngs)
  raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")


def abstract_model(kind: str, config, *, dtype=None) -> nnx.Module:
  """The model with ShapeDtypeStructs for arrays: its structure, without allocating weights."""
  return nnx.eval_shape(lambda: build_model(kind, config, dtype=dtype))


def weights_of(model: nnx.Module) -> dict[str, Any]:
  """``{"params": ..., "stats": ...}``: parameters and BatchNorm statistics as nested dicts.

  This is what model directories and training checkpoints store (``stats`` is empty for a
  lifter).
  """
  return {
    "params": nnx.to_pure_dict(nnx.state(model, nnx.Param)),
    "stats": nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)),
  }


def set_weights(model: nnx.Module, weights: dict[str, Any]) -> None:
  """Writes ``{"params", "stats"}`` nested dicts (as ``weights_of`` gives) into the model."""
  for kind, name in ((nnx.Param, "params"), (nnx.BatchStat, "stats")):
    state = nnx.state(model, kind)
    nnx.replace_by_pure_dict(state, weights[name])
    nnx.update(model, state)


def model_meta(model: nnx.Module, **extra: Any) -> dict[str, Any]:
  return {"format": FORMAT_VERSION, "kind": model_kind(model), "config": model.config.to_dict(), **extra}


def save_model_dir(out_dir: str | Path, model: nnx.Module, **extra_meta: Any) -> Path:
  """Writes ``model.json`` and the weights into ``out_dir`` atomically.

  Everything is written to a temporary sibling that replaces ``out_dir`` only once complete, so an
  error leaves nothing behind. An existing non-empty ``out_dir`` is an error, never overwritten.
  """
  import orbax.checkpoint as ocp

  out_dir = Path(out_dir).absolute()
  if out_dir.is_symlink():  # a link to (or for) the directory: the directory itself is written
    out_dir = out_dir.resolve()
  with atomic_directory(out_dir) as tmp:
    weights = jax.tree.map(np.asarray, weights_of(model))
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(tmp / PARAMS_DIR, weights)
      ckptr.wait_until_finished()
    (tmp / MODEL_JSON).write_text(json.dumps(model_meta(model, **extra_meta), indent=2) + "\n")
  return out_dir


def is_model_dir(path: str | Path) -> bool:
  """Whether ``path`` is a model directory (``model.json`` beside ``params/``), not a run."""
  path = Path(path)
  return (path / MODEL_JSON).is_file() and (path / PARAMS_DIR).is_dir()


def read_meta(path: str | Path) -> dict[str, Any]:
  """Reads and checks ``model.json`` of a model or run directory."""
  path = Path(path)
  meta_path = path / MODEL_JSON
  if not path.is_dir():
    raise UserError(f"{path}: no such directory")
  if not meta_path.is_file():
    raise UserError(
      f"{path}: not a model directory (no {MODEL_JSON}); "
      "make one with `perfectrep-jax convert` or `perfectrep-jax train`"
    )
  meta = load_json(meta_path)
  if not isinstance(meta, dict) or meta.get("kind") not in KINDS or "config" not in meta:
    raise UserError(f"{meta_path}: not a perfectrep-jax model description (kind/config missing)")
  return meta


def _weights_dir(path: Path, step: int | None) -> Path:
  """Where the weights of a model directory or of a run's checkpoint live.

  A run directory gives its best checkpoint (``best.json``); when that is unreadable or names a
  step that is not on disk, its latest, with a warning on standard error saying so.
  """
  if (path / PARAMS_DIR).is_dir() and step is None:
    return path / PARAMS_DIR
  ckpt_root = path / "checkpoints"
  steps = (
    sorted(int(p.name) for p in ckpt_root.glob("*") if p.name.isdigit() and (p / "model").is_dir())
    if ckpt_root.is_dir()
    else []
  )
  if not steps:
    raise UserError(f"{path}: holds no weights ({PARAMS_DIR}/ or checkpoints/<step>/)")
  if step is None and (path / "best.json").is_file():
    try:
      best = int(json.loads((path / "best.json").read_text())["step"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
      best = None
    if best in steps:
      step = best
    else:
      import sys

      why = "is unreadable" if best is None else f"names step {best}, which is not on disk"
      print(
        f"warning: {path / 'best.json'} {why} (checkpoints {steps}); using the latest, step {steps[-1]}",
        file=sys.stderr,
        flush=True,
      )
  if step is not None and step not in steps:
    raise UserError(f"{path}: no checkpoint at step {step} (have {steps})")
  return ckpt_root / str(step if step is not None else steps[-1]) / "model"


def _shape_mismatch(stored, target) -> str | None:
  """How the shapes in a checkpoint's metadata differ from the model's, or None."""

  def flat(tree):
    return {
      "/".join(str(getattr(k, "key", k)) for k in p): tuple(getattr(x, "shape", ()))
      for p, x in jax.tree_util.tree_leaves_with_path(tree)
    }

  have, want = flat(getattr(stored, "item_metadata", stored)), flat(target)
  problems = [f"{k}: stored {have[k]}, needs {want[k]}" for k in want if k in have and have[k] != want[k]]
  problems += [f"{k}: not stored" for k in want if k not in have]
  if not problems:
    return None
  more = f"; and {len(problems) - 2} more" if len(problems) > 2 else ""
  return "; ".join(problems[:2]) + more


def load_model(
  path: str | Path, *, step: int | None = None, dtype=None, eval_mode: bool = True
) -> tuple[nnx.Module, dict[str, Any]]:
  """Loads a model directory (or a run directory's latest checkpoint) into a Flax model.

  Returns:
    (model, meta): the model in eval mode unless ``eval_mode=False``, and ``model.json``.
  """
  import orbax.checkpoint as ocp

  path = Path(path)
  meta = read_meta(path)
  try:
    model = build_model(meta["kind"], meta["config"], dtype=dtype)
  except (TypeError, ValueError) as e:
    raise UserError(f"{path / MODEL_JSON}: invalid model config ({e})") from None
  weights_dir = _weights_dir(path, step)
  if weights_dir.name == "model":  # a run's checkpoint: its files must be as saved
    problem = digests.verify(weights_dir.parent, ("model",))
    if problem is not None:
      raise UserError(f"{weights_dir.parent}: damaged checkpoint ({problem})")
  # Restore onto this process's first device, whatever mesh the checkpoint was saved from.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), weights_of(model))
  try:
    with ocp.StandardCheckpointer() as ckptr:  # closed on error too: no stray async threads
      # shapes compared first: a restore that fails half-way leaves orbax's threads calling
      # into a closed event loop (tracebacks after the error line)
      mismatch = _shape_mismatch(ckptr.metadata(weights_dir.absolute()), target)
      weights = None if mismatch else ckptr.restore(weights_dir.absolute(), target)
  except Exception as e:  # orbax raises many kinds for a missing or damaged checkpoint
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"{weights_dir}: cannot restore weights ({first_line})") from None
  if mismatch:
    raise UserError(f"{weights_dir}: the weights do not fit {path / MODEL_JSON} ({mismatch})")
  set_weights(model, jax.tree.map(jnp.asarray, weights))
  if eval_mode:
    model.eval()
  return model, meta


def make_apply_fn(model: nnx.Module):
  """A jit-compiled pure function ``x -> model(x)`` over the model's current (eval-mode) state.

  The model is split once; each call passes its state as an argument, so new input shapes
  compile once per shape and nothing walks the Python object graph per call.
  """
  graphdef, state = nnx.split(model)

  @jax.jit
  def apply(state, x):
    return nnx.merge(graphdef, state)(x)

  return lambda x: apply(state, x)
