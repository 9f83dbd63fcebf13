"""Heads on top of the DSTformer representation: action classification and action embedding.

The action model reads clips of several persons, (N, M, T, J, C): N clips, M persons, T frames.
Each person's clip goes through the backbone; the representation is averaged over time, the
joints are concatenated and the persons averaged, then a head maps it to class logits
(``fc1`` -> BatchNorm -> ReLU -> ``fc2``) or to a unit-norm embedding (``fc1`` -> L2 norm).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from perfectrep_jax.models import bounds
from perfectrep_jax.models.dstformer import DSTformer, DSTformerConfig
from perfectrep_jax.models.kernels import dense

Array = jax.Array

BATCHNORM_EPS = 1e-5
BATCHNORM_MOMENTUM = 0.1  # PyTorch's convention: weight of the new batch in the running average


@dataclasses.dataclass(frozen=True)
class ActionConfig(bounds.ModelConfig):
  """The action model: a backbone config plus the head's widths.

  ``hidden_dim`` is the width of ``fc1``. Upstream's classification head is always 2048 wide
  (``ActionNet`` never passes ``hidden_dim`` on), so converted checkpoints carry their width.
  """

  backbone: DSTformerConfig
  num_classes: int = 60
  hidden_dim: int = 2048
  dropout_ratio: float = 0.0
  version: str = "class"  # "class" (logits) or "embed" (L2-normalised fc1)

  config_name: ClassVar[str] = "an action"

  def __post_init__(self):
    if self.version not in ("class", "embed"):
      raise ValueError(
        f"action head version must be 'class' or 'embed', got {bounds.short_repr(self.version)}"
      )
    if not isinstance(self.backbone, DSTformerConfig):
      raise ValueError("an action model needs a DSTformer backbone config")
    bounds.check_int("num_classes", self.num_classes, 0, 1 << 20)
    bounds.check_int("hidden_dim", self.hidden_dim, 1, bounds.MAX_WIDTH)
    bounds.check_real("dropout_ratio", self.dropout_ratio, 0.0, 1.0, high_open=True)
    b = self.backbone
    head = b.rep_width * b.num_joints * self.hidden_dim + self.hidden_dim
    if self.version == "class":  # BatchNorm (scale, bias, mean, var) and fc2
      head += 4 * self.hidden_dim + self.hidden_dim * self.num_classes + self.num_classes
    bounds.check_parameter_count(b.num_parameters() + head, "action model")

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> ActionConfig:
    if not isinstance(d, dict) or "backbone" not in d:
      raise ValueError("an action config is a mapping with a 'backbone' DSTformer config")
    d = cls.checked_fields(d)
    d["backbone"] = DSTformerConfig.from_dict(d["backbone"])
    return cls(**d)


def normalize_clip_3d(x: Array) -> Array:
  """(..., T, J, 3) -> the clip relative to its first frame's root, scaled to unit RMS radius.

  Makes a 3D clip's class independent of where the person stands and how large they appear, so
  that a classifier trained on dataset clips reads the lifter's output of any video.
  """
  x = x - x[..., :1, :1, :]
  radius = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(x), axis=-1), axis=(-2, -1), keepdims=True))
  return x / jnp.maximum(radius[..., None], 1e-6)


class BatchNorm(nnx.Module):
  """BatchNorm over the last axis with PyTorch's ``BatchNorm1d`` semantics.

  Training normalises with the biased batch variance and updates the running variance with the
  unbiased one, ``running = (1 - momentum) * running + momentum * batch``; evaluation uses the
  running statistics. Under ``jax.jit`` with a batch sharded over devices the batch statistics
  are global reductions, so replicas agree without an explicit all-reduce.
  """

  def __init__(
    self,
    num_features: int,
    *,
    epsilon: float = BATCHNORM_EPS,
    momentum: float = BATCHNORM_MOMENTUM,
    use_running_average: bool = False,
  ):
    self.epsilon = epsilon
    self.momentum = momentum
    self.use_running_average = use_running_average
    self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
    self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
    self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))

  def __call__(self, x: Array) -> Array:
    x32 = x.astype(jnp.float32)
    if self.use_running_average:
      mean, var = self.mean[...], self.var[...]
    else:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x32, axis=axes)
      var = jnp.mean(jnp.square(x32 - mean), axis=axes)
      n = x32.size // x32.shape[-1]
      unbiased = var * (n / max(n - 1, 1))
      m = self.momentum
      self.mean[...] = (1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
      self.var[...] = (1 - m) * self.var[...] + m * jax.lax.stop_gradient(unbiased)
      self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
    y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.bias[...]
    return y.astype(x.dtype)


def pool_persons(feat: Array) -> Array:
  """(N, M, T, J, C) -> (N, J*C): mean over time, joints concatenated, mean over persons."""
  n, m, _, j, c = feat.shape
  return feat.mean(axis=2).reshape(n, m, j * c).mean(axis=1)


class _PooledHead(nnx.Module):
  """dropout -> pool -> fc1, where both action heads start: (N, M, T, J, C) -> (N, hidden_dim)."""

  def __init__(
    self,
    rep_width: int,
    num_joints: int,
    hidden_dim: int,
    dropout_ratio: float,
    *,
    dtype=None,
    rngs: nnx.Rngs,
  ):
    self.dropout = nnx.Dropout(dropout_ratio, rngs=rngs)
    self.fc1 = dense(rep_width * num_joints, hidden_dim, ("rep", "mlp"), dtype=dtype, rngs=rngs)

  def pooled(self, feat: Array) -> Array:
    return self.fc1(pool_persons(self.dropout(feat)))


class ActionHeadClassification(_PooledHead):
  """dropout -> pool -> fc1 -> BatchNorm -> ReLU -> fc2: (N, M, T, J, C) -> (N, classes)."""

  def __init__(
    self,
    rep_width: int,
    num_joints: int,
    hidden_dim: int,
    num_classes: int,
    dropout_ratio: float,
    *,
    dtype=None,
    rngs: nnx.Rngs,
  ):
    super().__init__(rep_width, num_joints, hidden_dim, dropout_ratio, dtype=dtype, rngs=rngs)
    self.bn = BatchNorm(hidden_dim)
    self.fc2 = dense(hidden_dim, num_classes, ("mlp", None), dtype=dtype, rngs=rngs)

  def __call__(self, feat: Array) -> Array:
    return self.fc2(jax.nn.relu(self.bn(self.pooled(feat))))


class ActionHeadEmbed(_PooledHead):
  """dropout -> pool -> fc1 -> L2 normalise: (N, M, T, J, C) -> (N, hidden_dim), unit norm."""

  def __call__(self, feat: Array) -> Array:
    x = self.pooled(feat).astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, 1e-12)  # torch.nn.functional.normalize's eps


class ActionNet(nnx.Module):
  """DSTformer backbone + action head over (N, M, T, J, dim_in) clips."""

  def __init__(self, cfg: ActionConfig, *, dtype=None, rngs: nnx.Rngs, **options):
    self.config = cfg
    self.backbone = DSTformer(cfg.backbone, dtype=dtype, rngs=rngs, **options)
    b = cfg.backbone
    if cfg.version == "class":
      self.head = ActionHeadClassification(
        b.rep_width, b.num_joints, cfg.hidden_dim, cfg.num_classes, cfg.dropout_ratio, dtype=dtype, rngs=rngs
      )
    else:
      self.head = ActionHeadEmbed(
        b.rep_width, b.num_joints, cfg.hidden_dim, cfg.dropout_ratio, dtype=dtype, rngs=rngs
      )

  def __call__(self, x: Array) -> Array:
    n, m, t, j, c = x.shape
    rep = self.backbone.representation(x.reshape(n * m, t, j, c))
    return self.head(rep.reshape(n, m, t, j, rep.shape[-1]))
