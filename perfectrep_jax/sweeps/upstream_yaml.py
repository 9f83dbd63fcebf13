"""Where every key of PerfectRep's YAML configs lives in ours, and how to read it back.

PerfectRep trains with three YAML files: ``train_config.yaml`` (masked-pose pretraining,
``configs/pretrain.py``), ``ft_3d_pose_config.yaml`` (3D pose finetuning, ``configs/pose3d.py``)
and ``action_config.yaml`` (action classification, ``configs/action.py``). ``TABLES`` gives every
key of each file a ``Home``:

  Field     a config field; ``read(config)`` gives the key's value in upstream's terms (e.g.
            ``no_eval`` is ``eval_every == 0``). The ``full`` variant must reproduce the YAML.
  Fixed     behaviour that is not configurable here, with the upstream value it corresponds to
            (e.g. ``sample_stride: 1``: every frame is kept).
  Resource  a file of upstream's checkout, converted, read from the data folder (noise statistics).
  Location  a path on upstream's disk; its home is the field saying where our data is.
  Unread    a key PerfectRep's code never reads (its value has no effect there), with what the
            code does instead.

``upstream_values(config, file)`` reads a config back as that file's keys; ``differences`` lists
the keys where a config and a YAML disagree. MotionBERT's recipe where it differs is in
``MOTIONBERT_LITE`` (``configs/pretrain.py:lite`` against ``configs/pretrain/MB_lite.yaml``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

# Dataset names: ours (TFDS builder) -> upstream's subset / preprocessed file.
DATASETS = {
  "fit3d": ("Fit3D", "fit3d_preprocessed_data.pkl"),
  "h36m": ("H36M-SH", "h36m_sh_conf_cam_source_final.pkl"),
}
UPSTREAM_FILES = {
  "train_config.yaml": "pretrain",
  "ft_3d_pose_config.yaml": "pose3d",
  "action_config.yaml": "action",
}
_MISSING = object()


def get_field(config, path: str, default: Any = _MISSING) -> Any:
  """``config.a.b.c`` for ``path`` 'a.b.c'; ``default`` (or KeyError) when a part is missing."""
  node = config
  for part in path.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError, AttributeError):
      if default is _MISSING:
        raise KeyError(f"config has no field {path}") from None
      return default
  return node


def has_field(config, path: str) -> bool:
  try:
    get_field(config, path)
    return True
  except KeyError:
    return False


@dataclasses.dataclass(frozen=True)
class Home:
  """Where a key lives. ``fields`` must exist in the config; ``read`` gives the upstream value
  (None: nothing to compare); ``bundled``: the file of the data folder (``perfectrep_jax.data.shared``)
  standing for an upstream file, relative to the folder's root."""

  kind: str  # field | fixed | resource | location | unread
  fields: tuple[str, ...]
  read: Callable[[Any], Any] | None
  note: str = ""
  bundled: str = ""


def field(
  path: str,
  convert: Callable[[Any], Any] | None = None,
  *,
  also: tuple[str, ...] = (),
  read: Callable[[Any], Any] | None = None,
  note: str = "",
) -> Home:
  """A config field; ``convert`` maps its value to upstream's, ``read`` replaces the reading."""
  if read is None:
    read = (lambda c: get_field(c, path)) if convert is None else (lambda c: convert(get_field(c, path)))
  return Home("field", (path, *also), read, note)


def fixed(value: Any, note: str) -> Home:
  return Home("fixed", (), lambda c: value, note)


def resource(bundled: str, note: str) -> Home:
  return Home("resource", (), None, note, bundled)


def location(path: str, note: str) -> Home:
  return Home("location", (path,), None, note)


def unread(note: str) -> Home:
  return Home("unread", (), None, note)


# ---------------------------------------------------------------------------- readers
def _dataset(config) -> str:
  return str(config.data.source).split("/")[0]


def _subsets(config) -> list[str]:
  name = _dataset(config)
  return [DATASETS[name][0] if name in DATASETS else name]


def _dt_file(config) -> str:
  name = _dataset(config)
  return DATASETS[name][1] if name in DATASETS else f"({name}: a TFDS dataset, not a pickle)"


def _corrupts(config) -> bool:
  """Corruption runs only in the pretraining task."""
  return config.task == "pretrain"


def _lr_decay(config):
  return (
    config.optim.lr_decay if config.optim.schedule == "exponential" else f"(schedule {config.optim.schedule})"
  )


def _num_classes(config) -> int:
  return int(config.action.get("num_classes", 0)) or len(config.action.classes)


def _as_list(value):
  return None if value is None else [float(v) for v in value]


