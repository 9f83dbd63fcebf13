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

Performance (``benchmarks/README.md`` has the figures): linear layers run on (tokens, channels)
matrices so that XLA's weight-gradient dots need no activation transposes; attention reads q, k
and v straight out of the (B, T, J, 3, H, D) projection with einsums whose batch axes are the
heads and the other sequence axis, so the spatial and temporal arrangements need no swapaxes of
their own; softmax normalisation is applied to the (L, D) output instead of the (L, L) weights
(``attention_impl='einsum'``, the default on CPU). ``attention_impl='dot_product_attention'``
(the default on GPU and TPU) calls ``jax.nn.dot_product_attention``, which picks cuDNN's fused
kernel on GPU when the dtype and shapes allow. ``remat`` rematerialises each half-block in the
backward pass. None of these options changes a parameter or, beyond float32 round-off, an output.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

LAYERNORM_EPS = 1e-6
_INIT_STD = 0.02

ATTENTION_IMPLS = ("auto", "einsum", "dot_product_attention")
REMAT_POLICIES = {
  None: None,
  "full": None,  # save nothing inside a half-block
  "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
  "dots_all": jax.checkpoint_policies.checkpoint_dots,
}


# Bounds of a model config, checked before anything is allocated: a model.json or a config
# override cannot ask for a model this process could never build.
MAX_WIDTH = 1 << 16
MAX_DEPTH = 1024
MAX_JOINTS = 4096
MAX_MAXLEN = 1 << 20
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32 weights (MotionBERT's largest: 42 million)


def _short(value: Any, limit: int = 60) -> str:
  text = (
    repr(value)
    if isinstance(value, (int, float, str, bool, type(None), list))
    else (f"a {type(value).__name__}")
  )
  return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(name: str, value: Any, low: int, high: int) -> None:
  """``value`` is an integer (not a bool) in [low, high], or a ValueError names the field."""
  if not isinstance(value, int) or isinstance(value, bool):
    raise ValueError(f"{name} must be an integer, got {_short(value)}")
  if not low <= value <= high:
    raise ValueError(f"{name} must be in {low}..{high}, got {_short(value)}")


def check_real(
  name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> None:
  """``value`` is a finite number in the range, or a ValueError names the field."""
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
    raise ValueError(f"{name} must be a finite number, got {_short(value)}")
  if value < low or value > high or (low_open and value == low) or (high_open and value == high):
    raise ValueError(
      f"{name} must be in {'(' if low_open else '['}{low}, {high}"
      f"{')' if high_open else ']'}, got {_short(value)}"
    )


def check_parameter_count(n: int, what: str) -> None:
  if n > MAX_PARAMETERS:
    raise ValueError(f"this {what} would have {n:,} parameters (more than {MAX_PARAMETERS:,})")


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
    """Checks types, ranges, divisibility and the parameter count before anything is built."""
    for name, low, high in (
      ("dim_in", 1, MAX_WIDTH),
      ("dim_out", 0, MAX_WIDTH),
      ("dim_feat", 1, MAX_WIDTH),
      ("dim_rep", 0, MAX_WIDTH),
      ("depth", 1, MAX_DEPTH),
      ("num_joints", 1, MAX_JOINTS),
      ("maxlen", 1, MAX_MAXLEN),
      ("num_heads", 1, MAX_WIDTH),
    ):
      check_int(name, getattr(self, name), low, high)
    if self.dim_feat % self.num_heads:
      raise ValueError(f"dim_feat {self.dim_feat} is not divisible by num_heads {self.num_heads}")
    check_real("mlp_ratio", self.mlp_ratio, 0.0, MAX_WIDTH, low_open=True)
    if not 1 <= int(self.dim_feat * self.mlp_ratio) <= MAX_WIDTH * 4:
      raise ValueError(
        f"mlp_ratio {self.mlp_ratio} gives an MLP of width "
        f"{int(self.dim_feat * self.mlp_ratio)} (1 to {MAX_WIDTH * 4})"
      )
    if self.qk_scale is not None:
      check_real("qk_scale", self.qk_scale, 0.0, 1e6, low_open=True)
    for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
      check_real(name, getattr(self, name), 0.0, 1.0, high_open=True)
    for name in ("qkv_bias", "att_fuse"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"{name} must be true or false, got {_short(getattr(self, name))}")
    check_parameter_count(self.num_parameters(), "DSTformer")

  def num_parameters(self) -> int:
    """The number of parameters the model will have, counted without building it."""
    c, hidden, bias = self.dim_feat, int(self.dim_feat * self.mlp_ratio), int(self.qkv_bias)
    attention = c * 3 * c + 3 * c * bias + c * c + c
    mlp = c * hidden + hidden + hidden * c + c
    block = 4 * 2 * c + 2 * attention + 2 * mlp
    n = self.dim_in * c + c + (self.num_joints + self.maxlen) * c
    n += 2 * self.depth * block + (self.depth * (2 * c * 2 + 2) if self.att_fuse else 0) + 2 * c
    if self.dim_rep:
      n += c * self.dim_rep + self.dim_rep
    if self.dim_out:
      n += self.rep_width * self.dim_out + self.dim_out
    return n

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
    if not isinstance(d, dict):
      raise ValueError(f"a DSTformer config is a mapping of fields, not {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
      raise ValueError(f"unknown DSTformer config fields: {_short(sorted(map(str, unknown)))}")
    return cls(**d)


def _trunc_normal(axes: tuple[str | None, ...]):
  return nnx.with_partitioning(jax.nn.initializers.truncated_normal(_INIT_STD), axes, eager_sharding=False)


def _constant(value: float, axes: tuple[str | None, ...]):
  return nnx.with_partitioning(jax.nn.initializers.constant(value), axes, eager_sharding=False)


def dense(
  in_features: int,
  out_features: int,
  axes: tuple[str | None, str | None],
  *,
  use_bias: bool = True,
  dtype=None,
  rngs: nnx.Rngs,
) -> nnx.Linear:
  """A Linear layer with upstream's init (truncated normal 0.02, zero bias) and logical axes."""
  return nnx.Linear(
    in_features,
    out_features,
    use_bias=use_bias,
    dtype=dtype,
    kernel_init=_trunc_normal(axes),
    bias_init=_constant(0.0, (axes[1],)),
    rngs=rngs,
  )


def layer_norm(dim: int, *, dtype=None, rngs: nnx.Rngs) -> nnx.LayerNorm:
  """LayerNorm with eps 1e-6 and the two-pass variance PyTorch uses."""
  return nnx.LayerNorm(
    dim,
    epsilon=LAYERNORM_EPS,
    dtype=dtype,
    use_fast_variance=False,
    scale_init=_constant(1.0, ("embed",)),
    bias_init=_constant(0.0, ("embed",)),
    rngs=rngs,
  )


def apply_dense(layer: nnx.Linear, x: Array) -> Array:
  """``layer(x)`` computed on the (tokens, features) matrix.

  Same result as ``nnx.Linear.__call__``; flattening the leading axes first lets XLA take the
  weight gradient as one (features, tokens) x (tokens, out) product of the arrays as they are,
  where an N-d dot_general made it copy the (out, tokens) transpose of the output gradient.
  """
  kernel = layer.kernel[...]
  bias = layer.bias[...] if layer.bias is not None else None
  x, kernel, bias = layer.promote_dtype((x, kernel, bias), dtype=layer.dtype)
  lead = x.shape[:-1]
  y = jnp.dot(x.reshape(-1, x.shape[-1]), kernel, precision=layer.precision)
  if bias is not None:
    y = y + bias
  return y.reshape(lead + (kernel.shape[-1],))


def apply_matrix(x: Array, kernel: Array) -> Array:
  """(..., K) @ (K, N) on the flattened (tokens, K) matrix."""
  return jnp.dot(x.reshape(-1, x.shape[-1]), kernel).reshape(x.shape[:-1] + kernel.shape[-1:])


def _ln_stats(x: Array, eps: float) -> tuple[Array, Array]:
  mean = jnp.mean(x, axis=-1, keepdims=True)
  xc = x - mean
  return mean, jax.lax.rsqrt(jnp.mean(xc * xc, axis=-1, keepdims=True) + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm_fn(x: Array, scale: Array, bias: Array, eps: float) -> Array:
  """(x - mean) / sqrt(var + eps) * scale + bias over the last axis, float32 statistics.

  Two-pass variance as PyTorch's LayerNorm. The backward is written out (the usual
  ``rstd * (g - mean(g) - xhat * mean(g * xhat))`` with ``g = dy * scale``), recomputing xhat
  from the saved input and per-row statistics: autodiff of the forward saved broadcast copies of
  the statistics and of ``scale`` and took more passes over the activations.
  """
  mean, rstd = _ln_stats(x, eps)
  return (x - mean) * rstd * scale + bias


def _layer_norm_fwd(x, scale, bias, eps):
  mean, rstd = _ln_stats(x, eps)
  return (x - mean) * rstd * scale + bias, (x, mean, rstd, scale)


def _layer_norm_bwd(eps, res, dy):
  x, mean, rstd, scale = res
  shape, c = x.shape, x.shape[-1]
  # on the (tokens, C) matrix: XLA:CPU's fused row reductions of the 4-d (B, T, J, C) arrays
  # took twice as long (9.7 ms against 5.2 ms per LayerNorm backward at full size, one core)
  x, dy = x.reshape(-1, c), dy.reshape(-1, c)
  mean, rstd = mean.reshape(-1, 1), rstd.reshape(-1, 1)
  xhat = (x - mean) * rstd
  g = dy * scale
  dx = rstd * (g - jnp.mean(g, axis=-1, keepdims=True) - xhat * jnp.mean(g * xhat, axis=-1, keepdims=True))
  return dx.reshape(shape), jnp.sum(dy * xhat, axis=0), jnp.sum(dy, axis=0)


layer_norm_fn.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def apply_layer_norm(layer: nnx.LayerNorm, x: Array) -> Array:
  """``layer(x)`` over the last axis: two-pass statistics in float32, as PyTorch's LayerNorm."""
  dtype = layer.dtype or x.dtype
  xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  c = x.shape[-1]
  scale = layer.scale[...] if layer.scale is not None else jnp.ones((c,), xf.dtype)
  bias = layer.bias[...] if layer.bias is not None else jnp.zeros((c,), xf.dtype)
  return layer_norm_fn(xf, scale.astype(xf.dtype), bias.astype(xf.dtype), float(layer.epsilon)).astype(dtype)


_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu(x: Array) -> Array:
  """Exact GELU in PyTorch's form, ``x / 2 * (1 + erf(x / sqrt 2))``.

  Same function as ``jax.nn.gelu(approximate=False)`` (which uses erfc); erf is the cheaper of
  the two in XLA on CPU and is what PyTorch computes, so outputs agree to the last bits.
  """
  return x * 0.5 * (1.0 + jax.lax.erf(x * jnp.asarray(_SQRT_HALF, x.dtype)))


@jax.custom_vjp
def bias_gelu(h: Array, bias: Array) -> Array:
  """``gelu(h + bias)``, bias on the last axis, with a one-pass backward.

  Saves only ``h`` (the matmul output, which exists anyway); the backward recomputes the
  pre-activation and erf in the same pass that forms ``dy * gelu'(h + bias)``.
  """
  return gelu(h + bias)


def _bias_gelu_fwd(h, bias):
  return gelu(h + bias), (h, bias)


def _bias_gelu_bwd(res, dy):
  h, bias = res
  z = h + bias
  cdf = 0.5 * (1.0 + jax.lax.erf(z * jnp.asarray(_SQRT_HALF, z.dtype)))
  pdf = jnp.exp(-0.5 * z * z) * jnp.asarray(_INV_SQRT_2PI, z.dtype)
  dz = dy * (cdf + z * pdf)
  return dz, jnp.sum(dz, axis=tuple(range(dz.ndim - 1))).astype(bias.dtype)


bias_gelu.defvjp(_bias_gelu_fwd, _bias_gelu_bwd)


class MLP(nnx.Module):
  """fc1 -> exact GELU -> dropout -> fc2 -> dropout, on (..., C)."""

  def __init__(self, dim: int, hidden: int, drop: float, *, dtype=None, rngs: nnx.Rngs):
    self.fc1 = dense(dim, hidden, ("embed", "mlp"), dtype=dtype, rngs=rngs)
    self.fc2 = dense(hidden, dim, ("mlp", "embed"), dtype=dtype, rngs=rngs)
    self.drop = nnx.Dropout(drop, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    fc1 = self.fc1
    if fc1.bias is not None:
      x, kernel, bias = fc1.promote_dtype((x, fc1.kernel[...], fc1.bias[...]), dtype=fc1.dtype)
      h = jnp.dot(x.reshape(-1, x.shape[-1]), kernel, precision=fc1.precision)
      x = bias_gelu(h, bias).reshape(x.shape[:-1] + (kernel.shape[-1],))
    else:
      x = gelu(apply_dense(fc1, x))
    return self.drop(apply_dense(self.fc2, self.drop(x)))


@jax.custom_vjp
def softmax_attention(q: Array, k: Array, v: Array) -> Array:
  """softmax(q k^T) v over the last two axes of (..., L, D) arrays; q carries the scale.

  The softmax is normalised after the product with v ((L, D) divisions, not (L, L)), and the
  backward is written out so that every product reads the (L, L) weights as they are laid out
  (``dv^T = dout^T w``, ``dk^T = q^T dlogits``): autodiff's transposed products made XLA copy
  a transposed (L, L) array per product.
  """
  return _softmax_attention_fwd(q, k, v)[0]


def _softmax_attention_fwd(q, k, v):
  logits = jnp.einsum("...ld,...md->...lm", q, k, preferred_element_type=jnp.float32)
  w = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
  denom = jnp.sum(w, axis=-1, keepdims=True)
  out = jnp.einsum("...lm,...md->...ld", w.astype(v.dtype), v, preferred_element_type=jnp.float32) / denom
  return out.astype(v.dtype), (q, k, v, w, denom, out)


def _softmax_attention_bwd(res, dout):
  q, k, v, w, denom, out = res
  f32 = jnp.float32
  dout = dout.astype(f32)
  g = dout / denom  # d(w v)
  dden = -jnp.sum(dout * out.astype(f32), axis=-1, keepdims=True) / denom
  dw = jnp.einsum("...ld,...md->...lm", g.astype(v.dtype), v, preferred_element_type=f32) + dden
  dlogits = (dw * w).astype(q.dtype)
  dq = jnp.einsum("...lm,...md->...ld", dlogits, k, preferred_element_type=f32)
  dk_t = jnp.einsum("...dl,...lm->...dm", jnp.swapaxes(q, -1, -2), dlogits, preferred_element_type=f32)
  dv_t = jnp.einsum(
    "...dl,...lm->...dm",
    jnp.swapaxes(g.astype(v.dtype), -1, -2),
    w.astype(v.dtype),
    preferred_element_type=f32,
  )
  return (
    dq.astype(q.dtype),
    jnp.swapaxes(dk_t, -1, -2).astype(k.dtype),
    jnp.swapaxes(dv_t, -1, -2).astype(v.dtype),
  )


softmax_attention.defvjp(_softmax_attention_fwd, _softmax_attention_bwd)


class Attention(nnx.Module):
  """Multi-head self-attention over the joints (``mode='spatial'``) or frames (``'temporal'``).

  ``qkv`` is one (C -> 3C) projection whose output splits as (3, heads, head_dim), as upstream.
  Input and output are (B, T, J, C). ``impl``: ``'einsum'`` (explicit softmax, fastest on CPU),
  ``'dot_product_attention'`` (``jax.nn.dot_product_attention``: cuDNN on GPU where it applies),
  or ``'auto'`` (the first on CPU, the second elsewhere). With attention dropout active the
  explicit form runs whatever ``impl`` says.
  """

  def __init__(self, cfg: DSTformerConfig, mode: str, *, dtype=None, impl: str = "auto", rngs: nnx.Rngs):
    if mode not in ("spatial", "temporal"):
      raise ValueError(f"attention mode must be 'spatial' or 'temporal', got {mode!r}")
    if impl not in ATTENTION_IMPLS:
      raise ValueError(f"attention impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    self.mode = mode
    self.impl = impl
    self.num_heads = cfg.num_heads
    self.scale = cfg.qk_scale or cfg.head_dim**-0.5
    c = cfg.dim_feat
    self.qkv = dense(c, 3 * c, ("embed", "qkv"), use_bias=cfg.qkv_bias, dtype=dtype, rngs=rngs)
    self.proj = dense(c, c, ("heads", "embed"), dtype=dtype, rngs=rngs)
    self.attn_drop = nnx.Dropout(cfg.attn_drop_rate, rngs=rngs)
    self.proj_drop = nnx.Dropout(cfg.drop_rate, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    b, t, j, c = x.shape
    h = self.num_heads
    qkv = apply_dense(self.qkv, x).reshape(b, t, j, 3, h, c // h)
    # split whose transpose is one concatenate (slices would transpose to three pads and adds)
    q, k, v = (a[..., 0, :, :] for a in jnp.split(qkv, 3, axis=3))  # each (B, T, J, H, D)
    use_dropout = self.attn_drop.rate > 0 and not self.attn_drop.deterministic
    impl = self.impl
    if impl == "auto":
      impl = "einsum" if jax.default_backend() == "cpu" else "dot_product_attention"
    if use_dropout:
      out = self._attend_explicit(q, k, v, dropout=True)
    elif impl == "einsum":
      out = self._attend_explicit(q, k, v, dropout=False)
    else:
      out = self._attend_fused(q, k, v)
    out = apply_dense(self.proj, out.reshape(b, t, j, c))
    return self.proj_drop(out)

  def _attend_explicit(self, q: Array, k: Array, v: Array, *, dropout: bool) -> Array:
    """softmax(q k^T * scale) v on (B, T, J, H, D) arrays, over J (spatial) or T (temporal).

    q, k and v go to (B, T, H, J, D) or (B, J, H, T, D) in one copy each (XLA fuses the split,
    the scale and the transpose), ``softmax_attention`` runs there, and the output comes back.
    """
    perm = (0, 1, 3, 2, 4) if self.mode == "spatial" else (0, 2, 3, 1, 4)
    inv = tuple(perm.index(i) for i in range(5))
    q = q * jnp.asarray(self.scale, q.dtype)
    q, k, v = (jnp.transpose(a, perm) for a in (q, k, v))
    if not dropout:
      return jnp.transpose(softmax_attention(q, k, v), inv)
    logits = jnp.einsum("...ld,...md->...lm", q, k, preferred_element_type=jnp.float32)
    probs = self.attn_drop(jax.nn.softmax(logits, axis=-1).astype(v.dtype))
    return jnp.transpose(jnp.einsum("...lm,...md->...ld", probs, v), inv)

  def _attend_fused(self, q: Array, k: Array, v: Array) -> Array:
    """``jax.nn.dot_product_attention`` on (sequences, L, H, D) arrays."""
    if self.mode == "temporal":  # sequences run over frames: (B, J, T, H, D)
      q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))
    lead = q.shape[:2]
    q, k, v = (a.reshape((-1,) + a.shape[2:]) for a in (q, k, v))  # (B*, L, H, D)
    out = jax.nn.dot_product_attention(q, k, v, scale=self.scale).reshape(lead + q.shape[1:])
    if self.mode == "temporal":
      out = jnp.swapaxes(out, 1, 2)
    return out


class Block(nnx.Module):
  """Pre-norm attention + MLP, twice: spatial then temporal (``order='st'``) or the reverse.

  Stochastic depth drops the residual branch per (clip, frame), as upstream's DropPath does on
  its (B*T, J, C) layout.
  """

  def __init__(
    self,
    cfg: DSTformerConfig,
    order: str,
    drop_path: float,
    *,
    dtype=None,
    attention_impl: str = "auto",
    remat: str | None = None,
    rngs: nnx.Rngs,
  ):
    if order not in ("st", "ts"):
      raise ValueError(f"block order must be 'st' or 'ts', got {order!r}")
    if remat not in REMAT_POLICIES:
      raise ValueError(f"remat must be one of {list(REMAT_POLICIES)}, got {remat!r}")
    self.order = order
    self.remat = remat
    c = cfg.dim_feat
    hidden = int(c * cfg.mlp_ratio)
    self.norm1_s = layer_norm(c, dtype=dtype, rngs=rngs)
    self.norm1_t = layer_norm(c, dtype=dtype, rngs=rngs)
    self.attn_s = Attention(cfg, "spatial", dtype=dtype, impl=attention_impl, rngs=rngs)
    self.attn_t = Attention(cfg, "temporal", dtype=dtype, impl=attention_impl, rngs=rngs)
    self.norm2_s = layer_norm(c, dtype=dtype, rngs=rngs)
    self.norm2_t = layer_norm(c, dtype=dtype, rngs=rngs)
    self.mlp_s = MLP(c, hidden, cfg.drop_rate, dtype=dtype, rngs=rngs)
    self.mlp_t = MLP(c, hidden, cfg.drop_rate, dtype=dtype, rngs=rngs)
    self.drop_path = nnx.Dropout(drop_path, broadcast_dims=(2, 3), rngs=rngs)

  def _spatial(self, x: Array) -> Array:
    x = x + self.drop_path(self.attn_s(apply_layer_norm(self.norm1_s, x)))
    return x + self.drop_path(self.mlp_s(apply_layer_norm(self.norm2_s, x)))

  def _temporal(self, x: Array) -> Array:
    x = x + self.drop_path(self.attn_t(apply_layer_norm(self.norm1_t, x)))
    return x + self.drop_path(self.mlp_t(apply_layer_norm(self.norm2_t, x)))

  def _dropout_active(self) -> bool:
    return any(
      d.rate > 0 and not d.deterministic for _, d in nnx.iter_graph(self) if isinstance(d, nnx.Dropout)
    )

  def _stage(self, stage, x: Array) -> Array:
    if self.remat is None:
      return stage(self, x)
    policy = REMAT_POLICIES[self.remat]
    if self._dropout_active():  # RNG counters change: the lifted transform carries them out
      return nnx.remat(stage, policy=policy)(self, x)
    # Without dropout only the parameters matter: jax.checkpoint over them (this also works on a
    # module merged inside a jitted step, where nnx.remat refuses to touch its RNG counters).
    graphdef, params, rest = nnx.split(self, nnx.Param, ...)
    return jax.checkpoint(lambda p, x: stage(nnx.merge(graphdef, p, rest), x), policy=policy)(params, x)

  def __call__(self, x: Array) -> Array:
    if self.order == "st":
      return self._stage(Block._temporal, self._stage(Block._spatial, x))
    return self._stage(Block._spatial, self._stage(Block._temporal, x))


class DSTformer(nnx.Module):
  """The DSTformer backbone with its optional representation layer and regression head.

  Call: ``model(x)`` with x (B, T, J, dim_in), T <= maxlen, returns (B, T, J, dim_out), or the
  representation (B, T, J, rep_width) with ``return_rep=True`` (also when ``dim_out == 0``).
  ``dtype`` is the compute dtype (parameters stay float32); softmax and normalisation statistics
  are computed in float32.

  Execution options, none of which changes the parameters: ``attention_impl`` (``'auto'``,
  ``'einsum'``, ``'dot_product_attention'``; see ``Attention``) and ``remat`` (``None``, or a
  rematerialisation policy per half-block: ``'full'`` saves nothing, ``'dots'`` saves the
  outputs of the linear layers, ``'dots_all'`` those of every product including attention's).
  """

  def __init__(
    self,
    cfg: DSTformerConfig,
    *,
    dtype=None,
    attention_impl: str = "auto",
    remat: str | None = None,
    rngs: nnx.Rngs,
  ):
    self.config = cfg
    self.dtype = dtype
    c = cfg.dim_feat
    self.joints_embed = dense(cfg.dim_in, c, (None, "embed"), dtype=dtype, rngs=rngs)
    self.pos_embed = nnx.Param(_trunc_normal((None, None, "embed"))(rngs.params(), (1, cfg.num_joints, c)))
    self.temp_embed = nnx.Param(
      _trunc_normal((None, None, None, "embed"))(rngs.params(), (1, cfg.maxlen, 1, c))
    )
    self.pos_drop = nnx.Dropout(cfg.drop_rate, rngs=rngs)
    rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
    opts = dict(dtype=dtype, attention_impl=attention_impl, remat=remat)
    self.blocks_st = nnx.List([Block(cfg, "st", rates[i], **opts, rngs=rngs) for i in range(cfg.depth)])
    self.blocks_ts = nnx.List([Block(cfg, "ts", rates[i], **opts, rngs=rngs) for i in range(cfg.depth)])
    if cfg.att_fuse:
      self.ts_attn = nnx.List(
        [
          nnx.Linear(
            2 * c,
            2,
            dtype=dtype,
            kernel_init=_constant(0.0, ("embed", None)),
            bias_init=_constant(0.5, (None,)),
            rngs=rngs,
          )
          for _ in range(cfg.depth)
        ]
      )
    self.norm = layer_norm(c, dtype=dtype, rngs=rngs)
    self.pre_logits = dense(c, cfg.dim_rep, ("embed", "rep"), dtype=dtype, rngs=rngs) if cfg.dim_rep else None
    self.head = (
      dense(cfg.rep_width, cfg.dim_out, ("rep", None), dtype=dtype, rngs=rngs) if cfg.dim_out else None
    )

  def embed(self, x: Array) -> Array:
    """(B, T, J, dim_in) -> (B, T, J, C): joint embedding plus spatial and temporal positions."""
    t = x.shape[1]
    if t > self.config.maxlen:
      raise ValueError(f"clip of {t} frames is longer than the model's maxlen {self.config.maxlen}")
    if x.shape[2] != self.config.num_joints or x.shape[3] != self.config.dim_in:
      raise ValueError(
        f"expected input (B, T, {self.config.num_joints}, {self.config.dim_in}), got {x.shape}"
      )
    x = apply_dense(self.joints_embed, x)
    x = x + self.pos_embed[:, None] + self.temp_embed[:, :t]
    return self.pos_drop(x.astype(self.dtype) if self.dtype else x)

  def fuse(self, depth: int, x_st: Array, x_ts: Array) -> Array:
    """Mixes the two streams of one depth per token: learned softmax weights, or the mean."""
    if not self.config.att_fuse:
      return (x_st + x_ts) * 0.5
    # ts_attn on concat([x_st, x_ts]) as two half products: no (B, T, J, 2C) copy
    layer = self.ts_attn[depth]
    c = x_st.shape[-1]
    kernel, bias = layer.kernel[...], layer.bias[...]
    x_st_, x_ts_, kernel, bias = layer.promote_dtype((x_st, x_ts, kernel, bias), dtype=layer.dtype)
    logits = (apply_matrix(x_st_, kernel[:c]) + apply_matrix(x_ts_, kernel[c:])) + bias
    alpha = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(x_st.dtype)
    return x_st * alpha[..., 0:1] + x_ts * alpha[..., 1:2]

  def representation(self, x: Array) -> Array:
    """(B, T, J, dim_in) -> motion representation (B, T, J, rep_width)."""
    x = self.embed(x)
    for i, (blk_st, blk_ts) in enumerate(zip(self.blocks_st, self.blocks_ts)):
      x = self.fuse(i, blk_st(x), blk_ts(x))
    x = apply_layer_norm(self.norm, x)
    if self.pre_logits is not None:
      x = jnp.tanh(apply_dense(self.pre_logits, x))
    return x

  def __call__(self, x: Array, *, return_rep: bool = False) -> Array:
    rep = self.representation(x)
    if return_rep or self.head is None:
      return rep
    return apply_dense(self.head, rep)
