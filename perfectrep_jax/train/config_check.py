"""Validation of a training config before anything runs: one clear error per problem found."""

from __future__ import annotations

import math

import jax

from perfectrep_jax.data.corruption import CorruptionConfig
from perfectrep_jax.data.pipeline import PipelineConfig
from perfectrep_jax.errors import UserError
from perfectrep_jax.losses import LossWeights
from perfectrep_jax.models import model_dir
from perfectrep_jax.models.dstformer import ATTENTION_IMPLS, QKV_LAYOUTS, REMAT_POLICIES
from perfectrep_jax.train.optim import SCHEDULES
from perfectrep_jax.train.sharding import mesh_shape


def describe_data(config) -> str:
  """One line naming the data a config reads; the bundled demo set is said to be one."""
  source = config.data.get("source")
  if source == "demo":
    return (
      "data: demo, the small bundled demo mocap; not a benchmark (its figures do not compare "
      "with Fit3D or Human3.6M results; set --config.data.source for a prepared dataset)"
    )
  where = config.data.get("data_dir")
  return f"data: {source}" + (f" from {where}" if where else "")


def check_config(config, num_devices: int | None = None) -> None:
  """Raises ``UserError`` listing every problem of ``config`` (unknown fields, bad values); its
  mesh is checked against ``num_devices`` (default: this process's, ``jax.device_count()``)."""
  problems: list[str] = []

  def attempt(what, fn):
    try:
      fn()
    except UserError as e:
      problems.append(f"{what}: {e}")
    except (ValueError, TypeError, KeyError) as e:
      problems.append(f"{what}: {e}")

  if config.task not in ("pretrain", "pose3d", "action"):
    problems.append(f"task: must be pretrain, pose3d or action, not {config.task!r}")
  for name in ("total_steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
    if int(config[name]) < 1:
      problems.append(f"{name}: must be positive, got {config[name]}")
  if config.eval_every < 0:
    problems.append(f"eval_every: must be >= 0, got {config.eval_every}")
  attempt("model", lambda: model_dir.backbone_config(config.model))
  name = config.model.get("name", "dstformer")
  if name not in model_dir.MODEL_NAMES:
    problems.append(f"model.name: {' or '.join(model_dir.MODEL_NAMES)}, not {name!r}")
  elif name != "dstformer":  # the baseline's own widths, checked as its config
    attempt("model", lambda: model_dir.lifter_config(config.model))
  if not config.data.get("source"):
    problems.append(
      "data.source: name the data, e.g. --config.data.source=demo (the bundled demo "
      "mocap) or a dataset prepared by `perfectrep-jax prepare`, such as fit3d/clip243"
    )
  for name, value in (
    ("data.scale_range", config.data.get("scale_range")),
    ("eval.scale_range", config.eval.get("scale_range")),
  ):
    if value is not None and not (
      isinstance(value, (tuple, list))
      and len(value) == 2
      and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)
      and value[0] <= value[1]
    ):
      problems.append(
        f"{name}: two positive numbers (low, high), e.g. --config.{name}='(1.0, 3.0)', not {value!r}"
      )
  rules = config.get("sharding_rules")
  if not isinstance(rules, (tuple, list)) or not all(
    isinstance(r, (tuple, list))
    and len(r) == 2
    and isinstance(r[0], str)
    and (r[1] is None or isinstance(r[1], (str, tuple, list)))
    for r in rules
  ):
    problems.append(
      f"sharding_rules: pairs (logical axis, mesh axis or None), e.g. "
      f"(('embed', 'fsdp'), ('mlp', 'tensor')), not {rules!r}"
    )
  attempt("data", lambda: PipelineConfig.from_config(config.data, batch_size=1))
  if config.data.clip_len > config.model.maxlen:
    problems.append(f"data.clip_len {config.data.clip_len} exceeds model.maxlen {config.model.maxlen}")
  attempt("corruption", lambda: CorruptionConfig.from_config(config.corruption))
  attempt("loss", lambda: LossWeights.from_mapping(dict(config.loss)))
  if config.optim.schedule not in SCHEDULES:
    problems.append(f"optim.schedule: one of {', '.join(SCHEDULES)}, not {config.optim.schedule!r}")
  elif config.optim.schedule == "sgdr":
    problems += _cycle_problems(config.optim, config.total_steps)
  if config.compute_dtype not in ("float32", "bfloat16", "float16"):
    problems.append(f"compute_dtype: float32, bfloat16 or float16, not {config.compute_dtype!r}")
  attempt("mesh", lambda: mesh_shape(dict(config.mesh), num_devices or jax.device_count()))
  if (config.get("remat") or None) not in REMAT_POLICIES:
    problems.append(f"remat: one of {[p for p in REMAT_POLICIES if p] + ['']}, not {config.remat!r}")
  if config.get("attention_impl", "auto") not in ATTENTION_IMPLS:
    problems.append(f"attention_impl: one of {', '.join(ATTENTION_IMPLS)}, not {config.attention_impl!r}")
  if config.get("qkv_layout", "auto") not in QKV_LAYOUTS:
    problems.append(f"qkv_layout: {', '.join(QKV_LAYOUTS)}, not {config.qkv_layout!r}")
  if config.get("scan_layers", False) not in (True, False):
    problems.append(f"scan_layers: True or False, not {config.scan_layers!r}")
  elif config.get("scan_layers"):
    rates = ("drop_rate", "attn_drop_rate", "drop_path_rate")
    dropping = [f"model.{name} {config.model[name]}" for name in rates if (config.model.get(name) or 0) > 0]
    if dropping:  # a scanned depth must be one module, with no RNG state to carry between depths
      problems.append(f"scan_layers: needs no dropout in training, not {', '.join(dropping)}")
  if config.task == "action" and not config.action.classes:
    problems.append("action.classes: list the action names to classify")
  if config.task == "action" and 0 < config.action.get("num_classes", 0) < len(config.action.classes):
    problems.append(
      f"action.num_classes {config.action.num_classes} is fewer than the "
      f"{len(config.action.classes)} classes named"
    )
  if config.init.get("finetune", False) and not config.init.checkpoint:
    problems.append(
      "init.finetune is set: give the weights to start from with --config.init.checkpoint=DIR_OR_BIN"
    )
  if config.get("epochs", 0) < 0:
    problems.append(f"epochs: must be >= 0, got {config.epochs}")
  problems += [
    f"{name}: must be a finite number, got {value}"
    for name, value in _floats(config.to_dict())
    if not math.isfinite(value)
  ]
  if problems:
    problems = list(dict.fromkeys(problems))  # an unknown model field: said once, not per model config
    raise UserError("invalid config:\n  " + "\n  ".join(problems))


