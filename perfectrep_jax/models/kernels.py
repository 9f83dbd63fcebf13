"""The layers the models are made of and their custom-gradient kernels.

Layers with upstream's initialisation and logical axis names (``dense``, ``layer_norm``) and how
they are applied, on (tokens, channels) matrices or (``flat=False``) on the arrays as they are
(``apply_dense``, ``apply_matrix``, ``apply_layer_norm``); kernels with hand-written backward
passes that XLA runs faster than autodiff's (``layer_norm_fn``, ``bias_gelu``,
``softmax_attention``, ``lanes_attention``, ``compact_attention``; ``benchmarks/README.md`` has
the figures), and two Pallas TPU kernels that
keep attention's weights on chip, ``pallas_attention`` (over a clip's frames) and
``pallas_lanes_attention`` (over its joints). Shapes: (..., C) activations over the last axis,
(..., L, D) for attention, (..., L, D, N) for the lanes forms; the Pallas kernels take q, k and v
stacked as one projection writes them, (3, B, J, H, D, L) for ``pallas_attention`` and
(3, B, H, L, D, N) for ``pallas_lanes_attention``, and give their gradient stacked alike.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

LAYERNORM_EPS = 1e-6
_INIT_STD = 0.02


def trunc_normal_init(axes: tuple[str | None, ...]):
  """Upstream's weight init (truncated normal, std 0.02), with logical axis names."""
  return nnx.with_partitioning(jax.nn.initializers.truncated_normal(_INIT_STD), axes, eager_sharding=False)


def constant_init(value: float, axes: tuple[str | None, ...]):
  """A constant init with logical axis names."""
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
    kernel_init=trunc_normal_init(axes),
    bias_init=constant_init(0.0, (axes[1],)),
    rngs=rngs,
  )


def layer_norm(dim: int, *, dtype=None, rngs: nnx.Rngs) -> nnx.LayerNorm:
  """LayerNorm with eps 1e-6 and the two-pass variance PyTorch uses."""
  return nnx.LayerNorm(
    dim,
    epsilon=LAYERNORM_EPS,
    dtype=dtype,
    use_fast_variance=False,
    scale_init=constant_init(1.0, ("embed",)),
    bias_init=constant_init(0.0, ("embed",)),
    rngs=rngs,
  )


def apply_dense(layer: nnx.Linear, x: Array, flat: bool = True) -> Array:
  """``layer(x)``; with ``flat``, computed on the (tokens, features) matrix.

  Same result as ``nnx.Linear.__call__``. Flattening the leading axes first lets XLA take the
  weight gradient as one (features, tokens) x (tokens, out) product of the arrays as they are,
  where an N-d dot_general made it copy the (out, tokens) transpose of the output gradient (on
  CPU). On a TPU the flattening is the copy, when x's layout is not row-major (after temporal
  attention it is (clips, joints, frames)): there ``flat=False`` (``qkv_layout='heads'``).
  """
  kernel = layer.kernel[...]
  bias = layer.bias[...] if layer.bias is not None else None
  x, kernel, bias = layer.promote_dtype((x, kernel, bias), dtype=layer.dtype)
  add_bias = (lambda y: y + bias) if bias is not None else None
  return apply_matrix(x, kernel, flat, precision=layer.precision, then=add_bias)


def apply_matrix(x: Array, kernel: Array, flat: bool = True, precision=None, then=None) -> Array:
  """(..., K) @ (K, N), and ``then`` of the product if given (a bias, an activation); with
  ``flat``, both on the flattened (tokens, K) matrix. (An epilogue applied after the reshape
  back kept XLA:GPU from fusing it into the matmul: the full config's step on an H100 moved
  3% more bytes.)"""
  then = then or (lambda y: y)
  if not flat:
    return then(jnp.dot(x, kernel, precision=precision))
  y = then(jnp.dot(x.reshape(-1, x.shape[-1]), kernel, precision=precision))
  return y.reshape(x.shape[:-1] + kernel.shape[-1:])


