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
matrices so that XLA's weight-gradient dots need no activation transposes; attention works on
q, k and v in the axis order that suits it (``QKV_ORDERS``: the heads and the other sequence axis
as batch axes), and ``qkv_layout`` says how they get there: ``'tokens'`` (CPU, GPU) projects the
(tokens, C) matrix and rearranges the (..., 3, H, D) result, which XLA fuses into the attention's
own reads; ``'heads'`` (TPU) projects straight into the attention's order with einsums against the
kernels seen as (C, 3, H, D) and (H, D, C), since on a TPU each reshape into heads (D = 64 fills
half of a 128-lane tile) and each transpose is a copy through HBM. Softmax normalisation is applied
to the (L, D) output instead of the (L, L) weights (``attention_impl='einsum'``, the default on
CPU). ``attention_impl='dot_product_attention'`` calls ``jax.nn.dot_product_attention``, which
picks cuDNN's fused kernel on GPU when the dtype and shapes allow; ``'lanes'`` (the default on
GPU) runs temporal attention so and spatial attention through ``kernels.lanes_attention``, which
keeps a clip's frames on the last axis, since 17 joints would fill 17 of a TPU tile's 128 lanes;
``'tpu'`` runs spatial attention so and temporal attention through
``kernels.compact_attention``, which keeps the (T, T) weights once, in bfloat16;
``'pallas'`` (the default on TPU) runs both through Pallas kernels instead
(``kernels.pallas_attention``, ``kernels.pallas_lanes_attention``), the weights kept on chip
and q, k and v read stacked as the projection writes them (:data:`IMPL_FORMS`). ``remat``
rematerialises each half-block in the backward pass.
``scan_layers`` runs the depths as one ``jax.lax.scan`` over their stacked parameters, so XLA
sees one depth instead of ``depth`` copies (the parameters keep their
per-depth names; for ``lite`` on a TPU v5e it saved neither compile time nor memory, see
``benchmarks/README.md``). None of these options changes a parameter or, beyond float32
round-off, an output.
The layers and custom-gradient kernels it is made of are in ``kernels.py``, the bounds its config
is checked against in ``bounds.py``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from perfectrep_jax.models.bounds import (
  MAX_DEPTH,
  MAX_WIDTH,
  LifterConfig,
  check_choice,
  check_parameter_count,
  check_real,
  short_repr,
)
from perfectrep_jax.models.kernels import (
  apply_dense,
  apply_layer_norm,
  apply_matrix,
  bias_gelu,
  compact_attention,
  constant_init,
  dense,
  gelu,
  layer_norm,
  lanes_attention,
  PALLAS_MAX_LENGTH,
  pallas_attention,
  pallas_lanes_attention,
  softmax_attention,
  split_as_step,
  trunc_normal_init,
)

Array = jax.Array

ATTENTION_IMPLS = ("auto", "einsum", "dot_product_attention", "lanes", "tpu", "pallas")
QKV_LAYOUTS = ("auto", "tokens", "heads")
AUTO_LAYOUTS = {"cpu": "tokens", "gpu": "tokens", "tpu": "heads"}  # what "auto" is on each platform
REMAT_POLICIES = {
  None: None,
  "full": None,  # save nothing inside a half-block
  "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
  "dots_all": jax.checkpoint_policies.checkpoint_dots,
}


@dataclasses.dataclass(frozen=True)
class DSTformerConfig(LifterConfig):
  """Hyper-parameters of the DSTformer, named as upstream's constructor arguments.

  ``dim_out = 0`` drops the regression head (the network returns the representation);
  ``dim_rep = 0`` drops ``pre_logits`` (the representation is the normalised feature of width
  ``dim_feat``; upstream would build a head of input width 0 there, which cannot work, so the head
  reads ``dim_feat`` channels instead). ``drop_path_rate`` grows linearly from 0 at the first depth
  to the given rate at the last, as upstream's stochastic depth rule.
  """

  dim_feat: int = 256
  dim_rep: int = 512
  depth: int = 5
  num_heads: int = 8
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  qk_scale: float | None = None
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.0
  att_fuse: bool = True

  config_name: ClassVar[str] = "a DSTformer"

  def __post_init__(self):
    """Checks types, ranges, divisibility and the parameter count before anything is built."""
    widths = {"dim_out": (0, MAX_WIDTH), "dim_feat": (1, MAX_WIDTH), "dim_rep": (0, MAX_WIDTH)}
    self.check_clip({**widths, "depth": (1, MAX_DEPTH), "num_heads": (1, MAX_WIDTH)})
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
    for name in ("attn_drop_rate", "drop_path_rate"):
      check_real(name, getattr(self, name), 0.0, 1.0, high_open=True)
    for name in ("qkv_bias", "att_fuse"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"{name} must be true or false, got {short_repr(getattr(self, name))}")
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