def _floats(tree, prefix: str = ""):
  """(dotted name, value) of every float in a nested config dict (an override such as
  optim.lr=1e999 gives inf, which no later check would catch before the loss is NaN)."""
  items = (
    tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
  )
  for key, value in items:
    name = f"{prefix}.{key}" if prefix else str(key)
    if isinstance(value, float):
      yield name, value
    else:
      yield from _floats(value, name)


def _cycle_problems(optim, total_steps: int) -> list[str]:
  """What is wrong with ``sgdr``'s cycles: one entry each, positive lengths adding up to the run."""
  fields = ("cycle_steps", "cycle_lr_factors", "cycle_warmup_steps")
  try:
    steps, factors, warmups = ([float(v) for v in optim.get(f) or ()] for f in fields)
  except (TypeError, ValueError):
    return [f"optim.{', optim.'.join(fields)}: lists of numbers for schedule sgdr"]
  if not steps or not len(steps) == len(factors) == len(warmups):
    return [
      f"optim.{', optim.'.join(fields)}: one entry per cycle each for schedule sgdr (got {len(steps)}, {len(factors)}, {len(warmups)})"
    ]
  problems = []
  if sum(steps) != total_steps:
    problems.append(f"optim.cycle_steps add up to {sum(steps):g}, total_steps is {total_steps}")
  if any(s < 1 or w < 0 or w >= s for s, w in zip(steps, warmups)):
    problems.append(
      "optim.cycle_steps: each cycle at least 1 step, longer than its warm-up (cycle_warmup_steps >= 0)"
    )
  if any(not (math.isfinite(f) and f > 0) for f in factors):
    problems.append("optim.cycle_lr_factors: positive finite numbers")
  return problems
