"""The DSTformer's options: fusion, representation width, heads, dropout, short clips, dtype."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from perfectrep_jax.models import ActionConfig, ActionNet, DSTformer, DSTformerConfig

SMALL = DSTformerConfig(dim_feat=32, dim_rep=48, depth=2, num_heads=4, mlp_ratio=2, maxlen=12)


def _x(b=2, t=12, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, t, 17, 3))


def _model(cfg=SMALL, seed=0, **kw):
  return DSTformer(cfg, rngs=nnx.Rngs(params=seed, dropout=seed + 1), **kw)


def test_shapes_of_output_and_representation():
  m = _model()
  assert m(_x()).shape == (2, 12, 17, 3)
  assert m(_x(), return_rep=True).shape == (2, 12, 17, 48)


def test_dim_out_zero_returns_the_representation():
  m = _model(dataclasses.replace(SMALL, dim_out=0))
  assert m.head is None
  assert m(_x()).shape == (2, 12, 17, 48)


def test_dim_rep_zero_has_no_pre_logits_and_head_reads_features():
  cfg = dataclasses.replace(SMALL, dim_rep=0)
  m = _model(cfg)
  assert m.pre_logits is None and cfg.rep_width == cfg.dim_feat
  assert m(_x(), return_rep=True).shape == (2, 12, 17, 32)
  assert m(_x()).shape == (2, 12, 17, 3)


def test_att_fuse_off_averages_streams():
  m = _model(dataclasses.replace(SMALL, att_fuse=False))
  assert not hasattr(m, "ts_attn")
  a, b = jnp.ones((1, 2, 17, 32)), jnp.zeros((1, 2, 17, 32))
  assert m.depth_layers(0)[2] is None
  np.testing.assert_allclose(m.fuse(None, a, b), 0.5)


def test_fusion_starts_as_an_even_mix():
  m = _model()  # ts_attn weights 0, biases 0.5 -> softmax weights 1/2, 1/2
  a = jax.random.normal(jax.random.key(1), (1, 2, 17, 32))
  b = jax.random.normal(jax.random.key(2), (1, 2, 17, 32))
  np.testing.assert_allclose(m.fuse(m.ts_attn[0], a, b), (a + b) / 2, atol=1e-6)


def test_short_clips_and_too_long_clips():
  m = _model()
  assert m(_x(t=5)).shape == (2, 5, 17, 3)
  with pytest.raises(ValueError, match="longer than the model's maxlen"):
    m(_x(t=13))


def test_short_clip_equals_prefix_free_computation():
  """A short clip must only see the first rows of temp_embed (no padding effects)."""
  m = _model()
  x = _x(t=12)
  short = m(x[:, :4])
  m2 = _model()
  m2.temp_embed[...] = m2.temp_embed[...].at[:, 4:].set(1e3)  # rows past 4 must not matter
  np.testing.assert_allclose(m2(x[:, :4]), short, atol=1e-6)


def test_dropout_and_drop_path_act_only_in_training():
  cfg = dataclasses.replace(SMALL, drop_rate=0.2, attn_drop_rate=0.2, drop_path_rate=0.3)
  m = _model(cfg)
  x = _x()
  m.train()
  a, b = m(x), m(x)  # the dropout stream advances between calls
  assert not np.allclose(a, b)
  m.eval()
  c, d = m(x), m(x)
  np.testing.assert_array_equal(c, d)
  # In eval mode the dropout rates change nothing: same weights without dropout agree.
  plain = _model(SMALL)
  nnx.update(plain, nnx.state(m, nnx.Param))
  plain.eval()
  np.testing.assert_allclose(plain(x), c, atol=1e-6)


def test_drop_path_rates_grow_linearly_with_depth():
  cfg = dataclasses.replace(SMALL, depth=3, drop_path_rate=0.2)
  m = _model(cfg)
  assert [blk.drop_path.rate for blk in m.blocks_st] == pytest.approx([0.0, 0.1, 0.2])
  assert [blk.drop_path.rate for blk in m.blocks_ts] == pytest.approx([0.0, 0.1, 0.2])


def test_drop_path_drops_whole_frames():
  cfg = dataclasses.replace(SMALL, depth=1, drop_path_rate=0.99)
  blk = _model(cfg).blocks_st[0]
  blk.train()
  y = jnp.ones((4, 6, 17, 32))
  dropped = blk.drop_path(y)
  per_frame = dropped.reshape(4, 6, -1)
  # each (clip, frame) is either all zeros or all scaled by 1/keep
  assert np.all((per_frame == 0).all(-1) | (per_frame == per_frame[..., :1]).all(-1))


def test_qk_scale_changes_attention():
  x = _x()
  base = _model()
  scaled = _model(dataclasses.replace(SMALL, qk_scale=1.0))
  assert scaled.blocks_st[0].attn_s.scale == 1.0
  assert base.blocks_st[0].attn_s.scale == pytest.approx(8**-0.5)
  assert not np.allclose(base(x), scaled(x))


def test_heads_split_qkv_as_three_heads_headdim():
  """Permuting channels inside one head's q/k/v slice must not change the output."""
  m = _model()
  x = _x()
  ref = m(x)
  attn = m.blocks_st[0].attn_s
  k = attn.qkv.kernel[...]
  c, d = 32, 8
  perm = np.arange(3 * c)
  # swap two channels of head 1 in q and the same two channels in k: q.k is unchanged
  for s in (0, 1):
    i, j = s * c + 1 * d + 2, s * c + 1 * d + 5
    perm[[i, j]] = perm[[j, i]]
  attn.qkv.kernel[...] = k[:, perm]
  attn.qkv.bias[...] = attn.qkv.bias[...][perm]
  np.testing.assert_allclose(m(x), ref, atol=1e-5)


