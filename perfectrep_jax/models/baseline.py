"""A per-frame MLP lifter (Martinez et al., 2017): the baseline the DSTformer is measured against.

Each frame's 17 x (x, y, confidence) is flattened, lifted by residual blocks of
Linear -> LayerNorm -> ReLU -> dropout, and mapped to 17 x 3. No frame sees another, so the
comparison with the DSTformer isolates what spatio-temporal attention adds.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
from flax import nnx

from perfectrep_jax.models import bounds
from perfectrep_jax.models.kernels import dense, layer_norm

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MLPLifterConfig(bounds.LifterConfig):
  """The baseline's widths; ``maxlen`` is only checked (each frame is lifted alone)."""

  hidden: int = 1024
  num_blocks: int = 2

  config_name: ClassVar[str] = "an MLP lifter"

  def __post_init__(self):
    self.check_clip(
      {"dim_out": (1, bounds.MAX_WIDTH), "hidden": (1, bounds.MAX_WIDTH), "num_blocks": (0, bounds.MAX_DEPTH)}
    )
    j, h = self.num_joints, self.hidden
    n = j * self.dim_in * h + h + self.num_blocks * (2 * (h * h + h) + 4 * h)
    n += h * j * self.dim_out + j * self.dim_out
    bounds.check_parameter_count(n, "MLP lifter")


class _ResidualBlock(nnx.Module):
  def __init__(self, width: int, drop: float, *, dtype=None, rngs: nnx.Rngs):
    self.fc1 = dense(width, width, ("embed", "mlp"), dtype=dtype, rngs=rngs)
    self.norm1 = layer_norm(width, dtype=dtype, rngs=rngs)
    self.fc2 = dense(width, width, ("mlp", "embed"), dtype=dtype, rngs=rngs)
    self.norm2 = layer_norm(width, dtype=dtype, rngs=rngs)
    self.drop = nnx.Dropout(drop, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    y = self.drop(jax.nn.relu(self.norm1(self.fc1(x))))
    y = self.drop(jax.nn.relu(self.norm2(self.fc2(y))))
    return x + y


class MLPLifter(nnx.Module):
  """(B, T, J, dim_in) -> (B, T, J, dim_out), every frame on its own."""

  def __init__(self, cfg: MLPLifterConfig, *, dtype=None, rngs: nnx.Rngs):
    self.config = cfg
    self.inp = dense(cfg.num_joints * cfg.dim_in, cfg.hidden, (None, "embed"), dtype=dtype, rngs=rngs)
    self.blocks = nnx.List(
      [_ResidualBlock(cfg.hidden, cfg.drop_rate, dtype=dtype, rngs=rngs) for _ in range(cfg.num_blocks)]
    )
    self.out = dense(cfg.hidden, cfg.num_joints * cfg.dim_out, ("embed", None), dtype=dtype, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    b, t, j, c = x.shape
    if t > self.config.maxlen:
      raise ValueError(f"clip of {t} frames is longer than the model's maxlen {self.config.maxlen}")
    h = jax.nn.relu(self.inp(x.reshape(b, t, j * c)))
    for block in self.blocks:
      h = block(h)
    return self.out(h).reshape(b, t, j, self.config.dim_out)
