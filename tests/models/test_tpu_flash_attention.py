"""``attention_impl='pallas'``: temporal attention through Pallas's TPU flash kernel.

The kernel itself runs only on a TPU (its numerics are the JAX team's); here the wrapper around it
(padding to the lane width, the padded frames' own segment, the per-device shard_map, the model's
layouts) is held to the plain attention with the kernel module's own reference in its place, and
the train step is compiled for a TPU slice with the real kernel where libtpu is installed.
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
from perfectrep_jax.models import dstformer, kernels
from perfectrep_jax.models.dstformer import DSTformer, DSTformerConfig

fa = pytest.importorskip("jax.experimental.pallas.ops.tpu.flash_attention")
ROOT = Path(__file__).resolve().parents[2]


def _reference_kernel(scale):
  def kernel(q, k, v, segment_ids):  # the reference's backward takes no scale: q carries it
    return fa.mha_reference(q * scale, k, v, None, segment_ids)

  return kernel


@pytest.mark.parametrize("length", [27, 128, pytest.param(243, marks=pytest.mark.slow)])
def test_padding_to_the_lane_width_changes_nothing(length):
  kq, kk, kv = jax.random.split(jax.random.key(length), 3)
  shape = (3, 2, length, 16)
  q, k, v = (jax.random.normal(key, shape) for key in (kq, kk, kv))
  scale = 16**-0.5

  def plain(q, k, v):
    return kernels.softmax_attention(q * scale, k, v)

  def wrapped(q, k, v):
    return kernels.tpu_flash_attention(q, k, v, scale, kernel=_reference_kernel(scale))

  np.testing.assert_allclose(wrapped(q, k, v), plain(q, k, v), atol=1e-5)
  # ... and its gradient: nothing flows into or out of the padded frames.
  g_plain = jax.grad(lambda *a: jnp.sum(jnp.sin(plain(*a))), argnums=(0, 1, 2))(q, k, v)
  g_wrapped = jax.grad(lambda *a: jnp.sum(jnp.sin(wrapped(*a))), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(g_wrapped, g_plain):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_the_model_with_pallas_attention_matches_einsum(monkeypatch):
  cfg = DSTformerConfig(dim_feat=32, dim_rep=48, depth=2, num_heads=4, mlp_ratio=2, maxlen=12)
  reference = functools.partial(kernels.tpu_flash_attention, kernel=_reference_kernel(8**-0.5))
  monkeypatch.setattr(dstformer, "tpu_flash_attention", reference)
  x = jax.random.normal(jax.random.key(0), (2, 12, 17, 3))
  ref = DSTformer(cfg, attention_impl="einsum", rngs=nnx.Rngs(0))
  for layout in ("tokens", "heads"):  # on a TPU, "auto" takes "heads"
    pallas = DSTformer(cfg, attention_impl="pallas", qkv_layout=layout, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(pallas(x), ref(x), atol=1e-5, err_msg=layout)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu is not installed")
@pytest.mark.slow  # about a minute; the default suite compiles the smoke step for v5e:2x2 already
def test_the_train_step_compiles_with_the_kernel_for_a_tpu_slice(tmp_path, capsys):
  out = tmp_path / "report.json"
  args = ["compile", "--config", f"{ROOT / 'configs' / 'lifter.py'}:smoke", "--topology", "v5e:2x2"]
  assert cli.main([*args, "--config.attention_impl=pallas", "--json", str(out)]) == 0
  report = json.loads(out.read_text())
  assert report["attention_impl"] == "pallas" and report["fits"] and report["estimate"] == "kernel"
  # XLA cannot cost the kernel, so no time or MFU is claimed; memory and traffic are still there.
  assert report["flops_per_step"] is None and report["estimated_mfu"] is None
  assert report["per_device_memory_bytes"] > 0 and report["traffic"]["total"] > 0
  assert "Pallas kernel" in capsys.readouterr().out