class MLP(nnx.Module):
  """fc1 -> exact GELU -> dropout -> fc2 -> dropout, on (..., C); ``flat``: each product on the
  (tokens, C) matrix (``kernels.apply_dense``)."""

  def __init__(self, dim: int, hidden: int, drop: float, *, dtype=None, rngs: nnx.Rngs):
    self.fc1 = dense(dim, hidden, ("embed", "mlp"), dtype=dtype, rngs=rngs)
    self.fc2 = dense(hidden, dim, ("mlp", "embed"), dtype=dtype, rngs=rngs)
    self.drop = nnx.Dropout(drop, rngs=rngs)

  @jax.named_scope("mlp")
  def __call__(self, x: Array, flat: bool = True) -> Array:
    fc1 = self.fc1
    if fc1.bias is not None:
      x, kernel, bias = fc1.promote_dtype((x, fc1.kernel[...], fc1.bias[...]), dtype=fc1.dtype)
      x = apply_matrix(x, kernel, flat, precision=fc1.precision, then=lambda h: bias_gelu(h, bias))
    else:
      x = gelu(apply_dense(fc1, x, flat))
    return self.drop(apply_dense(self.fc2, self.drop(x), flat))


# Axis order (einsum letters: b clips, t frames, j joints, h heads, d head channels) in which
# each form of attention reads q, k and v and writes its output: the batch axes, then (L, D) for
# the explicit softmax (``softmax_attention``) and ``compact_attention``, (L, H, D) for
# ``jax.nn.dot_product_attention``, the batch axes but the frames, then (L, D, T) for
# ``lanes_attention``; (H, D, L) for the Pallas kernel (``pallas_attention``).
QKV_ORDERS = {
  ("spatial", "explicit"): "bthjd",
  ("temporal", "explicit"): "bjhtd",
  ("spatial", "fused"): "btjhd",
  ("temporal", "fused"): "bjthd",
  ("temporal", "pallas"): "bjhdt",
  ("spatial", "lanes"): "bhjdt",
  ("spatial", "pallas"): "bhjdt",
  ("temporal", "compact"): "bjhtd",
}
# (spatial form, temporal form) of each attention_impl
IMPL_FORMS = {
  "einsum": ("explicit", "explicit"),
  "dot_product_attention": ("fused", "fused"),
  "lanes": ("lanes", "fused"),
  "tpu": ("lanes", "compact"),
  "pallas": ("pallas", "pallas"),
}
AUTO_IMPLS = {"cpu": "einsum", "gpu": "lanes", "tpu": "pallas"}  # what "auto" is on each platform


def resolve_layout(layout: str) -> str:
  """``layout`` (a ``qkv_layout``), or for ``'auto'`` what :data:`AUTO_LAYOUTS` gives this host's
  platform."""
  return AUTO_LAYOUTS.get(jax.default_backend(), "tokens") if layout == "auto" else layout


def on_token_matrices(layout: str) -> bool:
  """Whether, under ``layout``, the linear layers and norms work on (tokens, C) matrices
  (``'tokens'``) or on the (B, T, J, C) arrays as they are (``'heads'``; ``kernels.apply_dense``)."""
  return resolve_layout(layout) == "tokens"