MODEL = {
  "maxlen": field("model.maxlen"),
  "dim_feat": field("model.dim_feat"),
  "mlp_ratio": field("model.mlp_ratio"),
  "depth": field("model.depth"),
  "dim_rep": field("model.dim_rep"),
  "num_heads": field("model.num_heads"),
  "att_fuse": field("model.att_fuse"),
  "num_joints": field("model.num_joints"),
}
GENERAL = {
  "finetune": field("init.finetune", note="the run starts from init.checkpoint's weights"),
  "partial_train": fixed(
    None,
    "every parameter trains (upstream's null); other values "
    "would need a field listing the parameter paths that train",
  ),
  "epochs": field("epochs", note="passes over the training set (total_steps follows)"),
  "weight_decay": field("optim.weight_decay"),
  "lr_decay": field(
    "optim.lr_decay",
    also=("optim.schedule",),
    read=_lr_decay,
    note="per-epoch factor of the 'exponential' schedule",
  ),
  "clip_len": field("data.clip_len"),
}
POSE = {
  **GENERAL,
  **MODEL,
  "no_eval": field("eval_every", lambda every: every == 0),
  "dropout": field(
    "model.drop_rate", note="MotionBERT passes it to the DSTformer; PerfectRep does not read it"
  ),
  "learning_rate": field("optim.lr"),
  "data_root": location(
    "data.data_dir",
    "upstream's directory of preprocessed pickles; here "
    "the TFDS data directory of `perfectrep-jax prepare` (None: default)",
  ),
  "subset_list": field("data.source", read=_subsets),
  "dt_file": field(
    "data.source", read=_dt_file, note="the preprocessed pickle; here the prepared TFDS dataset"
  ),
  "data_stride": field("data.stride"),
  "rootrel": unread(
    "PerfectRep's train.py always sets the depth of the first frame's root to "
    "0 (MotionBERT's rootrel: False); so does the data contract here"
  ),
  "sample_stride": fixed(1, "every frame of a sequence is kept"),
  "no_conf": unread(
    "PerfectRep's DSTformer always takes x, y and confidence (dim_in 3; the "
    "confidence is 1 for ground-truth 2D): model.dim_in here"
  ),
  "gt_2d": field("data.synthetic_2d", note="ground-truth 2D (confidence 1), also at test time"),
  "lambda_3d_velocity": field("loss.lambda_3d_velocity"),
  "lambda_scale": field("loss.lambda_scale"),
  "lambda_lv": field("loss.lambda_lv"),
  "lambda_lg": field("loss.lambda_lg"),
  "lambda_a": field("loss.lambda_a"),
  "lambda_av": field("loss.lambda_av"),
  "synthetic": field("data.synthetic_2d", note="2D input from the 3D target in training"),
  "flip": field("data.flip"),
  "mask_ratio": field(
    "corruption.mask_ratio",
    also=("corruption.mask",),
    read=lambda c: c.corruption.mask_ratio if c.corruption.mask and _corrupts(c) else 0.0,
  ),
  "mask_T_ratio": field(
    "corruption.mask_t_ratio",
    also=("corruption.mask",),
    read=lambda c: c.corruption.mask_t_ratio if c.corruption.mask and _corrupts(c) else 0.0,
  ),
  "noise": field("corruption.noise", read=lambda c: bool(c.corruption.noise) and _corrupts(c)),
  "noise_path": resource(
    "params/synthetic_noise.npz", "upstream's noise statistics, converted to .npz, read from the data folder"
  ),
  "d2c_params_path": resource(
    "params/d2c_params.npz", "upstream's distance-to-confidence parameters, converted"
  ),
}
ACTION = {
  **GENERAL,
  **MODEL,
  "lr_backbone": field(
    "optim.backbone_lr_mult", also=("optim.lr",), read=lambda c: c.optim.lr * c.optim.backbone_lr_mult
  ),
  "lr_head": field("optim.lr"),
  "model_version": fixed("class", "the classification head (fc1, BatchNorm, ReLU, fc2)"),
  "hidden_dim": field("action.hidden_dim"),
  "dropout_ratio": field("action.dropout_ratio"),
  "dataset": field("data.source", read=_subsets),
  "action_classes": field(
    "action.num_classes", read=_num_classes, note="outputs of the classifier (0: one per action.classes)"
  ),
  "random_move": field(
    "action.random_move",
    note="MotionBERT's random affine move of the 2D clip in training; PerfectRep does not read it",
  ),
  "scale_range_train": field("data.scale_range", _as_list),
  "scale_range_test": field("eval.scale_range", _as_list, note="MotionBERT's fixed rescaling of test clips"),
}
TABLES: dict[str, dict[str, Home]] = {
  "train_config.yaml": POSE,
  "ft_3d_pose_config.yaml": {k: v for k, v in POSE.items() if k not in ("noise_path", "d2c_params_path")},
  "action_config.yaml": ACTION,
}
# MotionBERT's recipe where it differs: MotionBERT-Lite's model and batch (configs/pretrain.py:lite
# against MotionBERT's configs/pretrain/MB_lite.yaml).
MOTIONBERT_LITE = {**MODEL, "batch_size": field("batch_size")}


# ---------------------------------------------------------------------------- reading back
def same(a: Any, b: Any) -> bool:
  """Equal as upstream values: numbers within float round-off, lists and tuples alike."""
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
  if isinstance(a, bool) or isinstance(b, bool):
    return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
  if isinstance(a, (int, float)) and isinstance(b, (int, float)):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
  return a == b


def missing_fields(config, table: Mapping[str, Home]) -> dict[str, list[str]]:
  """{key: fields its home needs that the config lacks}."""
  out = {}
  for key, home in table.items():
    lacking = [f for f in home.fields if not has_field(config, f)]
    if lacking:
      out[key] = lacking
  return out


def upstream_values(config, table: Mapping[str, Home]) -> dict[str, Any]:
  """The config read back as upstream's keys (those with a value to read and their fields)."""
  lacking = missing_fields(config, table)
  return {
    key: home.read(config) for key, home in table.items() if home.read is not None and key not in lacking
  }


def differences(config, table: Mapping[str, Home], yaml: Mapping[str, Any]) -> dict[str, str]:
  """{key: why} for every YAML key the config does not reproduce (or the table does not know)."""
  out: dict[str, str] = {}
  lacking = missing_fields(config, table)
  values = upstream_values(config, table)
  for key, want in yaml.items():
    if key not in table:
      out[key] = "no home in the table"
    elif key in lacking:
      out[key] = f"needs config field(s) {lacking[key]}"
    elif key in values and not same(values[key], want):
      out[key] = f"upstream {want!r}, config gives {values[key]!r}"
  return out