def _ln_stats(x: Array, eps: float) -> tuple[Array, Array]:
  mean = jnp.mean(x, axis=-1, keepdims=True)
  xc = x - mean
  return mean, jax.lax.rsqrt(jnp.mean(xc * xc, axis=-1, keepdims=True) + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def layer_norm_fn(x: Array, scale: Array, bias: Array, eps: float, flat: bool = True) -> Array:
  """(x - mean) / sqrt(var + eps) * scale + bias over the last axis, float32 statistics.

  Two-pass variance as PyTorch's LayerNorm. The backward is written out (the usual
  ``rstd * (g - mean(g) - xhat * mean(g * xhat))`` with ``g = dy * scale``), recomputing xhat
  from the saved input and per-row statistics: autodiff of the forward saved broadcast copies of
  the statistics and of ``scale`` and took more passes over the activations. ``flat``: the
  backward works on the (tokens, C) matrix (see ``apply_dense`` for when not to).
  """
  mean, rstd = _ln_stats(x, eps)
  return (x - mean) * rstd * scale + bias


def _layer_norm_fwd(x, scale, bias, eps, flat):
  mean, rstd = _ln_stats(x, eps)
  return (x - mean) * rstd * scale + bias, (x, mean, rstd, scale)


def _layer_norm_bwd(eps, flat, res, dy):
  x, mean, rstd, scale = res
  shape, c = x.shape, x.shape[-1]
  if flat:
    # on the (tokens, C) matrix: XLA:CPU's fused row reductions of the 4-d (B, T, J, C) arrays
    # took twice as long (9.7 ms against 5.2 ms per LayerNorm backward at full size, one core)
    x, dy = x.reshape(-1, c), dy.reshape(-1, c)
    mean, rstd = mean.reshape(-1, 1), rstd.reshape(-1, 1)
  xhat = (x - mean) * rstd
  g = dy * scale
  dx = rstd * (g - jnp.mean(g, axis=-1, keepdims=True) - xhat * jnp.mean(g * xhat, axis=-1, keepdims=True))
  rows = tuple(range(x.ndim - 1))
  return dx.reshape(shape), jnp.sum(dy * xhat, axis=rows), jnp.sum(dy, axis=rows)


layer_norm_fn.defvjp(_layer_norm_fwd, _layer_norm_bwd)


@jax.named_scope("layer_norm")
def apply_layer_norm(layer: nnx.LayerNorm, x: Array, flat: bool = True) -> Array:
  """``layer(x)`` over the last axis: two-pass statistics in float32, as PyTorch's LayerNorm;
  ``flat``: see ``layer_norm_fn``."""
  dtype = layer.dtype or x.dtype
  xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  c = x.shape[-1]
  scale = layer.scale[...] if layer.scale is not None else jnp.ones((c,), xf.dtype)
  bias = layer.bias[...] if layer.bias is not None else jnp.zeros((c,), xf.dtype)
  eps = float(layer.epsilon)
  return layer_norm_fn(xf, scale.astype(xf.dtype), bias.astype(xf.dtype), eps, flat).astype(dtype)


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def lanes_attention(q: Array, k: Array, v: Array, scale: float) -> Array:
  """softmax(scale q k^T) v over the (L, D) axes of (..., L, D, N) arrays, N independent
  sequences kept as the last axis: (..., L, D, N) out.

  For short sequences on a TPU. With L = 17 joints on the last axis, as a matrix product needs
  them, every (L, L) and (D, L) array fills 17 of a tile's 128 lanes; here N (a clip's frames)
  fills the lanes and the products are elementwise multiplies and sums over L or D on the vector
  unit, with float32 accumulation (0.3% of a block's FLOPs in the full config). The backward is
  written out so that it keeps q, k, v and the (L, L, N) weights, not float32 copies of q and k.
  """
  return _lanes_attention_fwd(q, k, v, scale)[0]


def _product_sum(a: Array, b: Array, axis: int) -> Array:
  """sum(a * b, axis) of broadcasting arrays, multiplied and summed in float32."""
  return jnp.sum(a.astype(jnp.float32) * b.astype(jnp.float32), axis=axis)


def _lanes_attention_fwd(q, k, v, scale):
  # letters: l query, m key, d channel, n sequence; each product broadcasts to (..., l, m, d, n)
  logits = _product_sum(q[..., :, None, :, :], k[..., None, :, :, :], -2) * scale  # (..., l, m, n)
  w = jax.nn.softmax(logits, axis=-2)
  out = _product_sum(w[..., None, :], v[..., None, :, :, :], -3)  # (..., l, d, n)
  return out.astype(v.dtype), (q, k, v, w)


def _lanes_attention_bwd(scale, res, dout):
  q, k, v, w = res
  dw = _product_sum(dout[..., :, None, :, :], v[..., None, :, :, :], -2)  # (..., l, m, n)
  dlogits = w * (dw - jnp.sum(w * dw, axis=-2, keepdims=True)) * scale
  dq = _product_sum(dlogits[..., None, :], k[..., None, :, :, :], -3)
  dk = _product_sum(dlogits[..., :, :, None, :], q[..., :, None, :, :], -4)
  dv = _product_sum(w[..., :, :, None, :], dout[..., :, None, :, :], -4)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


lanes_attention.defvjp(_lanes_attention_fwd, _lanes_attention_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def compact_attention(q: Array, k: Array, v: Array, scale: float) -> Array:
  """softmax(scale q k^T) v over the last two axes of (..., L, D) arrays, for XLA on a TPU.

  The (L, L) weights are kept once, unnormalised and in the inputs' dtype (the softmax's
  normalisation is applied to the (L, D) output), and the backward computes the logits' gradient
  from them in the epilogue of the product that needs it, so no float32 (L, L) array is kept or
  read again: ``jax.nn.dot_product_attention``'s XLA path rewrites its float32 weights and keeps
  them for the backward. On a v5e the full config's temporal attention moves 38% fewer bytes
  (``benchmarks/README.md``); on an H100 XLA's own path is level or better, so it is the TPU's.
  """
  return _compact_attention_fwd(q, k, v, scale)[0]


def _compact_attention_fwd(q, k, v, scale):
  f32 = jnp.float32
  logits = jnp.einsum("...ld,...md->...lm", q, k, preferred_element_type=f32) * scale
  w = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True)).astype(v.dtype)
  denom = jnp.sum(w.astype(f32), axis=-1, keepdims=True)  # of the weights as kept
  out = (jnp.einsum("...lm,...md->...ld", w, v, preferred_element_type=f32) / denom).astype(v.dtype)
  return out, (q, k, v, w, denom, out)


