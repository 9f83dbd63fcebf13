"""``attention_impl='pallas'``: temporal attention through ``kernels.pallas_attention``.

On this CPU the kernel runs in Pallas's interpreter: the same kernel body, so it is held here to
the formula (outputs and gradients; in the model, to the einsum form with the other impls in
``test_dstformer_execution_options.py``) and compiled for a TPU slice with Mosaic where libtpu is
installed, where XLA's cost analysis must count its work.
"""

from __future__ import annotations

import functools
import importlib.util
import json
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


@pytest.mark.parametrize(
  "dtype,length,atol", [(jnp.float32, 37, 1e-5), (jnp.float32, 130, 1e-5), (jnp.bfloat16, 37, 3e-2)]
)
def test_the_kernel_and_its_gradient_are_the_formula(dtype, length, atol):
  shape = (2, 3, 2, 16, length)  # (B, J, H, D, L): 37 and 130 are not whole tiles of 8 or 128
  kq, kk, kv, kw = jax.random.split(jax.random.key(length), 4)
  q, k, v = (jax.random.normal(key, shape).astype(dtype) for key in (kq, kk, kv))
  w = jax.random.normal(kw, shape)
  scale = 16**-0.5
  out = kernels.pallas_attention(q, k, v, scale)
  assert out.dtype == dtype and out.shape == shape
  np.testing.assert_allclose(out.astype(jnp.float32), _formula(q, k, v, scale), atol=atol)

  def loss(attend, *qkv):
    return jnp.sum(attend(*qkv, scale).astype(jnp.float32) * w)

  got = jax.grad(functools.partial(loss, kernels.pallas_attention), argnums=(0, 1, 2))(q, k, v)
  want = jax.grad(functools.partial(loss, _formula), argnums=(0, 1, 2))(q, k, v)
  for name, a, b in zip("qkv", got, want):
    assert a.dtype == dtype
    np.testing.assert_allclose(a.astype(jnp.float32), b, atol=atol, err_msg=f"d{name}")


def test_a_clip_longer_than_the_chip_holds_is_refused():
  x = jnp.zeros((1, 1, 1, 8, kernels.PALLAS_MAX_LENGTH + 1))
  with pytest.raises(ValueError, match="attention_impl='tpu'"):
    kernels.pallas_attention(x, x, x, 1.0)


def test_clips_longer_than_the_kernel_holds_take_the_compact_form():
  cfg = DSTformerConfig(dim_feat=16, dim_rep=16, depth=1, num_heads=2, maxlen=2048)
  attention = DSTformer(cfg, attention_impl="pallas", rngs=nnx.Rngs(0)).blocks_st[0].attn_t
  assert attention._form(243) == "pallas"
  assert attention._form(kernels.PALLAS_MAX_LENGTH + 1) == "compact"


@needs_libtpu
def test_xla_counts_the_kernels_work_on_a_tpu():
  """Compiled by Mosaic for a v5e (no chip needed): XLA's cost analysis takes the kernel's
  estimate, FLOPs a little above XLA's own count for the same attention in einsums (the kernel's
  backward recomputes the weights: 7 (L, L, D) products against 6), bytes far below (no (L, L)
  array leaves the chip)."""
  devices = aot.topology_devices("v5e:2x2")
  shape = (2, 17, 8, 64, 243)  # two clips of the full config: 17 joints, 8 heads of 64, 243 frames
  arg = jax.ShapeDtypeStruct(shape, jnp.bfloat16, sharding=jax.sharding.SingleDeviceSharding(devices[0]))
  scale = 64**-0.5

  def step(attend, q, k, v):
    return jax.grad(lambda *a: jnp.sum(attend(*a, scale).astype(jnp.float32) ** 2), argnums=(0, 1, 2))(
      q, k, v
    )

  def cost(attend):
    compiled = jax.jit(functools.partial(step, attend)).lower(arg, arg, arg).compile()
    cost = compiled.cost_analysis()
    return (cost[0] if isinstance(cost, (list, tuple)) else cost), compiled.as_text()

  def einsums(q, k, v, scale):
    return _formula(q, k, v, scale).astype(q.dtype)

  (kernel, text), (xla, _) = cost(kernels.pallas_attention), cost(einsums)
  assert aot.PALLAS_CALL in text and aot.uncosted_kernels(text) == 0
  products = 2 * 2 * 17 * 8 * 243 * 243 * 64  # FLOPs of one (L, L, D) product over the batch
  assert 7 * products <= kernel["flops"] <= 1.1 * xla["flops"] + products
  assert kernel["bytes accessed"] < 0.5 * xla["bytes accessed"]


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
