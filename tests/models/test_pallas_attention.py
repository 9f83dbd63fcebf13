"""``attention_impl='pallas'``: temporal attention through ``kernels.pallas_attention``, spatial
through ``kernels.pallas_lanes_attention``.

On this CPU each kernel runs in Pallas's interpreter: the same kernel body, so it is held here to
the formula (outputs and gradients; in the model, to the einsum form with the other impls in
``test_dstformer_execution_options.py``) and compiled for a TPU slice with Mosaic where libtpu is
installed, where XLA's cost analysis must count its work.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from perfectrep_jax import cli
from perfectrep_jax.models import kernels
from perfectrep_jax.models.dstformer import DSTformer, DSTformerConfig
from perfectrep_jax.train import aot

ROOT = Path(__file__).resolve().parents[2]
needs_libtpu = pytest.mark.skipif(
  importlib.util.find_spec("libtpu") is None, reason="libtpu is not installed"
)


def _formula(q, k, v, scale):
  """softmax over keys of q.k * scale, on (..., D, L) arrays, in float32."""
  q, k, v = (a.astype(jnp.float32) for a in (q, k, v))
  weights = jax.nn.softmax(jnp.einsum("...dl,...dm->...lm", q, k) * scale, axis=-1)
  return jnp.einsum("...lm,...dm->...dl", weights, v)


def _assert_is(attend, reference, shape, dtype, scale, atol, seed=0):
  """``attend`` (of q, k and v stacked, as the projection writes them) and its gradient (stacked
  alike), on random ``shape`` arrays of ``dtype``, are ``reference``'s (of q, k, v, taken in
  float32) to ``atol``, in ``dtype``."""
  kq, kk, kv, kw = jax.random.split(jax.random.key(seed), 4)
  q, k, v = (jax.random.normal(key, shape).astype(dtype) for key in (kq, kk, kv))
  w = jax.random.normal(kw, shape)
  out = attend(jnp.stack([q, k, v]), scale)
  assert out.dtype == dtype and out.shape == shape
  np.testing.assert_allclose(out.astype(jnp.float32), reference(q, k, v, scale), atol=atol)

  got = jax.grad(lambda qkv: jnp.sum(attend(qkv, scale).astype(jnp.float32) * w))(jnp.stack([q, k, v]))
  assert got.dtype == dtype and got.shape == (3, *shape)
  loss = lambda *qkv: jnp.sum(reference(*qkv, scale).astype(jnp.float32) * w)  # noqa: E731
  want = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
  for name, a, b in zip("qkv", got, want):
    np.testing.assert_allclose(a.astype(jnp.float32), b, atol=atol, err_msg=f"d{name}")


@pytest.mark.parametrize(
  "dtype,length,atol", [(jnp.float32, 37, 1e-5), (jnp.float32, 130, 1e-5), (jnp.bfloat16, 37, 3e-2)]
)
def test_the_kernel_and_its_gradient_are_the_formula(dtype, length, atol):
  # (B, J, H, D, L): 37 and 130 are not whole tiles of 8 or 128
  _assert_is(kernels.pallas_attention, _formula, (2, 3, 2, 16, length), dtype, 16**-0.5, atol, seed=length)


def test_a_clip_longer_than_the_chip_holds_is_refused():
  qkv = jnp.zeros((3, 1, 1, 1, 8, kernels.PALLAS_MAX_LENGTH + 1))
  with pytest.raises(ValueError, match="attention_impl='tpu'"):
    kernels.pallas_attention(qkv, 1.0)


def test_clips_longer_than_the_kernel_holds_take_the_compact_form():
  cfg = DSTformerConfig(dim_feat=16, dim_rep=16, depth=1, num_heads=2, maxlen=2048)
  attention = DSTformer(cfg, attention_impl="pallas", rngs=nnx.Rngs(0)).blocks_st[0].attn_t
  assert attention._form(243) == "pallas"
  assert attention._form(kernels.PALLAS_MAX_LENGTH + 1) == "compact"


def _primitives(jaxpr) -> list[str]:
  """The primitives of ``jaxpr`` and of the jaxprs it calls, but not inside a kernel (a
  ``pallas_call``, or the ``cond`` that picks Mosaic or the interpreter by platform)."""
  names = []
  for eqn in jaxpr.eqns:
    names.append(eqn.primitive.name)
    if eqn.primitive.name in ("cond", "pallas_call"):
      continue
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        sub = getattr(sub, "jaxpr", sub)
        if hasattr(sub, "eqns"):
          names += _primitives(sub)
  return names


@pytest.mark.parametrize("mode", ["spatial", "temporal"])
def test_the_kernels_take_q_k_v_as_the_projection_writes_them(mode):
  # On a TPU, splitting the projection's (3, ...) output into q, k and v, or joining their
  # gradients back, is a copy through HBM (7.2 of the 45.0 GB counted a chip a step at full
  # size on a v5e, benchmarks/README.md):
  # the kernels read the stacked array and write its gradient stacked, so neither is traced.
  cfg = DSTformerConfig(dim_feat=16, dim_rep=16, depth=1, num_heads=2, maxlen=27)
  traced = {}
  for impl in ("pallas", "einsum"):
    block = DSTformer(cfg, attention_impl=impl, qkv_layout="heads", rngs=nnx.Rngs(0)).blocks_st[0]
    graph, params, rest = nnx.split(block.attn_s if mode == "spatial" else block.attn_t, nnx.Param, ...)
    loss = lambda params, x: jnp.sum(nnx.merge(graph, params, rest)(x))  # noqa: E731, B023
    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, jnp.ones((2, 27, 17, 16)))
    traced[impl] = set(_primitives(jaxpr.jaxpr))
  assert {"split", "concatenate"} <= traced["einsum"]  # what the check finds where they are split
  assert "pallas_call" in traced["pallas"] or "cond" in traced["pallas"]
  assert not traced["pallas"] & {"split", "slice", "squeeze", "concatenate", "pad"}


@pytest.mark.parametrize("dtype,atol", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
def test_the_spatial_kernel_and_its_gradient_are_lanes_attention(dtype, atol):
  def reference(q, k, v, scale):  # the XLA kernel, on float32 copies
    return kernels.lanes_attention(*(a.astype(jnp.float32) for a in (q, k, v)), scale)

  # (B, H, L, D, N): 17 joints, 200 frames, so a full block of 128 frames and a masked edge one
  _assert_is(kernels.pallas_lanes_attention, reference, (2, 2, 17, 8, 200), dtype, 8**-0.5, atol, seed=1)


@needs_libtpu
@pytest.mark.parametrize(
  "mode, shape, length",  # length: the axis attended over, frames or joints
  [("temporal", (8, 17, 8, 64, 243), 243), ("spatial", (8, 8, 17, 64, 243), 17)],
)
def test_xla_counts_the_kernels_work_on_a_tpu(mode, shape, length):
  """Compiled by Mosaic for a v5e (no chip needed), at the full config's size (8 clips a chip,
  8 heads of 64, 243 frames, 17 joints): XLA's cost analysis takes each kernel's estimate, FLOPs a
  little above XLA's own count for the same attention without a kernel (the kernels' backward
  recomputes the weights: 7 (L, L, D) products against 6), bytes far below (no weights and no
  float32 copies leave the chip)."""
  devices = aot.topology_devices("v5e:2x2")
  sharding = jax.sharding.SingleDeviceSharding(devices[0])
  qkv = jax.ShapeDtypeStruct((3, *shape), jnp.bfloat16, sharding=sharding)
  scale = 64**-0.5
  kernel_fn, xla_fn = {
    "temporal": (kernels.pallas_attention, lambda q, k, v, s: _formula(q, k, v, s).astype(q.dtype)),
    "spatial": (kernels.pallas_lanes_attention, kernels.lanes_attention),
  }[mode]

  def cost(attend):
    step = jax.grad(lambda qkv: jnp.sum(attend(qkv, scale).astype(jnp.float32) ** 2))
    compiled = jax.jit(step).lower(qkv).compile()
    cost = compiled.cost_analysis()
    return (cost[0] if isinstance(cost, (list, tuple)) else cost), compiled.as_text()

  (kernel, text), (xla, _) = cost(kernel_fn), cost(lambda qkv, s: xla_fn(*qkv, s))
  assert aot.PALLAS_CALL in text and aot.uncosted_kernels(text) == 0
  products = 2 * math.prod(shape) * length  # FLOPs of one (L, L, D) product over the batch
  assert 7 * products <= kernel["flops"] <= 1.1 * xla["flops"] + products
  assert kernel["bytes accessed"] < 0.5 * xla["bytes accessed"]


@needs_libtpu
@pytest.mark.parametrize("topology", ["v5e:2x2", "v5p:2x2x1", "v6e:2x2"])
def test_the_longest_sequence_taken_compiles_for_each_chip(topology):
  # the backward's (L, L) float32 arrays must fit a core's VMEM (v5p refused 1024 frames)
  sharding = jax.sharding.SingleDeviceSharding(aot.topology_devices(topology)[0])
  qkv = jax.ShapeDtypeStruct((3, 1, 2, 8, 64, kernels.PALLAS_MAX_LENGTH), jnp.bfloat16, sharding=sharding)
  loss = lambda qkv: jnp.sum(kernels.pallas_attention(qkv, 0.125).astype(jnp.float32))  # noqa: E731
  jax.jit(jax.grad(loss)).lower(qkv).compile()


def test_a_kernel_without_a_cost_estimate_is_told_apart():
  costed = (
    '%a = bf16[8] custom-call(%x), custom_call_target="tpu_custom_call", backend_config={"cost_estimate":{}}'
  )
  uncosted = '%b = bf16[8] custom-call(%x), custom_call_target="tpu_custom_call", backend_config={}'
  assert aot.uncosted_kernels(costed) == 0
  assert aot.uncosted_kernels(f"{costed}\n{uncosted}\n%c = f32[] add(%y, %z)") == 1


@needs_libtpu
@pytest.mark.slow  # about a minute; the default suite compiles the smoke step for v5e:2x2 already
def test_the_train_step_compiles_with_the_kernel_for_a_tpu_slice(tmp_path):
  out = tmp_path / "report.json"
  args = ["compile", "--config", f"{ROOT / 'configs' / 'lifter.py'}:smoke", "--topology", "v5e:2x2"]
  assert cli.main([*args, "--config.attention_impl=pallas", "--json", str(out)]) == 0
  report = json.loads(out.read_text())
  assert report["attention_impl"] == "pallas" and report["fits"] and report["estimate"] == "roofline"
  # the kernel's cost estimate counted: a time and an MFU, where an uncosted kernel gives none
  assert report["flops_per_step"] > 0 and report["estimated_mfu"] > 0
