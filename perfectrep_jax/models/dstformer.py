"""DSTformer: the dual-stream spatio-temporal transformer of MotionBERT / PerfectRep, in Flax NNX.

Shapes: B clips, T frames, J joints, C = ``dim_feat`` channels, H heads of D = C // H channels.
The network keeps activations as (B, T, J, C) throughout. Spatial attention attends over the J
joints of one frame, temporal attention over the T frames of one joint. Each depth runs two blocks
on the same input, spatial-then-temporal (``blocks_st``) and temporal-then-spatial (``blocks_ts``),
and fuses them per token with a learned softmax weight (``ts_attn``) or by averaging.

Parameter names mirror the upstream PyTorch modules (``joints_embed``, ``blocks_st[i].attn_s.qkv``,
``ts_attn[i]``, ``pre_logits``, ``head``...) so that the converter in ``perfectrep_jax.interop`` is
a table of renames and transposes. Every parameter carries logical axis names (``embed``, ``mlp``,
``heads``, ``qkv``, ``rep``) that ``perfectrep_jax.train.sharding`` maps onto a device mesh.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

LAYERNORM_EPS = 1e-6
_INIT_STD = 0.02


@dataclasses.dataclass(frozen=True)
class DSTformerConfig:
  """Hyper-parameters of the DSTformer, named as upstream's constructor arguments.

  ``dim_out = 0`` drops the regression head (the network returns the representation);
  ``dim_rep = 0`` drops ``pre_logits`` (the representation is the normalised feature of width
  ``dim_feat``; upstream would build a head of input width 0 there, which cannot work, so the head
  reads ``dim_feat`` channels instead). ``drop_path_rate`` grows linearly from 0 at the first depth
  to the given rate at the last, as upstream's stochastic depth rule.
  """

  dim_in: int = 3
  dim_out: int = 3
  dim_feat: int = 256
  dim_rep: int = 512
  depth: int = 5
  num_heads: int = 8
  mlp_ratio: float = 4.0
  num_joints: int = 17
  maxlen: int = 243
  qkv_bias: bool = True
  qk_scale: float | None = None
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.0
  att_fuse: bool = True

  def __post_init__(self):
    if self.dim_feat % self.num_heads:
      raise ValueError(f"dim_feat {self.dim_feat} is not divisible by num_heads {self.num_heads}")
    for name in ("dim_in", "dim_feat", "depth", "num_heads", "num_joints", "maxlen"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.dim_out < 0 or self.dim_rep < 0:
      raise ValueError("dim_out and dim_rep must be >= 0 (0 = no head / no pre_logits)")

  @property
  def rep_width(self) -> int:
    """Channels of the motion representation (``dim_rep``, or ``dim_feat`` without pre_logits)."""
    return self.dim_rep or self.dim_feat

  @property
  def head_dim(self) -> int:
    return self.dim_feat // self.num_heads

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "DSTformerConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
      raise ValueError(f"unknown DSTformer config fields: {sorted(unknown)}")
    return cls(**d)


def _trunc_normal(axes: tuple[str | None, ...]):
  return nnx.with_partitioning(
      jax.nn.initializers.truncated_normal(_INIT_STD), axes, eager_sharding=False)


def _constant(value: float, axes: tuple[str | None, ...]):
  return nnx.with_partitioning(
      jax.nn.initializers.constant(value), axes, eager_sharding=False)


def dense(in_features: int, out_features: int, axes: tuple[str | None, str | None], *,
          use_bias: bool = True, dtype=None, rngs: nnx.Rngs) -> nnx.Linear:
  """A Linear layer with upstream's init (truncated normal 0.02, zero bias) and logical axes."""
  return nnx.Linear(
      in_features, out_features, use_bias=use_bias, dtype=dtype,
      kernel_init=_trunc_normal(axes), bias_init=_constant(0.0, (axes[1],)), rngs=rngs)


def layer_norm(dim: int, *, dtype=None, rngs: nnx.Rngs) -> nnx.LayerNorm:
  """LayerNorm with eps 1e-6 and the two-pass variance PyTorch uses."""
  return nnx.LayerNorm(
      dim, epsilon=LAYERNORM_EPS, dtype=dtype, use_fast_variance=False,
      scale_init=_constant(1.0, ("embed",)), bias_init=_constant(0.0, ("embed",)), rngs=rngs)


