"""The weights of the 3D pose loss terms: a NamedTuple, light to import (no JAX).

``perfectrep_jax.losses`` weighs its terms with them; the training configs
(``train/config_base.py``) take their ``loss`` defaults from ``LossWeights.upstream()``, so the two
never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple


class LossWeights(NamedTuple):
  """Weights of the 3D pose loss terms, named as in PerfectRep's ``train_config.yaml``.

  A NamedTuple, so it is a pytree: the weights may be Python floats (closed over by ``jit``) or
  arrays passed as arguments (sweeps without recompiling). The defaults give plain MPJPE;
  ``LossWeights.upstream()`` gives the values of PerfectRep's ``train_config.yaml`` and
  MotionBERT's ``MB_pretrain.yaml``.
  """

  lambda_3d_pos: float = 1.0  # upstream has no such key: its MPJPE term always has weight 1
  lambda_scale: float = 0.0  # n_mpjpe
  lambda_3d_velocity: float = 0.0  # velocity
  lambda_lv: float = 0.0  # limb_variance
  lambda_lg: float = 0.0  # limb_gt
  lambda_a: float = 0.0  # angle
  lambda_av: float = 0.0  # angle_velocity
  # PETR's kinematic constraints on the prediction alone (``perfectrep_jax.bones``); not upstream.
  lambda_hinge: float = 0.0  # hinge_loss: knees and elbows bent backwards
  lambda_symmetry: float = 0.0  # symmetry_loss: left/right bone lengths
  lambda_length: float = 0.0  # length_constancy_loss: bone lengths over the clip

  @classmethod
  def upstream(cls) -> "LossWeights":
    """The weights PerfectRep and MotionBERT pretrain with (the limb and angle terms off)."""
    return cls(lambda_3d_pos=1.0, lambda_scale=0.5, lambda_3d_velocity=20.0)

  @classmethod
  def from_mapping(cls, weights: Mapping[str, float]) -> "LossWeights":
    """Reads the ``lambda_*`` keys of a config mapping; absent keys keep the defaults.

    Other keys are ignored (a whole training config may be passed), but an unknown key
    starting with ``lambda_`` is an error, so a misspelt weight cannot silently be 0.
    """
    unknown = sorted(k for k in weights if k.startswith("lambda_") and k not in cls._fields)
    if unknown:
      raise ValueError(f"unknown loss weight(s) {unknown}; known: {list(cls._fields)}")
    return cls(**{k: weights[k] for k in cls._fields if k in weights})
