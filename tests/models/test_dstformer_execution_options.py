"""Execution options and hand-written backward passes of the DSTformer.

The model's attention core, LayerNorm and bias+GELU have explicit VJPs (for speed on CPU); these
tests hold them to autodiff of the plain formulas and to PyTorch's gradients on the same weights,
and check that ``attention_impl``, ``qkv_layout``, ``remat`` and ``scan_layers`` change nothing but
the execution.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from perfectrep_jax.models import kernels
from perfectrep_jax.models.dstformer import DSTformer, DSTformerConfig

SMALL = DSTformerConfig(dim_feat=32, dim_rep=48, depth=2, num_heads=4, mlp_ratio=2, maxlen=12)


def _x(b=2, t=12, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, t, 17, 3))


def _grads(model, x, y):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(p):
    out = nnx.merge(graphdef, p, rest)(x)
    return jnp.mean(jnp.sqrt(jnp.sum((out - y) ** 2, axis=-1)))

  return jax.jit(jax.value_and_grad(loss))(params)


def _flat(tree):
  return {"/".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(tree)}


def test_custom_vjps_match_autodiff_of_the_formulas():
  rng = np.random.default_rng(0)
  arr = lambda *s: jnp.asarray(rng.standard_normal(s).astype(np.float32))  # noqa: E731
  q, k, v, w = arr(2, 3, 7, 5), arr(2, 3, 7, 5), arr(2, 3, 7, 5), arr(2, 3, 7, 5)

  def attn_ref(q, k, v):
    return jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2), axis=-1) @ v

  for f in (attn_ref, kernels.softmax_attention):
    np.testing.assert_allclose(f(q, k, v), attn_ref(q, k, v), atol=1e-6)
  g_ref = jax.grad(lambda *a: jnp.sum(attn_ref(*a) * w), argnums=(0, 1, 2))(q, k, v)
  g_new = jax.grad(lambda *a: jnp.sum(kernels.softmax_attention(*a) * w), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(g_ref, g_new):
    np.testing.assert_allclose(b, a, atol=1e-5)

  x, s, b, wl = arr(4, 6, 16) * 3 + 1, arr(16), arr(16), arr(4, 6, 16)

  def ln_ref(x, s, b):
    m = x.mean(-1, keepdims=True)
    return (x - m) / jnp.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + 1e-6) * s + b

  np.testing.assert_allclose(kernels.layer_norm_fn(x, s, b, 1e-6), ln_ref(x, s, b), atol=1e-5)
  g_ref = jax.grad(lambda *a: jnp.sum(ln_ref(*a) * wl), argnums=(0, 1, 2))(x, s, b)
  g_new = jax.grad(lambda *a: jnp.sum(kernels.layer_norm_fn(*a, 1e-6) * wl), argnums=(0, 1, 2))(x, s, b)
  for a, c in zip(g_ref, g_new):
    np.testing.assert_allclose(c, a, atol=1e-5)

  h = arr(4, 6, 16) * 2
  np.testing.assert_allclose(kernels.bias_gelu(h, b), jax.nn.gelu(h + b, approximate=False), atol=1e-6)
  g_ref = jax.grad(lambda h, b: jnp.sum(jax.nn.gelu(h + b, approximate=False) * wl), (0, 1))(h, b)
  g_new = jax.grad(lambda h, b: jnp.sum(kernels.bias_gelu(h, b) * wl), (0, 1))(h, b)
  for a, c in zip(g_ref, g_new):
    np.testing.assert_allclose(c, a, atol=1e-5)


def _hold_to_formula(kernel, formula, args, w, atol, grad_atol):
  """``kernel`` against ``formula`` (float32): output dtype, shape and values, and the gradients
  of sum(out * w) in the inputs' dtype."""
  out = kernel(*args)
  assert out.dtype == args[0].dtype and out.shape == args[0].shape
  np.testing.assert_allclose(np.float32(out), formula(*args), atol=atol)
  g_ref = jax.grad(lambda *a: jnp.sum(formula(*a) * w), argnums=(0, 1, 2))(*args)
  g_new = jax.grad(lambda *a: jnp.sum(kernel(*a) * w), argnums=(0, 1, 2))(*args)
  for a, b, x in zip(g_ref, g_new, args):
    assert b.dtype == x.dtype
    np.testing.assert_allclose(np.float32(b), np.float32(a), atol=grad_atol)


