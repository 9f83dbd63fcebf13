"""PyTorch checkpoints (``best_epoch.bin``) <-> Flax models, by name and shape.

A Flax weight at path ``blocks_st/0/attn_s/qkv/kernel`` is the PyTorch tensor
``blocks_st.0.attn_s.qkv.weight`` transposed; the whole correspondence is ``torch_key`` below,
so import and export are the same table read in two directions.

Supported layouts: PerfectRep (``{"model": state_dict}``), MotionBERT (``{"model_pos": ...}`` for
the lifter, ``{"model": ...}`` for the action model), a bare state dict; keys with or without the
``module.`` prefix of ``nn.DataParallel``. The model may be a lifter, an action model, or the
backbone alone of an action model. Widths, depth, maxlen, att_fuse, qkv bias and dim_rep are
read from the shapes; the number of heads cannot be: it comes from the training arguments a
checkpoint carries (a plain dict under ``args``, ``opts``, ``config``, ``cfg``, ``hparams`` or
``hyper_parameters``, as this project's exports write), else from ``num_heads``, else 8, assumed
and said so (``convert_checkpoint``'s ``num_heads_from``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from perfectrep_jax.errors import UserError
from perfectrep_jax.interop.safe_pickle import error_text, short_text
from perfectrep_jax.interop.torch_pickle import load_torch_checkpoint
from perfectrep_jax.models import model_dir
from perfectrep_jax.models.dstformer import DSTformerConfig
from perfectrep_jax.models.heads import ActionConfig

STATE_KEYS = ("model", "model_pos", "state_dict")
ARGS_KEYS = ("args", "opts", "config", "cfg", "hparams", "hyper_parameters")
DEFAULT_NUM_HEADS = 8
_LEAF_NAMES = {
  "kernel": "weight",
  "scale": "weight",
  "bias": "bias",
  "mean": "running_mean",
  "var": "running_var",
  "num_batches_tracked": "num_batches_tracked",
}


# ---------------------------------------------------------------------------- names and shapes
def torch_key(path: tuple[Any, ...]) -> tuple[str, bool]:
  """Flax weight path -> (PyTorch state-dict key, whether the array is transposed)."""
  parts = [str(p) for p in path]
  leaf = parts[-1]
  if leaf in ("pos_embed", "temp_embed"):
    return ".".join(parts), False
  if leaf not in _LEAF_NAMES:
    raise KeyError(f"no PyTorch name for weight {'/'.join(parts)}")
  module = parts[:-1]
  if module and module[-1] == "pre_logits":
    module = module + ["fc"]  # upstream wraps it in Sequential(fc, tanh)
  return ".".join(module + [_LEAF_NAMES[leaf]]), leaf == "kernel"


def _flat_weights(model: nnx.Module) -> list[tuple[tuple[Any, ...], Any]]:
  return [
    (tuple(path), var.get_value() if hasattr(var, "get_value") else var.value)
    for path, var in nnx.to_flat_state(nnx.state(model, model_dir.WEIGHTS))
  ]


def find_state_dict(ckpt: Any, source: str) -> dict[str, np.ndarray]:
  """The model's state dict inside a loaded checkpoint, without any ``module.`` prefix."""
  if not isinstance(ckpt, Mapping):
    raise UserError(f"{source}: not a checkpoint (top level is {type(ckpt).__name__}, not a dict)")
  state = next((ckpt[k] for k in STATE_KEYS if isinstance(ckpt.get(k), Mapping)), None)
  if state is None:
    if all(isinstance(v, np.ndarray) for v in ckpt.values()) and ckpt:
      state = ckpt
    else:
      keys = [short_text(str(k), 40) for k in list(ckpt)[:10]]
      raise UserError(
        f"{source}: no model weights found (looked for keys {list(STATE_KEYS)}; "
        f"top-level keys are {keys}{' ...' if len(ckpt) > 10 else ''})"
      )
  out = {}
  for key, value in state.items():
    key = str(key)
    key = key[len("module.") :] if key.startswith("module.") else key
    if not isinstance(value, np.ndarray):
      raise UserError(f"{source}: weight {short_text(key, 80)} is not a tensor ({type(value).__name__})")
    out[key] = value
  return out


def checkpoint_num_heads(ckpt: Any) -> tuple[int | None, str | None]:
  """The head count in the training arguments a checkpoint carries: (heads, where), or (None, None).

  Looks for ``num_heads`` in a plain dict under one of ``ARGS_KEYS`` at the top level (or one level
  down, e.g. ``config["model"]``, as nested configs keep it).
  """
  if not isinstance(ckpt, Mapping):
    return None, None
  for key in ARGS_KEYS:
    args = ckpt.get(key)
    if not isinstance(args, Mapping):
      continue
    places = [(f"'{key}'", args)] + [
      (f"'{key}' / '{k}'", v) for k, v in args.items() if isinstance(k, str) and isinstance(v, Mapping)
    ]
    for where, d in places:
      heads = d.get("num_heads")
      if isinstance(heads, (int, np.integer)) and not isinstance(heads, bool) and heads > 0:
        return int(heads), where
  return None, None