class Attention(nnx.Module):
  """Multi-head self-attention over the joints (``mode='spatial'``) or frames (``'temporal'``).

  ``qkv`` is one (C -> 3C) projection whose output splits as (3, heads, head_dim), as upstream.
  Input and output are (B, T, J, C); q, k and v are used in the axis order the attention works
  in (:data:`QKV_ORDERS`). ``layout``: ``'tokens'`` projects the (tokens, C) matrix and
  rearranges the result (one GEMM each way; on CPU and GPU XLA fuses the rearranging into its
  readers); ``'heads'`` projects straight into that order, and back from it, with einsums against
  the kernels seen as (C, 3, H, D) and (H, D, C), with no reshape into heads and no transpose
  (on a TPU each is a copy through HBM: the full config's step on v5e moves 27% fewer bytes,
  ``benchmarks/README.md``), and the blocks' norms and MLPs work on the (B, T, J, C) arrays as
  they are (:func:`on_token_matrices`; 20% less estimated time again at full size on a v5e);
  ``'auto'``: ``'heads'`` on a TPU, else ``'tokens'`` (on an H100 ``'heads'`` moved 8% more).
  ``impl`` (the forms of spatial and temporal attention it names: :data:`IMPL_FORMS`):
  ``'einsum'`` (explicit softmax, fastest on CPU), ``'dot_product_attention'``
  (``jax.nn.dot_product_attention``: cuDNN on GPU where it applies), ``'lanes'`` (spatial
  attention through ``kernels.lanes_attention``, the frames on the last axis instead of 17-wide
  tiles of joints: the full config's train step moves 17% fewer bytes on a v5e, 7% on an H100,
  ``benchmarks/README.md``; temporal attention as the previous), ``'tpu'`` (spatial attention as
  the previous, temporal through ``kernels.compact_attention``: 10% fewer bytes again on a v5e,
  none on an H100), ``'pallas'`` (TPU: both through Pallas kernels that keep the weights and
  their float32 work on chip, ``kernels.pallas_attention`` and ``kernels.pallas_lanes_attention``:
  44% less time in XLA's estimate on a v5e with the norms of ``'heads'``; temporal clips longer
  than ``kernels.PALLAS_MAX_LENGTH`` frames take ``'tpu'``'s form; off a TPU Pallas interprets
  them, slowly), or ``'auto'`` (:data:`AUTO_IMPLS`: ``'einsum'`` on CPU, ``'lanes'`` on GPU,
  ``'pallas'`` on TPU). With attention dropout active the explicit form runs whatever ``impl`` says.
  """

  def __init__(
    self,
    cfg: DSTformerConfig,
    mode: str,
    *,
    dtype=None,
    impl: str = "auto",
    layout: str = "auto",
    rngs: nnx.Rngs,
  ):
    check_choice("attention mode", mode, ("spatial", "temporal"))
    check_choice("attention impl", impl, ATTENTION_IMPLS)
    check_choice("qkv layout", layout, QKV_LAYOUTS)
    self.mode = mode
    self.impl = impl
    self.layout = layout
    self.num_heads = cfg.num_heads
    self.scale = cfg.qk_scale or cfg.head_dim**-0.5
    c = cfg.dim_feat
    self.qkv = dense(c, 3 * c, ("embed", "qkv"), use_bias=cfg.qkv_bias, dtype=dtype, rngs=rngs)
    self.proj = dense(c, c, ("heads", "embed"), dtype=dtype, rngs=rngs)
    self.attn_drop = nnx.Dropout(cfg.attn_drop_rate, rngs=rngs)
    self.proj_drop = nnx.Dropout(cfg.drop_rate, rngs=rngs)

  def _dropout_active(self) -> bool:
    return self.attn_drop.rate > 0 and not self.attn_drop.deterministic

  def _form(self, frames: int) -> str:
    """How this call attends, over clips of ``frames``: a form of :data:`IMPL_FORMS`."""
    if self._dropout_active():
      return "explicit"
    impl = AUTO_IMPLS.get(jax.default_backend(), "lanes") if self.impl == "auto" else self.impl
    form = IMPL_FORMS[impl][self.mode == "temporal"]
    if form == "pallas" and self.mode == "temporal" and frames > PALLAS_MAX_LENGTH:
      return IMPL_FORMS["tpu"][1]  # longer than the kernel holds on chip
    return form

  def __call__(self, x: Array) -> Array:
    # named scopes: a compiled program's traffic is told by them (``train.hlo_traffic``)
    with jax.named_scope(f"{self.mode}_attention"):
      form = self._form(x.shape[1])
      order = QKV_ORDERS[(self.mode, form)]
      layout = resolve_layout(self.layout)
      with jax.named_scope("qkv"):
        q_scale = self.scale if form == "explicit" else 1.0
        # the Pallas kernels read q, k and v stacked: split, they would be copied on a TPU
        stacked = form == "pallas"
        qkv = self._project_qkv(x, order, layout, q_scale, stacked)
        qkv = split_as_step(qkv, "s" + order) if stacked else [split_as_step(a, order) for a in qkv]
      with jax.named_scope("scores"):
        out = self._attend(qkv, form)
      with jax.named_scope("proj"):
        return self.proj_drop(split_as_step(self._project_out(out, order, layout), "btjc"))

  def _attend(self, qkv: Array | list[Array], form: str) -> Array:
    """The heads' output in the form's order (:data:`QKV_ORDERS`) from q, k and v in it: stacked,
    (3, *order), for ``'pallas'``, else apart."""
    if form == "pallas":
      if self.mode == "spatial":  # (B, H, J, D, T), as "lanes"
        return pallas_lanes_attention(qkv, self.scale)
      return pallas_attention(qkv, self.scale)  # (B, J, H, D, T): a sequence per joint
    q, k, v = qkv
    if self._dropout_active():
      logits = jnp.einsum("...ld,...md->...lm", q, k, preferred_element_type=jnp.float32)
      probs = self.attn_drop(jax.nn.softmax(logits, axis=-1).astype(v.dtype))
      return jnp.einsum("...lm,...md->...ld", probs, v)
    if form == "explicit":
      return softmax_attention(q, k, v)
    if form == "lanes":  # (B, H, J, D, T): a sequence per frame, the frames last
      return lanes_attention(q, k, v, self.scale)
    if form == "compact":  # (B, J, H, T, D): a sequence per joint
      return compact_attention(q, k, v, self.scale)
    # (B*, L, H, D): a sequence per frame (spatial) or joint (temporal)
    flat = (a.reshape((-1,) + a.shape[2:]) for a in (q, k, v))
    return jax.nn.dot_product_attention(*flat, scale=self.scale).reshape(q.shape)

  def _project_qkv(
    self, x: Array, order: str, layout: str, q_scale: float, stacked: bool
  ) -> Array | tuple[Array, Array, Array]:
    """q, k and v in ``order`` (see :data:`QKV_ORDERS`), from x (B, T, J, C) by way of
    ``layout`` ('tokens' or 'heads'); q carries ``q_scale``. ``stacked``: as one (3, *order)
    array, else apart."""
    layer, (c, h) = self.qkv, (x.shape[-1], self.num_heads)
    if layout == "tokens":
      qkv = apply_dense(layer, x).reshape(x.shape[:-1] + (3, h, c // h))
      if stacked:
        if q_scale != 1.0:
          qkv = qkv * jnp.asarray([q_scale, 1.0, 1.0], qkv.dtype)[:, None, None]
        return jnp.einsum(f"btjshd->s{order}", qkv)
      # split, then rearrange each, which XLA fuses into its reader (CPU, GPU); a split
      # transposes to one concatenate, where slices would transpose to pads and adds
      q, k, v = (a[..., 0, :, :] for a in jnp.split(qkv, 3, axis=3))  # each (B, T, J, H, D)
      q = q * jnp.asarray(q_scale, q.dtype) if q_scale != 1.0 else q
      return tuple(jnp.einsum(f"btjhd->{order}", a) for a in (q, k, v))
    bias = layer.bias[...] if layer.bias is not None else None
    x, kernel, bias = layer.promote_dtype((x, layer.kernel[...], bias), dtype=layer.dtype)
    per_part = jnp.asarray([q_scale, 1.0, 1.0], kernel.dtype)[:, None, None]  # (3, 1, 1)
    kernel = kernel.reshape(c, 3, h, c // h) * per_part
    qkv = jnp.einsum(f"btjc,cshd->s{order}", x, kernel, precision=layer.precision)
    if bias is not None:  # (3, H, D) onto (3, order); H comes before D in every order
      shape = (3,) + tuple({"h": h, "d": c // h}.get(a, 1) for a in order)
      qkv = qkv + (bias.reshape(3, h, c // h) * per_part).reshape(shape)
    return qkv if stacked else tuple(a[0] for a in jnp.split(qkv, 3, axis=0))

  def _project_out(self, out: Array, order: str, layout: str) -> Array:
    """(B, T, J, C) from the heads' output in ``order``, by way of ``layout``."""
    layer, h = self.proj, self.num_heads
    if layout == "tokens":
      out = jnp.einsum(f"{order}->btjhd", out)
      return apply_dense(layer, out.reshape(out.shape[:3] + (-1,)))
    out, kernel, bias = layer.promote_dtype((out, layer.kernel[...], layer.bias[...]), dtype=layer.dtype)
    c = kernel.shape[-1]
    y = jnp.einsum(f"{order},hdc->btjc", out, kernel.reshape(h, c // h, c), precision=layer.precision)
    return y + bias


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
    qkv_layout: str = "auto",
    remat: str | None = None,
    rngs: nnx.Rngs,
  ):
    check_choice("block order", order, ("st", "ts"))
    check_choice("remat", remat, tuple(REMAT_POLICIES))
    self.order = order
    self.remat = remat
    self.layout = qkv_layout
    c = cfg.dim_feat
    hidden = int(c * cfg.mlp_ratio)
    self.norm1_s = layer_norm(c, dtype=dtype, rngs=rngs)
    self.norm1_t = layer_norm(c, dtype=dtype, rngs=rngs)
    attn = dict(dtype=dtype, impl=attention_impl, layout=qkv_layout, rngs=rngs)
    self.attn_s = Attention(cfg, "spatial", **attn)
    self.attn_t = Attention(cfg, "temporal", **attn)
    self.norm2_s = layer_norm(c, dtype=dtype, rngs=rngs)
    self.norm2_t = layer_norm(c, dtype=dtype, rngs=rngs)
    self.mlp_s = MLP(c, hidden, cfg.drop_rate, dtype=dtype, rngs=rngs)
    self.mlp_t = MLP(c, hidden, cfg.drop_rate, dtype=dtype, rngs=rngs)
    self.drop_path = nnx.Dropout(drop_path, broadcast_dims=(2, 3), rngs=rngs)

  def _spatial(self, x: Array) -> Array:
    flat = on_token_matrices(self.layout)
    x = x + self.drop_path(self.attn_s(apply_layer_norm(self.norm1_s, x, flat)))
    return x + self.drop_path(self.mlp_s(apply_layer_norm(self.norm2_s, x, flat), flat))

  def _temporal(self, x: Array) -> Array:
    flat = on_token_matrices(self.layout)
    x = x + self.drop_path(self.attn_t(apply_layer_norm(self.norm1_t, x, flat)))
    return x + self.drop_path(self.mlp_t(apply_layer_norm(self.norm2_t, x, flat), flat))

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
  ``'einsum'``, ``'dot_product_attention'``, ``'lanes'``, ``'tpu'``, ``'pallas'``; see ``Attention``),
  ``qkv_layout`` (``'auto'``, ``'tokens'``, ``'heads'``; see ``Attention``), ``remat`` (``None``, or a
  rematerialisation policy per half-block: ``'full'`` saves nothing, ``'dots'`` saves the
  outputs of the linear layers, ``'dots_all'`` those of every product including attention's) and
  ``scan_layers`` (one ``jax.lax.scan`` over the depths instead of a Python loop; it needs every
  depth to be the same module, so ``drop_path_rate`` 0, and no dropout active when called).
  """

  def __init__(
    self,
    cfg: DSTformerConfig,
    *,
    dtype=None,
    attention_impl: str = "auto",
    qkv_layout: str = "auto",
    remat: str | None = None,
    scan_layers: bool = False,
    rngs: nnx.Rngs,
  ):
    self.config = cfg
    self.dtype = dtype
    self.qkv_layout = qkv_layout
    self.scan_layers = bool(scan_layers)
    if self.scan_layers and cfg.drop_path_rate > 0:
      raise ValueError(
        f"scan_layers needs every depth to be the same module; drop_path_rate {cfg.drop_path_rate} "
        "gives each depth its own rate (set it to 0 or run without scan_layers)"
      )
    c = cfg.dim_feat
    self.joints_embed = dense(cfg.dim_in, c, (None, "embed"), dtype=dtype, rngs=rngs)
    self.pos_embed = nnx.Param(
      trunc_normal_init((None, None, "embed"))(rngs.params(), (1, cfg.num_joints, c))
    )
    self.temp_embed = nnx.Param(
      trunc_normal_init((None, None, None, "embed"))(rngs.params(), (1, cfg.maxlen, 1, c))
    )
    self.pos_drop = nnx.Dropout(cfg.drop_rate, rngs=rngs)
    rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
    opts = dict(dtype=dtype, attention_impl=attention_impl, qkv_layout=qkv_layout, remat=remat)
    self.blocks_st = nnx.List([Block(cfg, "st", rates[i], **opts, rngs=rngs) for i in range(cfg.depth)])
    self.blocks_ts = nnx.List([Block(cfg, "ts", rates[i], **opts, rngs=rngs) for i in range(cfg.depth)])
    if cfg.att_fuse:
      self.ts_attn = nnx.List(
        [
          nnx.Linear(
            2 * c,
            2,
            dtype=dtype,
            kernel_init=constant_init(0.0, ("embed", None)),
            bias_init=constant_init(0.5, (None,)),
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
    x = apply_dense(self.joints_embed, x, self._flat())
    x = x + self.pos_embed[:, None] + self.temp_embed[:, :t]
    return self.pos_drop(x.astype(self.dtype) if self.dtype else x)

  def fuse(self, layer: nnx.Linear | None, x_st: Array, x_ts: Array) -> Array:
    """Mixes the two streams of one depth per token: learned softmax weights of ``layer`` (that
    depth's ``ts_attn``), or the mean when there is none (``att_fuse=False``)."""
    if layer is None:
      return (x_st + x_ts) * 0.5
    # ts_attn on concat([x_st, x_ts]) as two half products: no (B, T, J, 2C) copy
    c = x_st.shape[-1]
    kernel, bias = layer.kernel[...], layer.bias[...]
    x_st_, x_ts_, kernel, bias = layer.promote_dtype((x_st, x_ts, kernel, bias), dtype=layer.dtype)
    flat = self._flat()
    logits = (apply_matrix(x_st_, kernel[:c], flat) + apply_matrix(x_ts_, kernel[c:], flat)) + bias
    alpha = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(x_st.dtype)
    return x_st * alpha[..., 0:1] + x_ts * alpha[..., 1:2]

  def depth_layers(self, depth: int) -> tuple[Block, Block, nnx.Linear | None]:
    """The modules of one depth: its two blocks and its fusion layer (None: averaged)."""
    fuse = self.ts_attn[depth] if self.config.att_fuse else None
    return self.blocks_st[depth], self.blocks_ts[depth], fuse

  def _run_depth(self, layers: tuple[Block, Block, nnx.Linear | None], x: Array) -> Array:
    blk_st, blk_ts, fuse = layers
    return self.fuse(fuse, blk_st(x), blk_ts(x))

  def _scan_depths(self, x: Array) -> Array:
    """The depths as one ``jax.lax.scan`` over their parameters stacked on a leading axis.

    Only the parameters are scanned; the rest of each depth's state (dropout RNG counters) is
    the first depth's, unchanged, which is why no dropout may be active.
    """
    splits = [nnx.split(self.depth_layers(i), nnx.Param, ...) for i in range(self.config.depth)]
    graphdef, _, rest = splits[0]
    if any(g != graphdef for g, _, _ in splits[1:]):
      raise ValueError("scan_layers: the depths are not the same module (drop rates differ)")
    active = [d for _, d in nnx.iter_graph(self.depth_layers(0)) if isinstance(d, nnx.Dropout) and d.rate > 0]
    if any(not d.deterministic for d in active):
      raise ValueError("scan_layers: dropout is active (train with drop rates of 0, or call in eval mode)")
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *(params for _, params, _ in splits))

    def one_depth(x, params):
      return self._run_depth(nnx.merge(graphdef, params, rest), x), None

    return jax.lax.scan(one_depth, x, stacked)[0]

  def representation(self, x: Array) -> Array:
    """(B, T, J, dim_in) -> motion representation (B, T, J, rep_width)."""
    x = self.embed(x)
    if self.scan_layers and self.config.depth > 1:
      x = self._scan_depths(x)
    else:
      for i in range(self.config.depth):
        x = self._run_depth(self.depth_layers(i), x)
    x = apply_layer_norm(self.norm, x, self._flat())
    if self.pre_logits is not None:
      x = jnp.tanh(apply_dense(self.pre_logits, x, self._flat()))
    return x

  def __call__(self, x: Array, *, return_rep: bool = False) -> Array:
    rep = self.representation(x)
    if return_rep or self.head is None:
      return rep
    return apply_dense(self.head, rep, self._flat())

  def _flat(self) -> bool:
    return on_token_matrices(self.qkv_layout)