@pytest.mark.parametrize("dtype, atol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_compact_attention_is_attention(dtype, atol):
  # the (L, L) weights kept unnormalised in the inputs' dtype, the logits' gradient from them:
  # float32 round-off in float32; in bfloat16 only the inputs' and the weights' rounding is left
  rng = np.random.default_rng(2)
  q, k, v, w = (jnp.asarray(rng.standard_normal((2, 3, 31, 8)), dtype) for _ in range(4))

  def attn_ref(q, k, v):
    f = lambda a: a.astype(jnp.float32)  # noqa: E731
    return jax.nn.softmax(f(q) @ jnp.swapaxes(f(k), -1, -2) * 0.3, axis=-1) @ f(v)

  _hold_to_formula(lambda *a: kernels.compact_attention(*a, 0.3), attn_ref, (q, k, v), w, atol, atol * 2)


@pytest.mark.parametrize("dtype, atol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_lanes_attention_is_attention_with_the_sequences_last(dtype, atol):
  # (..., L, D, N): N sequences of L tokens along the last axis, as a TPU's lanes hold a
  # clip's frames; held to the plain formula and its autodiff on (..., N, L, D) arrays.
  # bfloat16 inputs (GPU, TPU) multiply and sum in float32: only the inputs' rounding is left.
  rng = np.random.default_rng(1)
  q, k, v, w = (jnp.asarray(rng.standard_normal((2, 3, 17, 8, 5)), dtype) for _ in range(4))
  first = lambda a: jnp.moveaxis(a, -1, -3).astype(jnp.float32)  # noqa: E731  (..., N, L, D)

  def attn_ref(q, k, v):
    logits = first(q) @ jnp.swapaxes(first(k), -1, -2) * 0.3
    return jnp.moveaxis(jax.nn.softmax(logits, axis=-1) @ first(v), -3, -1)

  _hold_to_formula(lambda *a: kernels.lanes_attention(*a, 0.3), attn_ref, (q, k, v), w, atol, atol)


def test_gradients_match_pytorch_on_the_same_weights():
  torch = pytest.importorskip("torch")
  from perfectrep_jax.interop.convert import to_state_dict
  from perfectrep_jax.interop.torch_reference import TorchDSTformer

  model = DSTformer(SMALL, rngs=nnx.Rngs(3))
  # non-trivial fusion weights, so both streams and ts_attn get gradients of both signs
  for i in range(SMALL.depth):
    model.ts_attn[i].kernel[...] = jax.random.normal(jax.random.key(i), (2 * SMALL.dim_feat, 2))
  x, y = _x(seed=1), _x(seed=2)
  loss, grads = _grads(model, x, y)

  tm = TorchDSTformer(SMALL)
  tm.load_state_dict({k: torch.from_numpy(v) for k, v in to_state_dict(model).items()}, strict=True)
  tx, ty = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y))
  t_loss = torch.linalg.vector_norm(tm(tx) - ty, dim=-1).mean()
  t_loss.backward()
  np.testing.assert_allclose(float(loss), float(t_loss), rtol=1e-5)

  t_grads = {k: p.grad.numpy() for k, p in tm.named_parameters()}
  from perfectrep_jax.interop.convert import torch_key

  checked = 0
  for path, g in nnx.to_flat_state(grads):
    key, transposed = torch_key(tuple(path))
    g = np.asarray(g.get_value() if hasattr(g, "get_value") else g)
    tg = t_grads[key].T if transposed else t_grads[key]
    scale = max(1e-3, float(np.abs(tg).max()))
    np.testing.assert_allclose(g, tg, atol=2e-5 * scale, err_msg=key)
    checked += 1
  assert checked == len(t_grads)