def _count_blocks(state: Mapping[str, np.ndarray], prefix: str) -> int:
  idx = {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
  if idx != set(range(len(idx))):
    shown = sorted(idx)[:10]
    raise ValueError(
      f"blocks under {prefix!r} are not numbered 0..n-1: {shown}{' ...' if len(idx) > 10 else ''}"
    )
  return len(idx)


def infer_backbone_config(
  state: Mapping[str, np.ndarray], num_heads: int, prefix: str = ""
) -> DSTformerConfig:
  """Reads a DSTformer's hyper-parameters off the shapes of its state dict."""

  def get(name):
    return state.get(prefix + name)

  embed, temp, pos = get("joints_embed.weight"), get("temp_embed"), get("pos_embed")
  if embed is None or temp is None or pos is None:
    raise ValueError("no DSTformer weights (joints_embed.weight, temp_embed, pos_embed)")
  dim_feat, dim_in = embed.shape
  depth = _count_blocks(state, prefix + "blocks_st.")
  fc1 = get("blocks_st.0.mlp_s.fc1.weight")
  if depth == 0 or fc1 is None:
    raise ValueError("no transformer blocks (blocks_st.0.*)")
  pre = get("pre_logits.fc.weight")
  head = get("head.weight")
  return DSTformerConfig(
    dim_in=int(dim_in),
    dim_feat=int(dim_feat),
    dim_out=int(head.shape[0]) if head is not None else 0,
    dim_rep=int(pre.shape[0]) if pre is not None else 0,
    depth=depth,
    num_heads=num_heads,
    mlp_ratio=fc1.shape[0] / dim_feat,
    num_joints=int(pos.shape[1]),
    maxlen=int(temp.shape[1]),
    qkv_bias=get("blocks_st.0.attn_s.qkv.bias") is not None,
    att_fuse=get("ts_attn.0.weight") is not None,
  )


def infer_model(
  state: Mapping[str, np.ndarray], num_heads: int, part: str = "auto"
) -> tuple[str, Any, dict[str, np.ndarray]]:
  """Decides what the state dict holds; returns (kind, config, the state dict of that model).

  ``part``: ``auto`` (the whole model), or ``backbone`` (only the DSTformer of an action model).
  """
  is_action = any(k.startswith("backbone.") for k in state)
  if part not in ("auto", "backbone"):
    raise ValueError(f"part must be 'auto' or 'backbone', got {part!r}")
  if is_action and (part == "backbone" or not any(k.startswith("head.fc1.") for k in state)):
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    return "lifter", infer_backbone_config(backbone, num_heads), backbone
  if not is_action:
    return "lifter", infer_backbone_config(state, num_heads), dict(state)
  backbone = infer_backbone_config(state, num_heads, prefix="backbone.")
  fc1 = state["head.fc1.weight"]
  fc2 = state.get("head.fc2.weight")
  cfg = ActionConfig(
    backbone=backbone,
    hidden_dim=int(fc1.shape[0]),
    num_classes=int(fc2.shape[0]) if fc2 is not None else 0,
    version="class" if fc2 is not None else "embed",
  )
  return "action", cfg, dict(state)


# ---------------------------------------------------------------------------- import
def load_state_dict(model: nnx.Module, state: Mapping[str, np.ndarray], source: str) -> None:
  """Copies a PyTorch state dict into ``model``; all mismatches are reported together."""
  weights = _flat_weights(model)
  expected = {}
  for path, value in weights:
    key, transposed = torch_key(path)
    expected[key] = (path, transposed, value.shape, value.dtype)
  missing = sorted(set(expected) - set(state))
  unexpected = sorted(set(state) - set(expected))
  mis_shaped = []
  new = {}
  for key, (path, transposed, shape, dtype) in expected.items():
    if key not in state:
      continue
    arr = state[key].T if transposed else state[key]
    if tuple(arr.shape) != tuple(shape):
      mis_shaped.append(
        f"{key} {tuple(state[key].shape)} (expected {tuple(shape[::-1] if transposed else shape)})"
      )
    new[path] = np.asarray(arr, dtype=dtype)
  if missing or unexpected or mis_shaped:
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped)):
      if keys:
        shown = ", ".join(short_text(k, 120) for k in keys[:8]) + (
          f" and {len(keys) - 8} more" if len(keys) > 8 else ""
        )
        problems.append(f"{len(keys)} {label}: {shown}")
    raise UserError(f"{source}: weights do not fit the inferred model: " + "; ".join(problems))
  flat = nnx.to_flat_state(nnx.state(model, model_dir.WEIGHTS))
  for path, var in flat:
    var.set_value(new[tuple(path)])
  nnx.update(model, nnx.from_flat_state(flat))