class MLP(nnx.Module):
  """fc1 -> exact GELU -> dropout -> fc2 -> dropout, on (..., C)."""

  def __init__(self, dim: int, hidden: int, drop: float, *, dtype=None, rngs: nnx.Rngs):
    self.fc1 = dense(dim, hidden, ("embed", "mlp"), dtype=dtype, rngs=rngs)
    self.fc2 = dense(hidden, dim, ("mlp", "embed"), dtype=dtype, rngs=rngs)
    self.drop = nnx.Dropout(drop, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    x = self.drop(jax.nn.gelu(self.fc1(x), approximate=False))
    return self.drop(self.fc2(x))


class Attention(nnx.Module):
  """Multi-head self-attention over the joints (``mode='spatial'``) or frames (``'temporal'``).

  ``qkv`` is one (C -> 3C) projection whose output splits as (3, heads, head_dim), as upstream.
  Input and output are (B, T, J, C).
  """

  def __init__(self, cfg: DSTformerConfig, mode: str, *, dtype=None, rngs: nnx.Rngs):
    if mode not in ("spatial", "temporal"):
      raise ValueError(f"attention mode must be 'spatial' or 'temporal', got {mode!r}")
    self.mode = mode
    self.num_heads = cfg.num_heads
    self.scale = cfg.qk_scale or cfg.head_dim ** -0.5
    c = cfg.dim_feat
    self.qkv = dense(c, 3 * c, ("embed", "qkv"), use_bias=cfg.qkv_bias, dtype=dtype, rngs=rngs)
    self.proj = dense(c, c, ("heads", "embed"), dtype=dtype, rngs=rngs)
    self.attn_drop = nnx.Dropout(cfg.attn_drop_rate, rngs=rngs)
    self.proj_drop = nnx.Dropout(cfg.drop_rate, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    b, t, j, c = x.shape
    h = self.num_heads
    qkv = self.qkv(x).reshape(b, t, j, 3, h, c // h)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]  # (B, T, J, H, D)
    if self.mode == "temporal":  # sequences run over frames: (B, J, T, H, D)
      q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))
    lead = q.shape[:2]
    q, k, v = (a.reshape((-1,) + a.shape[2:]) for a in (q, k, v))  # (B*, L, H, D)
    out = self._attend(q, k, v).reshape(lead + q.shape[1:])
    if self.mode == "temporal":
      out = jnp.swapaxes(out, 1, 2)
    out = self.proj(out.reshape(b, t, j, c))
    return self.proj_drop(out)

  def _attend(self, q: Array, k: Array, v: Array) -> Array:
    """softmax(q k^T * scale) v over axis 1 of (N, L, H, D) arrays."""
    use_dropout = self.attn_drop.rate > 0 and not self.attn_drop.deterministic
    if not use_dropout:
      return jax.nn.dot_product_attention(q, k, v, scale=self.scale)
    logits = jnp.einsum("nlhd,nmhd->nhlm", q, k) * self.scale
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    probs = self.attn_drop(probs)
    return jnp.einsum("nhlm,nmhd->nlhd", probs, v)


class Block(nnx.Module):
  """Pre-norm attention + MLP, twice: spatial then temporal (``order='st'``) or the reverse.

  Stochastic depth drops the residual branch per (clip, frame), as upstream's DropPath does on
  its (B*T, J, C) layout.
  """

  def __init__(self, cfg: DSTformerConfig, order: str, drop_path: float, *, dtype=None,
               rngs: nnx.Rngs):
    if order not in ("st", "ts"):
      raise ValueError(f"block order must be 'st' or 'ts', got {order!r}")
    self.order = order
    c = cfg.dim_feat
    hidden = int(c * cfg.mlp_ratio)
    self.norm1_s = layer_norm(c, dtype=dtype, rngs=rngs)
    self.norm1_t = layer_norm(c, dtype=dtype, rngs=rngs)
    self.attn_s = Attention(cfg, "spatial", dtype=dtype, rngs=rngs)
    self.attn_t = Attention(cfg, "temporal", dtype=dtype, rngs=rngs)
    self.norm2_s = layer_norm(c, dtype=dtype, rngs=rngs)
    self.norm2_t = layer_norm(c, dtype=dtype, rngs=rngs)
    self.mlp_s = MLP(c, hidden, cfg.drop_rate, dtype=dtype, rngs=rngs)
    self.mlp_t = MLP(c, hidden, cfg.drop_rate, dtype=dtype, rngs=rngs)
    self.drop_path = nnx.Dropout(drop_path, broadcast_dims=(2, 3), rngs=rngs)

  def _spatial(self, x: Array) -> Array:
    x = x + self.drop_path(self.attn_s(self.norm1_s(x)))
    return x + self.drop_path(self.mlp_s(self.norm2_s(x)))

  def _temporal(self, x: Array) -> Array:
    x = x + self.drop_path(self.attn_t(self.norm1_t(x)))
    return x + self.drop_path(self.mlp_t(self.norm2_t(x)))

  def __call__(self, x: Array) -> Array:
    if self.order == "st":
      return self._temporal(self._spatial(x))
    return self._spatial(self._temporal(x))


class DSTformer(nnx.Module):
  """The DSTformer backbone with its optional representation layer and regression head.

  Call: ``model(x)`` with x (B, T, J, dim_in), T <= maxlen, returns (B, T, J, dim_out), or the
  representation (B, T, J, rep_width) with ``return_rep=True`` (also when ``dim_out == 0``).
  ``dtype`` is the compute dtype (parameters stay float32); softmax and normalisation statistics
  are computed in float32.
  """

  def __init__(self, cfg: DSTformerConfig, *, dtype=None, rngs: nnx.Rngs):
    self.config = cfg
    self.dtype = dtype
    c = cfg.dim_feat
    self.joints_embed = dense(cfg.dim_in, c, (None, "embed"), dtype=dtype, rngs=rngs)
    self.pos_embed = nnx.Param(
        _trunc_normal((None, None, "embed"))(rngs.params(), (1, cfg.num_joints, c)))
    self.temp_embed = nnx.Param(
        _trunc_normal((None, None, None, "embed"))(rngs.params(), (1, cfg.maxlen, 1, c)))
    self.pos_drop = nnx.Dropout(cfg.drop_rate, rngs=rngs)
    rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
    self.blocks_st = nnx.List(
        [Block(cfg, "st", rates[i], dtype=dtype, rngs=rngs) for i in range(cfg.depth)])
    self.blocks_ts = nnx.List(
        [Block(cfg, "ts", rates[i], dtype=dtype, rngs=rngs) for i in range(cfg.depth)])
    if cfg.att_fuse:
      self.ts_attn = nnx.List([
          nnx.Linear(2 * c, 2, dtype=dtype,
                     kernel_init=_constant(0.0, ("embed", None)),
                     bias_init=_constant(0.5, (None,)), rngs=rngs)
          for _ in range(cfg.depth)])
    self.norm = layer_norm(c, dtype=dtype, rngs=rngs)
    self.pre_logits = (dense(c, cfg.dim_rep, ("embed", "rep"), dtype=dtype, rngs=rngs)
                       if cfg.dim_rep else None)
    self.head = (dense(cfg.rep_width, cfg.dim_out, ("rep", None), dtype=dtype, rngs=rngs)
                 if cfg.dim_out else None)

  def embed(self, x: Array) -> Array:
    """(B, T, J, dim_in) -> (B, T, J, C): joint embedding plus spatial and temporal positions."""
    t = x.shape[1]
    if t > self.config.maxlen:
      raise ValueError(f"clip of {t} frames is longer than the model's maxlen {self.config.maxlen}")
    if x.shape[2] != self.config.num_joints or x.shape[3] != self.config.dim_in:
      raise ValueError(
          f"expected input (B, T, {self.config.num_joints}, {self.config.dim_in}), got {x.shape}")
    x = self.joints_embed(x)
    x = x + self.pos_embed[:, None] + self.temp_embed[:, :t]
    return self.pos_drop(x.astype(self.dtype) if self.dtype else x)

  def fuse(self, depth: int, x_st: Array, x_ts: Array) -> Array:
    """Mixes the two streams of one depth per token: learned softmax weights, or the mean."""
    if not self.config.att_fuse:
      return (x_st + x_ts) * 0.5
    logits = self.ts_attn[depth](jnp.concatenate([x_st, x_ts], axis=-1))
    alpha = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(x_st.dtype)
    return x_st * alpha[..., 0:1] + x_ts * alpha[..., 1:2]

  def representation(self, x: Array) -> Array:
    """(B, T, J, dim_in) -> motion representation (B, T, J, rep_width)."""
    x = self.embed(x)
    for i, (blk_st, blk_ts) in enumerate(zip(self.blocks_st, self.blocks_ts)):
      x = self.fuse(i, blk_st(x), blk_ts(x))
    x = self.norm(x)
    if self.pre_logits is not None:
      x = jnp.tanh(self.pre_logits(x))
    return x

  def __call__(self, x: Array, *, return_rep: bool = False) -> Array:
    rep = self.representation(x)
    if return_rep or self.head is None:
      return rep
    return self.head(rep)