@pytest.mark.parametrize(
  "impl, layout, qkv_bias",
  [
    ("einsum", "tokens", True),
    ("dot_product_attention", "tokens", True),
    ("einsum", "heads", True),
    ("dot_product_attention", "heads", True),
    ("einsum", "heads", False),
    ("lanes", "tokens", True),
    ("lanes", "heads", True),
    ("lanes", "heads", False),
    ("tpu", "heads", True),
    ("tpu", "tokens", False),
    ("pallas", "heads", True),  # its kernels in Pallas's interpreter on this CPU (slow)
    pytest.param("pallas", "tokens", False, marks=pytest.mark.slow),
  ],
)
def test_attention_impls_and_qkv_layouts_agree(impl, layout, qkv_bias):
  # "heads" (the TPU's) projects q, k, v with einsums against the kernel seen as (C, 3, H, D),
  # the scale folded into q's third; "lanes" (GPU's and TPU's) attends over the joints with the
  # frames last, "tpu" also over the frames with the weights kept once, "pallas" over the frames
  # in one kernel, each with its backward written out: the same function, to float32 round-off.
  cfg = dataclasses.replace(SMALL, qkv_bias=qkv_bias)
  x, y = _x(), _x(seed=5)
  ref = DSTformer(cfg, attention_impl="einsum", qkv_layout="tokens", rngs=nnx.Rngs(0))
  other = DSTformer(cfg, attention_impl=impl, qkv_layout=layout, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(other(x), ref(x), atol=1e-5)
  (l1, g1), (l2, g2) = _grads(ref, x, y), _grads(other, x, y)
  np.testing.assert_allclose(l1, l2, rtol=1e-6)
  f1, f2 = _flat(g1), _flat(g2)
  for k in f1:
    np.testing.assert_allclose(f2[k], f1[k], atol=1e-5, err_msg=k)


@pytest.mark.parametrize("remat", ["full", "dots", "dots_all"])
def test_remat_changes_nothing_but_memory(remat):
  x, y = _x(), _x(seed=5)
  ref = DSTformer(SMALL, rngs=nnx.Rngs(0))
  rem = DSTformer(SMALL, remat=remat, rngs=nnx.Rngs(0))
  (l1, g1), (l2, g2) = _grads(ref, x, y), _grads(rem, x, y)
  np.testing.assert_allclose(l1, l2, rtol=1e-6)
  f1, f2 = _flat(g1), _flat(g2)
  for k in f1:
    np.testing.assert_allclose(f2[k], f1[k], atol=1e-6, err_msg=k)


def test_attention_dropout_path_trains_and_is_identity_in_eval():
  cfg = dataclasses.replace(SMALL, attn_drop_rate=0.5)
  plain = DSTformer(SMALL, rngs=nnx.Rngs(params=0, dropout=1))
  x = _x()
  for layout in ("tokens", "heads"):
    m = DSTformer(cfg, qkv_layout=layout, rngs=nnx.Rngs(params=0, dropout=1))
    m.eval()
    np.testing.assert_allclose(m(x), plain(x), atol=1e-5)
    m.train()
    assert not np.allclose(m(x), plain(x), atol=1e-3)


def test_bad_options_are_rejected():
  with pytest.raises(ValueError, match="attention impl"):
    DSTformer(SMALL, attention_impl="flash", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="remat"):
    DSTformer(SMALL, remat="some", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="qkv layout"):
    DSTformer(SMALL, qkv_layout="columns", rngs=nnx.Rngs(0))


def _model(cfg=SMALL, seed=0, **kw):
  return DSTformer(cfg, rngs=nnx.Rngs(params=seed, dropout=seed + 1), **kw)


@pytest.mark.parametrize("att_fuse", [True, False])
def test_scan_layers_computes_the_loop_and_its_gradient(att_fuse):
  """One lax.scan over the stacked depths: the same output and parameter gradients as the loop,
  under jit and with remat, and the parameters keep their per-depth names."""
  cfg = dataclasses.replace(SMALL, depth=3, att_fuse=att_fuse)
  loop, scan = _model(cfg), _model(cfg, scan_layers=True, remat="dots")
  for i in range(cfg.depth):  # fusion weights away from their even start, so they matter
    for m in (loop, scan):
      if att_fuse:
        m.ts_attn[i].kernel[...] = jax.random.normal(jax.random.key(i), m.ts_attn[i].kernel.shape)
  assert jax.tree.structure(nnx.state(loop, nnx.Param)) == jax.tree.structure(nnx.state(scan, nnx.Param))
  x = _x()

  y = jnp.zeros((2, 12, 17, 3))
  (l1, g1), (l2, g2) = _grads(loop, x, y), _grads(scan, x, y)
  np.testing.assert_allclose(l2, l1, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
  hlo = jax.jit(lambda m, x: m(x)).lower(scan, x).as_text()
  assert "while" in hlo or "stablehlo.while" in hlo


def test_scan_layers_refuses_what_it_cannot_scan():
  with pytest.raises(ValueError, match="drop_path_rate"):
    _model(dataclasses.replace(SMALL, drop_path_rate=0.1), scan_layers=True)
  m = _model(dataclasses.replace(SMALL, drop_rate=0.1), scan_layers=True)
  with pytest.raises(ValueError, match="dropout is active"):
    m(_x())
  m.eval()
  assert m(_x()).shape == (2, 12, 17, 3)


@pytest.mark.parametrize("flat", [True, False])
def test_a_dense_layers_bias_and_gelu_apply_to_the_product_as_the_matmul_writes_it(flat):
  # XLA:GPU fuses a bias (and bias_gelu) into the matmul only when it is applied to the product
  # itself: added after the reshape back from the (tokens, C) matrix, the full config's step on
  # an H100 moved 3% more bytes. So with ``flat`` every add and GELU sees the 2-d product.
  model = DSTformer(SMALL, rngs=nnx.Rngs(0))
  mlp, x = model.blocks_st[0].mlp_s, jnp.ones((2, 12, 17, 32))
  want_ndim = 2 if flat else 4
  jaxpr = jax.make_jaxpr(lambda x: mlp(x, flat))(x)
  elementwise = [
    e for e in jaxpr.jaxpr.eqns if e.primitive.name in ("add", "custom_jvp_call", "custom_vjp_call")
  ]
  assert elementwise and all(e.outvars[0].aval.ndim == want_ndim for e in elementwise)
  np.testing.assert_allclose(mlp(x, flat), mlp(x, not flat), rtol=1e-6, atol=1e-6)
