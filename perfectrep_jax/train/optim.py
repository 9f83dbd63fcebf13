"""The optimizer from config: AdamW, a learning-rate schedule, clipping, accumulation, groups.

Config fields (``config.optim``):
  lr: peak learning rate (the head's, when groups differ).
  weight_decay: AdamW's decoupled weight decay (PyTorch's AdamW: applied to every parameter).
  b1, b2, eps: Adam's constants (PyTorch defaults 0.9, 0.999, 1e-8).
  schedule: ``exponential`` (upstream: ``lr *= lr_decay`` after every epoch) | ``warmup_cosine``
    | ``sgdr`` (warm-up cosine cycles, restarted: Loshchilov & Hutter 2017) | ``constant``.
  lr_decay: the per-epoch factor of ``exponential``.
  warmup_steps: linear warm-up of ``warmup_cosine`` (and optional for the others).
  end_lr_factor: the cosine's final learning rate as a fraction of its peak.
  cycle_steps, cycle_lr_factors, cycle_warmup_steps: ``sgdr``'s cycles, one entry each: length in
    steps (they add up to ``total_steps``), peak as a fraction of ``lr``, linear warm-up steps.
  clip_norm: clip gradients to this global norm (0 = off).
  accumulate_steps: average gradients over this many micro-batches before each update.
  backbone_lr_mult: learning rate of every parameter outside the top-level ``head`` (the
    backbone) as a fraction of ``lr`` (PerfectRep's action config: 1e-4 / 1e-3 = 0.1); 1.0 = one
    group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import optax


SCHEDULES = ("exponential", "warmup_cosine", "sgdr", "constant")


def learning_rate_schedule(
  cfg: Mapping[str, Any], lr: float, total_steps: int, steps_per_epoch: int
) -> optax.Schedule:
  """The schedule of one parameter group, peaking at ``lr``."""
  warmup = int(cfg.get("warmup_steps", 0))
  name = cfg.get("schedule", "exponential")
  if name == "exponential":
    main = optax.exponential_decay(
      lr,
      transition_steps=max(steps_per_epoch, 1),
      decay_rate=float(cfg.get("lr_decay", 0.99)),
      staircase=True,
    )
  elif name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=lr,
      warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1),
      end_value=lr * float(cfg.get("end_lr_factor", 0.0)),
    )
  elif name == "sgdr":
    return optax.sgdr_schedule(
      dict(
        init_value=0.0,
        peak_value=lr * float(factor),
        warmup_steps=int(cycle_warmup),
        decay_steps=int(steps),
        end_value=lr * float(factor) * float(cfg.get("end_lr_factor", 0.0)),
      )
      for steps, factor, cycle_warmup in zip(
        cfg["cycle_steps"], cfg["cycle_lr_factors"], cfg["cycle_warmup_steps"], strict=True
      )
    )
  elif name == "constant":
    main = optax.constant_schedule(lr)
  else:
    raise ValueError(f"optim.schedule must be one of {', '.join(SCHEDULES)}; got {name!r}")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def _adamw(cfg: Mapping[str, Any], schedule: optax.Schedule) -> optax.GradientTransformation:
  return optax.adamw(
    schedule,
    b1=float(cfg.get("b1", 0.9)),
    b2=float(cfg.get("b2", 0.999)),
    eps=float(cfg.get("eps", 1e-8)),
    weight_decay=float(cfg.get("weight_decay", 0.01)),
  )


def param_groups(params: Any) -> Any:
  """Labels every parameter ``head`` (under the top-level ``head``) or ``backbone`` (the rest).

  The lifter's ``head`` is its regression layer, the action model's its classification head.
  """

  def label(path, _):
    top = path[0].key if path and hasattr(path[0], "key") else None
    return "head" if top == "head" else "backbone"

  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(
  cfg: Mapping[str, Any], total_steps: int, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, dict[str, optax.Schedule]]:
  """Builds the optax transformation and returns it with its schedules by group name.

  ``total_steps`` and ``steps_per_epoch`` count optimizer updates (after accumulation).
  """
  lr = float(cfg.get("lr", 5e-4))
  mult = float(cfg.get("backbone_lr_mult", 1.0))
  schedules = {"head": learning_rate_schedule(cfg, lr, total_steps, steps_per_epoch)}
  if mult != 1.0:
    schedules["backbone"] = learning_rate_schedule(cfg, lr * mult, total_steps, steps_per_epoch)
    tx = optax.multi_transform({g: _adamw(cfg, s) for g, s in schedules.items()}, param_groups)
  else:
    tx = _adamw(cfg, schedules["head"])
  clip = float(cfg.get("clip_norm", 0.0))
  if clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  accumulate = int(cfg.get("accumulate_steps", 1))
  if accumulate > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=accumulate)
  return tx, schedules