def test_bfloat16_compute_stays_close_to_float32():
  x = _x()
  f32 = _model()
  bf16 = _model(dtype=jnp.bfloat16)
  nnx.update(bf16, nnx.state(f32, nnx.Param))
  out32, out16 = f32(x), bf16(x)
  assert out16.dtype == jnp.bfloat16
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(bf16, nnx.Param)))
  err = np.abs(np.asarray(out16, np.float32) - np.asarray(out32)).max()
  assert err < 0.05 * max(1.0, np.abs(np.asarray(out32)).max())


def test_config_validation():
  with pytest.raises(ValueError, match="divisible"):
    DSTformerConfig(dim_feat=30, num_heads=4)
  with pytest.raises(ValueError, match="unknown"):
    DSTformerConfig.from_dict({"dim_feat": 32, "bogus": 1})


def test_action_model_pools_persons_and_frames():
  cfg = ActionConfig(backbone=SMALL, num_classes=7, hidden_dim=64)
  m = ActionNet(cfg, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (3, 2, 12, 17, 3))
  m.eval()
  logits = m(x)
  assert logits.shape == (3, 7)
  # swapping the two persons changes nothing: they are averaged
  np.testing.assert_allclose(m(x[:, ::-1]), logits, atol=1e-5)


def test_action_batchnorm_uses_batch_stats_in_training_and_updates_running_stats():
  cfg = ActionConfig(backbone=SMALL, num_classes=4, hidden_dim=16)
  m = ActionNet(cfg, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (8, 1, 12, 17, 3))
  m.train()
  before = np.asarray(m.head.bn.mean[...]).copy()
  m(x)
  after = np.asarray(m.head.bn.mean[...])
  assert not np.allclose(before, after)
  # torch semantics: running var moves toward the unbiased batch variance with momentum 0.1
  feats = m.head.fc1(
    __import__("perfectrep_jax.models.heads", fromlist=["pool_persons"]).pool_persons(
      m.backbone.representation(x.reshape(8, 12, 17, 3)).reshape(8, 1, 12, 17, -1)
    )
  )
  np.testing.assert_allclose(after, 0.1 * np.asarray(feats).mean(0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(
    np.asarray(m.head.bn.var[...]), 0.9 + 0.1 * np.asarray(feats).var(0, ddof=1), rtol=1e-4
  )
  m.eval()
  a = m(x)
  np.testing.assert_array_equal(np.asarray(m.head.bn.mean[...]), after)  # no update in eval
  assert a.shape == (8, 4)


def test_embed_head_gives_unit_vectors():
  cfg = ActionConfig(backbone=SMALL, hidden_dim=32, version="embed", num_classes=0)
  m = ActionNet(cfg, rngs=nnx.Rngs(0))
  m.eval()
  out = m(jax.random.normal(jax.random.key(0), (3, 2, 12, 17, 3)))
  assert out.shape == (3, 32)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), 1.0, rtol=1e-5)