def _compact_attention_bwd(scale, res, dout):
  q, k, v, w, denom, out = res
  f32 = jnp.float32
  dw = jnp.einsum("...ld,...md->...lm", dout, v, preferred_element_type=f32)
  correction = jnp.sum(dout.astype(f32) * out.astype(f32), axis=-1, keepdims=True)
  dlogits = (w.astype(f32) * (dw - correction) * (scale / denom)).astype(q.dtype)
  dq = jnp.einsum("...lm,...md->...ld", dlogits, k, preferred_element_type=f32)
  dk = jnp.einsum("...lm,...ld->...md", dlogits, q, preferred_element_type=f32)
  dv = jnp.einsum(
    "...lm,...ld->...md", w, (dout.astype(f32) / denom).astype(v.dtype), preferred_element_type=f32
  )
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


compact_attention.defvjp(_compact_attention_fwd, _compact_attention_bwd)


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


# --------------------------------------------------------------------------- TPU attention kernel

_TN = (((0,), (0,)), ((), ()))  # a^T b
_NT = (((1,), (1,)), ((), ()))  # a b^T
# The longest sequence pallas_attention takes: its backward holds several (L, L) float32 arrays in
# a core's VMEM at once. Compiled here (deviceless) up to 896 on v5p and 1024 on v5e and v6e;
# v5p refused 1024 (CompileTimeScopedVmemOom). Twice the 243 frames of the models' clips.
PALLAS_MAX_LENGTH = 512


def _key_weights(q: Array, k: Array, scale: float) -> tuple[Array, Array]:
  """Unnormalised attention weights, transposed: (keys, queries) float32 exp(s - max) from one
  head's (D, L) q and k, and their sum over keys, (1, queries)."""
  s = jax.lax.dot_general(k, q, _TN, preferred_element_type=jnp.float32) * scale
  p = jnp.exp(s - s.max(axis=0, keepdims=True))
  return p, p.sum(axis=0, keepdims=True)