def convert_checkpoint(
  src: str | Path, out_dir: str | Path, *, num_heads: int | None = None, part: str = "auto"
) -> tuple[nnx.Module, dict[str, Any]]:
  """Reads a PyTorch ``.bin``, builds the matching Flax model and writes a model directory.

  The head count comes from the checkpoint's training arguments where it carries them, else from
  ``num_heads``, else ``DEFAULT_NUM_HEADS``; ``model.json``'s ``num_heads_from`` says which
  ("the checkpoint's training arguments 'args'", "num_heads argument" or "assumed"). A ``num_heads`` that contradicts the
  checkpoint's arguments is an error.
  """
  src = Path(src)
  ckpt = load_torch_checkpoint(src)
  state = find_state_dict(ckpt, str(src))
  recorded, where = checkpoint_num_heads(ckpt)
  if recorded is not None:
    if num_heads is not None and num_heads != recorded:
      raise UserError(
        f"{src}: the checkpoint's training arguments ({where}) say num_heads="
        f"{recorded}, but {num_heads} heads were asked for; drop --num-heads"
      )
    num_heads, heads_from = recorded, f"the checkpoint's training arguments {where}"
  elif num_heads is not None:
    heads_from = "num_heads argument"
  else:
    num_heads, heads_from = DEFAULT_NUM_HEADS, "assumed"
  try:
    kind, cfg, state = infer_model(state, num_heads, part)
  except (ValueError, KeyError, IndexError) as e:
    raise UserError(f"{src}: not a DSTformer or action checkpoint ({error_text(e)})") from None
  model = model_dir.build_model(kind, cfg)
  load_state_dict(model, state, str(src))
  model.eval()
  model_dir.save_model_dir(out_dir, model, source=str(src.name), num_heads_from=heads_from)
  return model, model_dir.read_meta(out_dir)


# ---------------------------------------------------------------------------- export
def to_state_dict(model: nnx.Module, prefix: str = "") -> dict[str, np.ndarray]:
  """The model's weights as a PyTorch-layout state dict (float32 weights, int64 counters)."""
  out = {}
  for path, value in _flat_weights(model):
    key, transposed = torch_key(path)
    arr = np.asarray(value)
    arr = arr.astype(np.int64 if np.issubdtype(arr.dtype, np.integer) else np.float32)
    out[prefix + key] = np.array(arr.T if transposed else arr, order="C", copy=True)
  return out


def export_checkpoint(model_path: str | Path, dst: str | Path, *, step: int | None = None) -> Path:
  """Writes a model directory as an upstream ``best_epoch.bin`` (needs PyTorch).

  The file is a dict ``{"epoch", "lr", "optimizer", "model", "min_loss"}`` like PerfectRep's
  ``train.py`` saves, plus ``args`` (``num_heads`` and the widths, which ``convert`` reads back),
  ``model`` holding ``module.``-prefixed keys of ``nn.DataParallel``, so that
  ``model.load_state_dict(ckpt["model"], strict=True)`` accepts it on a wrapped upstream model.
  """
  try:
    import torch
  except ImportError:
    raise UserError("export needs PyTorch: pip install 'perfectrep-jax[torch]'") from None
  dst = Path(dst)
  if dst.exists() and dst.is_dir():
    raise UserError(f"{dst}: is a directory; give a file name such as best_epoch.bin")
  model, meta = model_dir.load_model(model_path, step=step)
  state = {k: torch.from_numpy(v) for k, v in to_state_dict(model, prefix="module.").items()}
  backbone = getattr(model.config, "backbone", model.config)
  ckpt = {
    "epoch": int(meta.get("epoch", 0)),
    "lr": float(meta.get("lr", 0.0)),
    "optimizer": {"state": {}, "param_groups": []},
    "model": state,
    "min_loss": float(meta.get("min_loss", 0.0)),
    # what the shapes cannot tell a reader (upstream's loaders read only "model")
    "args": {
      "num_heads": int(backbone.num_heads),
      "dim_feat": int(backbone.dim_feat),
      "depth": int(backbone.depth),
      "maxlen": int(backbone.maxlen),
    },
  }
  dst.parent.mkdir(parents=True, exist_ok=True)
  tmp = dst.with_name(f".{dst.name}.tmp")
  try:
    torch.save(ckpt, tmp)
    tmp.replace(dst)
  finally:
    tmp.unlink(missing_ok=True)
  return dst