def _attention_kernel(qkv_ref, o_ref, *, scale: float):
  """One sequence's heads: q, k and v stacked, block (3, 1, 1, H, D, L); out (1, 1, H, D, L).
  o^T = v^T P^T, one head at a time."""

  def head(h, carry):
    p, total = _key_weights(qkv_ref[0, 0, 0, h], qkv_ref[1, 0, 0, h], scale)
    v = qkv_ref[2, 0, 0, h]
    o = jnp.dot(v, p.astype(v.dtype), preferred_element_type=jnp.float32) / total
    o_ref[0, 0, h] = o.astype(o_ref.dtype)
    return carry

  jax.lax.fori_loop(0, qkv_ref.shape[3], head, 0)


def _attention_grad_kernel(qkv_ref, do_ref, dqkv_ref, *, scale: float):
  """The backward of :func:`_attention_kernel` from q, k, v and dO alone, dq, dk and dv written
  stacked as q, k and v came: the weights are recomputed on chip, and softmax's row term
  (dO . o) is taken as sum(P * dP) from them."""

  def head(h, carry):
    q, k, v = qkv_ref[0, 0, 0, h], qkv_ref[1, 0, 0, h], qkv_ref[2, 0, 0, h]
    do = do_ref[0, 0, h]
    p, total = _key_weights(q, k, scale)
    p = p / total  # P^T: (keys, queries)
    dp = jax.lax.dot_general(v, do, _TN, preferred_element_type=jnp.float32)  # dP^T
    ds = (p * (dp - jnp.sum(p * dp, axis=0, keepdims=True)) * scale).astype(q.dtype)
    dv = jax.lax.dot_general(do, p.astype(do.dtype), _NT, preferred_element_type=jnp.float32)
    dqkv_ref[0, 0, 0, h] = jnp.dot(k, ds, preferred_element_type=jnp.float32).astype(dqkv_ref.dtype)
    dk = jax.lax.dot_general(q, ds, _NT, preferred_element_type=jnp.float32)
    dqkv_ref[1, 0, 0, h] = dk.astype(dqkv_ref.dtype)
    dqkv_ref[2, 0, 0, h] = dv.astype(dqkv_ref.dtype)
    return carry

  jax.lax.fori_loop(0, qkv_ref.shape[3], head, 0)


def _tiled_bytes(shape: tuple[int, ...], dtype) -> int:
  """An array's bytes in a TPU's HBM, its last axis padded to the 128-lane tile."""
  return math.prod(shape[:-1]) * -(-shape[-1] // 128) * 128 * jnp.dtype(dtype).itemsize


def _pallas_call(
  kernel, args: tuple[Array, ...], stacked_out: bool, block: tuple[int, ...], flops: int, exps: int
):
  """``kernel`` over arrays of one shape, each either that shape or three of it stacked (3, ...)
  (q, k and v as the projection writes them: slicing them apart would be a copy through HBM), a
  ``block`` of each a grid step (the grid covers the arrays; an edge block past their end is
  masked). One output, stacked if ``stacked_out``. XLA is told the cost: ``flops``, ``exps`` and
  the arrays' HBM bytes, each read or written once."""
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import tpu as pltpu

  shape, dtype = args[-1].shape[-len(block) :], args[-1].dtype
  out_shape = (3, *shape) if stacked_out else shape

  def spec(array_shape):
    if len(array_shape) == len(shape):
      return pl.BlockSpec(block, lambda *index: index)
    return pl.BlockSpec((3, *block), lambda *index: (0, *index))

  cost = pl.CostEstimate(
    flops=flops,
    transcendentals=exps,
    bytes_accessed=sum(_tiled_bytes(x, dtype) for x in (*(a.shape for a in args), out_shape)),
  )

  def call(interpret: bool):
    return pl.pallas_call(
      kernel,
      grid=tuple(-(-n // b) for n, b in zip(shape, block)),
      in_specs=[spec(a.shape) for a in args],
      out_specs=spec(out_shape),
      out_shape=jax.ShapeDtypeStruct(out_shape, dtype),
      compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel",) * len(shape)),
      cost_estimate=cost,
      interpret=interpret,
    )(*args)

  # Mosaic on a TPU; elsewhere Pallas's interpreter, the same kernel as plain XLA (tests, CPU)
  return jax.lax.platform_dependent(tpu=lambda: call(False), default=lambda: call(True))


def _kernel_attention(kernel, grad_kernel, blocks):
  """Attention ``(qkv, scale) -> out``, q, k and v stacked (3, ...), through a Pallas kernel,
  with ``grad_kernel`` as its VJP (the gradient stacked as qkv): 2 (L, L, D) products forward, 5
  backward (the weights recomputed). ``blocks(shape) -> (block, weights, d)``: a grid step's
  block of one of q, k, v, and the attention weights over the arrays."""

  def call(body, args, stacked_out, scale, products):
    block, weights, d = blocks(args[0].shape[1:])
    flops = 2 * products * weights * d
    return _pallas_call(functools.partial(body, scale=scale), args, stacked_out, block, flops, weights)

  @functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
  def attend(qkv, scale):
    return call(kernel, (qkv,), False, scale, products=2)

  def forward(qkv, scale):
    return attend(qkv, scale), qkv

  def backward(scale, qkv, do):
    return (call(grad_kernel, (qkv, do), True, scale, products=5),)

  attend.defvjp(forward, backward)
  return attend


def _sequence_blocks(shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
  """(B, J, H, D, L) arrays: one (b, j) sequence's heads a grid step."""
  b, j, h, d, length = shape
  return (1, 1, h, d, length), b * j * h * length * length, d


_attention = _kernel_attention(_attention_kernel, _attention_grad_kernel, _sequence_blocks)


def pallas_attention(qkv: Array, scale: float) -> Array:
  """softmax(q^T k * scale) v over (B, J, H, D, L) arrays (a sequence of L per (b, j), its heads'
  channels before its positions, which lie along the TPU's 128 lanes), q, k and v stacked as
  ``qkv`` (3, B, J, H, D, L), as one projection writes them, and their gradient stacked alike.
  Written for short sequences: one Pallas TPU kernel holds a whole sequence's (L, L) weights on
  chip, so forward and backward read and write only q, k, v, the output and their gradients (the
  backward recomputes the weights; no softmax statistics are stored). XLA is given its FLOPs and
  bytes (``pl.CostEstimate``), so a compiled step's cost analysis counts it. Off a TPU it runs in
  Pallas's interpreter (slow; for tests). L is at most :data:`PALLAS_MAX_LENGTH`.

  XLA does not partition a Mosaic kernel, so under a mesh (``jax.sharding.get_abstract_mesh()``,
  which the train and eval steps set) it runs per device in a ``shard_map``: B over the mesh's
  ``data`` and ``fsdp`` axes, H over ``tensor``.
  """
  if qkv.shape[-1] > PALLAS_MAX_LENGTH:
    raise ValueError(
      f"attention_impl='pallas' holds a sequence's weights on chip: {qkv.shape[-1]} positions, "
      f"at most {PALLAS_MAX_LENGTH}; use attention_impl='tpu' for longer clips"
    )

  return _on_each_device(functools.partial(_attention, scale=scale), "bjhdt", qkv)


def _on_each_device(kernel, axes: str, qkv: Array) -> Array:
  """``kernel(qkv)``, per device in a ``shard_map`` under a mesh (XLA does not partition a
  Mosaic kernel), the arrays split as the step splits ``axes`` (:func:`mesh_spec`), the stacked
  input's leading 3 whole."""
  spec = mesh_spec(axes)
  if spec is None:
    return kernel(qkv)
  mesh = jax.sharding.get_abstract_mesh()
  stacked = mesh_spec("s" + axes)
  return jax.shard_map(kernel, mesh=mesh, in_specs=(stacked,), out_specs=spec, check_vma=False)(qkv)


LANES_BLOCK = 128  # frames a grid step of ``pallas_lanes_attention``: one tile's lanes


def _joint_weights(q: Array, k: Array, scale: float) -> Array:
  """One query joint's attention weights over the keys, (M, N) float32, from its (D, N) q and
  the (M, D, N) keys: products and sums on the vector unit, N frames along the lanes."""
  logits = jnp.sum(q.astype(jnp.float32)[None] * k, axis=1) * scale
  w = jnp.exp(logits - logits.max(axis=0, keepdims=True))
  return w / w.sum(axis=0, keepdims=True)


def _lanes_kernel(qkv_ref, o_ref, *, scale: float):
  """q, k and v stacked, block (3, 1, 1, L, D, N); out (1, 1, L, D, N): o[i] = sum_m w[i, m] v[m],
  one query joint i at a time."""
  k, v = qkv_ref[1, 0, 0].astype(jnp.float32), qkv_ref[2, 0, 0].astype(jnp.float32)

  def query(i, carry):
    w = _joint_weights(qkv_ref[0, 0, 0, i], k, scale)
    o_ref[0, 0, i] = jnp.sum(w[:, None] * v, axis=0).astype(o_ref.dtype)
    return carry

  jax.lax.fori_loop(0, qkv_ref.shape[3], query, 0)


def _lanes_grad_kernel(qkv_ref, do_ref, dqkv_ref, *, scale: float):
  """The backward of :func:`_lanes_kernel`, one query joint at a time: dq row by row, dk and dv
  summed over the queries in float32; written stacked as q, k and v came."""
  k, v = qkv_ref[1, 0, 0].astype(jnp.float32), qkv_ref[2, 0, 0].astype(jnp.float32)

  def query(i, sums):
    dk, dv = sums
    q, do = qkv_ref[0, 0, 0, i].astype(jnp.float32), do_ref[0, 0, i].astype(jnp.float32)
    w = _joint_weights(q, k, scale)  # (M, N)
    dw = jnp.sum(do[None] * v, axis=1)
    dlogits = w * (dw - jnp.sum(w * dw, axis=0, keepdims=True)) * scale
    dqkv_ref[0, 0, 0, i] = jnp.sum(dlogits[:, None] * k, axis=0).astype(dqkv_ref.dtype)
    return dk + dlogits[:, None] * q[None], dv + w[:, None] * do[None]

  zeros = jnp.zeros(k.shape, jnp.float32)
  dk, dv = jax.lax.fori_loop(0, qkv_ref.shape[3], query, (zeros, zeros))
  dqkv_ref[1, 0, 0] = dk.astype(dqkv_ref.dtype)
  dqkv_ref[2, 0, 0] = dv.astype(dqkv_ref.dtype)


def _lanes_blocks(shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
  """(B, H, L, D, N) arrays: a (b, h) pair's frames, :data:`LANES_BLOCK` a grid step."""
  b, h, length, d, n = shape
  return (1, 1, length, d, min(n, LANES_BLOCK)), b * h * length * length * n, d


_lanes = _kernel_attention(_lanes_kernel, _lanes_grad_kernel, _lanes_blocks)


def pallas_lanes_attention(qkv: Array, scale: float) -> Array:
  """:func:`lanes_attention` (softmax over L of (B, H, L, D, N) arrays, the N frames along the
  lanes; q, k and v stacked as ``qkv`` (3, B, H, L, D, N), as :func:`pallas_attention`) as one
  Pallas TPU kernel: the weights and the float32 copies of q, k and v stay on chip,
  so forward and backward read and write only q, k, v, the output and their gradients (the
  backward recomputes the weights). Off a TPU it runs in Pallas's interpreter (slow; for tests).
  Under a mesh it runs per device, as :func:`pallas_attention`."""
  return _on_each_device(functools.partial(_lanes, scale=scale), "bhjdt", qkv)


def mesh_spec(axes: str) -> jax.sharding.PartitionSpec | None:
  """How the train step splits an activation whose axes are named by ``axes`` (one letter each):
  ``b`` (clips) over the mesh's batch axes that are split (``data``, ``fsdp``), ``h`` (heads)
  over ``tensor`` if it is split, the rest whole; None outside a mesh (``jax.sharding``'s
  abstract mesh, which the train step sets)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return None
  batch = tuple(a for a in ("data", "fsdp") if mesh.shape.get(a, 1) > 1) or None
  heads = "tensor" if mesh.shape.get("tensor", 1) > 1 else None
  return jax.sharding.PartitionSpec(*({"b": batch, "h": heads}.get(a) for a in axes))


def split_as_step(x: Array, axes: str) -> Array:
  """``x`` constrained to :func:`mesh_spec` of ``axes`` inside a mesh, as it is outside one.

  Attention's q, k and v go through it: left to itself, XLA's sharding propagation split the
  (B, H, J, D, T) arrays of ``lanes_attention`` over another axis under ``fsdp`` and gathered
  activations (300 GB a step on v5e-16, ``benchmarks/README.md``)."""
  spec = mesh_spec(axes)
  if spec is None:
    return x
  return jax.lax.with_sharding_constraint(
    x, jax.sharding.NamedSharding(jax.sharding.get_abstract_mesh(), spec)
  )
